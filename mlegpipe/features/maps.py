"""Feature maps: invertible maps between event fields and the features a model learns.

A :class:`FeatureMap` turns event columns (the scattered-lepton four-momentum,
or any flat fields) into model features and back, exactly. The maps written for
DIS keep generated events physical by construction where they can:

* :class:`TransformedLepton` (FAT-GAN, thesis ch. 4-5): ``(p_x, p_y, T)`` with
  ``T = ln((E_b - p_par) / 1 GeV)``, ``p_par`` the momentum along the lepton beam;
  the inverse can never give ``p_par >= E_b``.
* :class:`NuMap` (thesis ch. 7): ``(nu1, nu2, phi)`` with ``nu1 = ln(E' - p_par)``
  and ``nu2 = ln(2 E_b - E' - p_par)``; at a collider ``nu1 = ln(Q^2 / 2E_b)`` and
  ``nu2 = ln(2 E_b y)``.
* :class:`CartesianLepton` (DS-GAN baseline): ``(p_x, p_y, p_z)``, no protection.
* :class:`Columns`: any flat fields, unchanged.

Every map works on torch tensors (differentiable, any dtype) through
:meth:`FeatureMap.forward` / :meth:`FeatureMap.inverse` and on event batches
through :meth:`FeatureMap.encode` / :meth:`FeatureMap.decode`. The per-event
lepton beam energy ``E_b`` is an explicit argument so conditional models can
vary it. :class:`Standardize` is the scaler every model uses.

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

from mlegpipe.beams import ELECTRON_MASS, Beams
from mlegpipe.events import BEAM_ENERGY, LEPTON_FIELDS, EventBatch
from mlegpipe.exceptions import ConfigError, DataError, PhysicsError

__all__ = [
    "FEATURE_MAPS",
    "CartesianLepton",
    "Columns",
    "FeatureMap",
    "NuMap",
    "AsinhScale",
    "Standardize",
    "TransformedLepton",
    "beam_energy_of",
    "make_feature_map",
    "t_pz",
    "t_pz_inverse",
]

TensorLike = torch.Tensor | np.ndarray | float


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


def beam_energy_of(events: EventBatch) -> np.ndarray:
    """Per-event lepton beam energy: the ``beam_energy`` field, else the batch's beams.

    Raises:
        DataError: neither is available.
    """
    if events.has(BEAM_ENERGY):
        return events.column(BEAM_ENERGY)
    if events.beams is not None:
        return np.full(len(events), events.beams.lepton_energy)
    raise DataError("the events carry neither a beam_energy field nor beams; the feature map needs the "
                    "lepton beam energy", path=BEAM_ENERGY)


def _as_tensor(values: TensorLike, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return t.expand(like.shape[0]) if t.ndim == 0 else t


class FeatureMap:
    """An exactly invertible map between event fields and model features.

    Attributes:
        name: the name used in configurations (``feature_map = "lepton_t"``).
        fields: event fields :meth:`decode` produces (``lepton_E``, ...).
        inputs: event fields :meth:`encode` reads (the columns of :meth:`forward`'s input).
        names: model feature names (the columns of :meth:`forward`'s output).
    """

    name: ClassVar[str] = ""
    fields: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor, beam_energy: TensorLike) -> torch.Tensor:
        """Event columns ``(n, len(inputs))`` → features ``(n, len(names))``."""
        raise NotImplementedError

    def inverse(self, z: torch.Tensor, beam_energy: TensorLike) -> torch.Tensor:
        """Features ``(n, len(names))`` → event columns ``(n, len(fields))``."""
        raise NotImplementedError

    def valid(self, z: torch.Tensor, beam_energy: TensorLike) -> torch.Tensor:
        """Boolean mask: where :meth:`inverse` gives a real, finite event."""
        out = self.inverse(z, beam_energy)
        return torch.isfinite(out).all(dim=1)

    def config(self) -> dict[str, Any]:
        """JSON-able description; :func:`make_feature_map` rebuilds the map from it."""
        return {"name": self.name}

    # -- event batches --------------------------------------------------------------
    def encode(self, events: EventBatch) -> np.ndarray:
        """Features of ``events`` as a float64 ``(n, len(names))`` array."""
        x = torch.from_numpy(events.matrix(self.inputs))
        eb = torch.from_numpy(beam_energy_of(events)) if self.needs_beam_energy else torch.zeros(len(events),
                                                                                                   dtype=x.dtype)
        z = self.forward(x, eb).numpy()
        bad = ~np.isfinite(z).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{int(bad.sum())} events lie outside the domain of feature map {self.name!r} "
                            f"(first: entry {i}, {dict(zip(self.inputs, x[i].tolist(), strict=True))})",
                            path=", ".join(self.inputs))
        return z

    def decode(self, z: np.ndarray, beam_energy: np.ndarray | float) -> dict[str, np.ndarray]:
        """Event columns (by field name) from features ``z``."""
        zt = torch.as_tensor(np.asarray(z, dtype=np.float64))
        out = self.inverse(zt, torch.as_tensor(np.broadcast_to(beam_energy, (len(zt),)).copy())).numpy()
        return {f: out[:, i] for i, f in enumerate(self.fields)}

    needs_beam_energy: ClassVar[bool] = True

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class _Lepton(FeatureMap):
    """Shared parts of the lepton maps: beam direction and lepton mass."""

    fields = LEPTON_FIELDS
    inputs = ("lepton_px", "lepton_py", "lepton_pz")

    def __init__(self, direction: int = -1, lepton_mass: float = ELECTRON_MASS) -> None:
        if direction not in (1, -1):
            raise ConfigError("lepton_direction must be +1 or -1", path="feature_map.direction", value=direction)
        if not (lepton_mass >= 0 and math.isfinite(lepton_mass)):
            raise PhysicsError("lepton mass must be >= 0", path="feature_map.lepton_mass", value=lepton_mass)
        self.direction = int(direction)
        self.lepton_mass = float(lepton_mass)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "direction": self.direction, "lepton_mass": self.lepton_mass}

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

    def forward(self, x: torch.Tensor, beam_energy: TensorLike) -> torch.Tensor:
        eb = _as_tensor(beam_energy, x)
        return torch.stack([x[:, 0], x[:, 1], t_pz(x[:, 2], eb, self.direction)], dim=1)

    def inverse(self, z: torch.Tensor, beam_energy: TensorLike) -> torch.Tensor:
        eb = _as_tensor(beam_energy, z)
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
    needs_beam_energy: ClassVar[bool] = False

    def forward(self, x: torch.Tensor, beam_energy: TensorLike = 0.0) -> torch.Tensor:
        return x.clone()

    def inverse(self, z: torch.Tensor, beam_energy: TensorLike = 0.0) -> torch.Tensor:
        return torch.stack([self._energy(z[:, 0], z[:, 1], z[:, 2]), z[:, 0], z[:, 1], z[:, 2]], dim=1)


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

    def forward(self, x: torch.Tensor, beam_energy: TensorLike) -> torch.Tensor:
        eb = _as_tensor(beam_energy, x)
        px, py, pz = x[:, 0], x[:, 1], x[:, 2]
        energy = self._energy(px, py, pz)
        ppar = self.direction * pz
        nu1 = torch.log(energy - ppar)
        nu2 = torch.log(2 * eb - energy - ppar)
        return torch.stack([nu1, nu2, torch.atan2(py, px)], dim=1)

    def _light_cone(self, z: torch.Tensor, beam_energy: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
        eb = _as_tensor(beam_energy, z)
        minus = torch.exp(z[:, 0])                 # E' - p_par
        plus = 2 * eb - torch.exp(z[:, 1])         # E' + p_par
        return minus, plus

    def inverse(self, z: torch.Tensor, beam_energy: TensorLike) -> torch.Tensor:
        minus, plus = self._light_cone(z, beam_energy)
        energy = 0.5 * (plus + minus)
        ppar = 0.5 * (plus - minus)
        pt = torch.sqrt(minus * plus - self.lepton_mass**2)
        phi = z[:, 2]
        return torch.stack([energy, pt * torch.cos(phi), pt * torch.sin(phi), self.direction * ppar], dim=1)

    def valid(self, z: torch.Tensor, beam_energy: TensorLike) -> torch.Tensor:
        minus, plus = self._light_cone(z, beam_energy)
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

    def _shift(self, beam_energy: TensorLike, like: torch.Tensor) -> torch.Tensor:
        return torch.log(2 * _as_tensor(beam_energy, like))

    def forward(self, x: torch.Tensor, beam_energy: TensorLike) -> torch.Tensor:
        z = super().forward(x, beam_energy)
        shift = self._shift(beam_energy, x)
        return torch.stack([z[:, 0] + shift, z[:, 1] - shift, z[:, 2]], dim=1)

    def _light_cone(self, z: torch.Tensor, beam_energy: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
        # straight from (ln Q², ln y): E' - p_par = Q²/2E_b, E' + p_par = 2E_b (1 - y); phi is not shifted,
        # so NuMap's inverse and valid apply without building the unshifted features
        two_eb = 2 * _as_tensor(beam_energy, z)
        return torch.exp(z[:, 0]) / two_eb, -two_eb * torch.expm1(z[:, 1])


class Columns(FeatureMap):
    """Any flat event fields, learned as they are (toys, DIS labels, detector features).

    Example:
        >>> import numpy as np
        >>> b = EventBatch.from_columns({"x": np.array([0.1]), "Q2": np.array([4.0])})
        >>> Columns(["Q2", "x"]).encode(b).tolist()
        [[4.0, 0.1]]
    """

    name = "columns"
    needs_beam_energy: ClassVar[bool] = False

    def __init__(self, features: Sequence[str]) -> None:
        if not features:
            raise ConfigError("the columns feature map needs at least one feature", path="features", value=[])
        self.fields = self.inputs = self.names = tuple(features)

    def forward(self, x: torch.Tensor, beam_energy: TensorLike = 0.0) -> torch.Tensor:
        return x.clone()

    def inverse(self, z: torch.Tensor, beam_energy: TensorLike = 0.0) -> torch.Tensor:
        return z.clone()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "features": list(self.names)}


FEATURE_MAPS: dict[str, type[FeatureMap]] = {
    TransformedLepton.name: TransformedLepton,
    NuMap.name: NuMap,
    ScaledNuMap.name: ScaledNuMap,
    CartesianLepton.name: CartesianLepton,
    Columns.name: Columns,
}


def make_feature_map(
    config: str | Mapping[str, Any],
    beams: Beams | None = None,
    features: Sequence[str] | None = None,
    path: str = "feature_map",
) -> FeatureMap:
    """Build a feature map from its name or :meth:`FeatureMap.config` dict.

    Lepton maps take the beam direction and lepton mass from ``beams`` unless
    the config gives them; ``columns`` takes ``features``.

    Example:
        >>> make_feature_map("lepton_t", Beams.preset("hera")).direction
        -1
        >>> make_feature_map({"name": "columns", "features": ["x", "Q2"]}).names
        ('x', 'Q2')
    """
    cfg = {"name": config} if isinstance(config, str) else dict(config)
    name = cfg.pop("name", None)
    if name not in FEATURE_MAPS:
        from mlegpipe.schema import suggest

        raise ConfigError("unknown feature map; known: " + ", ".join(FEATURE_MAPS), path=path, value=name,
                          hint=suggest(str(name), FEATURE_MAPS))
    cls = FEATURE_MAPS[name]
    if issubclass(cls, _Lepton):
        if beams is not None:
            cfg.setdefault("direction", beams.lepton_direction)
            cfg.setdefault("lepton_mass", ELECTRON_MASS if abs(beams.lepton_pdg) == 11 else 0.0)
        return cls(**cfg)
    if cls is Columns:
        return Columns(cfg.get("features", features or ()))
    return cls(**cfg)


class Standardize:
    """Per-feature affine scaler ``(x - mean) / std`` with its state as tensors.

    Arguments:
        eps: floor on the standard deviation (constant features stay finite).

    Example:
        >>> import torch
        >>> s = Standardize().fit(torch.tensor([[1.0], [3.0]]))
        >>> s.transform(torch.tensor([[3.0]])).tolist(), s.inverse(torch.tensor([[0.0]])).tolist()
        ([[1.0]], [[2.0]])
    """

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = eps
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def fit(self, x: torch.Tensor | np.ndarray, weights: torch.Tensor | np.ndarray | None = None) -> Standardize:
        """Learn mean and standard deviation of each column (optionally weighted); returns self."""
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 2 or len(x) == 0:
            raise DataError(f"cannot standardize an array of shape {tuple(x.shape)}")
        w = torch.ones(len(x), dtype=x.dtype) if weights is None else torch.as_tensor(weights, dtype=x.dtype)
        w = w / w.sum()
        self.mean = (w[:, None] * x).sum(0)
        var = (w[:, None] * (x - self.mean) ** 2).sum(0)
        self.std = torch.sqrt(var).clamp_min(self.eps)
        return self

    @property
    def fitted(self) -> bool:
        """True once :meth:`fit` or :meth:`load_state_dict` has run."""
        return self.mean is not None

    def _check(self) -> None:
        if self.mean is None:
            raise DataError("the scaler is used before it was fitted")

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Standardize ``x`` (differentiable; keeps the dtype of ``x``)."""
        self._check()
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`transform`."""
        self._check()
        return z * self.std.to(z.dtype) + self.mean.to(z.dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"mean": ..., "std": ...}`` (float64 tensors)."""
        self._check()
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> Standardize:
        """Restore from :meth:`state_dict`; returns self."""
        self.mean = torch.as_tensor(state["mean"], dtype=torch.float64).clone()
        self.std = torch.as_tensor(state["std"], dtype=torch.float64).clone()
        return self


class AsinhScale:
    """Elementwise ``asinh((x - center) / scale)`` on chosen columns: log-like tails for models.

    Momentum components of DIS leptons have power-law tails (``p_T`` up to the
    kinematic limit, the bulk at a few GeV); after this map the tails are
    logarithmic, which flows and networks learn far more easily. The map is
    exactly invertible; ``center`` is the median and ``scale`` the median
    absolute deviation of each chosen column.

    Arguments:
        columns: boolean mask (or indices) of the columns to transform; the rest pass unchanged.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0, 1.0], [2.0, 5.0], [100.0, 9.0]], dtype=torch.float64)
        >>> a = AsinhScale([True, False]).fit(x)
        >>> bool(torch.allclose(a.inverse(a.transform(x)), x)), a.transform(x)[:, 1].tolist()
        (True, [1.0, 5.0, 9.0])
    """

    def __init__(self, columns: Sequence[bool] | Sequence[int] | None = None) -> None:
        self.columns = None if columns is None else list(columns)
        self.center: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None

    def fit(self, x: torch.Tensor | np.ndarray) -> AsinhScale:
        """Learn center and scale of the chosen columns; returns self."""
        x = torch.as_tensor(x, dtype=torch.float64)
        k = x.shape[1]
        mask = torch.zeros(k, dtype=torch.bool)
        if self.columns is None:
            mask[:] = True
        elif all(isinstance(c, bool) for c in self.columns):
            mask = torch.tensor(self.columns, dtype=torch.bool)
        else:
            mask[list(self.columns)] = True
        center = x.median(dim=0).values
        scale = (x - center).abs().median(dim=0).values.clamp_min(1e-12)
        self.mask = mask
        self.center = torch.where(mask, center, torch.zeros_like(center))
        self.scale = torch.where(mask, scale, torch.ones_like(scale))
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the map (differentiable; keeps the dtype of ``x``)."""
        if self.mask is None:
            raise DataError("the asinh scaler is used before it was fitted")
        u = (x - self.center.to(x.dtype)) / self.scale.to(x.dtype)
        return torch.where(self.mask, torch.asinh(u), u)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`transform`."""
        if self.mask is None:
            raise DataError("the asinh scaler is used before it was fitted")
        u = torch.where(self.mask, torch.sinh(z), z)
        return u * self.scale.to(z.dtype) + self.center.to(z.dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"center", "scale", "mask"}`` tensors."""
        if self.mask is None:
            raise DataError("the asinh scaler has no state before it was fitted")
        return {"center": self.center.clone(), "scale": self.scale.clone(), "mask": self.mask.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> AsinhScale:
        """Restore from :meth:`state_dict`; returns self."""
        self.center = torch.as_tensor(state["center"], dtype=torch.float64).clone()
        self.scale = torch.as_tensor(state["scale"], dtype=torch.float64).clone()
        self.mask = torch.as_tensor(state["mask"], dtype=torch.bool).clone()
        return self
