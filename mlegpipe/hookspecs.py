"""All hook specifications of mlegpipe, in one place.

Plugins implement these with the marker :data:`mlegpipe.hookimpl`::

    from mlegpipe import hookimpl

    @hookimpl
    def mlegpipe_register_stages(registry):
        registry.add(MyDetector, "mydet")

The pipeline's order comes from the TOML file, never from the order in which
hooks are called: hooks only contribute classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from mlegpipe.registry import StageRegistry

__all__ = ["hookspec", "hookimpl", "mlegpipe_register_stages"]

hookspec = pluggy.HookspecMarker("mlegpipe")
hookimpl = pluggy.HookimplMarker("mlegpipe")


@hookspec
def mlegpipe_register_stages(registry: StageRegistry) -> None:
    """Contribute stage classes.

    Called once when the plugin manager loads the plugins, before any pipeline
    is validated. Call ``registry.add(cls, name)`` for every stage class the
    plugin provides; ``cls.kind`` says which kind of stage it is and ``name``
    is what users write after ``plugin =`` in TOML. Returns nothing.
    """
