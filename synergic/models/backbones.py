"""Backbones: any timm model (headless, pooled features) or a registered factory.

A backbone is a plain ``nn.Module`` mapping float images ``[B, 3, H, W]`` to features ``[B, F]``
with an attribute ``num_features == F``. Weights come from timm's usual source
(``pretrained=True``) or from a local file (``weights=PATH``): a state dict, safetensors, or the
checkpoint of another trainer (timm's ``train.py``, Lightning, torchvision's references), read
without running any code from it (:func:`read_state_dict`). The file is verified tensor by tensor:
timm itself loads a file whose keys do not match at all without complaint when the classifier
size differs, so a wrong file would otherwise train from random weights in silence.
"""

from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch
from torch import nn

from synergic.errors import SynergicError, describe_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Globals besides tensors that checkpoints of common trainers pickle, and that only hold data.
#: timm's train.py (like torchvision's reference scripts) saves its command line, an
#: ``argparse.Namespace``, under ``args``; Lightning's ``hyper_parameters`` often hold paths. A
#: path loads as its pure variant (string handling only), so a file written on Windows opens on
#: Linux and the other way round. Anything else a file pickles is refused, not run.
SAFE_CHECKPOINT_GLOBALS = [
    argparse.Namespace,
    *(
        (pure, f"{module}.{name}")
        for module in ("pathlib", "pathlib._local")  # pathlib._local: written by Python >= 3.13
        for pure, name in (
            (PurePosixPath, "PurePosixPath"),
            (PurePosixPath, "PosixPath"),
            (PureWindowsPath, "PureWindowsPath"),
            (PureWindowsPath, "WindowsPath"),
        )
    ),
]

#: Keys under which trainers store the state dict, tried in this order when
#: ``model.backbone.weights_key`` is not set: timm's rule (``state_dict`` before ``model``), and an
#: EMA copy (``state_dict_ema``, ``model_ema``) only when asked for.
DEFAULT_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "module")

# Prefixes of every key when a whole training module was saved (Lightning's ``self.model``...);
# DDP's ``module.`` and torch.compile's ``_orig_mod.`` are removed key by key by timm's
# ``clean_state_dict``.
_SHARED_PREFIXES = ("model.", "backbone.")
# Bookkeeping tensors of averaging wrappers: torch.optim.swa_utils.AveragedModel (torchvision's
# reference EMA) counts its updates in ``n_averaged``.
_BOOKKEEPING_KEYS = ("n_averaged",)

def create_backbone(
    name: str,
    *,
    pretrained: bool = False,
    weights: str | Path | None = None,
    weights_key: str | None = None,
    **options,
) -> nn.Module:
    """Build the backbone called ``name``: a registered factory, else a timm model.

    ``weights`` (a local ``.safetensors`` file, or a ``.pt``/``.pth``/``.bin``/``.ckpt`` file
    written by ``torch.save``: a state dict or a trainer's checkpoint, see :func:`read_state_dict`)
    wins over ``pretrained`` and needs no network; ``weights_key`` picks one of several state dicts
    in it. Remaining ``options`` go to the factory (for timm: ``timm.create_model`` keyword
    arguments such as ``drop_rate``). A registered factory receives ``weights_key`` only when it is
    set.

    Raises:
        SynergicError: unknown name, invalid option, or a weights file that cannot be read or
            does not fit (one line each).
    """
    from synergic import registry

    _check_weights_key(weights, weights_key)
    if name in registry.backbones:
        entry = registry.backbones.entry(name)
        if weights_key is not None:
            if not _accepts_keyword(entry.factory, "weights_key"):
                raise SynergicError(
                    f"backbone '{name}' (from {entry.origin}) takes no model.backbone.weights_key: "
                    "remove it, or save the state dict you want on its own with "
                    "torch.save(state_dict, PATH)"
                )
            options = {**options, "weights_key": weights_key}
        try:
            backbone = entry.factory(pretrained=pretrained, weights=weights, **options)
        except TypeError as error:
            raise SynergicError(
                f"backbone '{name}' (from {entry.origin}): invalid option ({error}): "
                "check model.backbone.options"
            ) from None
    else:
        backbone = create_timm_backbone(
            name, pretrained=pretrained, weights=weights, weights_key=weights_key, **options
        )
    if not isinstance(getattr(backbone, "num_features", None), int):
        raise SynergicError(
            f"backbone '{name}' has no integer attribute 'num_features': a backbone factory must "
            "return a module with num_features (the size of its pooled features)"
        )
    return backbone


