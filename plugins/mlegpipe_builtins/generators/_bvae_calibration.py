"""Calibration of the B-VAE's buffer width against memorization (``buffer_calibration = "memorization"``).

A buffer of narrow posterior Gaussians reproduces its training events almost
exactly; :func:`calibrate` widens it (α, or λ of the neighbour smearing) on a
×2^¼ ladder until generated events lie as far from their nearest training
event as independent validation events do (:func:`memorization_at`).

Example:
    >>> # info = calibrate(trained_bvae, raw_train_features, raw_valid_features)
    >>> # info["parameter"], info["value"], info["ratio"]      # ('buffer_sigma_scale', 2.38, 0.95)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mlegpipe_builtins.generators.bvae import BVAEGenerator

__all__ = ["calibrate", "memorization_at"]


def memorization_at(gen: BVAEGenerator, alpha: float, lam: float, raw_train: np.ndarray, raw_valid: np.ndarray,
                    seed: np.random.SeedSequence) -> float:
    """Nearest-training-event distance ratio of generated events (buffer width α, λ) over validation events.

    The events are what :meth:`BVAEGenerator.sample` gives at that width (rejected events redrawn as configured),
    compared on the feature map's features standardized on the training events
    (:func:`mlegpipe.metrics.memorization.memorization_ratio`); ≈ 1: new events, ≪ 1: copies of
    training events. The generator's counters and widths are left as they were. Features of absent
    particles (a variable collection) count as the training mean of their slot.
    """
    from mlegpipe.metrics.memorization import memorization_ratio

    kept = gen.alpha, gen.lam, dict(gen._counts)
    gen.alpha, gen.lam = alpha, lam
    try:
        generated = gen.feature_map.encode(gen.sample(len(raw_valid), seed))
    finally:
        gen.alpha, gen.lam, gen._counts = kept
    if gen.multiplicity is None:
        mean, std = raw_train.mean(0), raw_train.std(0)
        std = np.where(std > 0, std, 1.0)
        return float(memorization_ratio((generated - mean) / std, (raw_valid - mean) / std,
                                        (raw_train - mean) / std, max_events=20_000, standardize=False)["ratio"])
    mean, std = np.nanmean(raw_train, axis=0), np.nanstd(raw_train, axis=0)
    std = np.where(std > 0, std, 1.0)

    def scaled(raw: np.ndarray) -> np.ndarray:
        return np.nan_to_num((raw - mean) / std, nan=0.0)

    return float(memorization_ratio(scaled(generated), scaled(raw_valid), scaled(raw_train), max_events=20_000,
                                    standardize=False)["ratio"])


def calibrate(gen: BVAEGenerator, raw_train: np.ndarray, raw_valid: np.ndarray) -> dict[str, Any]:
    """Widen the buffer on a ×2^¼ ladder until the memorization ratio reaches the target; set α or λ.

    The ladder widens α from ``buffer_sigma_scale`` (posterior smearing) or
    λ from ``neighbour_scale`` (first 0, then from 1/8; neighbour
    smearing) up to 64, and stops at the first value whose ratio reaches
    ``memorization_target``. Only training and validation events are used;
    the ratio is that of generated events (:func:`memorization_at`), on the
    feature map's features, whatever ``frame`` and ``preprocess`` the VAE learns.
    """
    target = gen.params.memorization_target
    seeds = iter(gen.ctx.seed_sequence("calibration").spawn(64))
    neighbours = gen.params.buffer_smearing == "neighbours"
    value = gen.lam if neighbours else max(gen.alpha, 1e-3)
    ladder: list[list[float]] = []
    while True:
        ratio = memorization_at(gen, gen.alpha, value, raw_train, raw_valid, next(seeds)) if neighbours \
            else memorization_at(gen, value, gen.lam, raw_train, raw_valid, next(seeds))
        ladder.append([value, ratio])
        if ratio >= target or value >= 64.0:
            break
        value = max(value * 2.0**0.25, 0.125)
    if ladder[-1][1] < target:
        gen.ctx.log.warning("bvae buffer calibration: ratio %.3f < %.3f even at %.3g", ladder[-1][1], target,
                             value)
    if neighbours:
        gen.lam = float(value)
    else:
        gen.alpha = float(value)
    return {"parameter": "neighbour_scale" if neighbours else "buffer_sigma_scale", "value": float(value),
            "ratio": float(ladder[-1][1]), "target": target, "ladder": ladder}
