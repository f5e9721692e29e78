"""Plugins: entry points of the ``synergic`` group, loaded lazily with pluggy.

The built-in components register through the same hooks, as the default plugin ``synergic``.
``SYNERGIC_DISABLE_PLUGINS=1`` loads only the built-ins; ``SYNERGIC_PLUGINS=a,b`` loads only the
named entry points. A plugin that fails to import is skipped with a warning naming it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from synergic.errors import SynergicError
from synergic.plugins import hookspecs
from synergic.plugins.hookspecs import hookimpl

__all__ = ["hookimpl", "load_plugins", "register_plugin", "unregister_plugin", "loaded_plugins"]

_REGISTRY_HOOKS = {
    "register_backbones": "backbones",
    "register_datasets": "datasets",
    "register_pair_samplers": "pair_samplers",
    "register_synergic_heads": "synergic_heads",
    "register_aggregators": "aggregators",
}


@dataclass
class PluginInfo:
    name: str
    version: str | None
    distribution: str | None
    registered: dict[str, list[str]] = field(default_factory=dict)


pm = pluggy.PluginManager("synergic")
pm.add_hookspecs(hookspecs)
_loaded = False
_info: dict[str, PluginInfo] = {}


def _selected(name: str) -> bool:
    if os.environ.get("SYNERGIC_DISABLE_PLUGINS", "").strip() not in ("", "0"):
        return False
    only = os.environ.get("SYNERGIC_PLUGINS", "").strip()
    return not only or name in {n.strip() for n in only.split(",")}


def _call_registration_hooks(plugin: object, info: PluginInfo) -> None:
    from synergic import registry

    for hook_name, registry_name in _REGISTRY_HOOKS.items():
        impl = getattr(plugin, hook_name, None)
        if impl is None:
            continue
        target = registry.ALL[registry_name]

        def register(name, factory=None, description="", _target=target, _kind=registry_name):
            result = _target.register(name, factory, origin=info.name, description=description)
            info.registered.setdefault(_kind, []).append(name)
            return result

        impl(register=register)


def register_plugin(plugin: object, name: str, *, version: str | None = None) -> None:
    """Register an object carrying hook implementations now (tests, notebooks)."""
    load_plugins()
    info = PluginInfo(name, version, None)
    pm.register(plugin, name=name)
    _info[name] = info
    _call_registration_hooks(plugin, info)


def unregister_plugin(name: str) -> None:
    """Remove a plugin and every component it registered."""
    from synergic import registry

    info = _info.pop(name, None)
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)
    if info:
        for registry_name, names in info.registered.items():
            for component in names:
                registry.ALL[registry_name].unregister(component)


def load_plugins() -> None:
    """Register the built-ins and the selected entry-point plugins, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from synergic import __version__
    from synergic.plugins import builtin

    _info["synergic"] = PluginInfo("synergic", __version__, "synergic")
    pm.register(builtin, name="synergic")
    _call_registration_hooks(builtin, _info["synergic"])

    for entry_point in metadata.entry_points(group="synergic"):
        if not _selected(entry_point.name) or pm.get_plugin(entry_point.name) is not None:
            continue
        dist = getattr(entry_point, "dist", None)
        info = PluginInfo(
            entry_point.name,
            dist.version if dist else None,
            dist.metadata["Name"] if dist else None,
        )
        try:
            plugin = entry_point.load()
        except Exception as error:  # a broken plugin must not break the others
            _warn_skipped(entry_point.name, error)
            continue
        pm.register(plugin, name=entry_point.name)
        _info[entry_point.name] = info
        try:
            _call_registration_hooks(plugin, info)
        except SynergicError:
            raise  # two components under one name: the user has to choose
        except Exception as error:
            unregister_plugin(entry_point.name)
            _warn_skipped(entry_point.name, error)


def _warn_skipped(name: str, error: BaseException) -> None:
    warnings.warn(
        f"synergic plugin '{name}' failed to load and was skipped: {type(error).__name__}: {error}",
        stacklevel=3,
    )


def loaded_plugins() -> list[PluginInfo]:
    load_plugins()
    return list(_info.values())
