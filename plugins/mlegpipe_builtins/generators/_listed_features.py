"""Feature maps of event fields and particle collections a user lists (``features = [...]``), checked against
the training events, for the generators that learn a fixed set of features (the GANs, the B-VAE).

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> events = EventBatch.from_columns({"x": np.ones(3), "Q2": np.ones(3)})
    >>> listed_feature_map("columns", events, ["x", "Q2"], registry=None, where="generator").names
    ('x', 'Q2')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.features import CollectionMap, FeatureMap, make_feature_map

__all__ = ["fixed_multiplicity", "listed_feature_map"]


def listed_feature_map(name: str, events: EventBatch, features: Sequence[str], *, registry: Any,
                       where: str, options: Mapping[str, Any] | None = None) -> FeatureMap:
    """The (unfitted) map ``name`` (``columns``, ``collection``, ``cartesian``) of ``features``, with the map's
    ``options`` (e.g. ``{"masses": {...}}`` of ``cartesian``).

    Raises:
        DataError: the events have no field or collection of that name (path ``<where>.features``).
    """
    have = set(events.fields) | set(events.collections)
    missing = [f for f in features if f not in have]
    if missing:
        raise DataError("the training events have no such field or collection (fields: " + ", ".join(events.fields)
                        + "; collections: " + (", ".join(events.collections) or "none") + ")",
                        path=f"{where}.features", value=missing[0])
    return make_feature_map({"name": name, "features": list(features), **(options or {})}, registry=registry,
                            path=f"{where}.feature_map")


def fixed_multiplicity(fmap: FeatureMap, where: str) -> FeatureMap:
    """``fmap`` itself, unless it is fitted to a collection of variable multiplicity.

    Raises:
        ConfigError: a collection's multiplicity varies (the ``flow`` generator learns those).

    Example:
        >>> fixed_multiplicity(make_feature_map({"name": "columns", "features": ["x"]}), "generator").names
        ('x',)
    """
    if isinstance(fmap, CollectionMap) and fmap.variable is not None:
        raise ConfigError(f"collection {fmap.variable!r} has a variable multiplicity: learn it with plugin = "
                          "\"flow\", which draws the multiplicity and generates the particles given it",
                          path=f"{where}.features", value=fmap.variable)
    return fmap
