"""Plugins: entry points of the ``synergic`` group, loaded lazily with pluggy.

Loading happens in two steps, each once per process:

1. :func:`discover_plugins` imports the built-in plugin and the selected entry points and registers
   them with pluggy. The command line does this at start-up (plugins may add subcommands); it is
   cheap because a plugin imports its heavy modules inside its hooks.
2. :func:`load_plugins` runs discovery, then calls every plugin's ``register_*`` hooks, which fill
   the registries of :mod:`synergic.registry`. It runs at the first read of any registry.

A hook registers a component as an object or as a reference ``"package.module:attribute"``;
a reference is imported at the component's first use, so that listing the components
(``synergic list``) does not import them (nor torch). A reference that cannot be imported is a
:class:`~synergic.registry.BrokenReferenceError` naming the plugin and the reference.

The built-in components register through the same hooks, as the default plugin ``synergic``.
``SYNERGIC_DISABLE_PLUGINS=1`` loads only the built-ins; ``SYNERGIC_PLUGINS=a,b`` loads only the
named entry points. A plugin that fails to import or to register is skipped with a
:class:`PluginLoadWarning` naming it and its error; the others load as usual. Two components under
one name is a :class:`~synergic.registry.DuplicateNameError` (a ``SynergicError``) naming both
origins.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from synergic.errors import SynergicError, did_you_mean
from synergic.plugins import hookspecs
from synergic.plugins.hookspecs import hookimpl

__all__ = [
    "HOOK_NAMES",
    "PluginInfo",
    "PluginLoadWarning",
    "discover_plugins",
    "hookimpl",
    "load_plugins",
    "loaded_plugins",
    "register_plugin",
    "reset_plugins",
    "unregister_plugin",
]

ENTRY_POINT_GROUP = "synergic"
BUILTIN_PLUGIN = "synergic"

_REGISTRY_HOOKS = {
    "register_backbones": "backbones",
    "register_datasets": "datasets",
    "register_pair_samplers": "pair_samplers",
    "register_synergic_heads": "synergic_heads",
    "register_aggregators": "aggregators",
    "register_loggers": "loggers",
}
#: Every hook a plugin can implement (the functions marked ``@hookspec`` in :mod:`.hookspecs`).
HOOK_NAMES = sorted(
    name for name, value in vars(hookspecs).items() if hasattr(value, "synergic_spec")
)


class PluginLoadWarning(UserWarning):
    """A plugin was skipped (it failed to import or to register) or looks misconfigured."""


@dataclass
class PluginInfo:
    """A loaded plugin: its name (the entry point's), version, distribution and registrations.

    ``registered`` maps a registry (``"backbones"``, ``"datasets"``, ...) to the names the plugin
    registered there.
    """

    name: str
    version: str | None
    distribution: str | None
    registered: dict[str, list[str]] = field(default_factory=dict)


pm = pluggy.PluginManager("synergic")
pm.add_hookspecs(hookspecs)
_discovered = False
_components_loaded = False
_info: dict[str, PluginInfo] = {}


def _disabled() -> bool:
    return os.environ.get("SYNERGIC_DISABLE_PLUGINS", "").strip() not in ("", "0")


def _only() -> set[str]:
    return {n.strip() for n in os.environ.get("SYNERGIC_PLUGINS", "").split(",") if n.strip()}


def _selected(name: str) -> bool:
    if _disabled():
        return False
    only = _only()
    return not only or name in only


def discover_plugins() -> None:
    """Import the built-in plugin and the selected entry-point plugins, once.

    Registers them with pluggy (``pm``) but does not yet call their ``register_*`` hooks, so no
    component is imported: :func:`load_plugins` does that at the first registry read.
    """
    global _discovered
    if _discovered:
        return
    _discovered = True
    from synergic import __version__
    from synergic.plugins import builtin

    pm.register(builtin, name=BUILTIN_PLUGIN)
    _info[BUILTIN_PLUGIN] = PluginInfo(BUILTIN_PLUGIN, __version__, "synergic")

    found: dict[str, str | None] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not _selected(entry_point.name):
            continue
        dist = getattr(entry_point, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        if entry_point.name == BUILTIN_PLUGIN or entry_point.name in found:
            taken_by = "synergic" if entry_point.name == BUILTIN_PLUGIN else found[entry_point.name]
            _warn(
                f"synergic plugin '{entry_point.name}' of {dist_name or entry_point.value} was "
                f"skipped: the name is taken by {taken_by}; rename its entry point"
            )
            continue
        found[entry_point.name] = dist_name
        try:
            plugin = entry_point.load()
            pm.register(plugin, name=entry_point.name)
        except Exception as error:  # a broken plugin must not break the others
            _warn_skipped(entry_point.name, error)
            continue
        _warn_unknown_hooks(entry_point.name, plugin)
        _info[entry_point.name] = PluginInfo(
            entry_point.name, dist.version if dist is not None else None, dist_name
        )

    missing = sorted(_only() - set(found)) if not _disabled() else []
    if missing:
        _warn(
            f"SYNERGIC_PLUGINS names {', '.join(repr(m) for m in missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; installed plugins: "
            f"{', '.join(sorted(n for n in _installed_names())) or '(none)'}"
        )


def load_plugins() -> None:
    """Discover the plugins and register their components into the registries, once.

    Reading any registry calls this. A plugin whose hook raises is rolled back and skipped with a
    :class:`PluginLoadWarning`; a component name registered twice raises
    :class:`~synergic.registry.DuplicateNameError` after the other plugins have loaded (the
    plugin that came second is then left out).
    """
    global _components_loaded
    discover_plugins()
    if _components_loaded:
        return
    _components_loaded = True
    from synergic.registry import DuplicateNameError

    duplicate: DuplicateNameError | None = None
    for name, info in list(_info.items()):
        if name == BUILTIN_PLUGIN:
            _register_components(name, info)  # a failure here is synergic's bug: let it show
            continue
        try:
            _register_components(name, info)
        except DuplicateNameError as error:  # the user has to choose: an error, not a warning
            unregister_plugin(name)
            duplicate = duplicate or error
        except Exception as error:  # a broken plugin must not break the others
            unregister_plugin(name)
            _warn_skipped(name, error)
    if duplicate is not None:
        raise duplicate


def _register_components(name: str, info: PluginInfo) -> None:
    """Call the ``register_*`` hooks of plugin ``name``, recording what it registers in ``info``."""
    from synergic import registry

    for hook_name, kind in _REGISTRY_HOOKS.items():
        target = registry.ALL[kind]
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name != name:
                continue

            def register(component, factory=None, description="", _target=target, _kind=kind):
                # factory: a callable or a "module:attribute" reference (imported on first use)
                if factory is None:  # used as a decorator: @register("name")
                    return lambda f: register(component, f, description)
                _target.register(component, factory, origin=name, description=description)
                info.registered.setdefault(_kind, []).append(component)
                return factory

            impl.function(register=register)


def register_plugin(plugin: object, name: str, *, version: str | None = None) -> None:
    """Register an object carrying ``@hookimpl`` functions now (tests, notebooks).

    Its components are added at once; :func:`unregister_plugin` removes them again.
    """
    load_plugins()
    if name in _info or pm.get_plugin(name) is not None:
        raise SynergicError(f"a synergic plugin named '{name}' is already registered")
    pm.register(plugin, name=name)
    info = PluginInfo(name, version, None)
    _info[name] = info
    try:
        _register_components(name, info)
    except BaseException:
        unregister_plugin(name)
        raise


def unregister_plugin(name: str) -> None:
    """Remove a plugin and every component it registered."""
    from synergic import registry

    info = _info.pop(name, None)
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin, name=name)
    if info:
        for registry_name, names in info.registered.items():
            for component in names:
                registry.ALL[registry_name].unregister(component)


def reset_plugins() -> None:
    """Forget every plugin and every registered component.

    The next registry read loads them again, honouring the environment variables and the
    installed distributions as they are then (tests; a notebook after ``pip install``).
    """
    global _discovered, _components_loaded
    from synergic import registry

    for name, _ in pm.list_name_plugin():
        pm.unregister(name=name)
    _info.clear()
    for each in registry.ALL.values():
        each.reset()
    _discovered = _components_loaded = False


def loaded_plugins() -> list[PluginInfo]:
    """The loaded plugins, the built-in ``synergic`` first, with what each registered."""
    load_plugins()
    return list(_info.values())


def _installed_names() -> set[str]:
    return {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _warn_unknown_hooks(name: str, plugin: object) -> None:
    # pluggy accepts marked functions that match no hook; they would never be called.
    for attribute in dir(plugin):
        if attribute in HOOK_NAMES or pm.parse_hookimpl_opts(plugin, attribute) is None:
            continue
        _warn(
            f"synergic plugin '{name}' marks '{attribute}' with @hookimpl, but synergic has no "
            f"such hook{did_you_mean(attribute, HOOK_NAMES)}; hooks: {', '.join(HOOK_NAMES)}"
        )


def _warn_skipped(name: str, error: BaseException) -> None:
    message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    _warn(f"synergic plugin '{name}' failed to load and was skipped: {type(error).__name__}: {message}")


def _warn(message: str) -> None:
    warnings.warn(message, PluginLoadWarning, stacklevel=2)