def _accepts_keyword(function, keyword: str) -> bool:
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return True
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == keyword and p.kind is not p.POSITIONAL_ONLY)
        for p in parameters
    )


def create_timm_backbone(
    name: str,
    *,
    pretrained: bool = False,
    weights: str | Path | None = None,
    weights_key: str | None = None,
    **options,
) -> nn.Module:
    """A headless timm model (``num_classes=0``: pooled features of size ``num_features``).

    ``weights``/``weights_key``: see :func:`load_backbone_weights`.
    """
    import timm

    _check_weights_key(weights, weights_key)
    if not timm.is_model(name):
        from synergic import registry

        raise SynergicError(
            registry.backbones.unknown_message(name, extra_candidates=timm.list_models())
            + " (or any timm model name)"
        )
    options = {k: v for k, v in options.items() if v is not None}
    use_hub = pretrained and weights is None
    try:
        model = timm.create_model(name, pretrained=use_hub, num_classes=0, **options)
    except TypeError as error:
        raise SynergicError(f"backbone '{name}': invalid option: {error}") from None
    except (OSError, RuntimeError, ValueError) as error:
        if use_hub:
            raise SynergicError(
                f"ImageNet weights for {name} cannot be downloaded here ({type(error).__name__}): "
                "set model.backbone.weights to a local file, or model.backbone.pretrained=false"
            ) from None
        raise
    if weights is not None:
        load_backbone_weights(model, weights, key=weights_key)
    return model


def _check_weights_key(weights, weights_key) -> None:
    if weights_key is not None and weights is None:
        raise SynergicError(
            "model.backbone.weights_key is set but model.backbone.weights is not: set "
            "model.backbone.weights to the file, or remove weights_key"
        )


