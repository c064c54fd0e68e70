"""Feature maps, invertible scalers and augmented features shared by every model.

Domain-specific maps (the DIS lepton maps) and augmentations are registered by
their domain plugins; :func:`make_feature_map` and :func:`augment` look them up by name.

Example:
    >>> from mlegpipe.features import make_feature_map
    >>> make_feature_map("nu").names
    ('nu1', 'nu2', 'lepton_phi')
"""

from mlegpipe.features.augment import Augmentation, augment
from mlegpipe.features.collections import CollectionMap
from mlegpipe.features.edges import EdgeLog
from mlegpipe.features.maps import (
    Columns,
    FeatureMap,
    as_context,
    decode_events,
    inside_ranges,
    make_feature_map,
    sample_with_rejection,
)
from mlegpipe.features.scalers import AsinhScale, Chain, LogStandardize, QuantileGaussianize, Scaler, Standardize

__all__ = [
    "AsinhScale",
    "Augmentation",
    "Chain",
    "CollectionMap",
    "Columns",
    "EdgeLog",
    "FeatureMap",
    "LogStandardize",
    "QuantileGaussianize",
    "Scaler",
    "Standardize",
    "as_context",
    "augment",
    "decode_events",
    "inside_ranges",
    "make_feature_map",
    "sample_with_rejection",
]
