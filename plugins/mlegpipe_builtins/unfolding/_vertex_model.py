"""The vertex-level side of GAN unfolding: how generator outputs become surrogate inputs and events.

The unfolding generator ``G_v(noise)`` produces vertex-level events in one of
two parametrizations:

- ``nu`` (thesis ch. 7): two outputs, the standardized ν₁ = ln(k'₀ - k'∥) and
  ν₂ = ln(2E_e - k'₀ - k'∥) of a massless scattered lepton, with φ drawn
  uniformly (unpolarized scattering). ν₂ is bounded smoothly below ln(2E_e)
  (y < 1), so every generated lepton is physical. The lepton four-momentum and
  whatever vertex features the surrogate reads (lepton fields, ν₁, ν₂, P, p_T,
  θ, φ) are computed differentiably in torch.
- ``features``: the outputs are the surrogate's standardized vertex features
  themselves (toys, or a surrogate trained on ν₁, ν₂).

Example:
    >>> import torch
    >>> from mlegpipe.beams import Beams
    >>> t = lambda v: torch.tensor([v], dtype=torch.float64)
    >>> e, px, py, pz = lepton_tensors(t(2.0), t(3.0), t(0.0), Beams.preset("hera"))
    >>> from mlegpipe_builtins.dis.kinematics import lepton_from_nu
    >>> ref = lepton_from_nu([2.0], [3.0], [0.0], Beams.preset("hera"))
    >>> bool(abs(float(e[0]) - ref[0][0]) < 1e-9 and abs(float(pz[0]) - ref[3][0]) < 1e-9)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe_builtins.dis import DIS_LABELS, LEPTON_FIELDS
from mlegpipe_builtins.dis.kinematics import dis_from_lepton, lepton_from_nu

__all__ = ["LEPTON_DERIVED", "NU_BOUND", "QUANTILE_Z", "VertexDecoder", "VertexParametrization", "lepton_tensors",
           "nu_quantiles"]

#: Soft bound of the standardized ``nu`` outputs (data standard deviations).
NU_BOUND = 6.0
#: Standard-normal knots of the quantile maps of the ``nu`` outputs.
QUANTILE_Z = np.linspace(-3.5, 3.5, 57)


def _inverse(v: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inverse of the piecewise-linear map (QUANTILE_Z → values), extrapolated linearly."""
    z = np.interp(v, values, QUANTILE_Z)
    lo, hi = v < values[0], v > values[-1]
    z[lo] = QUANTILE_Z[0] + (v[lo] - values[0]) * (QUANTILE_Z[1] - QUANTILE_Z[0]) / (values[1] - values[0])
    z[hi] = QUANTILE_Z[-1] + (v[hi] - values[-1]) * (QUANTILE_Z[-1] - QUANTILE_Z[-2]) / (values[-1] - values[-2])
    return z


def nu_quantiles(nu1: np.ndarray, nu2: np.ndarray) -> np.ndarray:
    """``(2, K)`` quantiles of (ν₁, ν₂) at the normal probabilities of :data:`QUANTILE_Z` (finite values only).

    Example:
        >>> q = nu_quantiles(np.linspace(0, 1, 1001), np.linspace(0, 1, 1001))
        >>> q.shape, round(float(q[0, len(QUANTILE_Z) // 2]), 3)
        ((2, 57), 0.5)
    """
    from scipy.special import ndtr

    probs = ndtr(QUANTILE_Z)
    return np.stack([np.quantile(v[np.isfinite(v)], probs) for v in (nu1, nu2)])


def _interp(z: torch.Tensor, values: torch.Tensor, upper: float | None = None) -> torch.Tensor:
    """Piecewise-linear map of z through (QUANTILE_Z, values), extrapolated linearly (differentiable).

    With ``upper``: the knots are kept below ``upper`` and beyond the last knot the map saturates
    smoothly toward it, ``v_K + h·tanh(s·(z − z_K)/h)`` (h = upper − v_K, s the last segment's slope),
    so that the map is exact up to the last knot and never crosses the bound.
    """
    knots = torch.as_tensor(QUANTILE_Z, dtype=z.dtype)
    if upper is not None:
        values = _below(values, upper)
    i = torch.searchsorted(knots, z.detach().contiguous()).clamp(1, len(knots) - 1)
    w = (z - knots[i - 1]) / (knots[i] - knots[i - 1])
    out = values[i - 1] + w * (values[i] - values[i - 1])
    if upper is None:
        return out
    h = upper - values[-1]
    slope = (values[-1] - values[-2]) / (knots[-1] - knots[-2])
    beyond = values[-1] + h * torch.tanh(slope * torch.clamp(z - knots[-1], min=0.0) / h)
    return torch.where(z > knots[-1], beyond, out)


