"""OmniFold-style unbinned unfolding by classifier reweighting (Andreassen et al., PRL 124, 182001).

Simulated pairs (vertex ``gen``, detector ``sim``) are reweighted in two steps
per iteration, starting from push weights ``ν₀ = 1``:

1. *pull*: a classifier tells the data from the simulation at detector level
   (simulation weighted by ``ν``); its likelihood ratio ``f/(1-f)`` gives
   ``ω = ν · f/(1-f)`` per simulated event (events not measured keep ``ν``);
2. *push*: a classifier tells the vertex-level simulation weighted by ``ω``
   from the one weighted by ``ν``; ``ν ← ν · f/(1-f)``, a proper function of
   the vertex-level features.

The unfolded distribution is the vertex-level simulation with weights ``ν``.
Classifiers are small MLPs (:func:`mlegpipe.nets.mlp`) trained with a weighted
binary cross entropy on standardized features, each class normalized to equal
total weight; all randomness comes from the ``torch.Generator`` passed in.

Example:
    >>> import numpy as np, torch
    >>> rng = np.random.default_rng(0)
    >>> gen = rng.normal(size=(2000, 1)); sim = gen + 0.1 * rng.normal(size=(2000, 1))
    >>> w = omnifold(gen, sim, sim, iterations=1, epochs=2, generator=torch.Generator().manual_seed(0))
    >>> bool(abs(w.mean() - 1) < 0.1)
    True
"""

from __future__ import annotations

import numpy as np
import torch

from mlegpipe import distributed as ddp
from mlegpipe.exceptions import DataError
from mlegpipe.nets import mlp

__all__ = ["classifier_weights", "omnifold"]


def _as_2d(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[:, None] if values.ndim == 1 else values


def _standardize(*arrays: np.ndarray) -> list[torch.Tensor]:
    pooled = np.concatenate(arrays, axis=0)
    mean, std = pooled.mean(axis=0), pooled.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [torch.as_tensor((a - mean) / std, dtype=torch.float32) for a in arrays]


def classifier_weights(
    target: np.ndarray,
    source: np.ndarray,
    target_weights: np.ndarray | None = None,
    source_weights: np.ndarray | None = None,
    *,
    generator: torch.Generator,
    hidden: int = 32,
    layers: int = 2,
    epochs: int = 10,
    batch_size: int = 512,
    lr: float = 2e-3,
    max_ratio: float = 20.0,
) -> np.ndarray:
    """Likelihood ratio ``p_target(x) / p_source(x)`` at each ``source`` event, from a trained classifier.

    Both classes are normalized to the same total weight, so the ratio
    ``f/(1-f)`` estimates the ratio of the normalized densities. Ratios are
    clipped to ``[1/max_ratio, max_ratio]`` and scaled so that their source-weighted mean is 1
    (the expectation of a density ratio under the source).

    Example:
        >>> x = np.random.default_rng(1).normal(size=(500, 1))
        >>> r = classifier_weights(x, x, generator=torch.Generator().manual_seed(1), epochs=3)
        >>> bool(np.abs(r - 1).max() < 0.1)
        True
    """
    target, source = _as_2d(target), _as_2d(source)
    if len(target) == 0 or len(source) == 0:
        raise DataError(f"a classifier needs events in both samples (got {len(target)} and {len(source)})")
    if target.shape[1] != source.shape[1]:
        raise DataError(f"samples have different features: {target.shape[1]} and {source.shape[1]} columns")
    wt = np.ones(len(target)) if target_weights is None else np.asarray(target_weights, dtype=np.float64)
    ws = np.ones(len(source)) if source_weights is None else np.asarray(source_weights, dtype=np.float64)
    if not (wt.sum() > 0 and ws.sum() > 0) or (wt < 0).any() or (ws < 0).any():
        raise DataError("classifier weights must be non-negative with a positive sum per sample")
    xt, xs = _standardize(target, source)
    x = torch.cat([xt, xs])
    y = torch.cat([torch.ones(len(xt)), torch.zeros(len(xs))])
    n = len(x)
    w = torch.as_tensor(np.concatenate([wt / wt.sum(), ws / ws.sum()]) * n / 2.0, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        net = mlp(x.shape[1], 1, [hidden] * layers, activation="relu")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    batch = min(batch_size, n)
    total_steps = epochs * -(-n // batch)
    # cosine decay to 0: the last steps average out the minibatch noise of the ratio
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s / total_steps, 1.0))))
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            (idx,) = ddp.shard_minibatch((order[start:start + batch],))  # this rank's share under torchrun
            opt.zero_grad()
            if len(idx):
                loss = (loss_fn(net(x[idx]).squeeze(1), y[idx]) * w[idx]).mean()
                loss.backward()
            ddp.sync_gradients(net.parameters(), len(idx))
            opt.step()
            sched.step()
    with torch.no_grad():
        logit = net(xs).squeeze(1).double()
    ratio = np.clip(torch.exp(logit).numpy(), 1.0 / max_ratio, max_ratio)  # f/(1-f) = exp(logit)
    # E_source[p_target/p_source] = 1: remove the classifier's overall bias
    return ratio * ws.sum() / float((ws * ratio).sum())


