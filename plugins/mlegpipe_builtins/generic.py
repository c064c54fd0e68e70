"""The core's own feature maps, registered through the same hook as any plugin's.

``columns`` (flat fields as they are), ``collection`` (particle collections,
fixed or variable multiplicity) and ``cartesian`` (fixed-multiplicity collections
as (p_x, p_y, p_z) with a mass per slot) need no physics domain; this module is the
built-in plugin that makes them available by name.

Example:
    >>> from mlegpipe.registry import load_plugins
    >>> sorted(n for n in load_plugins().feature_maps if n in ("columns", "collection", "cartesian"))
    ['cartesian', 'collection', 'columns']
"""

from __future__ import annotations

from typing import Any

from mlegpipe import hookimpl
from mlegpipe.features.cartesian import CartesianMap
from mlegpipe.features.collections import CollectionMap
from mlegpipe.features.maps import Columns

__all__ = ["mlegpipe_register_feature_maps"]


@hookimpl
def mlegpipe_register_feature_maps(registry: Any) -> None:
    """``columns``, ``collection`` and ``cartesian``."""
    registry.add(Columns.name, Columns)
    registry.add(CollectionMap.name, CollectionMap)
    registry.add(CartesianMap.name, CartesianMap)
