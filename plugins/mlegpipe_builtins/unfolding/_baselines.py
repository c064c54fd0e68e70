"""Bootstrapped IBU per observable and unbinned OmniFold on arrays: the numerics of ``ibu`` and ``omnifold``.

Both learn the detector response from simulated (vertex, detector) pairs (the
surrogate's training pairs when ``gan-unfold`` runs them as its baselines).
Bands come from Poisson(1) bootstrap weights on the data events, shared by
every observable of one replica.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> v = rng.normal(size=4000); d = v + 0.3 * rng.normal(size=4000)
    >>> edges = {"a": np.linspace(-3, 3, 13)}
    >>> out = ibu_unfold({"a": v}, {"a": d}, {"a": d[:2000]}, edges, iterations=4, replicas=3, rng=rng)
    >>> out["a"]["band"].replicas.shape
    (3, 12)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlegpipe.metrics.histograms import histogram
from mlegpipe.unfold import Band, Response, ibu, omnifold, response_matrix

__all__ = ["ibu_unfold", "omnifold_unfold", "poisson_weights"]


def poisson_weights(n: int, replicas: int, rng: np.random.Generator) -> np.ndarray:
    """``(replicas, n)`` Poisson(1) bootstrap multiplicities (the large-sample multinomial bootstrap)."""
    return rng.poisson(1.0, size=(replicas, n)).astype(np.float64)


def _counts(values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    ok = np.isfinite(values)
    w = None if weights is None else weights[ok]
    return histogram(values[ok], edges, w).values()


def _normalized(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else counts


def ibu_unfold(
    sim_vertex: dict[str, np.ndarray],
    sim_detector: dict[str, np.ndarray],
    data: dict[str, np.ndarray],
    edges: dict[str, np.ndarray],
    iterations: int,
    replicas: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, Any]]:
    """IBU of each observable: the response, nominal unfolded counts and the bootstrap band of densities.

    Returns:
        ``{name: {"response": Response, "counts": unfolded counts, "density": normalized,
        "band": Band}}``.
    """
    n_data = len(next(iter(data.values())))
    boot = poisson_weights(n_data, replicas, rng)
    out: dict[str, dict[str, Any]] = {}
    for name, e in edges.items():
        resp: Response = response_matrix(sim_vertex[name], sim_detector[name], e, e)
        counts = ibu(_counts(data[name], e), resp, iterations)
        rows = [_normalized(ibu(_counts(data[name], e, k), resp, iterations)) for k in boot]
        out[name] = {"response": resp, "counts": counts, "density": _normalized(counts),
                     "band": Band.from_replicas(np.array(rows))}
    return out


def omnifold_unfold(
    gen: np.ndarray,
    sim: np.ndarray,
    data: np.ndarray,
    iterations: int,
    replicas: int,
    rng: np.random.Generator,
    generator: torch.Generator,
    epochs: int = 5,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """OmniFold push weights on the simulation: nominal and one set per bootstrap replica of the data.

    Arguments:
        gen: vertex-level features of the simulation ``(n, k)``.
        sim: its detector-level features ``(n, m)`` (non-finite rows: not measured).
        data: detector-level features of the data ``(n_data, m)``.

    Returns:
        ``(weights, [weights per replica])``.
    """
    nominal = omnifold(gen, sim, data, iterations, generator=generator, epochs=epochs)
    boot = poisson_weights(len(data), replicas, rng)
    return nominal, [omnifold(gen, sim, data, iterations, generator=generator, data_weights=k, epochs=epochs)
                     for k in boot]