def read_state_dict(path: str | Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict in a weights file, whatever trainer wrote it.

    Reads, without running any code from the file:

    - a ``.safetensors`` file (recognised by its header, whatever its suffix);
    - a file written by ``torch.save``, loaded with ``torch.load(weights_only=True)`` and only
      :data:`SAFE_CHECKPOINT_GLOBALS` allowed besides what torch allows: a plain state dict
      (torchvision, ``torch.hub``), or a checkpoint dict holding one under a key: timm's
      ``train.py`` (``state_dict``, ``state_dict_ema``, ``args``, ...), Lightning
      (``state_dict``, ``hyper_parameters``, ``optimizer_states``, ...), torchvision's reference
      scripts (``model``, ``model_ema``, ``args``, ...), ``{"model_state_dict": ...}``.

    Which state dict: ``key`` if given: a key of the checkpoint dict (``"state_dict_ema"``), or a
    prefix of the state dict's keys (``"ema"`` for a Lightning module's ``self.ema``); else the
    first of :data:`DEFAULT_STATE_DICT_KEYS` the file has, else its only state dict.

    Key names are then cleaned: DDP's ``module.`` and torch.compile's ``_orig_mod.`` are removed
    (timm's ``clean_state_dict``), and so is a ``model.`` or ``backbone.`` that starts every key;
    AveragedModel's ``n_averaged`` counter is dropped.

    Args:
        path: the weights file (``~`` is expanded).
        key: ``model.backbone.weights_key``, or None.

    Returns:
        ``{name: tensor}`` on the CPU, dtypes as stored.

    Raises:
        SynergicError: one line saying what the file holds and what to do: file missing or
            unreadable, a pickled global outside the allow-list (named, not run), several state
            dicts and no ``key``, a ``key`` the file does not have (the available ones listed), or
            no state dict at all.
    """
    path = Path(path).expanduser()
    checkpoint = _read_weights_file(path)
    state = _select_state_dict(checkpoint, key, path)
    return clean_state_dict_keys(state)


def clean_state_dict_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the key prefixes of training wrappers (see :func:`read_state_dict`)."""
    from timm.models import clean_state_dict

    state = {k: v for k, v in state.items() if k not in _BOOKKEEPING_KEYS}
    while True:
        state = clean_state_dict(state)
        prefix = next(
            (p for p in _SHARED_PREFIXES if state and all(k.startswith(p) for k in state)), None
        )
        if prefix is None:
            return state
        state = {k[len(prefix) :]: v for k, v in state.items()}


def _read_weights_file(path: Path):
    if not path.is_file():
        raise SynergicError(f"weights file {path} not found: check model.backbone.weights")
    if path.suffix == ".safetensors" or _has_safetensors_header(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as error:
            raise SynergicError(
                f"weights file {path} could not be read as safetensors ({_first_line(error)}): "
                "check model.backbone.weights"
            ) from None
    try:
        # Protocol and allow-list warnings would print several lines besides the error.
        with warnings.catch_warnings(), torch.serialization.safe_globals(SAFE_CHECKPOINT_GLOBALS):
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        unsafe = _unsafe_globals(path, error)
        if unsafe:
            raise SynergicError(
                f"weights file {path} pickles {_name_list(unsafe)}, which synergic does not load "
                "(it could run code): load it where it was made and re-save the state dict alone "
                "with torch.save(model.state_dict(), PATH)"
            ) from None
        detail = _first_line(error)
        if "Weights only load failed" in detail:
            # torch's text goes on to suggest weights_only=False, which would run the file's code.
            detail = f"{type(error).__name__}: not a pickle that torch.load can read safely"
        raise SynergicError(
            f"weights file {path} could not be read as a torch.save or safetensors file "
            f"({detail}): check model.backbone.weights"
        ) from None


def _has_safetensors_header(path: Path) -> bool:
    # safetensors: an 8-byte little-endian header length, then the JSON header.
    with path.open("rb") as handle:
        start = handle.read(9)
    if len(start) < 9 or start[8:9] != b"{":
        return False
    return 0 < int.from_bytes(start[:8], "little") <= path.stat().st_size - 8


def _unsafe_globals(path: Path, error: Exception) -> list[str]:
    """The pickled globals that made ``torch.load(weights_only=True)`` refuse ``path``."""
    found: list[str] = []
    try:  # reads the pickle without running it; only for torch's zip format
        with torch.serialization.safe_globals(SAFE_CHECKPOINT_GLOBALS):
            found = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:
        pass
    if not found:  # torch's legacy format names the first one in its message
        found = re.findall(r"GLOBAL (\S+) was not an allowed global", str(error))
    return sorted(set(found))


def _name_list(names: list[str], limit: int = 4) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _first_line(error: Exception) -> str:
    return describe_error(error, 160)


def _is_tensor_dict(value) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _under_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    prefix = prefix.rstrip(".") + "."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _select_state_dict(checkpoint, key: str | None, path: Path, depth: int = 0):
    """The state dict of ``checkpoint`` that ``key`` (or the default rule) names."""
    if _is_tensor_dict(checkpoint):
        if key is None:
            return dict(checkpoint)
        selected = _under_prefix(checkpoint, key)
        if selected:
            return selected
        raise SynergicError(
            f"weights file {path} is one state dict, with no key or key prefix '{key}': remove "
            "model.backbone.weights_key"
        )
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise SynergicError(
            f"weights file {path} holds {_describe(checkpoint)}, not a state dict: save one with "
            "torch.save(model.state_dict(), PATH)"
        )
    found = [k for k, v in checkpoint.items() if _is_tensor_dict(v)]
    available = ", ".join(map(str, found))
    if key is not None:
        if key in checkpoint:
            if _is_tensor_dict(checkpoint[key]) or (
                isinstance(checkpoint[key], Mapping) and depth < 2
            ):
                return _select_state_dict(checkpoint[key], None, path, depth + 1)
            raise SynergicError(
                f"weights file {path}: key '{key}' holds {_describe(checkpoint[key])}, not a "
                "state dict; "
                + (f"set model.backbone.weights_key to one of {available}" if found
                   else "the file holds no state dict: re-save it with "
                   "torch.save(model.state_dict(), PATH)")
            )
        default = _default_state_dict(checkpoint, found, path, depth, key)
        selected = _under_prefix(default, key)
        if selected:  # a prefix inside the state dict (a Lightning module's self.ema)
            return selected
        raise SynergicError(
            f"weights file {path} has no key '{key}' (its keys: {_key_list(checkpoint)}) and no "
            f"'{key}.' key prefix in its state dict: set model.backbone.weights_key to one of "
            f"{available or 'its key prefixes'}"
        )
    return _default_state_dict(checkpoint, found, path, depth, key)


def _default_state_dict(checkpoint: Mapping, found: list, path: Path, depth: int, key):
    for name in DEFAULT_STATE_DICT_KEYS:
        value = checkpoint.get(name)
        if _is_tensor_dict(value):
            return dict(value)
        if isinstance(value, Mapping) and depth < 2:  # {"model": {"state_dict": ...}}
            try:
                return _select_state_dict(value, None, path, depth + 1)
            except SynergicError:
                pass
    if len(found) == 1:
        return dict(checkpoint[found[0]])
    if found:
        raise SynergicError(
            f"weights file {path} holds state dicts under keys {', '.join(map(str, found))}: set "
            "model.backbone.weights_key to one of them"
        )
    raise SynergicError(
        f"weights file {path} holds no state dict (a dict with keys {_key_list(checkpoint)}"
        + (f"; weights_key '{key}' is not one of them" if key is not None else "")
        + "): re-save the weights with torch.save(model.state_dict(), PATH)"
    )


def _describe(value) -> str:
    if isinstance(value, Mapping):
        return "an empty dict" if not value else f"a dict with keys {_key_list(value)}"
    name = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _key_list(mapping: Mapping, limit: int = 8) -> str:
    keys = [str(k) for k in mapping]
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} keys)" if len(keys) > limit else "")


