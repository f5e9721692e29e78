"""Typed registries of named component factories.

One :class:`Registry` per kind of component (backbones, data sets, pair samplers, synergic heads,
aggregators). Nothing is registered as a side effect of importing a module: the built-in components
and the plugins' all arrive through the same pluggy hooks (:mod:`synergic.plugins`), loaded lazily
the first time a registry is read. Tests can build a fresh ``Registry`` or ``unregister`` names.

A component is registered as an object (a function or class) or as a reference
``"package.module:attribute"``, which is imported the first time its factory is asked for
(:attr:`Entry.factory`, :meth:`Registry.get`). Listing the names, origins and descriptions of
components registered by reference (``synergic list``) imports none of their modules, so it does
not import torch; the description is then read from the module's source (the first line of the
attribute's docstring) unless one is given.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import sys
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from synergic.errors import SynergicError, UnknownNameError, closest

F = TypeVar("F", bound=Callable)


class DuplicateNameError(SynergicError):
    """A name registered twice; the message names both origins."""


class BrokenReferenceError(SynergicError):
    """A component registered as ``"module:attribute"`` whose module or attribute cannot be loaded,
    or is not callable; the message names the component, its origin (the plugin) and the
    reference."""


def is_reference(text: str) -> bool:
    """Whether ``text`` has the form ``"package.module:attribute"`` (dotted names on both sides of
    one colon, as in an entry point: ``"synergic.sampling:BalancedPairSampler"``)."""
    module, colon, attribute = text.partition(":")
    return bool(colon) and all(
        part.isidentifier() for part in (*module.split("."), *attribute.split("."))
    )


class Entry(Generic[F]):
    """A registered component: its name, origin (the plugin that registered it, ``"synergic"``
    for the built-ins, ``"user"`` otherwise), description and factory.

    ``reference`` is the ``"module:attribute"`` string it was registered as, or ``None`` for an
    object. The factory of a reference is imported on first access of :attr:`factory`.
    """

    __slots__ = ("name", "origin", "kind", "reference", "_factory", "_description")

    def __init__(
        self, name: str, factory: F | str, origin: str, description: str = "", *,
        kind: str = "component",
    ) -> None:
        self.name = name
        self.origin = origin
        self.kind = kind
        self.reference: str | None = factory if isinstance(factory, str) else None
        self._factory: F | None = None if isinstance(factory, str) else factory
        self._description = description or None

    @property
    def loaded(self) -> bool:
        """Whether the factory is at hand (registered as an object, or its reference imported)."""
        return self._factory is not None

    @property
    def factory(self) -> F:
        """The factory; a reference is imported here, once.

        Raises:
            BrokenReferenceError: the reference's module cannot be imported (the message carries
                the ImportError), it has no such attribute, or the attribute is not callable.
        """
        if self._factory is None:
            assert self.reference is not None
            self._factory = self._import()
        return self._factory

    @property
    def description(self) -> str:
        """One line for ``synergic list``: the one registered, else the first line of the
        factory's docstring (read from the module's source, without importing it, when the
        factory is a reference not imported yet); empty when there is none."""
        if self._description is None:
            if self._factory is not None:
                self._description = _summary(getattr(self._factory, "__doc__", None))
            else:
                assert self.reference is not None
                self._description = _summary_from_source(self.reference)
        return self._description

    def _import(self) -> F:
        where = (
            f"{self.kind} '{self.name}' (registered by {self.origin}) points to "
            f"'{self.reference}'"
        )
        todo = (
            "correct the reference" if self.origin == "user"  # registered in code, not by a plugin
            else f"reinstall {self.origin} or correct the reference it registers"
        )
        try:
            value = pkgutil.resolve_name(self.reference)
        except (ImportError, AttributeError) as error:
            reason = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
            raise BrokenReferenceError(
                f"{where}, which cannot be imported ({type(error).__name__}: {reason}): {todo}"
            ) from error
        if not callable(value):
            raise BrokenReferenceError(
                f"{where}, which is a {type(value).__name__}, not a function or class: {todo}"
            )
        return value

    def __repr__(self) -> str:
        factory = repr(self.reference) if self._factory is None else repr(self._factory)
        return f"Entry({self.name!r}, {factory}, origin={self.origin!r})"


def _summary(doc: str | None) -> str:
    doc = (doc or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def _summary_from_source(reference: str) -> str:
    """The first docstring line of ``reference``'s attribute, read from its module's source.

    The module is not imported (its parent packages are, by ``importlib.util.find_spec``); when
    it already is, the object's own docstring is read. Empty when the source is not at hand
    (a compiled module), the attribute is not a function or class defined there (a name
    imported from elsewhere), or anything fails: the error surfaces when the factory is used.
    """
    module_name, _, attribute = reference.partition(":")
    if module_name in sys.modules:
        try:
            return _summary(getattr(pkgutil.resolve_name(reference), "__doc__", None))
        except Exception:
            return ""
    try:
        spec = importlib.util.find_spec(module_name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return ""
        with open(spec.origin, encoding="utf-8") as source:
            body = ast.parse(source.read(), filename=spec.origin).body
    except Exception:  # only a description: never fail a listing
        return ""
    node = None
    for part in attribute.split("."):
        node = next(
            (n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
             and n.name == part),
            None,
        )
        if node is None:
            return ""
        body = node.body
    return _summary(ast.get_docstring(node))


class Registry(Generic[F]):
    """Named factories of one kind.

    >>> heads = Registry("synergic head")
    >>> @heads.register("tiny")
    ... def tiny(in_features): ...
    >>> heads.get("tiny") is tiny
    True
    >>> _ = heads.register("mlp", "synergic.models.synergic_head:MLPSynergicHead")
    >>> heads.entry("mlp").loaded  # listed, described, not imported
    False
    """

    def __init__(self, kind: str, *, on_first_read: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[F]] = {}
        self._on_first_read = on_first_read
        self._loaded = on_first_read is None

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True  # set first: loading registers into this registry
            assert self._on_first_read is not None
            self._on_first_read()

    @overload
    def register(
        self, name: str, factory: F | str, *, origin: str = ..., description: str = ...
    ) -> F | str: ...
    @overload
    def register(
        self, name: str, factory: None = None, *, origin: str = ..., description: str = ...
    ) -> Callable[[F], F]: ...

    def register(self, name, factory=None, *, origin="user", description=""):
        """Register ``factory`` under ``name``; without ``factory``, return a decorator.

        ``factory`` is a callable, or a reference ``"package.module:attribute"`` to one that is
        imported at its first use (:attr:`Entry.factory`). Without ``description`` the first
        line of the factory's docstring is shown by ``synergic list``. Returns ``factory``.

        Raises:
            SynergicError: ``name`` is not a non-empty string, or ``factory`` is neither callable
                nor a reference.
            DuplicateNameError: ``name`` is taken; the message names both origins.
        """
        if factory is None:
            return lambda f: self.register(name, f, origin=origin, description=description)
        if not isinstance(name, str) or not name:
            raise SynergicError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if isinstance(factory, str):
            if not is_reference(factory):
                raise SynergicError(
                    f"{self.kind} '{name}' from {origin}: {factory!r} is not a reference of the "
                    "form 'package.module:attribute'; register the factory or such a reference"
                )
        elif not callable(factory):
            raise SynergicError(f"{self.kind} '{name}' from {origin}: the factory is not callable")
        if name in self._entries:
            first = self._entries[name].origin
            raise DuplicateNameError(
                f"{self.kind} '{name}' is registered twice: by {first} and by {origin}; "
                "uninstall or disable one of them (SYNERGIC_PLUGINS=...)"
            )
        self._entries[name] = Entry(name, factory, origin, description, kind=self.kind)
        return factory

    def unregister(self, name: str) -> None:
        """Remove ``name`` (nothing happens when it is not registered)."""
        self._entries.pop(name, None)

    def reset(self) -> None:
        """Forget every entry; a lazily loaded registry loads again at its next read.

        :func:`synergic.plugins.reset_plugins` resets all registries at once.
        """
        self._entries.clear()
        self._loaded = self._on_first_read is None

    def get(self, name: str) -> F:
        """The factory registered as ``name``, imported now if it was registered by reference.

        Raises:
            UnknownNameError: ``name`` is not registered; the message lists the valid names and
                the closest one.
            BrokenReferenceError: its reference cannot be imported or is not callable.
        """
        return self.entry(name).factory

    def entry(self, name: str) -> Entry[F]:
        """The :class:`Entry` of ``name`` (nothing is imported); an unknown name raises
        :class:`~synergic.errors.UnknownNameError` listing the valid ones."""
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str, extra_candidates: list[str] | None = None) -> str:
        names = self.names()
        suggestion = closest(name, names + (extra_candidates or []), n=1)
        hint = f"did you mean '{suggestion[0]}'? " if suggestion else ""
        return f"unknown {self.kind} '{name}': {hint}valid names: {', '.join(names) or '(none)'}"

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def entries(self) -> list[Entry[F]]:
        self._ensure_loaded()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def _load_plugins() -> None:
    from synergic.plugins import load_plugins

    load_plugins()


#: Backbone factories: ``factory(*, pretrained, weights, **options) -> nn.Module`` with
#: ``num_features``. Any timm model name works too, without registration.
backbones: Registry = Registry("backbone", on_first_read=_load_plugins)
#: Data-set factories: ``factory(*, root, split, **options)`` (see :mod:`synergic.data`).
datasets: Registry = Registry("dataset", on_first_read=_load_plugins)
#: Pair-sampler classes: ``cls(labels, *, num_streams, batch_size, seed, **options)``.
pair_samplers: Registry = Registry("pair sampler", on_first_read=_load_plugins)
#: Synergic-head factories: ``factory(in_features, **options) -> nn.Module`` giving one logit.
synergic_heads: Registry = Registry("synergic head", on_first_read=_load_plugins)
#: Aggregators: ``fn(logits: list[Tensor]) -> Tensor`` of class probabilities.
aggregators: Registry = Registry("aggregator", on_first_read=_load_plugins)
#: Logger factories: ``factory(*, run_dir, experiment, resume, start_step, **options)`` giving a
#: :class:`synergic.loggers.Logger` (recipe key ``loggers``).
loggers: Registry = Registry("logger", on_first_read=_load_plugins)

ALL = {
    "backbones": backbones,
    "datasets": datasets,
    "pair_samplers": pair_samplers,
    "synergic_heads": synergic_heads,
    "aggregators": aggregators,
    "loggers": loggers,
}
