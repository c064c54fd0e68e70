"""What the unfolding critic sees of a detector-level event: folded features, passed-through ones, ν₁, ν₂.

A learned surrogate folds only its ``detector_features``; every other field of
a folded event keeps its vertex-level value (``LearnedFolding.fold`` replaces
the detector features and nothing else). A surrogate of the HERA lepton that
folds (E, P) given (E, P, θ, φ) therefore leaves θ and φ unchanged (Matrix 0.2
does not smear angles). The critic must see those *passed-through* features
too: with (E, P) alone (two measurements of |k'|) the scattering angle, hence
x and Q², would be unconstrained.

The view of an event is the concatenation of

- the standardized folded detector features,
- the standardized vertex features the surrogate does not fold (its vertex
  scaler's units), except those in ``exclude`` (e.g. the uniform azimuth),
- optionally ν₁ = ln(E − k∥) and ν₂ = ln(2E_ref − E − k∥) of the detector-level
  lepton, standardized on the data, when E and k∥ (from p_z, or from P and θ)
  are available (thesis ch. 7: E_ref is the largest detector-level energy, so
  that ν₂ stays defined).

Example:
    >>> import torch
    >>> class Scaler:
    ...     def transform(self, t): return t
    ...     def inverse(self, t): return t
    >>> class Sur:
    ...     vertex_features, detector_features = ["a", "b"], ["a"]
    ...     vertex_scaler = detector_scaler = Scaler()
    >>> view = CriticView(Sur(), None, torch.zeros(3, 2), torch.zeros(3, 1), exclude=[], augment=False)
    >>> view(torch.ones(2, 1), torch.full((2, 2), 2.0)).tolist()
    [[1.0, 2.0], [1.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlegpipe.beams import Beams
from mlegpipe.stages import DifferentiableSurrogate

__all__ = ["CriticView"]


class CriticView:
    """Maps (standardized detector features, standardized vertex features) to critic inputs.

    Arguments:
        surrogate: the frozen learned detector (feature names and scalers).
        beams: the data's beams (needed for ν₁, ν₂), or None.
        real_vertex: the data's values of the surrogate's vertex features, standardized ``(n, k_v)``
            (only the passed-through columns matter; they set the ν scale).
        real_detector: the data's standardized detector features ``(n, k_d)``.
        exclude: vertex features never shown to the critic.
        augment: add ν₁, ν₂ when they can be computed.
    """

    def __init__(self, surrogate: DifferentiableSurrogate, beams: Beams | None, real_vertex: torch.Tensor,
                 real_detector: torch.Tensor, exclude: Sequence[str] = (), augment: bool = True) -> None:
        self.det_names = list(surrogate.detector_features)
        self.vtx_names = list(surrogate.vertex_features)
        self.det_scaler, self.vtx_scaler = surrogate.detector_scaler, surrogate.vertex_scaler
        self.passthrough = [i for i, n in enumerate(self.vtx_names) if n not in self.det_names and n not in exclude]
        self.beams = beams
        self._nu_ok = augment and beams is not None and "lepton_E" in self.det_names and (
            "lepton_pz" in self.det_names or ("lepton_P" in self.det_names and self._has("lepton_theta")))
        self.mean = self.std = None
        self.e_ref = 0.0
        if self._nu_ok:
            assert beams is not None
            e, p_par = self._e_ppar(real_detector.double(), real_vertex.double())
            # thesis ch. 7: E_e replaced by the largest detector-level energy so that nu2 stays defined
            self.e_ref = max(beams.lepton_energy, float(((e + p_par) / 2).max()) + 1e-3)
            ref = self._nus(real_detector.double(), real_vertex.double())
            self.mean, self.std = ref.mean(0).float(), ref.std(0).clamp_min(1e-6).float()

    def _has(self, name: str) -> bool:
        return name in self.det_names or name in self.passthrough_names

    @property
    def passthrough_names(self) -> list[str]:
        """Vertex features shown to the critic unchanged."""
        return [self.vtx_names[i] for i in self.passthrough]

    @property
    def augmented(self) -> bool:
        """True when ν₁, ν₂ are appended."""
        return self._nu_ok

    def _physical(self, name: str, det: torch.Tensor, vtx: torch.Tensor) -> torch.Tensor:
        if name in self.det_names:
            return self.det_scaler.inverse(det)[:, self.det_names.index(name)]
        return self.vtx_scaler.inverse(vtx)[:, self.vtx_names.index(name)]

    def _e_ppar(self, det: torch.Tensor, vtx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.beams is not None
        e = self._physical("lepton_E", det, vtx)
        if "lepton_pz" in self.det_names:
            pz = self._physical("lepton_pz", det, vtx)
        else:
            pz = self._physical("lepton_P", det, vtx) * torch.cos(self._physical("lepton_theta", det, vtx))
        return e, self.beams.lepton_direction * pz

    def _nus(self, det: torch.Tensor, vtx: torch.Tensor) -> torch.Tensor:
        e, p_par = self._e_ppar(det, vtx)
        return torch.stack([torch.log(torch.clamp(e - p_par, min=1e-3)),
                            torch.log(torch.clamp(2 * self.e_ref - e - p_par, min=1e-3))], dim=1)

    def __call__(self, det: torch.Tensor, vtx: torch.Tensor) -> torch.Tensor:
        """Critic inputs of standardized detector features ``det`` and standardized vertex features ``vtx``."""
        parts = [det]
        if self.passthrough:
            parts.append(vtx[:, self.passthrough].to(det.dtype))
        if self._nu_ok and self.mean is not None and self.std is not None:
            nus = self._nus(det.double(), vtx.double())
            parts.append(((nus - self.mean.double()) / self.std.double()).to(det.dtype))
        return torch.cat(parts, dim=1)