def _below(values: torch.Tensor, upper: float) -> torch.Tensor:
    """Knot values capped strictly below ``upper`` (1e-4 steps; still strictly increasing)."""
    ceiling = upper - 1e-4 * torch.arange(len(values), 0, -1, dtype=values.dtype)
    return torch.minimum(values, ceiling)

#: Surrogate vertex features the ``nu`` parametrization can feed (computed from the generated lepton).
LEPTON_DERIVED: tuple[str, ...] = (*LEPTON_FIELDS, "nu1", "nu2", "lepton_P", "lepton_pt", "lepton_theta",
                                   "lepton_phi")


def lepton_tensors(
    nu1: torch.Tensor, nu2: torch.Tensor, phi: torch.Tensor, beams: Beams
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Differentiable :func:`mlegpipe_builtins.dis.kinematics.lepton_from_nu`: ``(E, px, py, pz)`` of a massless lepton."""
    a = torch.exp(nu1)
    b = 2.0 * beams.lepton_energy - torch.exp(nu2)
    energy = 0.5 * (a + b)
    p_par = 0.5 * (b - a)
    pt = torch.sqrt(torch.clamp(a * b, min=1e-12))
    return energy, pt * torch.cos(phi), pt * torch.sin(phi), beams.lepton_direction * p_par


class VertexDecoder:
    """Maps generator outputs to standardized surrogate inputs (torch) and to events (NumPy).

    Arguments:
        mode: ``"nu"`` or ``"features"`` (see the module docstring).
        vertex_features: the surrogate's vertex feature names.
        vertex_scaler: the surrogate's scaler (``transform`` / ``inverse`` on tensors).
        beams: the beams of the data (needed by ``nu``).
        nu_mean, nu_std: scale of the ``nu`` outputs (from the data), length 2.
        nu_quantiles: optional ``(2, K)`` values of (ν₁, ν₂) at the standard-normal quantiles
            :data:`QUANTILE_Z` (e.g. of the simulation): the outputs are then mapped through these
            monotone piecewise-linear maps instead of ``mean + std · out``, so that Gaussian outputs
            already follow the reference marginals, tails included (a plain MLP starves long tails).

    Example:
        >>> d = VertexDecoder("features", ["a"], None, None)
        >>> d.n_out
        1
    """

    def __init__(self, mode: str, vertex_features: Sequence[str], vertex_scaler: object, beams: Beams | None,
                 nu_mean: Sequence[float] = (0.0, 0.0), nu_std: Sequence[float] = (1.0, 1.0),
                 nu_quantiles: np.ndarray | None = None) -> None:
        self.mode = mode
        self.vertex_features = list(vertex_features)
        self.scaler = vertex_scaler
        self.beams = beams
        self.nu_mean = torch.as_tensor(np.asarray(nu_mean, dtype=np.float32))
        self.nu_std = torch.as_tensor(np.asarray(nu_std, dtype=np.float32))
        self.nu_quantiles = None if nu_quantiles is None else torch.as_tensor(
            np.maximum.accumulate(np.asarray(nu_quantiles, dtype=np.float64), axis=1) +
            1e-6 * np.arange(len(QUANTILE_Z)))  # strictly increasing
        if mode == "nu":
            if beams is None:
                raise DataError("the 'nu' parametrization needs the beam set-up of the data", path="beams")
            missing = [f for f in self.vertex_features if f not in LEPTON_DERIVED]
            if missing:
                raise DataError("the 'nu' parametrization can only feed lepton features to the surrogate; "
                                "it reads " + ", ".join(missing), path="parametrization", value=mode,
                                hint="use parametrization = 'features'")
            # y ≤ 0.999: keeps p_T > 0 and the float32 bound strictly below ln(2 E_e)
            self.nu2_max = math.log(2.0 * beams.lepton_energy * 0.999)

    @property
    def n_out(self) -> int:
        """Number of generator outputs."""
        return 2 if self.mode == "nu" else len(self.vertex_features)

    @property
    def needs_phi(self) -> bool:
        """True when a uniform azimuth is drawn per event."""
        return self.mode == "nu" or {"nu1", "nu2"} <= set(self.vertex_features)

    def nu(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Physical (ν₁, ν₂) of ``nu`` outputs (soft-bounded at ±NU_BOUND σ), ν₂ smoothly below ln(2E_e · 0.999)."""
        # soft bound at ±NU_BOUND standard deviations of the data: a wandering generator cannot reach
        # energies where the frozen surrogate (trained on the physical range) returns non-finite values
        out = NU_BOUND * torch.tanh(out / NU_BOUND)
        if self.nu_quantiles is not None:
            # exact up to the last knot (the prior's tail up to y ≈ 0.999), saturating at the bound beyond it: the
            # former softplus bound (β = 50) on top of the map moved y = 0.99 to 0.98 and capped y at 0.986
            q = self.nu_quantiles.to(out.dtype)
            return _interp(out[:, 0], q[0]), _interp(out[:, 1], q[1], upper=self.nu2_max)
        nu = out * self.nu_std.to(out.dtype) + self.nu_mean.to(out.dtype)
        # sharp (β = 50): identity up to 0.1 below the bound, where high-y data sit (β = 5 pulled them down by 0.2)
        nu2 = self.nu2_max - torch.nn.functional.softplus(self.nu2_max - nu[:, 1], beta=50.0)
        return nu[:, 0], nu2

    def latent(self, nu1: np.ndarray, nu2: np.ndarray) -> np.ndarray:
        """``(n, 2)`` bounded generator outputs that :meth:`nu` maps to (ν₁, ν₂) (its inverse; ``nu_map`` only).

        The pretraining matches ``G_v`` to the simulation in these coordinates, where the quantile
        maps make every region of (ν₁, ν₂) O(1) wide: in the surrogate's standardized (E, P, θ) the
        low-y tail (ν₂ < −4, y < 3·10⁻⁴, where E′ differs from E_e by MeV) is ~10⁻³ wide, far below
        the MMD kernels, and a generator fitted there underfilled it by a third.

        Example:
            >>> from mlegpipe.beams import Beams
            >>> q = nu_quantiles(np.linspace(-3, 2, 2001), np.linspace(-5, 3.5, 2001))
            >>> d = VertexDecoder("nu", ["lepton_E"], None, Beams.preset("hera"), nu_quantiles=q)
            >>> z = d.latent(np.array([-0.5, 1.9]), np.array([-0.75, 3.4]))
            >>> back = d.nu(torch.as_tensor(np.arctanh(z / NU_BOUND) * NU_BOUND))
            >>> bool(np.allclose([back[0].numpy(), back[1].numpy()], [[-0.5, 1.9], [-0.75, 3.4]], atol=1e-6))
            True
        """
        if self.nu_quantiles is None:
            raise DataError("the latent coordinates need the simulation's quantile maps", path="nu_map")
        q = self.nu_quantiles.numpy()
        top = _below(self.nu_quantiles[1], self.nu2_max).numpy()
        z = np.stack([_inverse(np.asarray(nu1, np.float64), q[0]), _inverse(np.asarray(nu2, np.float64), top)], 1)
        # beyond the last ν₂ knot: invert the saturating tanh of ``_interp``
        h, slope = self.nu2_max - top[-1], (top[-1] - top[-2]) / (QUANTILE_Z[-1] - QUANTILE_Z[-2])
        over = nu2 > top[-1]
        ratio = np.clip((np.asarray(nu2, np.float64)[over] - top[-1]) / h, 0.0, 0.999)
        z[over, 1] = QUANTILE_Z[-1] + h * np.arctanh(ratio) / slope
        return np.clip(z, -NU_BOUND * 0.999, NU_BOUND * 0.999)

    def _lepton_features(self, out: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        nu1, nu2 = self.nu(out)
        e, px, py, pz = lepton_tensors(nu1, nu2, phi, self.beams)  # type: ignore[arg-type]
        pt = torch.sqrt(px * px + py * py + 1e-12)
        values = {"lepton_E": e, "lepton_px": px, "lepton_py": py, "lepton_pz": pz, "nu1": nu1, "nu2": nu2,
                  "lepton_P": torch.sqrt(pt * pt + pz * pz), "lepton_pt": pt, "lepton_theta": torch.atan2(pt, pz),
                  "lepton_phi": torch.remainder(phi, 2 * math.pi)}
        return torch.stack([values[f] for f in self.vertex_features], dim=1)

    def to_surrogate(self, out: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
        """Standardized surrogate vertex features of generator outputs (differentiable)."""
        if self.mode == "features":
            return out
        return self.scaler.transform(self._lepton_features(out, phi))  # type: ignore[attr-defined]

    def to_events(self, out: np.ndarray, phi: np.ndarray) -> EventBatch:
        """Vertex-level events of generator outputs ``(n, n_out)`` with azimuths ``phi``.

        Lepton events carry the four-momentum and the DIS labels (x, Q², y, W², ν).
        """
        out_t = torch.as_tensor(out, dtype=torch.float64)
        if self.mode == "nu":
            nu1, nu2 = (t.numpy() for t in self.nu(out_t))
            columns: dict[str, np.ndarray] = {}
        else:
            physical = self.scaler.inverse(out_t).numpy() if self.scaler is not None else out  # type: ignore[attr-defined]
            columns = {name: physical[:, j] for j, name in enumerate(self.vertex_features)}
            if not ({"nu1", "nu2"} <= set(columns) and self.beams is not None):
                return EventBatch.from_columns(self._with_labels(columns), beams=self.beams)
            nu1, nu2 = columns["nu1"], np.minimum(columns["nu2"], math.log(2.0 * self.beams.lepton_energy) - 1e-9)
            columns["nu2"] = nu2
        e, px, py, pz = lepton_from_nu(nu1, nu2, phi, self.beams)  # type: ignore[arg-type]
        columns.update({"lepton_E": e, "lepton_px": px, "lepton_py": py, "lepton_pz": pz})
        return EventBatch.from_columns(self._with_labels(columns), beams=self.beams)

    def from_events(self, batch: EventBatch) -> EventBatch:
        """Vertex-level events (e.g. simulated ones) in the format :meth:`to_events` gives.

        ``nu``: the lepton four-momentum and its DIS labels; ``features``: the
        surrogate's vertex features (and the lepton with its labels when the
        batch has one). Used to complete the unfolded sample with the
        simulation where the detector sees nothing.

        Example:
            >>> d = VertexDecoder("features", ["a"], None, None)
            >>> d.from_events(EventBatch.from_columns({"a": [1.0], "b": [2.0]})).fields
            ['a']
        """
        lepton = all(batch.has(f) for f in LEPTON_FIELDS)
        if self.mode == "nu":
            if not lepton:
                raise DataError("the simulation has no lepton four-momenta", path="simulation")
            columns = {f: batch.column(f) for f in LEPTON_FIELDS}
        else:
            from mlegpipe_builtins.unfolding._observables import observable

            columns = {n: observable(batch, n, "simulation") for n in self.vertex_features}
            if {"nu1", "nu2"} <= set(columns) and lepton:
                columns.update({f: batch.column(f) for f in LEPTON_FIELDS})
        return EventBatch.from_columns(self._with_labels(columns), beams=self.beams)

    def _with_labels(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.beams is None or not set(LEPTON_FIELDS) <= set(columns):
            return columns
        with np.errstate(invalid="ignore", divide="ignore"):
            dis = dis_from_lepton(*(columns[f] for f in LEPTON_FIELDS), self.beams)
        return {**columns, **{k: dis[k] for k in DIS_LABELS if k not in columns}}


@dataclass(frozen=True)
class VertexParametrization:
    """Which :class:`VertexDecoder` an unfolding uses (``parametrization``, ``nu_map``), built from the data.

    Arguments:
        parametrization: ``nu``, ``features``, or ``auto`` (``nu`` when the data carry a lepton and beams
            and the surrogate reads only lepton features).
        nu_map: ``simulation``: the ν outputs pass through the simulation's quantile maps; ``linear``:
            mean + std of the data.

    Example:
        >>> data = EventBatch.from_columns({"a": [1.0, 2.0]})
        >>> VertexParametrization().decoder(None, data, ["a"]).mode
        'features'
    """

    parametrization: str = "auto"
    nu_map: str = "simulation"

    def decoder(self, vertex_scaler: object, data: EventBatch, names: Sequence[str], sim: EventBatch | None = None,
                section: str = "unfolding") -> VertexDecoder:
        """The decoder of generator outputs into the surrogate's vertex features ``names``.

        Arguments:
            vertex_scaler: the surrogate's vertex scaler.
            data: the measured data (their beams; the ν scale of ``nu_map = "linear"``).
            names: the surrogate's vertex features.
            sim: the simulation's vertex events (the ν quantile maps), or None.
            section: the unfolding's TOML section (error paths).

        Raises:
            DataError: ``nu`` without a lepton and beams in the data, or too few finite ν.
        """
        from mlegpipe_builtins.unfolding._observables import observable

        names = list(names)
        mode = self.parametrization
        lepton_data = data.beams is not None and all(data.has(f) for f in LEPTON_FIELDS)
        if mode == "auto":
            mode = "nu" if lepton_data and all(f in LEPTON_DERIVED for f in names) else "features"
        if mode == "features":
            return VertexDecoder("features", names, vertex_scaler, data.beams)
        if not lepton_data:
            raise DataError("parametrization 'nu' needs lepton four-momenta and beams in the data",
                            path=f"{section}.parametrization", value=mode)
        with np.errstate(invalid="ignore", divide="ignore"):
            nus = [observable(data, n) for n in ("nu1", "nu2")]
        nus = [v[np.isfinite(v)] for v in nus]
        if any(v.size < 2 for v in nus):
            raise DataError("too few data events with finite nu1, nu2 to set the generator's scale", path=section)
        quantiles = None
        if self.nu_map == "simulation" and sim is not None and all(sim.has(f) for f in LEPTON_FIELDS):
            with np.errstate(invalid="ignore", divide="ignore"):
                quantiles = nu_quantiles(*(observable(sim, n) for n in ("nu1", "nu2")))
        return VertexDecoder("nu", names, vertex_scaler, data.beams, [float(v.mean()) for v in nus],
                             [float(v.std()) or 1.0 for v in nus], quantiles)
