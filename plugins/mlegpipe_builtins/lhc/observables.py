"""Observables of top-pair events: resonance masses of the quarks, tops, the tt̄ system, jets and MET.

Quark observables are expressions of the collection ``quarks`` (decay-chain order
:data:`~mlegpipe_builtins.lhc.QUARK_ORDER`), so they also run on torch tensors
(:meth:`~mlegpipe.observables.Observable.tensor`) and serve as differentiable MMD
targets: ``m_W1 = mass(quarks[1] + quarks[2])``, ``m_t1 = mass(quarks[0] + quarks[1] + quarks[2])``,
likewise ``m_W2``, ``m_t2``; ``pt_t1``, ``pt_t2``, ``y_t1``, ``y_t2``; ``m_tt``,
``y_tt``, ``pt_tt`` (``|ΣpT|`` of the six quarks). ``parton1_phi`` and
``parton2_phi`` are the azimuths of the leading and second quark by p_T (the
φ_j1–φ_j2 hole map of the How-to-GAN referees).

The W and top masses carry a :class:`~mlegpipe.observables.Peak` (the report
adds ±5 GeV window fractions and fitted poles and widths).

Jet observables: ``m_jjj`` and ``m_jj``, the hadronic-top candidate among the six
leading jets, the triplet and the pair inside it minimising
((m_jjj − m_t)/σ_t)² + ((m_jj − m_W)/σ_W)² (σ_t = 20, σ_W = 10 GeV: about the
jet-level resolutions); NaN below three jets. ``met``: the missing transverse momentum.

All are on request (``compare = false``): a pipeline names what its report compares
in ``[observables] compare``, so a user's own jets still get the generic comparisons.

Example:
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe_builtins.lhc.chain import toy_ttbar
    >>> batch = EventBatch.from_columns({"quarks": toy_ttbar(5, seed=3)})
    >>> bool((OBSERVABLES["m_W1"](batch) > 0).all()), float(abs(OBSERVABLES["pt_tt"](batch)).max()) < 1e-6
    (True, True)
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from mlegpipe.events import EventBatch
from mlegpipe.observables import Observable, Pair, Peak, compile_observable
from mlegpipe_builtins.lhc import JETS, MET, QUARKS, TOP_MASS, TOP_WIDTH, W_MASS, W_WIDTH

__all__ = ["JET_SLOTS", "OBSERVABLES", "PAIRS", "TOP_PEAK", "W_PEAK", "best_top_candidate"]

#: The resonance peaks of the quark observables: windows of ±5 GeV around the poles.
W_PEAK = Peak(W_MASS, W_WIDTH, 5.0)
TOP_PEAK = Peak(TOP_MASS, TOP_WIDTH, 5.0)

#: Leading jets searched for the hadronic-top candidate.
JET_SLOTS = 6
_SIGMA_TOP = 20.0
_SIGMA_W = 10.0


def _expression(name: str, expr: str, label: str, unit: str = "GeV", log: bool = False,
                peak: Peak | None = None) -> Observable:
    obs = compile_observable(name, expr, where=f"observable {name}", label=label, unit=unit, log=log)
    return Observable(obs.name, obs.compute, obs.requires, obs.label, obs.unit, obs.log, obs.periodic, compare=False,
                      doc=expr, peak=peak)


def _quark_observables() -> list[Observable]:
    q = QUARKS
    out = []
    for k, (b, q1, q2) in enumerate(((0, 1, 2), (3, 4, 5)), start=1):
        top = f"{q}[{b}] + {q}[{q1}] + {q}[{q2}]"
        bar = "" if k == 1 else r"\bar"
        out += [
            _expression(f"m_W{k}", f"mass({q}[{q1}] + {q}[{q2}])", rf"$m_{{W{k}}}$", peak=W_PEAK),
            _expression(f"m_t{k}", f"mass({top})", rf"$m_{{{bar}{{t}}}}$", peak=TOP_PEAK),
            _expression(f"pt_t{k}", f"pt({top})", rf"$p_T({bar}{{t}})$", log=True),
            _expression(f"y_t{k}", f"rapidity({top})", rf"$y({bar}{{t}})$", unit=""),
        ]
    out += [
        _expression("m_tt", f"mass(sum({q}))", r"$m_{t\bar{t}}$", log=True),
        _expression("y_tt", f"rapidity(sum({q}))", r"$y_{t\bar{t}}$", unit=""),
        _expression("pt_tt", f"pt(sum({q}))", r"$|\Sigma \vec p_T|$"),
    ]
    for rank in (1, 2):
        out.append(Observable(f"parton{rank}_phi", lambda b, r=rank: _ranked_phi(b, r), (q,),
                              rf"$\phi_{{j{rank}}}$", "rad", periodic=True, compare=False,
                              doc=f"azimuth of the quark with the {'largest' if rank == 1 else 'second'} p_T"))
    return out


def _ranked_phi(batch: EventBatch, rank: int) -> np.ndarray:
    parts = batch.particles(QUARKS)
    pt = np.where(np.isfinite(parts["px"]), np.hypot(parts["px"], parts["py"]), -np.inf)
    order = np.argsort(-pt, axis=1, kind="stable")[:, rank - 1:rank]
    px = np.take_along_axis(parts["px"], order, axis=1)[:, 0]
    py = np.take_along_axis(parts["py"], order, axis=1)[:, 0]
    return np.arctan2(py, px)


def best_top_candidate(batch: EventBatch, collection: str = JETS) -> tuple[np.ndarray, np.ndarray]:
    """``(m_jjj, m_jj)`` of the hadronic-top candidate among the leading jets (NaN below three jets).

    Example:
        >>> from mlegpipe.events import particle_lists
        >>> jets = particle_lists({"pt": [[90.0, 60.0, 40.0], [50.0, 30.0]], "eta": [[0.0, 0.5, -0.5], [0.0, 1.0]],
        ...                        "phi": [[0.0, 2.5, -2.0], [0.0, 3.0]], "mass": [[5.0, 5.0, 5.0], [5.0, 5.0]]})
        >>> m3, m2 = best_top_candidate(EventBatch.from_columns({"jets": jets}))
        >>> bool(m3[0] > m2[0] > 0), bool(np.isnan(m3[1]))
        (True, True)
    """
    parts = batch.particles(collection, JET_SLOTS)
    p = np.stack([parts[c] for c in ("px", "py", "pz", "E")], axis=-1)  # (n, slots, 4), NaN where absent

    def mass(v: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.maximum(v[..., 3] ** 2 - (v[..., :3] ** 2).sum(axis=-1), 0.0))

    n = len(batch)
    best = np.full(n, np.inf)
    m3 = np.full(n, np.nan)
    m2 = np.full(n, np.nan)
    for triplet in itertools.combinations(range(JET_SLOTS), 3):
        mt = mass(p[:, list(triplet)].sum(axis=1))
        for pair in itertools.combinations(triplet, 2):
            mw = mass(p[:, list(pair)].sum(axis=1))
            chi2 = ((mt - TOP_MASS) / _SIGMA_TOP) ** 2 + ((mw - W_MASS) / _SIGMA_W) ** 2
            better = np.isfinite(chi2) & (chi2 < best)
            best = np.where(better, chi2, best)
            m3 = np.where(better, mt, m3)
            m2 = np.where(better, mw, m2)
    return m3, m2


def _jet_observables() -> list[Observable]:
    return [
        Observable("m_jjj", lambda b: best_top_candidate(b)[0], (JETS,), r"$m_{jjj}$", "GeV", compare=False,
                   doc="three-jet mass of the hadronic-top candidate"),
        Observable("m_jj", lambda b: best_top_candidate(b)[1], (JETS,), r"$m_{jj}$", "GeV", compare=False,
                   doc="two-jet W mass inside the hadronic-top candidate"),
        Observable(MET, lambda b: np.asarray(b.column(MET), dtype=np.float64), (MET,), r"$E_T^{\mathrm{miss}}$",
                   "GeV", log=True, compare=False, doc="missing transverse momentum"),
    ]


#: The LHC observables by name.
OBSERVABLES: dict[str, Observable] = {o.name: o for o in (*_quark_observables(), *_jet_observables())}

_PHI_BINS = ((-math.pi, math.pi, 100), (-math.pi, math.pi, 100))
#: Fine azimuth maps (holes show up as empty bins): quarks and jets ranked by p_T.
PAIRS: tuple[Pair, ...] = (
    Pair("parton1_phi", "parton2_phi", bins=_PHI_BINS),
    Pair("jets1_phi", "jets2_phi", bins=_PHI_BINS),
)