def load_backbone_weights(model: nn.Module, path: str | Path, *, key: str | None = None) -> None:
    """Load the weights file ``path`` into ``model`` and check every backbone tensor was loaded.

    The state dict is found as :func:`read_state_dict` says (``key``:
    ``model.backbone.weights_key``).
    When its names do not match the model as they are, the one key prefix under which every
    tensor of the model is found is used (``backbone.`` of a training module that also holds a
    head; ``ema.module.`` when ``key`` is ``"ema"``), and the rest of the file is ignored.
    Tensors of a classifier that the headless backbone does not have (``fc.*``,
    ``classifier.*``, ``head.*``) are ignored; any backbone tensor missing from the file, or of
    another shape, or a file that is mostly keys the model does not have, is refused.

    Raises:
        SynergicError: as :func:`read_state_dict`; and the file does not fit the model
            (another architecture, a tensor of another shape, tensors the model does not have),
            or holds the model's tensors under several prefixes and no ``key`` chose one.
    """
    state = read_state_dict(path, key)
    expected = model.state_dict()
    state = _backbone_part(state, expected, path)
    classifier_prefixes = _classifier_prefixes(model)
    unexpected = [
        k for k in state if k not in expected and not k.startswith(classifier_prefixes)
    ]
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        example = ", ".join(missing[:3])
        raise SynergicError(
            f"weights file {path} does not match this backbone: {len(missing)} of "
            f"{len(expected)} tensors missing (e.g. {example}); "
            f"{len(unexpected)} keys of the file are unknown to it. "
            "Check model.backbone.name and model.backbone.weights"
        )
    if unexpected:
        raise SynergicError(
            f"weights file {path} has {len(unexpected)} tensors this backbone does not have "
            f"(e.g. {', '.join(unexpected[:3])}): check model.backbone.name"
        )
    wrong_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if wrong_shape:
        k = wrong_shape[0]
        raise SynergicError(
            f"weights file {path}: tensor {k} has shape {tuple(state[k].shape)}, the backbone "
            f"expects {tuple(expected[k].shape)}: check model.backbone.name"
        )
    model.load_state_dict({k: state[k] for k in expected if k in state}, strict=False)


