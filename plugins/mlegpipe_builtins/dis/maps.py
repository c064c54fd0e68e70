"""The DIS domain's feature maps of the scattered lepton, which keep generated events physical by construction.

* :class:`TransformedLepton` (FAT-GAN, thesis ch. 4-5): ``(p_x, p_y, T)`` with
  ``T = ln((E_b - p_par) / 1 GeV)``, ``p_par`` the momentum along the lepton beam;
  the inverse can never give ``p_par >= E_b``.
* :class:`NuMap` (thesis ch. 7): ``(nu1, nu2, phi)`` with ``nu1 = ln(E' - p_par)``
  and ``nu2 = ln(2 E_b - E' - p_par)``; at a collider ``nu1 = ln(Q^2 / 2E_b)`` and
  ``nu2 = ln(2 E_b y)``.
* :class:`ScaledNuMap`: ``(ln Q², ln y, phi)`` at a collider.
* :class:`ScalingLepton`: ``(ln Q², ln a, phi)`` with ``a = ln y / ln(x y)``: every kinematic limit
  at the same place at every beam energy (energy scans).
* :class:`CartesianLepton` (DS-GAN baseline): ``(p_x, p_y, p_z)``, no protection.

The per-event lepton beam energy ``E_b`` is the maps' context
(:meth:`~mlegpipe.features.FeatureMap.context_of`), so conditional models can
vary it. Decoded events gain the DIS invariants and are checked against the
kinematic limits (:meth:`_Lepton.complete`). Registered through the
``mlegpipe_register_feature_maps`` hook by :mod:`mlegpipe_builtins.dis.domain`.

Example:
    >>> import torch
    >>> m = TransformedLepton(direction=-1)
    >>> p = torch.tensor([[3.0, 4.0, -20.0]], dtype=torch.float64)   # px, py, pz
    >>> eb = torch.tensor([27.6], dtype=torch.float64)
    >>> z = m.forward(p, eb)
    >>> bool(torch.allclose(m.inverse(z, eb)[:, 1:], p))
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from mlegpipe.beams import ELECTRON_MASS, PROTON_MASS, Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError, PhysicsError
from mlegpipe.features.maps import FeatureMap, TensorLike, as_context
from mlegpipe_builtins.dis import BEAM_ENERGY, LEPTON_FIELDS
from mlegpipe_builtins.dis.labels import complete_lepton

__all__ = [
    "LEPTON_MAPS",
    "CartesianLepton",
    "NuMap",
    "ScaledNuMap",
    "ScalingLepton",
    "TransformedLepton",
    "beam_energy_of",
    "lepton_energy_field",
    "t_pz",
    "t_pz_inverse",
]


def t_pz(pz: torch.Tensor, beam_energy: TensorLike, direction: int) -> torch.Tensor:
    """FAT-GAN transform ``T = ln(E_b - direction * p_z)`` (torch, differentiable).

    Example:
        >>> round(float(t_pz(torch.tensor(17.6, dtype=torch.float64), 27.6, direction=1)), 6)  # ln(10)
        2.302585
    """
    return torch.log(torch.as_tensor(beam_energy, dtype=pz.dtype) - direction * pz)


def t_pz_inverse(t: torch.Tensor, beam_energy: TensorLike, direction: int) -> torch.Tensor:
    """Inverse of :func:`t_pz`: ``p_z = direction * (E_b - exp(T))``.

    Example:
        >>> round(float(t_pz_inverse(t_pz(torch.tensor(5.0, dtype=torch.float64), 27.6, -1), 27.6, -1)), 12)
        5.0
    """
    return direction * (torch.as_tensor(beam_energy, dtype=t.dtype) - torch.exp(t))


def lepton_energy_field(beams: Beams | None) -> str:
    """The event field holding the per-event lepton beam energy: declared by the beams, else ``beam_energy``.

    Example:
        >>> lepton_energy_field(Beams.preset("hera")), lepton_energy_field(Beams.preset("hera", lepton_energy="Ee"))
        ('beam_energy', 'Ee')
    """
    if beams is not None and beams.is_lepton_hadron:
        return beams.field_of("lepton") or BEAM_ENERGY
    return BEAM_ENERGY


def beam_energy_of(events: EventBatch) -> np.ndarray:
    """Per-event lepton beam energy: the beams' declared lepton-energy field, the ``beam_energy`` field, else the
    batch's beams.

    Raises:
        DataError: none is available.
    """
    beams = events.beams
    field = lepton_energy_field(beams)
    if events.has(field):
        return events.column(field)
    if beams is not None:
        return np.full(len(events), beams.lepton_energy)
    raise DataError("the events carry neither a beam_energy field nor beams; the feature map needs the "
                    "lepton beam energy", path=BEAM_ENERGY)


class _Lepton(FeatureMap):
    """Shared parts of the lepton maps: beam direction, lepton mass, the beam energy as context, DIS labels."""

    fields = LEPTON_FIELDS
    inputs = ("lepton_px", "lepton_py", "lepton_pz")
    needs_context: ClassVar[bool] = True
    heavy_tailed: ClassVar[tuple[str, ...]] = ("lepton_px", "lepton_py", "lepton_pz")
    range_fields: ClassVar[tuple[str, ...]] = ("Q2", "W2", "y")
    sampler_hint: ClassVar[str] = "distilled"  # measured on HERA and 50 x 50 GeV Pythia (README)

    def __init__(self, direction: int = -1, lepton_mass: float = ELECTRON_MASS) -> None:
        if direction not in (1, -1):
            raise ConfigError("lepton_direction must be +1 or -1", path="feature_map.direction", value=direction)
        if not (lepton_mass >= 0 and math.isfinite(lepton_mass)):
            raise PhysicsError("lepton mass must be >= 0", path="feature_map.lepton_mass", value=lepton_mass)
        self.direction = int(direction)
        self.lepton_mass = float(lepton_mass)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "direction": self.direction, "lepton_mass": self.lepton_mass}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], beams: Beams | None = None,
                    features: Sequence[str] | None = None) -> _Lepton:
        """The map with the beam direction and lepton mass of ``beams`` unless ``config`` gives them."""
        cfg = dict(config)
        if beams is not None:
            cfg.setdefault("direction", beams.lepton_direction)
            cfg.setdefault("lepton_mass", ELECTRON_MASS if abs(beams.lepton_pdg) == 11 else 0.0)
        return cls(**cfg)

    def context_of(self, events: EventBatch) -> np.ndarray:
        """The per-event lepton beam energy (:func:`beam_energy_of`)."""
        return beam_energy_of(events)

    def context_from(self, conditions: Mapping[str, Any], n: int, beams: Beams | None) -> np.ndarray:
        """The lepton beam energy of events to generate: the condition on the lepton-energy field (``beam_energy``
        unless the beams declare another), else the beams' nominal energy."""
        key = lepton_energy_field(beams)
        if key in conditions:
            return np.broadcast_to(np.asarray(conditions[key], dtype=np.float64), (n,)).copy()
        if beams is not None:
            return np.full(n, beams.lepton_energy)
        return np.zeros(n)

    def complete(self, columns: dict[str, np.ndarray], context: np.ndarray, beams: Beams | None,
                 ok: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        """The beam energy and the DIS invariants x, Q², y, W², ν added; events beyond the kinematic limits
        (:func:`~mlegpipe_builtins.dis.kinematics.physical_mask`, each event at its own beam energy) not ``ok``."""
        return complete_lepton(columns, context, beams, ok)

    def _energy(self, px: torch.Tensor, py: torch.Tensor, pz: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(px**2 + py**2 + pz**2 + self.lepton_mass**2)


class TransformedLepton(_Lepton):
    """FAT-GAN features ``(p_x, p_y, T(p_z))``, ``T = ln(E_b - p_par)``: ``p_par < E_b`` always.

    Arguments:
        direction: +1 if the lepton beam travels along +z, -1 along -z (HERA).
        lepton_mass: mass used to rebuild ``E`` (GeV).

    Example:
        >>> import torch
        >>> m = TransformedLepton(direction=1)
        >>> z = torch.tensor([[0.0, 1.0, -5.0]], dtype=torch.float64)
        >>> bool(m.inverse(z, 10.0)[0, 3] < 10.0)
        True
    """

    name = "lepton_t"
    names = ("lepton_px", "lepton_py", "lepton_T")

    def forward(self, x: torch.Tensor, context: TensorLike) -> torch.Tensor:
        eb = as_context(context, x)
        return torch.stack([x[:, 0], x[:, 1], t_pz(x[:, 2], eb, self.direction)], dim=1)

    def inverse(self, z: torch.Tensor, context: TensorLike) -> torch.Tensor:
        eb = as_context(context, z)
        px, py = z[:, 0], z[:, 1]
        pz = t_pz_inverse(z[:, 2], eb, self.direction)
        return torch.stack([self._energy(px, py, pz), px, py, pz], dim=1)


class CartesianLepton(_Lepton):
    """DS-GAN baseline ``(p_x, p_y, p_z)``: nothing keeps the events physical.

    Example:
        >>> import torch
        >>> CartesianLepton(lepton_mass=0.0).inverse(torch.tensor([[3.0, 0.0, 4.0]]), 10.0).tolist()
        [[5.0, 3.0, 0.0, 4.0]]
    """

    name = "lepton_cartesian"
    names = ("lepton_px", "lepton_py", "lepton_pz")

    def forward(self, x: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        return x.clone()

    def inverse(self, z: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        return torch.stack([self._energy(z[:, 0], z[:, 1], z[:, 2]), z[:, 0], z[:, 1], z[:, 2]], dim=1)

    def encode(self, events: EventBatch) -> np.ndarray:
        """Features of ``events``; the beam energy is not needed (nor read) by this map."""
        x = torch.from_numpy(self.input_matrix(events))
        return self.forward(x).numpy()


class NuMap(_Lepton):
    """Thesis ch. 7 features ``(nu1, nu2, phi)`` of the scattered lepton.

    ``nu1 = ln((E' - p_par) / 1 GeV)``, ``nu2 = ln((2 E_b - E' - p_par) / 1 GeV)``
    and ``phi`` the azimuth, ``p_par`` the momentum along the lepton beam. At a
    collider (massless lepton) ``E' - p_par = Q^2 / 2E_b`` and
    ``2E_b - E' - p_par = 2 E_b y``. The inverse needs ``nu2 < ln(2 E_b)``
    (``E' + p_par > 0``) and a non-negative ``p_T^2``; :meth:`valid` says where.

    Example:
        >>> import torch
        >>> m = NuMap(direction=1, lepton_mass=0.0)
        >>> lep = torch.tensor([[0.0, 6.0, 8.0]], dtype=torch.float64)  # E' = 10, p_T = 6
        >>> z = m.forward(lep, 27.6)
        >>> [round(v, 9) for v in m.inverse(z, 27.6)[0].tolist()]
        [10.0, 0.0, 6.0, 8.0]
    """

    name = "nu"
    names = ("nu1", "nu2", "lepton_phi")
    uniform_features: ClassVar[tuple[str, ...]] = ("lepton_phi",)  # unpolarized beams: phi is exactly uniform

    def forward(self, x: torch.Tensor, context: TensorLike) -> torch.Tensor:
        eb = as_context(context, x)
        px, py, pz = x[:, 0], x[:, 1], x[:, 2]
        energy = self._energy(px, py, pz)
        ppar = self.direction * pz
        nu1 = torch.log(energy - ppar)
        nu2 = torch.log(2 * eb - energy - ppar)
        return torch.stack([nu1, nu2, torch.atan2(py, px)], dim=1)

    def _light_cone(self, z: torch.Tensor, context: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
        eb = as_context(context, z)
        minus = torch.exp(z[:, 0])                 # E' - p_par
        plus = 2 * eb - torch.exp(z[:, 1])         # E' + p_par
        return minus, plus

    def inverse(self, z: torch.Tensor, context: TensorLike) -> torch.Tensor:
        minus, plus = self._light_cone(z, context)
        energy = 0.5 * (plus + minus)
        ppar = 0.5 * (plus - minus)
        pt = torch.sqrt(minus * plus - self.lepton_mass**2)
        phi = z[:, 2]
        return torch.stack([energy, pt * torch.cos(phi), pt * torch.sin(phi), self.direction * ppar], dim=1)

    def valid(self, z: torch.Tensor, context: TensorLike) -> torch.Tensor:
        minus, plus = self._light_cone(z, context)
        return (plus > 0) & (minus * plus >= self.lepton_mass**2) & torch.isfinite(z).all(dim=1)


class ScaledNuMap(NuMap):
    """:class:`NuMap` shifted by the beam energy: ``(nu1 + ln 2E_b, nu2 - ln 2E_b, phi)``.

    For a massless lepton at a collider these are ``(ln Q^2, ln y, phi)``: the
    Q² cut and the y ≤ 1 limit sit at the same place whatever the beam energy,
    which is what a model conditional on ``E_b`` needs to interpolate. For a
    single beam energy it is :class:`NuMap` up to a constant shift.

    Example:
        >>> import torch
        >>> m = ScaledNuMap(direction=1, lepton_mass=0.0)
        >>> lep = torch.tensor([[0.0, 6.0, 8.0]], dtype=torch.float64)
        >>> [round(v, 9) for v in m.inverse(m.forward(lep, 27.6), 27.6)[0].tolist()]
        [10.0, 0.0, 6.0, 8.0]
    """

    name = "nu_scaled"
    names = ("lnQ2", "lny", "lepton_phi")
    logit_features: ClassVar[tuple[str, ...]] = ("lny",)  # y <= 1: learned as ln(y / (1 - y))
    edges_fixed_under_context: ClassVar[bool] = True  # the Q² cut and y <= 1 do not move with E_b

    def _shift(self, context: TensorLike, like: torch.Tensor) -> torch.Tensor:
        return torch.log(2 * as_context(context, like))

    def forward(self, x: torch.Tensor, context: TensorLike) -> torch.Tensor:
        z = super().forward(x, context)
        shift = self._shift(context, x)
        return torch.stack([z[:, 0] + shift, z[:, 1] - shift, z[:, 2]], dim=1)

    def _light_cone(self, z: torch.Tensor, context: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
        # straight from (ln Q², ln y): E' - p_par = Q²/2E_b, E' + p_par = 2E_b (1 - y); phi is not shifted,
        # so NuMap's inverse and valid apply without building the unshifted features
        two_eb = 2 * as_context(context, z)
        return torch.exp(z[:, 0]) / two_eb, -two_eb * torch.expm1(z[:, 1])


class ScalingLepton(_Lepton):
    """DIS lepton in coordinates whose kinematic limits do not move with the beam energies: ``(ln Q², ln a, phi)``.

    ``a = ln y / ln(x y)`` is where the event sits between the two limits of its
    Q²: ``a = 0`` at ``y = 1`` and ``a = 1`` at ``x = 1`` (``x y = Q² / 2P·k``).
    With ``ln Q²`` bounded below by the sample's Q² cut, every limit is at the
    same place at every beam energy, and at fixed Q² the density in ``a`` changes
    slowly with ``√s`` (scaling), so a model conditional on the beam energy
    interpolates and extrapolates with the physics. The flow learns ``ln a`` as
    ``logit a`` (``logit_features``), which sends both limits to infinity: no
    generated event has ``x > 1`` or ``y > 1``.

    Q², y and x y are exact for massive beams and lepton (``Q² = -(k - k')²``,
    ``y = P·q / P·k``), so ``x`` of a decoded event is ``x`` of the DIS labels.
    ``P`` needs the hadron beam: its energy is the event's lepton beam energy
    when the beams declare the hadron energy per event from the same field as
    the lepton's (symmetric E × E scans), else the beams' fixed hadron energy.

    Arguments:
        direction: +1 if the lepton beam travels along +z, -1 along -z (the hadron beam opposite).
        lepton_mass: lepton mass (GeV), of the beam and the scattered lepton.
        hadron_energy: the fixed hadron beam energy (GeV); ``None``: the lepton beam energy, per event.
        hadron_mass: the hadron beam's mass (GeV).

    Example:
        >>> import torch
        >>> m = ScalingLepton(direction=1, hadron_energy=None)
        >>> lep = torch.tensor([[0.0, 6.0, 8.0]], dtype=torch.float64)   # at 20 x 20 GeV
        >>> z = m.forward(lep, 20.0)
        >>> [round(v, 9) for v in m.inverse(z, 20.0)[0, 1:].tolist()]
        [0.0, 6.0, 8.0]
    """

    name = "dis_scaling"
    names = ("lnQ2", "ln_a", "lepton_phi")
    uniform_features: ClassVar[tuple[str, ...]] = ("lepton_phi",)  # unpolarized beams: phi is exactly uniform
    logit_features: ClassVar[tuple[str, ...]] = ("ln_a",)  # 0 < a < 1: learned as ln(a / (1 - a))
    edges_fixed_under_context: ClassVar[bool] = True  # the Q² cut, x <= 1 and y <= 1 do not move with E_b
    sampler_hint: ClassVar[str] = "fast"  # the distilled sampler lost x across an energy scan (bench_energies)

    def __init__(self, direction: int = -1, lepton_mass: float = ELECTRON_MASS, hadron_energy: float | None = None,
                 hadron_mass: float = PROTON_MASS) -> None:
        super().__init__(direction, lepton_mass)
        if hadron_energy is not None and not (math.isfinite(hadron_energy) and hadron_energy > hadron_mass >= 0):
            raise PhysicsError("the hadron beam energy must be a number above the hadron mass",
                               path="feature_map.hadron_energy", value=hadron_energy)
        if not (math.isfinite(hadron_mass) and hadron_mass >= 0):
            raise PhysicsError("the hadron mass must be >= 0", path="feature_map.hadron_mass", value=hadron_mass)
        self.hadron_energy = None if hadron_energy is None else float(hadron_energy)
        self.hadron_mass = float(hadron_mass)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "hadron_energy": self.hadron_energy, "hadron_mass": self.hadron_mass}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], beams: Beams | None = None,
                    features: Sequence[str] | None = None) -> ScalingLepton:
        """The map for ``beams``: direction and masses, and whether the hadron energy follows the lepton's."""
        from mlegpipe_builtins.dis.labels import hadron_follows

        cfg = dict(config)
        if beams is not None and beams.is_lepton_hadron:
            cfg.setdefault("hadron_energy", None if hadron_follows(beams) else beams.hadron_energy)
            cfg.setdefault("hadron_mass", beams.hadron.mass)
        elif "hadron_energy" not in cfg:
            raise ConfigError("feature map 'dis_scaling' needs lepton-hadron beams (or hadron_energy in its "
                              "configuration)", path="feature_map", value=None if beams is None else beams.name)
        return super().from_config(cfg, beams)  # type: ignore[return-value]

    def _beams(self, context: TensorLike, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per event: lepton beam energy and momentum, hadron beam energy and momentum."""
        el = as_context(context, like)
        eh = el if self.hadron_energy is None else torch.full_like(el, self.hadron_energy)
        return el, torch.sqrt(el**2 - self.lepton_mass**2), eh, torch.sqrt(eh**2 - self.hadron_mass**2)

    def forward(self, x: torch.Tensor, context: TensorLike) -> torch.Tensor:
        el, pl, eh, ph = self._beams(context, x)
        energy = self._energy(x[:, 0], x[:, 1], x[:, 2])
        ppar = self.direction * x[:, 2]
        q2 = 2 * (el * energy - pl * ppar - self.lepton_mass**2)
        pk = eh * el + ph * pl
        ln_y = torch.log1p(-(eh * energy + ph * ppar) / pk)
        ln_a = torch.log(ln_y / (torch.log(q2) - torch.log(2 * pk)))
        return torch.stack([torch.log(q2), ln_a, torch.atan2(x[:, 1], x[:, 0])], dim=1)

    def _energy_and_ppar(self, z: torch.Tensor, context: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
        """E' and p_par from k·k' (Q²) and P·k' ((1 - y) P·k): two linear equations."""
        el, pl, eh, ph = self._beams(context, z)
        pk = eh * el + ph * pl
        ln_y = torch.exp(z[:, 1]) * (z[:, 0] - torch.log(2 * pk))
        kk = 0.5 * torch.exp(z[:, 0]) + self.lepton_mass**2        # E_l E' - p_l p_par
        pkp = -torch.expm1(ln_y) * pk                              # E_h E' + p_h p_par
        det = el * ph + pl * eh
        return (kk * ph + pkp * pl) / det, (pkp * el - kk * eh) / det

    def inverse(self, z: torch.Tensor, context: TensorLike) -> torch.Tensor:
        energy, ppar = self._energy_and_ppar(z, context)
        pt = torch.sqrt((energy**2 - ppar**2 - self.lepton_mass**2).clamp_min(0.0))
        phi = z[:, 2]
        return torch.stack([energy, pt * torch.cos(phi), pt * torch.sin(phi), self.direction * ppar], dim=1)

    def valid(self, z: torch.Tensor, context: TensorLike) -> torch.Tensor:
        """Inside the limits: Q² below 2P·k, 0 < a <= 1 (x <= 1, y <= 1) and a real transverse momentum."""
        el, pl, eh, ph = self._beams(context, z)
        energy, ppar = self._energy_and_ppar(z, context)
        return (torch.isfinite(z).all(dim=1) & (z[:, 0] < torch.log(2 * (eh * el + ph * pl))) & (z[:, 1] <= 0)
                & (energy**2 - ppar**2 >= self.lepton_mass**2))


#: The lepton maps, by name (registered as feature maps by the DIS domain).
LEPTON_MAPS: dict[str, type[FeatureMap]] = {
    TransformedLepton.name: TransformedLepton,
    NuMap.name: NuMap,
    ScaledNuMap.name: ScaledNuMap,
    ScalingLepton.name: ScalingLepton,
    CartesianLepton.name: CartesianLepton,
}
