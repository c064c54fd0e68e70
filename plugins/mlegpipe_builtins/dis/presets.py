"""Beam presets of lepton-hadron machines: HERA, the EIC, JLab, and the FAT-GAN symmetric sample.

Registered through the ``mlegpipe_register_beam_presets`` hook by
:mod:`mlegpipe_builtins.dis.domain`; users write ``beams = "hera"``.

Example:
    >>> round(PRESETS["hera"].sqrt_s, 1), PRESETS["jlab"].is_fixed_target
    (318.7, True)
"""

from __future__ import annotations

from mlegpipe.beams import PROTON_MASS, Beams

__all__ = ["PRESETS"]

PRESETS: dict[str, Beams] = {
    # HERA e+p, proton along +z (HERA convention): the thesis ch. 7 set.
    "hera": Beams.lepton_hadron(27.6, 920.0, lepton_pdg=-11, lepton_direction=-1, name="hera"),
    "eic18x275": Beams.lepton_hadron(18.0, 275.0, lepton_pdg=11, lepton_direction=-1, name="eic18x275"),
    "eic10x100": Beams.lepton_hadron(10.0, 100.0, lepton_pdg=11, lepton_direction=-1, name="eic10x100"),
    # JLab CEBAF 10.6 GeV electron on a liquid-hydrogen target, electron along +z.
    "jlab": Beams.lepton_hadron(10.6, PROTON_MASS, lepton_pdg=11, lepton_direction=1, name="jlab"),
    "clas": Beams.lepton_hadron(5.5, PROTON_MASS, lepton_pdg=11, lepton_direction=1, name="clas"),
    # The FAT-GAN Pythia sample: symmetric 50 x 50 GeV, electron along +z.
    "sym50": Beams.lepton_hadron(50.0, 50.0, lepton_pdg=11, lepton_direction=1, name="sym50"),
}
