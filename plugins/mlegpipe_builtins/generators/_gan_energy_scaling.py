"""``energy_scaling``: a GAN generates its features relative to the beam energy (T - ln E_b instead of T).

Composed into :class:`~mlegpipe_builtins.generators._gan_representation.GANRepresentation`
when a model's ``energy_scaling`` is on (cFAT-GAN's CPU default), so one network
serves every beam energy with its kinematic edge y ≤ 1 in one place.

Example:
    >>> import torch
    >>> e = EnergyScaling()
    >>> raw = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    >>> bool(torch.allclose(e.from_model(e.to_model(raw, ["lepton_px", "lepton_T"], 10.0), ["lepton_px", "lepton_T"],
    ...                               10.0), raw))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mlegpipe.exceptions import ConfigError

__all__ = ["Energy", "EnergyScaling"]

#: Per-event beam energies (GeV), one value for all events, or none.
Energy = torch.Tensor | np.ndarray | float | None


class EnergyScaling:
    """Generated features relative to the beam energy: T - ln E_b ≈ ln y instead of T = ln(E_b - p∥).

    The edge y ≤ 1 then sits at the same place at every beam energy, and the
    critic sees the augmented features in units of E_b
    (``CriticFeatures(beam_units=True)``). p_x, p_y stay in GeV: the low-Q²
    bulk of p_T does not scale with E_b (dividing them too doubled their KL at
    10 and 50 GeV).

    Arguments:
        where: the TOML path of the generator, for errors.

    Example:
        >>> e = EnergyScaling()
        >>> t = e.to_model(torch.tensor([[1.0, 2.0]], dtype=torch.float64), ["lepton_px", "lepton_T"], 10.0)
        >>> [round(v, 6) for v in t[0].tolist()]                    # T - ln 10
        [1.0, -0.302585]
    """

    #: Generated features shifted by -ln E_b.
    SHIFTED: tuple[str, ...] = ("lepton_T",)

    def __init__(self, where: str = "generator") -> None:
        self.where = where

    def check(self, names: Sequence[str]) -> None:
        """Raise a :class:`ConfigError` unless the generated ``names`` include T (feature map ``lepton_t``)."""
        if not any(n in self.SHIFTED for n in names):
            raise ConfigError(f"energy_scaling needs T = ln(E_b - p∥) (feature map lepton_t); this model generates "
                              f"{list(names)}", path=f"{self.where}.energy_scaling", value=True)

    def _shift(self, names: Sequence[str], eb: Energy, n: int) -> torch.Tensor:
        """Per-event shift ``(n, k)``: ln E_b on T, else 0."""
        if eb is None:
            raise ConfigError("this generator learns energy-scaled features (energy_scaling = true): give the beam "
                              "energy", path=f"{self.where}.energy_scaling", value=None)
        eb = eb.expand(n) if isinstance(eb, torch.Tensor) else \
            torch.as_tensor(np.broadcast_to(np.asarray(eb, dtype=np.float64), (n,)).copy())
        eb = eb.to(torch.float64)[:, None]
        shift = torch.tensor([name in self.SHIFTED for name in names])
        return torch.where(shift, torch.log(eb), torch.zeros_like(eb))

    def to_model(self, raw: torch.Tensor, names: Sequence[str], eb: Energy) -> torch.Tensor:
        """Generated features in GeV → relative to E_b."""
        return raw - self._shift(names, eb, len(raw)).to(raw.dtype)

    def from_model(self, scaled: torch.Tensor, names: Sequence[str], eb: Energy) -> torch.Tensor:
        """Undo :meth:`to_model`."""
        return scaled + self._shift(names, eb, len(scaled)).to(scaled.dtype)
