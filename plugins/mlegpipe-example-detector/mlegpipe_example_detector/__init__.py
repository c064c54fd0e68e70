"""Example third-party mlegpipe plugin: a calorimeter that smears the scattered lepton's energy.

The lepton energy E is smeared with a Gaussian of width
sigma_E = E * sqrt(stochastic^2 / E + constant^2) (terms added in quadrature);
the direction is kept, the momentum is rescaled to the measured energy
(massless lepton) and the DIS variables are recomputed with the electron method.

Example:
    >>> from mlegpipe.registry import load_plugins
    >>> import mlegpipe_example_detector as plugin
    >>> reg = load_plugins(extra=[plugin])  # doctest: +SKIP
    >>> reg.get("detector", "calorimeter").cls.__name__  # doctest: +SKIP
    'Calorimeter'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mlegpipe import hookimpl
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe.schema import param
from mlegpipe.stages import Detector
from mlegpipe_builtins.dis.kinematics import dis_from_lepton

__all__ = ["Calorimeter", "mlegpipe_register_stages"]


class Calorimeter(Detector):
    """Calorimeter-only measurement of the scattered lepton (example third-party plugin)."""

    plugin_name: ClassVar[str] = "calorimeter"

    @dataclass
    class Params:
        stochastic: float = param(0.12, min=0.0, doc="stochastic term a in sigma_E/E = a/sqrt(E) (+) c")
        constant: float = param(0.02, min=0.0, doc="constant term c")

    def resolution(self, energy: np.ndarray) -> np.ndarray:
        """Absolute energy resolution sigma_E in GeV."""
        return energy * np.sqrt(self.params.stochastic**2 / np.maximum(energy, 1e-12) + self.params.constant**2)

    def fold(self, events: EventBatch, seed: np.random.SeedSequence) -> EventBatch:
        """Smear lepton_E; rescale the momentum; recompute x, Q2, y, W2, nu."""
        for name in ("lepton_E", "lepton_px", "lepton_py", "lepton_pz"):
            if not events.has(name):
                raise DataError("the calorimeter needs the scattered lepton fields", path=name)
        energy = events.column("lepton_E")
        rng = np.random.default_rng(seed)
        measured = np.maximum(energy + rng.normal(size=len(energy)) * self.resolution(energy), 0.0)
        scale = np.divide(measured, energy, out=np.zeros_like(energy), where=energy > 0)
        px, py, pz = (events.column(f"lepton_{c}") * scale for c in ("px", "py", "pz"))
        out = events.with_columns(lepton_E=measured, lepton_px=px, lepton_py=py, lepton_pz=pz)
        if events.beams is not None:
            out = out.with_columns(**dis_from_lepton(measured, px, py, pz, events.beams))
        out.meta["detector"] = "calorimeter"
        return out


@hookimpl
def mlegpipe_register_stages(registry) -> None:  # noqa: ANN001 - registry type from mlegpipe.registry
    """Register the calorimeter detector."""
    registry.add(Calorimeter)