def _backbone_part(
    state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor], path
) -> dict[str, torch.Tensor]:
    """``state``, or its part under the one key prefix that holds every tensor of the model."""
    required = {k for k in expected if not k.endswith("num_batches_tracked")}
    if required <= state.keys():
        return state
    found: dict[str, set[str]] = {}
    for name in state:
        for dot in (i for i, c in enumerate(name) if c == "."):
            if name[dot + 1 :] in required:
                found.setdefault(name[: dot + 1], set()).add(name[dot + 1 :])
    prefixes = sorted(p for p, names in found.items() if names == required)
    if len(prefixes) > 1:
        raise SynergicError(
            f"weights file {path} holds this backbone's tensors under several key prefixes "
            f"({', '.join(prefixes)}): set model.backbone.weights_key to one of them"
        )
    return _under_prefix(state, prefixes[0]) if prefixes else state


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ("fc", "classifier", "head", "head.fc", "last_linear")
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


def backbone_normalization(backbone: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean and std from the backbone's ``pretrained_cfg``, ImageNet's otherwise."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
    return mean, std


def resolved_backbone(
    name: str,
    *,
    pretrained: bool = False,
    weights: str | Path | None = None,
    backbone: nn.Module | None = None,
) -> dict[str, str | None]:
    """What the backbone ``name`` stands for: timm's pretrained tag and where the weights come from.

    timm resolves a name without a tag to the architecture's default one: ``resnet50`` is
    ``resnet50.a1_in1k`` (the "ResNet strikes back" A1 recipe), while the torchvision ImageNet
    weights are ``resnet50.tv_in1k``. This reads timm's registry of pretrained configurations
    (``timm.models.get_pretrained_cfg``): nothing is built or downloaded.

    Args:
        name: ``model.backbone.name``: a registered backbone or a timm model name, with or
            without a ``.tag``.
        pretrained, weights: ``model.backbone.pretrained`` and ``model.backbone.weights``.
        backbone: the built backbone, if there is one; a registered backbone's ``pretrained_cfg``
            may name the source of its weights (``source``).

    Returns:
        ``{"backbone": name, "architecture": ..., "pretrained_tag": ..., "weights_source": ...}``
        (all strings). ``pretrained_tag`` is timm's tag for the name (it also sets the input
        mean and std), None for a registered backbone or a timm model without pretrained
        configurations. ``weights_source`` is ``"hub"`` (timm fetches the tag's weights),
        ``"file PATH"`` (a local file; PATH absolute), ``"factory ORIGIN"`` (a registered
        backbone loads its own weights; ORIGIN is the plugin, followed by the ``source`` its
        ``pretrained_cfg`` names, if any) or ``"none"`` (random initialisation).

    Raises:
        SynergicError: ``name`` is neither registered nor a timm model, or has a tag timm does not
            know for its architecture.
    """
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    from synergic import registry

    file_source = f"file {Path(weights).expanduser().absolute()}" if weights is not None else None
    if name in registry.backbones:
        source = f"factory {registry.backbones.entry(name).origin}"
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        if cfg.get("source"):
            source += f" ({cfg['source']})"
        return {
            "backbone": name,
            "architecture": name,
            "pretrained_tag": None,
            "weights_source": file_source or (source if pretrained else "none"),
        }
    if not timm.is_model(name):
        raise SynergicError(
            f"backbone '{name}' is neither a registered backbone nor a timm model: check "
            "model.backbone.name (`synergic list backbones`)"
        )
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:
        architecture, tag = split_model_name_tag(name)
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{architecture}.*")]
        raise SynergicError(
            f"backbone '{name}': timm has no pretrained tag '{tag}' for {architecture}; "
            f"its tags are {', '.join(tags)}: check model.backbone.name"
        ) from None
    architecture = cfg.architecture if cfg is not None else split_model_name_tag(name)[0]
    return {
        "backbone": name,
        "architecture": architecture,
        "pretrained_tag": cfg.tag if cfg is not None else None,
        "weights_source": file_source or ("hub" if pretrained else "none"),
    }


def describe_backbone(resolved: dict[str, str | None]) -> str:
    """One line for people: ``resnet50 -> timm resnet50.a1_in1k, weights: hub``."""
    if resolved["pretrained_tag"]:
        what = f"timm {resolved['architecture']}.{resolved['pretrained_tag']}"
    else:
        what = resolved["architecture"] or resolved["backbone"]
    return f"{resolved['backbone']} -> {what}, weights: {resolved['weights_source']}"
