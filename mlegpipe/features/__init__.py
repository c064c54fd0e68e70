"""Feature maps, scalers and augmented features shared by every model.

Example:
    >>> from mlegpipe.features import make_feature_map
    >>> make_feature_map("nu").names
    ('nu1', 'nu2', 'lepton_phi')
"""

from mlegpipe.features.augment import AUGMENTATIONS, CFATGAN_AUGMENT, FATGAN_AUGMENT, augment
from mlegpipe.features.maps import (
    FEATURE_MAPS,
    AsinhScale,
    CartesianLepton,
    Columns,
    FeatureMap,
    NuMap,
    ScaledNuMap,
    Standardize,
    TransformedLepton,
    beam_energy_of,
    make_feature_map,
    t_pz,
    t_pz_inverse,
)
from mlegpipe.features.physical import beams_at, decode_events, dis_labels, sample_with_rejection

__all__ = [
    "AUGMENTATIONS",
    "CFATGAN_AUGMENT",
    "FATGAN_AUGMENT",
    "FEATURE_MAPS",
    "AsinhScale",
    "CartesianLepton",
    "Columns",
    "FeatureMap",
    "NuMap",
    "ScaledNuMap",
    "Standardize",
    "TransformedLepton",
    "augment",
    "beam_energy_of",
    "beams_at",
    "decode_events",
    "dis_labels",
    "make_feature_map",
    "sample_with_rejection",
    "t_pz",
    "t_pz_inverse",
]
