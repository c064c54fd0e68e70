"""Beam configurations for lepton-hadron scattering.

A :class:`Beams` holds the lepton and hadron beam energies, which way the
lepton travels along z, and the particle types. Collider and fixed-target
set-ups are both covered: a hadron energy equal to its mass is a target at rest.

Example:
    >>> b = Beams.preset("hera")
    >>> round(b.sqrt_s, 1)
    318.7
    >>> Beams.preset("jlab").is_fixed_target
    True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlegpipe.exceptions import PhysicsError

__all__ = ["PROTON_MASS", "PRESETS", "Beams"]

PROTON_MASS = 0.938272  # GeV
ELECTRON_MASS = 0.000510999  # GeV

PRESETS: dict[str, dict[str, Any]] = {
    # HERA e+p, proton along +z (HERA convention): the thesis ch. 7 set.
    "hera": {"lepton_energy": 27.6, "hadron_energy": 920.0, "lepton_pdg": -11, "lepton_direction": -1},
    "eic18x275": {"lepton_energy": 18.0, "hadron_energy": 275.0, "lepton_pdg": 11, "lepton_direction": -1},
    "eic10x100": {"lepton_energy": 10.0, "hadron_energy": 100.0, "lepton_pdg": 11, "lepton_direction": -1},
    # JLab CEBAF 10.6 GeV electron on a liquid-hydrogen target, electron along +z.
    "jlab": {"lepton_energy": 10.6, "hadron_energy": PROTON_MASS, "lepton_pdg": 11, "lepton_direction": 1},
    "clas": {"lepton_energy": 5.5, "hadron_energy": PROTON_MASS, "lepton_pdg": 11, "lepton_direction": 1},
    # The FAT-GAN Pythia sample: symmetric 50 x 50 GeV, electron along +z.
    "sym50": {"lepton_energy": 50.0, "hadron_energy": 50.0, "lepton_pdg": 11, "lepton_direction": 1},
}


@dataclass(frozen=True)
class Beams:
    """Lepton and hadron beams, head-on along the z axis.

    Arguments:
        lepton_energy: lepton beam energy in GeV (> 0).
        hadron_energy: hadron beam energy in GeV (>= hadron_mass; equal means at rest).
        lepton_pdg: PDG id of the lepton beam (11 electron, -11 positron).
        lepton_direction: +1 if the lepton travels along +z, -1 along -z
            (HERA convention: proton along +z, lepton along -z).
        hadron_mass: hadron mass in GeV (proton by default).

    Example:
        >>> Beams(10.0, 100.0).s > 4000
        True
    """

    lepton_energy: float
    hadron_energy: float
    lepton_pdg: int = 11
    lepton_direction: int = -1
    hadron_mass: float = PROTON_MASS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lepton_energy) and self.lepton_energy > 0):
            raise PhysicsError("lepton beam energy must be a positive number of GeV",
                               path="beams.lepton_energy", value=self.lepton_energy)
        if not math.isfinite(self.hadron_energy) or self.hadron_energy < self.hadron_mass * (1 - 1e-9):
            raise PhysicsError(
                f"hadron beam energy must be at least the hadron mass {self.hadron_mass} GeV",
                path="beams.hadron_energy", value=self.hadron_energy)
        if self.lepton_direction not in (1, -1):
            raise PhysicsError("lepton_direction must be +1 or -1", path="beams.lepton_direction",
                               value=self.lepton_direction)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Beams:
        """Return a named beam set-up (see :data:`PRESETS`), optionally overridden.

        Example:
            >>> Beams.preset("eic18x275").lepton_energy
            18.0
        """
        if name not in PRESETS:
            from mlegpipe.schema import suggest

            raise PhysicsError("unknown beam preset; known: " + ", ".join(PRESETS), path="beams.preset",
                               value=name, hint=suggest(name, PRESETS))
        return cls(**{**PRESETS[name], **overrides})

    @property
    def hadron_momentum(self) -> float:
        """Magnitude of the hadron beam momentum (0 for a fixed target)."""
        return math.sqrt(max(self.hadron_energy**2 - self.hadron_mass**2, 0.0))

    @property
    def is_fixed_target(self) -> bool:
        """True when the hadron is at rest."""
        return self.hadron_momentum < 1e-9

    @property
    def lepton_four_momentum(self) -> np.ndarray:
        """(E, px, py, pz) of the (massless) lepton beam."""
        return np.array([self.lepton_energy, 0.0, 0.0, self.lepton_direction * self.lepton_energy])

    @property
    def hadron_four_momentum(self) -> np.ndarray:
        """(E, px, py, pz) of the hadron beam, opposite to the lepton."""
        return np.array([self.hadron_energy, 0.0, 0.0, -self.lepton_direction * self.hadron_momentum])

    @property
    def s(self) -> float:
        """Squared centre-of-mass energy (massless lepton)."""
        k, p = self.lepton_four_momentum, self.hadron_four_momentum
        tot = k + p
        return float(tot[0] ** 2 - tot[1] ** 2 - tot[2] ** 2 - tot[3] ** 2)

    @property
    def sqrt_s(self) -> float:
        """Centre-of-mass energy in GeV."""
        return math.sqrt(self.s)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for metadata (JSON-able)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Beams:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)
