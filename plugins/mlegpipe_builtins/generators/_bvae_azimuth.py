"""Azimuths learned relative to one of them, as points on the circle (the B-VAE's ``azimuth = "rotated"``).

Events at a hadron collider are invariant under a rotation about the beam
axis, so only azimuth *differences* carry physics. :class:`RotatedAzimuths`
learns every azimuth feature (a feature-map feature named ``*_phi``: each
particle's φ of a collection map, and flat fields such as ``met_phi``) as
``(cos Δ, sin Δ)`` of its difference Δ = φ - φ_ref to a reference azimuth
that every training event has (the first such feature: the lepton's, say);
the reference itself is not learned but drawn uniformly in [-π, π) for each
generated event. (cos, sin) has no edge at ±π: a VAE's continuous decoder
would otherwise tear events whose azimuth crosses it, and the MSE of two
nearby directions on either side of the edge would be large.

Example:
    >>> import numpy as np
    >>> frame = RotatedAzimuths(["pt", "a_phi", "b_phi"]).fit(np.array([[1.0, 0.5, -3.0]]))
    >>> frame.reference, frame.names
    ('a_phi', ['pt', 'cos(b_phi - a_phi)', 'sin(b_phi - a_phi)'])
    >>> learned = frame.forward(np.array([[1.0, 0.5, -3.0]]))
    >>> back = frame.inverse(learned, np.random.default_rng(0))
    >>> bool(np.isclose(np.angle(np.exp(1j * (back[0, 2] - back[0, 1]))), np.angle(np.exp(1j * -3.5))))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlegpipe.exceptions import ConfigError

__all__ = ["RotatedAzimuths", "azimuth_features"]


def azimuth_features(names: Sequence[str]) -> list[int]:
    """Indices of the azimuth features (names ending in ``_phi``).

    Example:
        >>> azimuth_features(["jets1_logpt", "jets1_phi", "met", "met_phi"])
        [1, 3]
    """
    return [j for j, n in enumerate(names) if n.endswith("_phi")]


class RotatedAzimuths:
    """Feature-map features ⇄ learned features with azimuths as (cos, sin) relative to a reference azimuth.

    Arguments:
        names: the feature map's feature names.
        reference: the reference azimuth (None: chosen by :meth:`fit`).
        where: the TOML path named by errors.
    """

    def __init__(self, names: Sequence[str], reference: str | None = None, where: str = "generator.azimuth") -> None:
        self.inputs = list(names)
        self.where = where
        self.azimuths = azimuth_features(self.inputs)
        self.reference = reference
        if reference is not None:
            self._layout()

    def fit(self, raw: np.ndarray) -> RotatedAzimuths:
        """Choose the reference: the first azimuth feature that every training event has (finite)."""
        if not self.azimuths:
            raise ConfigError("azimuth = 'rotated' needs azimuth features (names ending in _phi); these features "
                              "have none", path=self.where, value="rotated")
        always = [j for j in self.azimuths if np.isfinite(raw[:, j]).all()]
        if not always:
            raise ConfigError("azimuth = 'rotated' needs an azimuth that every training event has (a particle of "
                              "a fixed-multiplicity collection, or a field such as met_phi)", path=self.where,
                              value="rotated")
        self.reference = self.inputs[always[0]]
        self._layout()
        return self

    def _layout(self) -> None:
        self._ref = self.inputs.index(str(self.reference))
        self.names: list[str] = []
        #: the feature-map column each learned feature comes from (absent particles' masks follow it)
        self.columns: list[int] = []
        for j, name in enumerate(self.inputs):
            if j == self._ref:
                continue
            if j in self.azimuths:
                self.names += [f"cos({name} - {self.reference})", f"sin({name} - {self.reference})"]
                self.columns += [j, j]
            else:
                self.names.append(name)
                self.columns.append(j)

    def forward(self, raw: np.ndarray) -> np.ndarray:
        """``(n, len(names))`` learned features of the map's features ``raw``."""
        ref = raw[:, self._ref]
        out = []
        for j in range(len(self.inputs)):
            if j == self._ref:
                continue
            if j in self.azimuths:
                delta = raw[:, j] - ref
                out += [np.cos(delta), np.sin(delta)]
            else:
                out.append(raw[:, j])
        return np.stack(out, axis=1)

    def inverse(self, learned: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The map's features, the reference azimuth drawn uniformly in [-π, π) (from ``rng``)."""
        n = len(learned)
        out = np.empty((n, len(self.inputs)))
        ref = rng.uniform(-np.pi, np.pi, n)
        out[:, self._ref] = ref
        k = 0
        for j in range(len(self.inputs)):
            if j == self._ref:
                continue
            if j in self.azimuths:
                out[:, j] = np.angle(np.exp(1j * (np.arctan2(learned[:, k + 1], learned[:, k]) + ref)))
                k += 2
            else:
                out[:, j] = learned[:, k]
                k += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {"names": list(self.inputs), "reference": self.reference}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], where: str = "generator.azimuth") -> RotatedAzimuths:
        """Rebuild from :meth:`state_dict`."""
        return cls(list(state["names"]), str(state["reference"]), where)
