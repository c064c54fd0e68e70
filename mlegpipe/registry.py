"""The registry of everything plugins contribute, and the plugin manager that fills it from entry points.

Built-in and third-party plugins are found the same way: as modules named by
entry points of the group ``mlegpipe``. A plugin that fails to import is
skipped with a warning naming it; ``strict=True`` (or the environment variable
``MLEGPIPE_STRICT_PLUGINS=1``) makes that fatal.

A :class:`Registry` holds the stage classes by kind and one
:class:`NamedRegistry` per extension point (feature maps, observables, beam
presets, physicality checks, augmentations), each filled through its own hook
(:mod:`mlegpipe.hookspecs`). The most recently loaded registry is the active
one (:func:`default_registry`): the one stages look names up in.

Example:
    >>> reg = load_plugins()
    >>> "truth" in reg.kinds(), "hera" in reg.beam_presets, "nu" in reg.feature_maps
    (True, True, True)
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Generic, TypeVar

import pluggy

from mlegpipe import hookspecs
from mlegpipe.exceptions import PluginError
from mlegpipe.schema import suggest
from mlegpipe.stages import STAGE_KINDS, Stage

__all__ = ["NamedRegistry", "PluginInfo", "PluginLoadWarning", "Registry", "StageRegistry", "default_registry",
           "load_plugins"]

ENTRY_POINT_GROUP = "mlegpipe"
T = TypeVar("T")
#: The extension-point registries: attribute name -> (hook name, what the entries are, for messages).
EXTENSIONS: dict[str, tuple[str, str]] = {
    "feature_maps": ("mlegpipe_register_feature_maps", "feature map"),
    "observables": ("mlegpipe_register_observables", "observable"),
    "beam_presets": ("mlegpipe_register_beam_presets", "beam preset"),
    "physicality": ("mlegpipe_register_physicality", "physicality check"),
    "augmentations": ("mlegpipe_register_augmentations", "augmented feature"),
    "parton_records": ("mlegpipe_register_parton_records", "parton record"),
}


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded; the rest of mlegpipe still works."""


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered stage class came from."""

    kind: str
    name: str
    cls: type[Stage]
    module: str
    distribution: str
    version: str

    @property
    def summary(self) -> str:
        """First line of the class docstring."""
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""

    @property
    def file(self) -> str:
        """The source file that defines the class."""
        try:
            return inspect.getsourcefile(self.cls) or "<unknown>"
        except TypeError:
            return "<built-in>"


class NamedRegistry(Generic[T]):
    """Objects of one extension point by name, each remembering which plugin added it.

    Example:
        >>> reg = NamedRegistry("beam preset")
        >>> reg.add("mine", 1)
        >>> reg.get("mine"), "mine" in reg, reg.origin("mine")
        (1, True, '<direct>')
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._origin = "<direct>"

    def add(self, name: str, item: T) -> None:
        """Register ``item`` under ``name``; a name registered twice is an error naming both plugins."""
        if not isinstance(name, str) or not name:
            raise PluginError(f"a {self.what} needs a non-empty name", path=self._origin, value=name)
        if name in self._items:
            raise PluginError(f"{self.what} {name!r} is registered twice: by {self._origins[name]} and by "
                              f"{self._origin}")
        self._items[name] = item
        self._origins[name] = self._origin

    def get(self, name: str, path: str = "") -> T:
        """The object registered as ``name``; the error names ``path`` and lists what is registered."""
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise PluginError(f"no {self.what} of this name is registered; known: {known}",
                              path=path or self.what, value=name, hint=suggest(str(name), self._items))
        return self._items[name]

    def origin(self, name: str) -> str:
        """The plugin module that registered ``name``."""
        return self._origins[name]

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._items)

    def items(self) -> dict[str, T]:
        """A copy of the name -> object mapping."""
        return dict(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class Registry:
    """Stage classes by kind and plugin name, plus one :class:`NamedRegistry` per extension point.

    Attributes:
        feature_maps, observables, beam_presets, physicality, augmentations, parton_records: the
            extension-point registries (see :data:`EXTENSIONS`).
        failed: plugins that failed to load, by entry-point name, with the reason.
    """

    def __init__(self) -> None:
        self._stages: dict[str, dict[str, PluginInfo]] = {k: {} for k in STAGE_KINDS}
        self._origin: tuple[str, str, str] = ("<direct>", "<direct>", "")
        self.failed: dict[str, str] = {}
        self.feature_maps: NamedRegistry = NamedRegistry("feature map")
        self.observables: NamedRegistry = NamedRegistry("observable")
        self.beam_presets: NamedRegistry = NamedRegistry("beam preset")
        self.physicality: NamedRegistry = NamedRegistry("physicality check")
        self.augmentations: NamedRegistry = NamedRegistry("augmented feature")
        self.parton_records: NamedRegistry = NamedRegistry("parton record")

    def extension(self, attribute: str) -> NamedRegistry:
        """The extension-point registry named ``attribute`` (a key of :data:`EXTENSIONS`)."""
        return getattr(self, attribute)

    def add(self, cls: type[Stage], name: str | None = None) -> None:
        """Register ``cls`` for its kind under ``cls.plugin_name`` (``name`` only for classes that declare none)."""
        kind = getattr(cls, "kind", "")
        if kind not in self._stages:
            raise PluginError(f"stage class {cls.__name__} has unknown kind {kind!r}; "
                              f"known kinds: {', '.join(STAGE_KINDS)}", path=self._origin[0])
        declared = cls.__dict__.get("plugin_name", "")
        if name and declared and name != declared:
            raise PluginError(f"stage class {cls.__name__} declares plugin_name {declared!r} but is registered as "
                              f"{name!r}: declare the name once, on the class", path=self._origin[0])
        name = name or declared
        if not name:
            raise PluginError(f"stage class {cls.__name__} registered without a name: set plugin_name on the class",
                              path=self._origin[0])
        if name in self._stages[kind]:
            other = self._stages[kind][name]
            raise PluginError(f"{kind} plugin {name!r} is registered twice: by {other.module} "
                              f"({other.distribution}) and by {self._origin[0]}")
        cls.plugin_name = name
        module, dist, version = self._origin
        self._stages[kind][name] = PluginInfo(kind, name, cls, module, dist, version)

    def kinds(self) -> list[str]:
        """The stage kinds."""
        return list(self._stages)

    def names(self, kind: str) -> list[str]:
        """Installed plugin names of one kind."""
        return sorted(self._stages[kind])

    def all(self) -> list[PluginInfo]:
        """Every registered plugin, by kind then name."""
        return [self._stages[k][n] for k in self._stages for n in sorted(self._stages[k])]

    def get(self, kind: str, name: str, path: str = "") -> PluginInfo:
        """Look up a plugin; the error names the TOML path and lists what is installed."""
        if kind not in self._stages:
            raise PluginError("unknown stage kind; known: " + ", ".join(self._stages), path=path or "kind",
                              value=kind, hint=suggest(kind, self._stages))
        if name not in self._stages[kind]:
            installed = ", ".join(self.names(kind)) or "none"
            raise PluginError(f"no {kind} plugin of this name is installed; installed {kind} plugins: "
                              f"{installed}", path=path or f"{kind}.plugin", value=name,
                              hint=suggest(name, self._stages[kind]))
        return self._stages[kind][name]


#: The registry stages look names up in (the most recently loaded one).
_ACTIVE: Registry | None = None

StageRegistry = Registry  # the name of the first registry, which held only stages


def default_registry() -> Registry:
    """The active registry: the one :func:`load_plugins` loaded last (loaded now if none was).

    Example:
        >>> "dis" in default_registry().names("truth")
        True
    """
    return _ACTIVE if _ACTIVE is not None else load_plugins()


def _register_module(pm: pluggy.PluginManager, module: ModuleType | object, name: str) -> None:
    if pm.is_registered(module):
        return
    pm.register(module, name=name)


def _call_hooks(pm: pluggy.PluginManager, plugin: object, registry: Registry, origin: str) -> None:
    """Call every registration hook ``plugin`` implements, with the registry of its extension point."""
    for impl in pm.hook.mlegpipe_register_stages.get_hookimpls():
        if impl.plugin is plugin:
            impl.function(registry=registry)
    for attribute, (hook, _) in EXTENSIONS.items():
        target = registry.extension(attribute)
        target._origin = origin
        for impl in getattr(pm.hook, hook).get_hookimpls():
            if impl.plugin is plugin:
                impl.function(registry=target)


def load_plugins(
    strict: bool | None = None,
    extra: list[ModuleType | object] | None = None,
) -> StageRegistry:
    """Load every plugin of the ``mlegpipe`` entry-point group into a registry.

    Arguments:
        strict: make a plugin that fails to load fatal (default: the
            ``MLEGPIPE_STRICT_PLUGINS`` environment variable).
        extra: plugin objects registered directly (tests, notebooks).

    Returns:
        The filled :class:`Registry`, which becomes the active one (:func:`default_registry`).
    """
    if strict is None:
        strict = os.environ.get("MLEGPIPE_STRICT_PLUGINS", "") not in ("", "0")
    pm = pluggy.PluginManager("mlegpipe")
    pm.add_hookspecs(hookspecs)
    global _ACTIVE
    registry = Registry()
    eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    for ep in eps:
        dist = ep.dist.name if ep.dist else "<unknown>"
        version = ep.dist.version if ep.dist else ""
        try:
            module = ep.load()
            _register_module(pm, module, f"{dist}:{ep.name}")
            registry._origin = (ep.value, dist, version)
            _call_hooks(pm, module, registry, ep.value)
        except PluginError:
            raise
        except Exception as err:  # noqa: BLE001 - a broken plugin must not take the host down
            message = f"plugin {ep.name!r} ({ep.value}, from {dist}) failed to load: {type(err).__name__}: {err}"
            if strict:
                raise PluginError(message) from err
            registry.failed[ep.name] = message
            warnings.warn(message, PluginLoadWarning, stacklevel=2)
    for i, obj in enumerate(extra or []):
        name = getattr(obj, "__name__", f"extra{i}")
        pm.register(obj, name=f"extra:{name}")
        registry._origin = (name, "<registered>", "")
        _call_hooks(pm, obj, registry, name)
    pm.check_pending()
    _ACTIVE = registry
    return registry
