"""The stage registry and the plugin manager that fills it from entry points.

Built-in and third-party plugins are found the same way: as modules named by
entry points of the group ``mlegpipe``. A plugin that fails to import is
skipped with a warning naming it; ``strict=True`` (or the environment variable
``MLEGPIPE_STRICT_PLUGINS=1``) makes that fatal.

Example:
    >>> reg = load_plugins()
    >>> "truth" in reg.kinds()
    True
"""

from __future__ import annotations

import importlib.metadata as md
import os
import warnings
from dataclasses import dataclass
from types import ModuleType

import pluggy

from mlegpipe import hookspecs
from mlegpipe.exceptions import PluginError
from mlegpipe.schema import suggest
from mlegpipe.stages import STAGE_KINDS, Stage

__all__ = ["PluginInfo", "PluginLoadWarning", "StageRegistry", "load_plugins"]

ENTRY_POINT_GROUP = "mlegpipe"


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


class StageRegistry:
    """Stage classes by kind and plugin name, filled through the registration hook."""

    def __init__(self) -> None:
        self._stages: dict[str, dict[str, PluginInfo]] = {k: {} for k in STAGE_KINDS}
        self._origin: tuple[str, str, str] = ("<direct>", "<direct>", "")
        self.failed: dict[str, str] = {}

    def add(self, cls: type[Stage], name: str | None = None) -> None:
        """Register ``cls`` under ``name`` (default ``cls.plugin_name``) for its kind."""
        kind = getattr(cls, "kind", "")
        if kind not in self._stages:
            raise PluginError(f"stage class {cls.__name__} has unknown kind {kind!r}; "
                              f"known kinds: {', '.join(STAGE_KINDS)}", path=self._origin[0])
        name = name or cls.plugin_name
        if not name:
            raise PluginError(f"stage class {cls.__name__} registered without a name", path=self._origin[0])
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


def _register_module(pm: pluggy.PluginManager, module: ModuleType, name: str) -> None:
    if pm.is_registered(module):
        return
    pm.register(module, name=name)


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
        The filled :class:`StageRegistry`.
    """
    if strict is None:
        strict = os.environ.get("MLEGPIPE_STRICT_PLUGINS", "") not in ("", "0")
    pm = pluggy.PluginManager("mlegpipe")
    pm.add_hookspecs(hookspecs)
    registry = StageRegistry()
    eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    for ep in eps:
        dist = ep.dist.name if ep.dist else "<unknown>"
        version = ep.dist.version if ep.dist else ""
        try:
            module = ep.load()
            _register_module(pm, module, f"{dist}:{ep.name}")
            registry._origin = (ep.value, dist, version)
            for impl in pm.hook.mlegpipe_register_stages.get_hookimpls():
                if impl.plugin is module:
                    impl.function(registry=registry)
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
        for impl in pm.hook.mlegpipe_register_stages.get_hookimpls():
            if impl.plugin is obj:
                impl.function(registry=registry)
    pm.check_pending()
    return registry
