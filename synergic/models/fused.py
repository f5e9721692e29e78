"""Horizontal fusion of an SDL^n model's components: n backbones of one architecture run as one
batched computation.

SDL^n runs n identical networks on n small batches; one at a time, that launches n times the
kernels of one network, and a GPU spends its time waiting for the host (HFTA, Wang et al., MLSys
2021). :class:`FusedSynergicForward` stacks the components' parameters and buffers and maps one
stateless copy of the architecture over them with ``torch.func.functional_call`` and
``torch.vmap`` (PyTorch's "model ensembling" tutorial; ``torch.func.stack_module_state`` does the
same stacking, detached). Under ``vmap`` a convolution with batched weights becomes one grouped
convolution, a linear layer one batched matrix product.

It computes what running the components one by one computes, up to floating-point
reassociation (a grouped convolution may sum in another order):

- parameters: the components' own ``nn.Parameter`` objects are stacked (``torch.stack``) at every
  call, so gradients flow back to them through autograd; the optimiser, the checkpoint
  (``state_dict`` keys and shapes) and EMA see the unfused model, and a run may switch between
  fused and unfused at any checkpoint;
- BatchNorm: each component normalises over its own batch, and its running statistics are
  updated per component: the stacked buffers are mapped over too (``in_dims=0``), so the in-place
  updates of ``F.batch_norm`` land in the stacked copy, which is copied back to each component's
  buffers after the forward pass. (The limitation PyTorch documents under "Patching Batch Norm"
  concerns running statistics that are *not* mapped over; with them mapped it does not arise.)

Plain PyTorch (``torch.func``); the synergic heads and the loss are unchanged.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

FUSE_SETTINGS = ("auto", True, False)


def fusion_problem(components: Sequence[nn.Module]) -> str | None:
    """Why ``components`` cannot run fused, in a few words, or None when they can.

    Fusable: at least two components with the same module types in the same places, the same
    parameter and buffer names, shapes, dtypes, devices and ``requires_grad``, and no
    ``SyncBatchNorm`` (its collective cannot run under ``vmap``).
    """
    if len(components) < 2:
        return "a single component has nothing to fuse with"
    first = components[0]
    structure = [(name, type(module)) for name, module in first.named_modules()]
    if any(isinstance(module, nn.SyncBatchNorm) for _, module in first.named_modules()):
        return "SyncBatchNorm cannot run under torch.vmap"

    def tensors(module: nn.Module):
        return [(name, t.shape, t.dtype, t.device, t.requires_grad)
                for name, t in (*module.named_parameters(), *module.named_buffers())]

    reference = tensors(first)
    for k, other in enumerate(components[1:], start=2):
        if [(name, type(module)) for name, module in other.named_modules()] != structure:
            return f"component {k} has another architecture than component 1"
        if tensors(other) != reference:
            return f"component {k}'s parameters or buffers differ in shape, dtype or device from component 1's"
    return None


def resolve_fuse_components(
    setting: bool | str, model: nn.Module, device: torch.device, *, distributed: bool = False,
    compile: bool = False,
) -> tuple[bool, str | None]:
    """``train.fuse_components`` resolved to ``(fuse, reason)``.

    ``"auto"``: fused when possible and on an accelerator (on the CPU a grouped convolution is
    no faster than n plain ones, so CPU numbers stay those of the unfused step); ``True``: fused
    when possible, else ``(False, reason)`` with the reason in one line; ``False``: never.
    Not possible: fewer than two components, components of different architectures
    (:func:`fusion_problem`), under torch.distributed (DDP wraps the model's own forward) or
    with ``compile``. Raises ``ValueError`` for another setting.
    """
    if setting not in FUSE_SETTINGS:
        raise ValueError(f"fuse_components must be 'auto', True or False, got {setting!r}")
    if setting is False:
        return False, None
    if setting == "auto" and device.type == "cpu":
        return False, None
    components = getattr(model, "components", None)
    problem = "the model has no components" if components is None else fusion_problem(list(components))
    if problem is None and distributed:
        problem = "not under torch.distributed (DDP runs the model's own forward)"
    if problem is None and compile:
        problem = "not together with train.compile"
    if problem is not None:
        return False, problem
    return True, None


class FusedSynergicForward:
    """The forward pass of a :class:`~synergic.models.sdl.SynergicModel` with its components
    fused: call it as the model (``fused(streams, synergic_grad_scale=...)``, streams a list of n
    tensors ``[B, 3, H, W]`` or one ``[n, B, 3, H, W]``), get the same
    :class:`~synergic.models.sdl.SynergicOutput`.

    Holds no state of its own: it reads the model's parameters and buffers at every call, so
    the model may be trained, loaded or evaluated unfused in between. Raises ``ValueError`` when
    :func:`fusion_problem` finds the components unfit. Should ``vmap`` refuse the backbone at
    the first call (randomness such as dropout inside it, an operator without a batching rule),
    it warns once and runs unfused from then on, with the same results.
    """

    def __init__(self, model: nn.Module) -> None:
        problem = fusion_problem(list(model.components))
        if problem is not None:
            raise ValueError(f"cannot fuse the components: {problem}")
        self.model = model
        components = list(model.components)
        # The architecture alone, on the meta device: functional_call fills it with the stacked
        # tensors at every call.
        self._skeleton = copy.deepcopy(components[0]).to("meta")
        self._parameter_names = [name for name, _ in components[0].named_parameters()]
        self._buffer_names = [name for name, _ in components[0].named_buffers()]
        self.unfused_reason: str | None = None
        self._checked = False

    def _stacked(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[list[torch.Tensor]]]:
        components = self.model.components
        per_component = [dict(c.named_parameters()) for c in components]
        params = {name: torch.stack([p[name] for p in per_component]) for name in self._parameter_names}
        buffers_of = [[dict(c.named_buffers())[name] for c in components] for name in self._buffer_names]
        buffers = {name: torch.stack(b) for name, b in zip(self._buffer_names, buffers_of)}
        return params, buffers, buffers_of

    def components_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every component on its own stream: ``images`` ``[n, B, 3, H, W]`` -> logits
        ``[n, B, K]`` and features ``[n, B, D]``, as ``component_k(images[k])`` gives them."""
        skeleton = self._skeleton
        if skeleton.training != self.model.training:
            skeleton.train(self.model.training)
        params, buffers, buffers_of = self._stacked()

        def one(p, b, x):
            return tuple(functional_call(skeleton, (p, b), (x,)))

        logits, features = torch.vmap(one, in_dims=(0, 0, 0), randomness="error")(params, buffers, images)
        if skeleton.training and buffers_of:
            # BatchNorm updated the stacked running statistics in place: hand them back.
            with torch.no_grad():
                originals = [t for ts in buffers_of for t in ts]
                updated = [t for name in self._buffer_names for t in buffers[name].unbind(0)]
                torch._foreach_copy_(originals, updated)
        return logits, features

    def __call__(self, streams: Sequence[torch.Tensor] | torch.Tensor, *,
                 synergic_grad_scale: float = 1.0):
        from synergic.models.sdl import SynergicOutput, pair_key, scale_gradient

        model = self.model
        if len(streams) != model.num_components:
            raise ValueError(f"expected {model.num_components} image streams, got {len(streams)}")
        if self.unfused_reason is not None:
            return model(streams, synergic_grad_scale=synergic_grad_scale)
        images = streams if isinstance(streams, torch.Tensor) else torch.stack(list(streams))
        if not self._checked:
            try:
                logits, features = self.components_forward(images)
            except RuntimeError as error:
                from synergic.errors import first_line

                first = first_line(error)
                self.unfused_reason = f"torch.vmap cannot run this backbone ({first})"
                warnings.warn(f"train.fuse_components: running the components one by one: "
                              f"{self.unfused_reason}", stacklevel=2)
                return model(streams, synergic_grad_scale=synergic_grad_scale)
            self._checked = True
        else:
            logits, features = self.components_forward(images)
        # From here on exactly SynergicModel.forward.
        features = list(features.unbind(0))
        to_heads = [scale_gradient(f, synergic_grad_scale) for f in features]
        pair_logits = {
            (i, j): model.heads[pair_key(i, j)](torch.cat([to_heads[i], to_heads[j]], dim=1))
            for i, j in model.pairs
        }
        return SynergicOutput(list(logits.unbind(0)), features, pair_logits)
