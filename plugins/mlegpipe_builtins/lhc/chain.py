"""Decay-chain coordinates of tt̄ → b q q̄' b̄ q q̄': resonance masses as features, ΣpT = 0 built in.

The ``ttbar_chain`` feature map learns the six quarks of the collection
``quarks`` (order :data:`~mlegpipe_builtins.lhc.QUARK_ORDER`) in the
coordinates of their decay chain, so that the narrow W and top peaks are
one-dimensional marginals a generator learns directly:

* the tt̄ system: top 1's ``(m_t, p_T, y, φ)`` and top 2's ``(m_t, y)``; top 2's
  transverse momentum is minus top 1's, so the six quarks balance in p_T exactly
  (as the hard process does);
* per top k: ``m_W``, the W direction in the top rest frame ``(cos θ, φ)`` and the
  quark's direction in the W rest frame ``(cos θ, φ)``. A rest frame is reached
  from the laboratory by a pure boost; its angles are measured about the parent's
  flight direction ẑ′, with ŷ′ ∝ ẑ_beam × ẑ′ (so a rotation of the event about the
  beam changes no angle but φ_t1, which is then exactly uniform);
* the b and the antiquark are the recoils; quark masses are one constant per slot
  (the median of the training masses: 4.8 GeV for the b quarks).

To give a generator smooth, unbounded features, masses pass through the
Breit–Wigner CDF truncated at the decay threshold (top: m_W + m_b of that event)
and the inverse normal CDF, ``cos θ`` and ``φ`` through the inverse normal CDF of
their uniform CDF, and p_T through a log; every step has an exact inverse, so
decoded events satisfy m(b q q̄′) = m_t, m(q q̄′) = m_W and ΣpT = 0 to rounding
for any feature values.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> events = EventBatch.from_columns({"quarks": toy_ttbar(200, seed=1)})
    >>> m = TtbarChain().fit(events)
    >>> back = m.decode(m.encode(events))
    >>> bool(np.allclose(back["quarks2_px"], events.particles("quarks")["px"][:, 1], atol=1e-8))
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlegpipe.beams import Beams
from mlegpipe.events import FOUR_MOMENTUM, EventBatch, invariant_mass, mass_squared, particle_lists
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.features.maps import FeatureMap, TensorLike
from mlegpipe_builtins.lhc import QUARKS, TOP_MASS, TOP_WIDTH, W_MASS, W_WIDTH

__all__ = ["CHAIN_FEATURES", "TtbarChain", "toy_ttbar"]

#: The map's features, in order (16: ΣpT = 0 removes top 2's p_T and φ).
CHAIN_FEATURES: tuple[str, ...] = (
    "t1_bwmass", "t1_logpt", "t1_y", "t1_phi", "t2_bwmass", "t2_y",
    "W1_bwmass", "W1_costheta", "W1_phi", "q1_costheta", "q1_phi",
    "W2_bwmass", "W2_costheta", "W2_phi", "q2_costheta", "q2_phi",
)
_SLOTS = 6
_B_MASS = 4.8  # Pythia's b mass (toys)
_BALANCE_TOLERANCE = 1e-3  # GeV: largest |ΣpT| of training events the map accepts
_EPS = 1e-15  # CDF values are kept inside (EPS, 1 - EPS)


# -- four-vector helpers (torch, (n, 4) as px, py, pz, E) ----------------------------------------------

def _mass(p: torch.Tensor) -> torch.Tensor:
    m2 = p[:, 3] ** 2 - (p[:, :3] ** 2).sum(dim=1)
    return torch.sqrt(m2.clamp_min(0.0))


def _axes(direction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orthonormal axes (x′, y′, z′) with z′ along ``direction`` and y′ ∝ ẑ_beam × z′."""
    z = direction / direction.norm(dim=1, keepdim=True)
    y = torch.stack([-z[:, 1], z[:, 0], torch.zeros_like(z[:, 0])], dim=1)
    y = y / y.norm(dim=1, keepdim=True)
    x = torch.cross(y, z, dim=1)
    return x, y, z


