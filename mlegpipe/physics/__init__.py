"""Physics of the built-in DIS generator: ALLM97 F₂, the Born cross section, the unweighting sampler.

Example:
    >>> from mlegpipe.physics import f2_allm97
    >>> bool(0.3 < f2_allm97(0.1, 10.0) < 0.4)
    True
"""

from mlegpipe.physics.allm97 import ALLM97, ALLM97_VALIDITY, f2_allm97
from mlegpipe.physics.dis_cross_section import (
    ALPHA_EM,
    GEV2_TO_PB,
    BornCrossSection,
    DISRegion,
    born_d2sigma_dx_dq2,
    f_l_from_r,
)
from mlegpipe.physics.sampler import GridSettings, SamplerStats, UnweightedSampler

__all__ = [
    "ALLM97",
    "ALLM97_VALIDITY",
    "ALPHA_EM",
    "GEV2_TO_PB",
    "BornCrossSection",
    "DISRegion",
    "GridSettings",
    "SamplerStats",
    "UnweightedSampler",
    "born_d2sigma_dx_dq2",
    "f2_allm97",
    "f_l_from_r",
]
