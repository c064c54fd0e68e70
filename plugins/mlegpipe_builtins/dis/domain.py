"""The DIS domain's registrations: feature maps, observables, beam presets, physicality, augmentations.

This module is the DIS domain's entry point (``dis-domain`` in the
``mlegpipe`` group): it reaches the core only through the hooks of
:mod:`mlegpipe.hookspecs`, exactly as a third-party domain would.

Example:
    >>> from mlegpipe.registry import load_plugins
    >>> reg = load_plugins()
    >>> "nu_scaled" in reg.feature_maps, "Q2" in reg.observables, "x:Q2" in reg.observables
    (True, True, True)
"""

from __future__ import annotations

from typing import Any

from mlegpipe import hookimpl
from mlegpipe_builtins.dis.augment import LEPTON_AUGMENTATIONS
from mlegpipe_builtins.dis.maps import LEPTON_MAPS
from mlegpipe_builtins.dis.observables import OBSERVABLES, Q2X_PAIR
from mlegpipe_builtins.dis.physicality import DIS_CHECK
from mlegpipe_builtins.dis.presets import PRESETS

__all__ = [
    "mlegpipe_register_augmentations",
    "mlegpipe_register_beam_presets",
    "mlegpipe_register_feature_maps",
    "mlegpipe_register_observables",
    "mlegpipe_register_physicality",
]


@hookimpl
def mlegpipe_register_feature_maps(registry: Any) -> None:
    """The scattered-lepton maps: lepton_t, nu, nu_scaled, lepton_cartesian."""
    for name, cls in LEPTON_MAPS.items():
        registry.add(name, cls)


@hookimpl
def mlegpipe_register_observables(registry: Any) -> None:
    """E', k'_x, k'_y, k'_z, k'_T, θ', φ', x, Q², y, W², ν (and ν₁, ν₂, |k'|, η' on request); the (x, Q²) pair."""
    for name, observable in OBSERVABLES.items():
        registry.add(name, observable)
    registry.add(Q2X_PAIR.name, Q2X_PAIR)


@hookimpl
def mlegpipe_register_beam_presets(registry: Any) -> None:
    """HERA, EIC 18x275 and 10x100, JLab, CLAS, the symmetric 50 x 50 GeV set-up."""
    for name, beams in PRESETS.items():
        registry.add(name, beams)


@hookimpl
def mlegpipe_register_physicality(registry: Any) -> None:
    """The kinematic limits of inclusive DIS."""
    registry.add(DIS_CHECK.name, DIS_CHECK)


@hookimpl
def mlegpipe_register_augmentations(registry: Any) -> None:
    """Functions of the scattered lepton shown to FAT-GAN-like critics (E, pT, pz_over_pT, products, ...)."""
    for aug in LEPTON_AUGMENTATIONS:
        registry.add(aug.name, aug)