def _to_rest(p: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """``p`` in the rest frame of ``parent`` (pure boost)."""
    m = _mass(parent)[:, None]
    pvec = parent[:, :3]
    pabs = pvec.norm(dim=1, keepdim=True)
    n = pvec / pabs
    gamma = parent[:, 3:4] / m
    along = (p[:, :3] * n).sum(dim=1, keepdim=True)
    vec = p[:, :3] + ((gamma - 1.0) * along - p[:, 3:4] * pabs / m) * n
    energy = (parent[:, 3:4] * p[:, 3:4] - (pvec * p[:, :3]).sum(dim=1, keepdim=True)) / m
    return torch.cat([vec, energy], dim=1)


def _angles(p: torch.Tensor, direction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, z = _axes(direction)
    u = p[:, :3] / p[:, :3].norm(dim=1, keepdim=True)
    return (u * z).sum(dim=1), torch.atan2((u * y).sum(dim=1), (u * x).sum(dim=1))


def _two_body(m: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """Momentum of either daughter of a two-body decay in the parent rest frame (NaN below threshold: the
    square root of a negative λ)."""
    s, d = m1 + m2, m1 - m2
    lam = (m * m - s * s).mul_(m * m - d * d)
    return lam.sqrt_().div_(2.0 * m)


def _decay(parent: tuple[torch.Tensor, ...], m: torch.Tensor, cos: torch.Tensor, phi: torch.Tensor,
           m1: torch.Tensor, m2: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Daughters (lab; ``(px, py, pz, E)`` tuples) of ``parent`` of mass ``m``; daughter 1 along (cos θ, φ) in the
    parent rest frame, about the axes of :func:`_axes`.

    With n̂ = (r cos ψ, r sin ψ, c) the parent's direction (ψ its azimuth, r = √(1 − c²)), γ = E/m and the
    rest-frame momentum k, the axes are x̂′ = (c cos ψ, c sin ψ, −r) and ŷ′ = (−sin ψ, cos ψ, 0), and a pure
    boost gives p₁ = k sin θ (cos φ x̂′ + sin φ ŷ′) + (γ k cos θ + e₁ |p|/m) n̂ and E₁ = (E e₁ + |p| k cos θ)/m,
    and the same with k → −k for daughter 2 (the inverse of :func:`_to_rest` and :func:`_angles`, written
    out with as few array operations as it takes).
    """
    px, py, pz, energy = parent
    k = _two_body(m, m1, m2)
    k2 = k * k
    e1, e2 = (k2 + m1 * m1).sqrt_(), k2.add_(m2 * m2).sqrt_()
    rho = torch.hypot(px, py)
    pabs = torch.hypot(rho, pz)
    cpsi, spsi = px / rho, py / rho
    c, r = pz / pabs, rho.div_(pabs)
    ks = (1.0 - cos * cos).clamp_min_(0.0).sqrt_().mul_(k)  # k sin θ
    u, v = torch.cos(phi).mul_(ks), torch.sin(phi).mul_(ks)  # along x̂′ and ŷ′
    uc = u * c
    tx = uc * cpsi - v * spsi
    ty = uc.mul_(spsi).add_(v.mul_(cpsi))
    tz = u.mul_(r).neg_()
    inv_m = m.reciprocal()
    kc = k.mul_(cos)  # k cos θ
    gk = energy * inv_m * kc
    pm = pabs * inv_m
    along1, along2 = gk + e1 * pm, (e2 * pm).sub_(gk)
    a, b = cpsi.mul_(r), spsi.mul_(r)
    pk = kc.mul_(pabs)
    d1 = (tx + along1 * a, ty + along1 * b, tz + along1 * c, (energy * e1 + pk).mul_(inv_m))
    d2 = ((along2 * a).sub_(tx), (along2 * b).sub_(ty), (along2 * c).sub_(tz), (energy * e2).sub_(pk).mul_(inv_m))
    return d1, d2


# -- unbounding transforms ------------------------------------------------------------------------------

def _bw_cdf(m: torch.Tensor, pole: float, width: float) -> torch.Tensor:
    return 0.5 + torch.atan((m - pole) / (0.5 * width)) / math.pi


def _bw_quantile(u: torch.Tensor, pole: float, width: float) -> torch.Tensor:
    return pole + 0.5 * width * torch.tan(math.pi * (u - 0.5))


def _mass_feature(m: torch.Tensor, low: torch.Tensor, pole: float, width: float) -> torch.Tensor:
    """Truncated Breit–Wigner CDF above ``low``, then the normal quantile."""
    f0 = _bw_cdf(low, pole, width)
    u = (_bw_cdf(m, pole, width) - f0) / (1.0 - f0)
    return torch.special.ndtri(u.clamp(_EPS, 1.0 - _EPS))


def _mass_value(z: torch.Tensor, low: torch.Tensor, pole: float, width: float) -> torch.Tensor:
    f0 = _bw_cdf(low, pole, width)
    u = torch.special.ndtr(z).clamp(_EPS, 1.0 - _EPS)
    return _bw_quantile(f0 + u * (1.0 - f0), pole, width)


def _cos_feature(c: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtri((0.5 * (c + 1.0)).clamp(_EPS, 1.0 - _EPS))


def _cos_value(z: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.special.ndtr(z) - 1.0


def _phi_feature(phi: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtri(((phi + math.pi) / (2 * math.pi)).clamp(_EPS, 1.0 - _EPS))


def _phi_value(z: torch.Tensor) -> torch.Tensor:
    return 2 * math.pi * torch.special.ndtr(z) - math.pi


class TtbarChain(FeatureMap):
    """The six quarks of tt̄ in decay-chain coordinates (see the module docstring).

    Arguments:
        collection: the quark collection (six particles per event in decay-chain order).
        masses: quark masses per slot (GeV); fitted as the training medians when not given.
        top: pole mass and width of the top's Breit–Wigner transform (GeV).
        w: pole mass and width of the W's.

    Example (TOML):
        [generator]
        plugin = "flow"
        features = ["quarks"]
        feature_map = "ttbar_chain"
    """

    name = "ttbar_chain"
    names = CHAIN_FEATURES
    uniform_features = ("t1_phi",)

    def __init__(
        self,
        collection: str = QUARKS,
        masses: Sequence[float] | None = None,
        top: Sequence[float] = (TOP_MASS, TOP_WIDTH),
        w: Sequence[float] = (W_MASS, W_WIDTH),
    ) -> None:
        self.collection = collection
        self.masses = None if masses is None else [float(m) for m in masses]
        if self.masses is not None and (len(self.masses) != _SLOTS or min(self.masses) < 0):
            raise ConfigError(f"masses needs {_SLOTS} non-negative quark masses", path="feature_map.masses",
                              value=masses)
        self.top = (float(top[0]), float(top[1]))
        self.w = (float(w[0]), float(w[1]))
        self.fields = self.inputs = tuple(f"{collection}{i}_{c}" for i in range(1, _SLOTS + 1) for c in FOUR_MOMENTUM)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], beams: Beams | None = None,
                    features: Sequence[str] | None = None) -> TtbarChain:
        cfg = dict(config)
        if "collection" not in cfg and features:
            if len(features) != 1:
                raise ConfigError("the ttbar_chain map learns one collection of six quarks; features names "
                                  + ", ".join(features), path="features", value=list(features))
            cfg["collection"] = features[0]
        return cls(**cfg)

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "collection": self.collection, "top": list(self.top),
                               "w": list(self.w)}
        if self.masses is not None:
            out["masses"] = list(self.masses)
        return out

    def fit(self, events: EventBatch) -> TtbarChain:
        """Quark masses per slot from the training events; checks six quarks per event and ΣpT = 0."""
        where = "feature_map"
        if not events.has_collection(self.collection):
            raise DataError("the ttbar_chain map needs a collection of six quarks; collections: "
                            + (", ".join(events.collections) or "none"), path=where, value=self.collection)
        mult = events.multiplicity(self.collection)
        if len(events) and (mult != _SLOTS).any():
            raise DataError(f"the ttbar_chain map needs exactly {_SLOTS} quarks per event; "
                            f"{int((mult != _SLOTS).sum())} events have {int(mult[mult != _SLOTS][0])}",
                            path=where, value=self.collection)
        parts = events.particles(self.collection, _SLOTS)
        imbalance = np.hypot(parts["px"].sum(axis=1), parts["py"].sum(axis=1))
        if len(events) and float(imbalance.max()) > _BALANCE_TOLERANCE:
            raise DataError(f"the ttbar_chain map builds ΣpT = 0 in, but {int((imbalance > _BALANCE_TOLERANCE).sum())}"
                            f" training events are unbalanced (|ΣpT| up to {float(imbalance.max()):.3g} GeV, e.g. "
                            "after initial-state radiation); learn them with feature_map = \"collection\"",
                            path=where, value=self.collection)
        if self.masses is None:
            self.masses = np.median(invariant_mass(parts), axis=0).tolist()
        return self

    def input_matrix(self, events: EventBatch) -> np.ndarray:
        parts = events.particles(self.collection, _SLOTS)
        return np.stack([parts[c][:, i] for i in range(_SLOTS) for c in FOUR_MOMENTUM], axis=1)

    def _quark_masses(self, like: torch.Tensor) -> list[torch.Tensor]:
        if self.masses is None:
            raise DataError("the ttbar_chain map is used before it was fitted to training events", path="feature_map")
        return [torch.full((like.shape[0],), m, dtype=like.dtype, device=like.device) for m in self.masses]

    def forward(self, x: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        q = [x[:, 4 * i:4 * i + 4] for i in range(_SLOTS)]
        m = self._quark_masses(x)
        out: list[torch.Tensor] = []
        decays: list[torch.Tensor] = []
        for k in range(2):
            b, q1, q2 = q[3 * k], q[3 * k + 1], q[3 * k + 2]
            w = q1 + q2
            t = b + w
            mt, mw = _mass(t), _mass(w)
            pt = torch.hypot(t[:, 0], t[:, 1])
            y = 0.5 * torch.log((t[:, 3] + t[:, 2]) / (t[:, 3] - t[:, 2]))
            out.append(_mass_feature(mt, mw + m[3 * k], *self.top))
            if k == 0:
                out += [torch.log(pt), y, torch.atan2(t[:, 1], t[:, 0])]
            else:
                out.append(y)
            cw, pw = _angles(_to_rest(w, t), t[:, :3])
            cq, pq = _angles(_to_rest(q1, w), w[:, :3])
            decays += [_mass_feature(mw, m[3 * k + 1] + m[3 * k + 2], *self.w), _cos_feature(cw), _phi_feature(pw),
                       _cos_feature(cq), _phi_feature(pq)]
        return torch.stack(out + decays, dim=1)

    def inverse(self, z: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        m = self._quark_masses(z)
        f = z.t().contiguous()  # one row per feature: the elementwise work below reads contiguous memory
        pt, phi = torch.exp(f[1]), f[3]
        px, py = pt * torch.cos(phi), pt * torch.sin(phi)
        quarks: list[torch.Tensor] = []
        for k in range(2):
            d = f[6 + 5 * k:11 + 5 * k]
            mw = _mass_value(d[0], m[3 * k + 1] + m[3 * k + 2], *self.w)
            mt = _mass_value(f[0 if k == 0 else 4], mw + m[3 * k], *self.top)
            y = f[2 if k == 0 else 5]
            sign = 1.0 if k == 0 else -1.0
            mtr = torch.sqrt(mt**2 + pt**2)
            t = (sign * px, sign * py, mtr * torch.sinh(y), mtr * torch.cosh(y))
            w, b = _decay(t, mt, _cos_value(d[1]), _phi_value(d[2]), mw, m[3 * k])
            q1, q2 = _decay(w, mw, _cos_value(d[3]), _phi_value(d[4]), m[3 * k + 1], m[3 * k + 2])
            quarks += [*b, *q1, *q2]
        return torch.stack(quarks).t()  # (n, 24): a view of one contiguous row per column

    def inverse_and_valid(self, z: torch.Tensor, context: TensorLike = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The quarks of ``z`` and where they are finite, the decay chain decoded once.

        Example:
            >>> m = TtbarChain().fit(EventBatch.from_columns({"quarks": toy_ttbar(20, seed=2)}))
            >>> quarks, ok = m.inverse_and_valid(torch.zeros(3, len(m.names), dtype=torch.float64))
            >>> tuple(quarks.shape), ok.tolist()
            ((3, 24), [True, True, True])
        """
        out = self.inverse(z, context)
        return out, torch.isfinite(out).all(dim=1)

    def complete(self, columns: dict[str, np.ndarray], context: np.ndarray, beams: Beams | None,
                 ok: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        """Events whose six quarks have more mass than the collision's √s are unphysical (with beams)."""
        if beams is not None:
            total = {c: sum(np.asarray(columns[f"{self.collection}{i}_{c}"]) for i in range(1, _SLOTS + 1))
                     for c in FOUR_MOMENTUM}
            ok = ok & (mass_squared(total) < beams.sqrt_s**2)
        return columns, ok

    def assemble(self, columns: Mapping[str, np.ndarray], context: np.ndarray | None = None) -> dict[str, Any]:
        """The collection of six quarks per event from the decoded per-slot columns."""
        comps = {c: np.stack([np.asarray(columns[f"{self.collection}{i}_{c}"]) for i in range(1, _SLOTS + 1)], axis=1)
                 for c in FOUR_MOMENTUM}
        out: dict[str, Any] = {self.collection: particle_lists(comps)}
        out.update({k: v for k, v in columns.items() if k not in self.fields})
        return out


def toy_ttbar(n: int, seed: int = 0) -> Any:
    """A toy collection of tt̄ → 6 quarks: Breit–Wigner masses, isotropic decays, ΣpT = 0 (for tests and examples).

    Example:
        >>> len(toy_ttbar(3))
        3
    """
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    z = torch.randn(n, len(CHAIN_FEATURES), generator=g, dtype=torch.float64)
    z[:, 1] = torch.log(torch.as_tensor(rng.gamma(2.0, 50.0, n)))  # top p_T
    z[:, 3] = torch.as_tensor(rng.uniform(-math.pi, math.pi, n))
    toy = TtbarChain(masses=(_B_MASS, 0.33, 0.33, _B_MASS, 0.33, 0.33))
    x = toy.inverse(z).numpy()
    comps = {c: x[:, [4 * i + j for i in range(_SLOTS)]] for j, c in enumerate(FOUR_MOMENTUM)}
    return particle_lists({c: v.tolist() for c, v in comps.items()})
