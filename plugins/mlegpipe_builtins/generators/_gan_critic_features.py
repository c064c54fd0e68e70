"""What a GAN's critic sees beside the generated features: augmented features of the decoded particles.

The critic of the FAT-GAN family judges the generated features ``z`` together
with quantities computed differentiably from the decoded lepton (E, p_T,
p_z/p_T, momentum products: :func:`mlegpipe.features.augment`), so their
distributions train the generator too (thesis ch. 4, Table 4).
:class:`CriticFeatures` computes them, compresses their tails with
asinh((x - median)/MAD) (``augment``; not the ``linear_augment`` copies, whose
linear view resolves a tail the asinh squeezes), standardizes them and
soft-clips them to ±:data:`AUG_CLIP` (:func:`soft_clip`), so a wild early
generator cannot feed the critic p_z/p_T → ∞.

Example:
    >>> import torch
    >>> fields = ("lepton_E", "lepton_px", "lepton_py", "lepton_pz")
    >>> lepton = torch.tensor([[10.0, 3.0, 4.0, 5.0], [20.0, 0.0, 6.0, -8.0]], dtype=torch.float64)
    >>> critic = CriticFeatures(["E", "pT"]).fit(lepton, torch.full((2,), 27.6), fields)
    >>> critic.names, critic(lepton, torch.full((2,), 27.6), fields).shape
    (['E', 'pT'], torch.Size([2, 2]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlegpipe.features import AsinhScale, Standardize, augment

__all__ = ["AUG_CLIP", "CriticFeatures", "soft_clip"]

#: Soft bound (in standard deviations) on augmented discriminator features.
AUG_CLIP = 10.0


def soft_clip(x: torch.Tensor, bound: float = AUG_CLIP) -> torch.Tensor:
    """``bound · tanh(x / bound)``: the identity near 0, smoothly bounded by ±bound.

    Example:
        >>> soft_clip(torch.tensor([0.0, 1e6])).tolist()
        [0.0, 10.0]
    """
    return bound * torch.tanh(x / bound)


class CriticFeatures:
    """The augmented features of decoded particles, scaled for the critic (see the module docstring).

    Arguments:
        augment: augmented features, asinh-scaled (with ``asinh``) and standardized.
        linear_augment: augmented features shown once more, standardized without asinh.
        asinh: asinh((x - median)/MAD) before standardizing ``augment`` (``preprocess = "asinh"``).
        beam_units: compute them from four-momenta in units of the beam energy (``energy_scaling``).
        registry: where augmentations are looked up.
        where: the TOML path of the generator, for errors.
    """

    def __init__(self, augment: Sequence[str] = (), linear_augment: Sequence[str] = (), *, asinh: bool = True,
                 beam_units: bool = False, registry: Any = None, where: str = "generator") -> None:
        self.augment = list(augment)
        self.linear_augment = list(linear_augment)
        self.asinh = asinh
        self.beam_units = beam_units
        self.registry = registry
        self.where = where
        self.pre = AsinhScale([])
        self.scaler = Standardize()

    @property
    def names(self) -> list[str]:
        """The augmented features, then the linear copies (empty: the critic sees ``z`` alone)."""
        return [*self.augment, *self.linear_augment]

    def raw(self, particles: torch.Tensor, beam_energy: torch.Tensor, fields: Sequence[str]) -> torch.Tensor:
        """The augmented features of the ``(n, len(fields))`` decoded particles, linear copies last."""
        if self.beam_units:
            particles = particles / beam_energy.to(particles.dtype)[:, None]
        out = augment(particles, fields, self.augment, path=f"{self.where}.augment", registry=self.registry)
        if self.linear_augment:
            out = torch.cat([out, augment(particles, fields, self.linear_augment, path=f"{self.where}.linear_augment",
                                          registry=self.registry)], dim=1)
        return out

    def fit(self, particles: torch.Tensor, beam_energy: torch.Tensor, fields: Sequence[str],
            weights: np.ndarray | None = None) -> CriticFeatures:
        """Fit the asinh map and the standardization to the training particles; returns self."""
        aug = self.raw(particles, beam_energy, fields)
        self.pre = AsinhScale([self.asinh] * len(self.augment) + [False] * len(self.linear_augment))
        self.scaler.fit(self.pre.fit(aug).transform(aug), weights)
        return self

    def __call__(self, particles: torch.Tensor, beam_energy: torch.Tensor, fields: Sequence[str]) -> torch.Tensor:
        """Soft-clipped standardized augmented features ``(n, len(names))`` (differentiable)."""
        return soft_clip(self.scaler.transform(self.pre.transform(self.raw(particles, beam_energy, fields))))

    def state_dict(self) -> dict[str, Any]:
        """``{"aug_scaler", "aug_pre"}`` once fitted (else empty)."""
        if not self.scaler.fitted:
            return {}
        return {"aug_scaler": self.scaler.state_dict(), "aug_pre": self.pre.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> CriticFeatures:
        """Restore from a state holding :meth:`state_dict`'s keys (none: nothing to restore); returns self."""
        if "aug_scaler" in state:
            self.scaler.load_state_dict(state["aug_scaler"])
            self.pre.load_state_dict(state["aug_pre"])
        return self
