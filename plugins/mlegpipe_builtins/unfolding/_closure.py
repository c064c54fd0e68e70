"""What every unfolding compares its result with: binnings, bootstrap bands of the data and the truth, flags.

A :class:`Closure` holds, per observable, the common binning, the data's
detector-level values and bootstrap band, the truth's (closure tests) and the
bins the detector leaves unrecoverable. :meth:`Closure.vertex_figures` turns
an unfolded band into the figures the reports read: a comparison with the
truth and the pull summary (thesis eq. 29) over the recoverable bins.
``gan-unfold``, ``ibu`` and ``omnifold`` all report through it.

Example:
    >>> rng = np.random.default_rng(0)
    >>> data = {"a": rng.normal(size=2000)}
    >>> closure = Closure.build(["a"], data, {"a": rng.normal(size=2000)}, bins=10, rng=rng)
    >>> len(closure.edges["a"]), closure.truth_band["a"].replicas.shape
    (11, (20, 10))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlegpipe.context import StageContext
from mlegpipe.metrics.distances import triangular_discriminator, wasserstein1
from mlegpipe.metrics.pulls import bootstrap_densities
from mlegpipe.unfold import Band, pull_summary, response_matrix, unrecoverable_bins
from mlegpipe_builtins.unfolding._observables import binning

__all__ = ["REFERENCE_REPLICAS", "Closure", "binned_compare", "finite_list", "plot_closure", "pull_fractions"]

#: Bootstrap replicas of the reference bands (data, truth).
REFERENCE_REPLICAS = 20


def _band(values: np.ndarray, edges: np.ndarray, rng: np.random.Generator) -> Band:
    return Band.from_replicas(bootstrap_densities(values[np.isfinite(values)], edges, REFERENCE_REPLICAS, rng))


@dataclass
class Closure:
    """Per observable: edges, the data's values and band, the truth's (or None), unrecoverable-bin flags."""

    observables: list[str]
    edges: dict[str, np.ndarray]
    data: dict[str, np.ndarray]
    data_band: dict[str, Band]
    truth: dict[str, np.ndarray] | None = None
    truth_band: dict[str, Band] | None = None
    flags: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, observables: Sequence[str], data: Mapping[str, np.ndarray],
              truth: Mapping[str, np.ndarray] | None, *, bins: int, rng: np.random.Generator,
              binned_with: Mapping[str, np.ndarray] | None = None) -> Closure:
        """Edges from the data and ``binned_with`` (default: the truth), then the data's bands, then the truth's.

        Arguments:
            observables: names.
            data: detector-level values of the data per observable (NaN: undefined).
            truth: the truth's values (closure tests), or None.
            bins: bins per observable.
            rng: draws the bootstrap resamples (data first, then truth).
            binned_with: other values the binning covers (e.g. the simulation's vertex level).
        """
        names = list(observables)
        extra = truth if binned_with is None else binned_with
        edges = {n: binning(n, [data[n]] + ([extra[n]] if extra else []), bins) for n in names}
        data_band = {n: _band(data[n], edges[n], rng) for n in names}
        truth_band = {n: _band(truth[n], edges[n], rng) for n in names} if truth else None
        return cls(names, edges, dict(data), data_band, None if truth is None else dict(truth), truth_band)

    def flag_unrecoverable(self, vertex: Mapping[str, np.ndarray], detector: Mapping[str, np.ndarray],
                           min_support: float, min_efficiency: float) -> None:
        """Flag the bins the data cannot constrain, from the response of (``vertex``, ``detector``) pairs."""
        for n in self.observables:
            resp = response_matrix(vertex[n], detector[n], self.edges[n], self.edges[n])
            self.flags[n] = unrecoverable_bins(resp, self.data_counts(n), min_support, min_efficiency)

    def data_counts(self, name: str) -> np.ndarray:
        """The data's histogram of ``name`` on its edges."""
        values = self.data[name]
        return np.histogram(values[np.isfinite(values)], self.edges[name])[0].astype(float)

    def vertex_figures(self, name: str, band: Band, comparison: Mapping[str, Any]) -> dict[str, Any]:
        """``comparison`` (with the truth) and the vertex-level pull summary of ``band``, unrecoverable bins left out."""
        assert self.truth_band is not None
        return {**comparison, "vertex_pulls": pull_summary(band.pulls(self.truth_band[name]),
                                                           exclude=self.flags.get(name))}

    def binned(self, name: str) -> dict[str, Any]:
        """The bands every closure plot draws: edges, data, truth (when known), unrecoverable flags."""
        out: dict[str, Any] = {"edges": self.edges[name].tolist(), "data": self.data_band[name].to_dict()}
        if name in self.flags:
            out["unrecoverable"] = self.flags[name].astype(int).tolist()
        if self.truth_band is not None:
            out["truth"] = self.truth_band[name].to_dict()
        return out


def finite_list(values: np.ndarray, digits: int = 4) -> list[float | None]:
    """Rounded values, None where not finite (JSON-able).

    Example:
        >>> finite_list(np.array([0.123456, np.nan]))
        [0.1235, None]
    """
    return [None if not np.isfinite(v) else round(float(v), digits) for v in values]


def binned_compare(counts: np.ndarray, truth: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    """Triangular ×10³ and W1 of a binned result (bin centres weighted by the counts) against a sample.

    Example:
        >>> binned_compare(np.array([1.0, 1.0]), np.array([0.25, 0.75]), np.array([0.0, 0.5, 1.0]))
        {'triangular_e3': 0.0, 'w1': 0.0, 'w1_binned': True}
    """
    t = truth[np.isfinite(truth)]
    truth_counts = np.histogram(t, edges)[0].astype(float)
    if not (counts.sum() > 0 and truth_counts.sum() > 0):
        return {"triangular_e3": None, "w1": None}
    centres = 0.5 * (edges[1:] + edges[:-1])
    w1 = wasserstein1(centres, centres, counts, truth_counts)
    return {"triangular_e3": round(1e3 * triangular_discriminator(counts, truth_counts), 4), "w1": float(f"{w1:.5g}"),
            "w1_binned": True}


#: (method, pull summary) pairs :func:`pull_fractions` pools over the observables.
_PULLS = (("gan", "detector_pulls"), ("gan", "detector_pulls_stat"), ("gan", "vertex_pulls"),
          ("gan", "vertex_pulls_stat"), ("ibu", "vertex_pulls"), ("omnifold", "vertex_pulls"))


def pull_fractions(observables: Mapping[str, Any]) -> dict[str, Any]:
    """Fractions of bins with |pull| < 1 over all observables, per method and level.

    Example:
        >>> entry = {"ibu": {"vertex_pulls": {"bins": 4, "within_1": 0.5}}}
        >>> pull_fractions({"a": entry, "b": entry})
        {'ibu_vertex_pulls_within_1': 0.5}
    """
    out: dict[str, Any] = {}
    for method, key in _PULLS:
        bins = within = 0.0
        for entry in observables.values():
            s = entry.get(method, {}).get(key)
            if s and s["bins"]:
                bins += s["bins"]
                within += s["within_1"] * s["bins"]
        if bins:
            out[f"{method}_{key}_within_1"] = round(within / bins, 4)
    return out


def plot_closure(info: dict[str, Any], ctx: StageContext, unfolded: str = "gan") -> None:
    """Draw the closure plots of ``info["binned"]`` (band ``unfolded``) into the run folder; list them in ``info``.

    Nothing is drawn outside a run or without ``mlegpipe.plots.unfolding``; a failed figure is logged, not raised.
    """
    if ctx.run_dir is None:
        return
    try:
        from mlegpipe.plots.unfolding import plot_unfolding_info
    except ImportError:
        ctx.log.info("mlegpipe.plots.unfolding is not available: no unfolding plots drawn")
        return
    try:
        files = plot_unfolding_info(info, Path(ctx.run_dir) / "plots", prefix=ctx.name, unfolded=unfolded)
        info["plots"] = [str(f) for f in files]
    except Exception as err:  # noqa: BLE001 - a failed figure must not lose a finished unfolding (an hour of training)
        ctx.log.error("unfolding plots failed (%s: %s); the unfolded samples and figures are kept",
                      type(err).__name__, err)
