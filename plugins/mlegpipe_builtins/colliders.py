"""Beam presets of hadron and lepton colliders beyond DIS: the LHC, the Tevatron, LEP, RHIC.

Registered through the ``mlegpipe_register_beam_presets`` hook, exactly as a
third-party plugin would; users write ``beams = "lhc13"``. Energies from the
machines' design or run parameters (PDG Review, "High-energy collider parameters").

Example:
    >>> PRESETS["lhc13"].sqrt_s, PRESETS["tevatron"].kind, PRESETS["rhic-auau200"].kind
    (13000.0, 'ppbar', 'AA')
"""

from __future__ import annotations

from typing import Any

from mlegpipe import hookimpl
from mlegpipe.beams import Beam, Beams

__all__ = ["PRESETS", "mlegpipe_register_beam_presets"]

GOLD_197 = 1000791970

PRESETS: dict[str, Beams] = {
    "lhc13": Beams.symmetric(2212, 6500.0, name="lhc13"),          # LHC Run 2 (2015-2018)
    "lhc13.6": Beams.symmetric(2212, 6800.0, name="lhc13.6"),      # LHC Run 3 (2022-)
    "lhc14": Beams.symmetric(2212, 7000.0, name="lhc14"),          # LHC design energy
    "tevatron": Beams.symmetric(2212, 980.0, pdg_b=-2212, name="tevatron"),  # Run II, 1.96 TeV
    "lep-z": Beams.symmetric(-11, 45.594, pdg_b=11, name="lep-z"),  # e+e- at the Z pole
    "rhic-auau200": Beams(Beam(GOLD_197, 100.0), Beam(GOLD_197, 100.0), name="rhic-auau200"),  # per nucleon
    "eic-eau": Beams(Beam(GOLD_197, 110.0), Beam(11, 18.0), name="eic-eau"),  # e Au, 18 x 110 GeV/nucleon
}


@hookimpl
def mlegpipe_register_beam_presets(registry: Any) -> None:
    """Register the collider presets."""
    for name, beams in PRESETS.items():
        registry.add(name, beams)
