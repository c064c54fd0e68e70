"""Iterative Bayesian unfolding (D'Agostini) of binned spectra with a response from (vertex, detector) pairs.

The response is estimated from simulated pairs: ``R[j, i] = P(detector bin j |
vertex bin i)``, counting as lost (inefficiency) the events whose detector-level
value falls outside the detector binning or was not measured (NaN). Its column
sums are the efficiencies ``ε_i``; the acceptance ``a_j`` is the fraction of
simulated detector-level events in bin ``j`` whose vertex value lies inside the
vertex binning (the rest are fakes, removed from the data before unfolding).

Each iteration applies Bayes' theorem with the current prior ``p``::

    P(i | j) = R[j, i] p_i / Σ_k R[j, k] p_k
    u_i      = (1/ε_i) Σ_j P(i | j) a_j d_j

and uses the normalized ``u`` as the next prior. Bins with ``ε_i = 0`` cannot
be unfolded (they stay at 0 and are flagged by the caller).

An event-level carrier of binned results: :func:`marginal_weights` gives the
simulated events weights whose binned marginals follow the unfolded spectra of
several observables at once (iterative proportional fitting); the correlations
between the observables stay the simulation's.

Example:
    >>> import numpy as np
    >>> e = np.array([0.0, 1.0, 2.0])
    >>> resp = response_matrix(np.array([0.5, 1.5, 1.5]), np.array([0.5, 1.5, 1.5]), e, e)
    >>> ibu(np.array([10.0, 30.0]), resp, iterations=3).tolist()
    [10.0, 30.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mlegpipe.exceptions import ConfigError, DataError

__all__ = ["Response", "bin_index", "ibu", "marginal_weights", "response_matrix"]


@dataclass
class Response:
    """A binned detector response estimated from simulated (vertex, detector) pairs.

    Attributes:
        matrix: ``(n_detector_bins, n_vertex_bins)``, ``P(detector bin j | vertex bin i)``.
        efficiency: ``(n_vertex_bins,)``, probability that an event of vertex bin ``i``
            is measured inside the detector binning.
        acceptance: ``(n_detector_bins,)``, fraction of simulated detector-level events in
            bin ``j`` that come from inside the vertex binning (1 - fake rate).
        vertex_counts: simulated (weighted) events per vertex bin: the default prior.
        vertex_edges, detector_edges: the binnings.
    """

    matrix: np.ndarray
    efficiency: np.ndarray
    acceptance: np.ndarray
    vertex_counts: np.ndarray
    vertex_edges: np.ndarray
    detector_edges: np.ndarray

    def fold(self, vertex_counts: np.ndarray) -> np.ndarray:
        """Expected detector-level counts (fakes excluded) of a vertex-level spectrum: ``R @ u``.

        Example:
            >>> e = np.array([0.0, 1.0, 2.0])
            >>> response_matrix(np.array([0.5, 1.5]), np.array([1.5, 0.5]), e, e).fold(np.array([1.0, 2.0])).tolist()
            [2.0, 1.0]
        """
        return self.matrix @ np.asarray(vertex_counts, dtype=np.float64)


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin number of each value, -1 outside ``[edges[0], edges[-1]]`` or not finite (last edge inclusive).

    Example:
        >>> bin_index(np.array([0.5, 2.0, 3.0, np.nan]), np.array([0.0, 1.0, 2.0])).tolist()
        [0, 1, -1, -1]
    """
    idx = np.searchsorted(edges, values, side="right") - 1
    idx = np.where(values == edges[-1], len(edges) - 2, idx)
    inside = np.isfinite(values) & (values >= edges[0]) & (values <= edges[-1])
    return np.where(inside, idx, -1)


def _check_edges(edges: np.ndarray, name: str) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.isfinite(edges).all():
        raise ConfigError("bin edges must be at least two finite, strictly increasing numbers", path=name,
                          value=edges.tolist() if edges.size < 8 else f"{edges.size} edges")
    return edges


def response_matrix(
    vertex: np.ndarray,
    detector: np.ndarray,
    vertex_edges: np.ndarray,
    detector_edges: np.ndarray,
    weights: np.ndarray | None = None,
) -> Response:
    """Estimate the response from index-aligned simulated pairs.

    Arguments:
        vertex: vertex-level values of the simulated events.
        detector: their detector-level values (NaN: not measured).
        vertex_edges, detector_edges: the binnings.
        weights: optional per-event weights.

    Raises:
        DataError: the arrays differ in length or no simulated event falls in the vertex binning.

    Example:
        >>> e = np.array([0.0, 1.0, 2.0])
        >>> r = response_matrix(np.array([0.5, 0.5, 1.5, 1.5]), np.array([0.5, 1.5, 1.5, 9.0]), e, e)
        >>> r.matrix.tolist(), r.efficiency.tolist()
        ([[0.5, 0.0], [0.5, 0.5]], [1.0, 0.5])
    """
    vertex = np.asarray(vertex, dtype=np.float64).ravel()
    detector = np.asarray(detector, dtype=np.float64).ravel()
    if vertex.shape != detector.shape:
        raise DataError(f"vertex and detector samples differ in length: {vertex.size} and {detector.size}")
    w = np.ones_like(vertex) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != vertex.shape:
        raise DataError(f"{w.size} weights for {vertex.size} events")
    vertex_edges = _check_edges(vertex_edges, "vertex_edges")
    detector_edges = _check_edges(detector_edges, "detector_edges")
    nv, nd = vertex_edges.size - 1, detector_edges.size - 1
    iv, jd = bin_index(vertex, vertex_edges), bin_index(detector, detector_edges)
    in_v, in_d = iv >= 0, jd >= 0
    if not in_v.any():
        raise DataError("no simulated event falls inside the vertex-level binning", path="vertex_edges")
    joint = np.zeros((nd, nv))
    both = in_v & in_d
    np.add.at(joint, (jd[both], iv[both]), w[both])
    vertex_counts = np.bincount(iv[in_v], weights=w[in_v], minlength=nv).astype(np.float64)
    detector_counts = np.bincount(jd[in_d], weights=w[in_d], minlength=nd).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        matrix = np.where(vertex_counts > 0, joint / vertex_counts, 0.0)
        acceptance = np.where(detector_counts > 0, joint.sum(axis=1) / detector_counts, 0.0)
    return Response(matrix, matrix.sum(axis=0), acceptance, vertex_counts, vertex_edges, detector_edges)


