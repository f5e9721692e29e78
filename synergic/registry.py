"""Typed registries of named component factories.

One :class:`Registry` per kind of component (backbones, data sets, pair samplers, synergic heads,
aggregators). Nothing is registered as a side effect of importing a module: the built-in components
and the plugins' all arrive through the same pluggy hooks (:mod:`synergic.plugins`), loaded lazily
the first time a registry is read. Tests can build a fresh ``Registry`` or ``unregister`` names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, overload

from synergic.errors import SynergicError, UnknownNameError, closest

F = TypeVar("F", bound=Callable)


class DuplicateNameError(SynergicError):
    """A name registered twice; the message names both origins."""


@dataclass(frozen=True)
class Entry(Generic[F]):
    """A registered factory with where it came from."""

    name: str
    factory: F
    origin: str
    description: str = ""


class Registry(Generic[F]):
    """Named factories of one kind.

    >>> heads = Registry("synergic head")
    >>> @heads.register("tiny")
    ... def tiny(in_features): ...
    >>> heads.get("tiny") is tiny
    True
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
    def register(self, name: str, factory: F, *, origin: str = ..., description: str = ...) -> F: ...
    @overload
    def register(
        self, name: str, factory: None = None, *, origin: str = ..., description: str = ...
    ) -> Callable[[F], F]: ...

    def register(self, name, factory=None, *, origin="user", description=""):
        """Register ``factory`` under ``name``; without ``factory``, return a decorator.

        A name registered twice is an error naming both origins.
        """
        if factory is None:
            return lambda f: self.register(name, f, origin=origin, description=description)
        if not isinstance(name, str) or not name:
            raise SynergicError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise SynergicError(f"{self.kind} '{name}' from {origin}: the factory is not callable")
        if name in self._entries:
            first = self._entries[name].origin
            raise DuplicateNameError(
                f"{self.kind} '{name}' is registered twice: by {first} and by {origin}; "
                "uninstall or disable one of them (SYNERGIC_PLUGINS=...)"
            )
        if not description:
            doc = (getattr(factory, "__doc__", None) or "").strip()
            description = doc.splitlines()[0] if doc else ""
        self._entries[name] = Entry(name, factory, origin, description)
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
        """The factory registered as ``name``; an unknown name lists the valid ones."""
        return self.entry(name).factory

    def entry(self, name: str) -> Entry[F]:
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

ALL = {
    "backbones": backbones,
    "datasets": datasets,
    "pair_samplers": pair_samplers,
    "synergic_heads": synergic_heads,
    "aggregators": aggregators,
}