def omnifold(
    gen: np.ndarray,
    sim: np.ndarray,
    data: np.ndarray,
    iterations: int = 2,
    *,
    generator: torch.Generator,
    measured: np.ndarray | None = None,
    gen_weights: np.ndarray | None = None,
    data_weights: np.ndarray | None = None,
    **classifier: int | float,
) -> np.ndarray:
    """Push weights ``ν`` on the vertex-level simulation after ``iterations`` OmniFold iterations.

    Arguments:
        gen: ``(n, k)`` vertex-level features of the simulated events.
        sim: ``(n, m)`` their detector-level features (rows not ``measured`` are ignored).
        data: ``(n_data, m)`` detector-level features of the data.
        iterations: OmniFold iterations (2 is the usual choice).
        generator: seeded torch generator for every classifier.
        measured: boolean mask of simulated events with a detector-level measurement
            (default: rows of ``sim`` that are all finite).
        gen_weights: initial simulation weights (default 1).
        data_weights: data weights (default 1).
        classifier: options of :func:`classifier_weights` (hidden, layers, epochs, ...).

    Returns:
        ``(n,)`` weights; the unfolded spectrum is ``gen`` weighted by them (their mean is
        renormalized to the mean initial weight).

    Raises:
        DataError: mismatched lengths or widths, or no measured simulated events.
    """
    gen, sim, data = _as_2d(gen), _as_2d(sim), _as_2d(data)
    if len(gen) != len(sim):
        raise DataError(f"vertex and detector simulations differ in length: {len(gen)} and {len(sim)}")
    if len(data) == 0:
        raise DataError("no data events to unfold")
    if sim.shape[1] != data.shape[1]:
        raise DataError(f"simulation has {sim.shape[1]} detector-level features, data {data.shape[1]}")
    if measured is None:
        measured = np.isfinite(sim).all(axis=1)
    measured = np.asarray(measured, dtype=bool)
    if not measured.any():
        raise DataError("no simulated event has a detector-level measurement")
    nu = np.ones(len(gen)) if gen_weights is None else np.asarray(gen_weights, dtype=np.float64).copy()
    start_mean = nu.mean()
    for _ in range(iterations):
        omega = nu.copy()
        omega[measured] = nu[measured] * classifier_weights(
            data, sim[measured], data_weights, nu[measured], generator=generator, **classifier)
        # push: the ratio of ω- to ν-weighted vertex-level densities, a function of gen only
        ratio = classifier_weights(gen, gen, omega, nu, generator=generator, **classifier)
        nu = nu * ratio
        nu *= start_mean / nu.mean()
    return nu