def ibu(
    data_counts: np.ndarray,
    response: Response,
    iterations: int = 4,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """Unfold detector-level counts with ``iterations`` of D'Agostini's iterative Bayesian method.

    Arguments:
        data_counts: detector-level data per bin of ``response.detector_edges``.
        response: from :func:`response_matrix`.
        iterations: number of Bayes iterations (0 returns the prior scaled to the data).
        prior: vertex-level starting spectrum (default: the simulation's, ``response.vertex_counts``).

    Returns:
        Unfolded vertex-level counts (0 in bins without efficiency).

    Raises:
        DataError: shapes do not match, or negative / non-finite data.

    Example:
        >>> e = np.array([0.0, 1.0, 2.0])
        >>> r = response_matrix(np.array([0.5, 1.5]), np.array([1.5, 0.5]), e, e)  # bins swapped
        >>> ibu(np.array([3.0, 7.0]), r, iterations=1).tolist()
        [7.0, 3.0]
    """
    d = np.asarray(data_counts, dtype=np.float64).ravel()
    nd, nv = response.matrix.shape
    if d.size != nd:
        raise DataError(f"{d.size} data bins for a response with {nd} detector-level bins")
    if not np.isfinite(d).all() or (d < 0).any():
        raise DataError("data counts must be finite and non-negative")
    if iterations < 0:
        raise ConfigError("must be >= 0", path="ibu_iterations", value=iterations)
    p = response.vertex_counts if prior is None else np.asarray(prior, dtype=np.float64).ravel()
    if p.size != nv or (p < 0).any() or not p.sum() > 0:
        raise DataError(f"the prior needs {nv} non-negative bins with a positive sum")
    eff = response.efficiency
    usable = eff > 0
    p = np.where(usable, p, 0.0)
    p = p / p.sum()
    signal = d * response.acceptance
    u = p * signal.sum() / max(float((eff * p).sum()), 1e-300)
    for _ in range(iterations):
        folded = response.matrix @ p  # (nd,)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(folded > 0, signal / folded, 0.0)  # a_j d_j / Σ_k R_jk p_k
            u = np.where(usable, p * (response.matrix.T @ share) / np.where(usable, eff, 1.0), 0.0)
        total = u.sum()
        if not total > 0:
            break
        p = u / total
    return u


def marginal_weights(
    vertex: Mapping[str, np.ndarray],
    unfolded: Mapping[str, np.ndarray],
    responses: Mapping[str, Response],
    sweeps: int = 50,
    tolerance: float = 1e-9,
) -> np.ndarray:
    """Weights of simulated events whose binned marginals follow the unfolded spectra of every observable.

    Iterative proportional fitting (raking): for each observable in turn the
    weights of the events in each vertex bin are scaled so that the weighted
    histogram has the shape of ``unfolded`` over the bins the unfolding could
    fill (efficiency > 0), the total weight of those bins kept; events outside
    the binning, without a value, or in bins without efficiency keep their
    weights (there the simulation stays the prior). Sweeps repeat until no
    weight changes by more than ``tolerance`` (relative), at most ``sweeps``.
    With one observable one pass is exact; with several the result is the
    closest reweighting of the simulation (least relative entropy) with those
    marginals, its correlations between observables the simulation's.

    Arguments:
        vertex: vertex-level values of the simulated events per observable (NaN: undefined).
        unfolded: unfolded counts per observable (e.g. :func:`ibu`), on ``responses[name].vertex_edges``.
        responses: the response of each observable (its binning and efficiencies).

    Returns:
        ``(n,)`` weights with mean 1.

    Example:
        >>> e = np.array([0.0, 1.0, 2.0])
        >>> v = np.array([0.5, 0.5, 1.5, 1.5])
        >>> r = response_matrix(v, v, e, e)
        >>> marginal_weights({"a": v}, {"a": np.array([3.0, 1.0])}, {"a": r}).tolist()
        [1.5, 1.5, 0.5, 0.5]
    """
    names = list(unfolded)
    if not names:
        raise DataError("no unfolded spectrum to weigh the simulation with")
    n = len(np.asarray(vertex[names[0]]))
    w = np.ones(n)
    index = {k: bin_index(np.asarray(vertex[k], dtype=np.float64), responses[k].vertex_edges) for k in names}
    for _ in range(max(int(sweeps), 1)):
        before = w.copy()
        for k in names:
            idx, usable = index[k], responses[k].efficiency > 0
            inside = (idx >= 0) & usable[np.maximum(idx, 0)]
            current = np.bincount(idx[inside], weights=w[inside], minlength=usable.size).astype(np.float64)
            target = np.where(usable, np.asarray(unfolded[k], dtype=np.float64), 0.0)
            if not (target.sum() > 0 and current.sum() > 0):
                continue
            target = target * current.sum() / target.sum()
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(current > 0, target / current, 1.0)
            w[inside] *= ratio[idx[inside]]
        if np.all(np.abs(w - before) <= tolerance * np.maximum(np.abs(before), 1e-300)):
            break
    total = w.sum()
    return w * n / total if total > 0 else np.ones(n)
