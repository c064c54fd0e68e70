"""What the detector-level pull target of the closure test asks of a model: pulls of an *exact* model.

Thesis eq. 29 compares two bootstrap bands, pull = (E[P]_model - E[P]_data) /
sqrt(V[P]_model + V[P]_data). The unfolding's detector-level figure is the
fraction of bins of ν₁, ν₂, x, Q² with |pull| <= 1 between the refolded
replicas and the data (target: 90 %). This benchmark replaces the GAN by the
truth itself: each of the ``replicas`` "model" replicas is an independent
sample of the same physics (``dis``, HERA, Q² > 2 GeV²), as many events as the
pseudo-data, folded by the real detector (``smear``, Matrix 0.2), exactly as
``pipelines/unfold_closure.toml`` builds its data. The bins and the data's band
are those of ``gan-unfold``. It then lets the model follow a fraction α of the
data's own fluctuations, model replica r = (1 - α) x exact_r + α x data
bootstrap_r, to show how much of the data's noise a model must copy to pass.

Usage::

    python benchmarks/bench_pull_ceiling.py                 # 20 pseudo-data samples, 10 replicas (~25 s)
    python benchmarks/bench_pull_ceiling.py --replicas 4 --samples 10

Writes ``benchmarks/results/bench_pull_ceiling.json`` (figures: each α's fraction beside the 0.90 target).

Example output line: ``alpha 0.00: |pull| <= 1 in 0.80 of the bins (per sample 0.70-0.86)``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks import Figure, write_json
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.metrics.pulls import bootstrap_densities
from mlegpipe.unfold import Band
from mlegpipe_builtins.detectors.smear import SmearDetector
from mlegpipe_builtins.truth.dis import DISTruth
from mlegpipe_builtins.unfolding._closure import REFERENCE_REPLICAS
from mlegpipe_builtins.unfolding._inputs import pass_mask
from mlegpipe_builtins.unfolding._observables import binning, observable

__all__ = ["exact_model_fractions", "exact_model_pulls", "main"]

OBSERVABLES = ("nu1", "nu2", "x", "Q2")
#: the closure pipeline's data: the test half of 40 000 truth events
DATA_EVENTS = 20_000
BINS = 30


def _folded(seed: int, events: int) -> tuple[EventBatch, EventBatch]:
    truth = DISTruth(DISTruth.Params(beams="hera", events=events, q2_min=2.0), StageContext("truth", seed=seed))
    vertex = EventBatch.concat(list(truth.iter_batches()))
    detector = SmearDetector(SmearDetector.Params(preset="matrix-0.2"), StageContext("detector", seed=seed))
    return vertex, detector.fold(vertex, np.random.SeedSequence(seed))


def _measured(batch: EventBatch, name: str) -> np.ndarray:
    """Finite values of ``name`` in the events the detector measured (gan-unfold's pass flag)."""
    values = observable(batch, name)[pass_mask(batch)]
    return values[np.isfinite(values)]


def exact_model_pulls(sample_seed: int, replicas: int, observables: tuple[str, ...] = OBSERVABLES) -> np.ndarray:
    """Detector-level pulls of the exact model (α = 0) against one pseudo-data sample, pooled over the bins of
    ``observables`` (NaN where both bands are empty): what ``bench_unfold`` shows beside the refolded pulls."""
    truth, data = _folded(1000 + sample_seed, DATA_EVENTS)
    models = [_folded(10_000 + 100 * sample_seed + r, DATA_EVENTS)[1] for r in range(replicas)]
    rng = np.random.default_rng(sample_seed)
    out = []
    for name in observables:
        values = _measured(data, name)
        edges = binning(name, [values, observable(truth, name)], BINS)
        data_band = Band.from_replicas(bootstrap_densities(values, edges, REFERENCE_REPLICAS, rng))
        exact = np.stack([np.histogram(_measured(m, name), edges)[0] for m in models]).astype(float)
        out.append(Band.from_replicas(exact / exact.sum(axis=1, keepdims=True)).pulls(data_band))
    return np.concatenate(out)


def exact_model_fractions(sample_seed: int, replicas: int, alphas: list[float]) -> dict[float, float]:
    """Fraction of the ν₁, ν₂, x, Q² bins with |pull| <= 1 for each α, on one pseudo-data sample."""
    truth, data = _folded(1000 + sample_seed, DATA_EVENTS)
    models = [_folded(10_000 + 100 * sample_seed + r, DATA_EVENTS)[1] for r in range(replicas)]
    rng = np.random.default_rng(sample_seed)
    inside = {a: 0 for a in alphas}
    total = 0
    for name in OBSERVABLES:
        values = _measured(data, name)
        edges = binning(name, [values, observable(truth, name)], BINS)
        data_band = Band.from_replicas(bootstrap_densities(values, edges, REFERENCE_REPLICAS, rng))
        exact = np.stack([np.histogram(_measured(m, name), edges)[0] for m in models]).astype(float)
        exact /= exact.sum(axis=1, keepdims=True)
        follow = bootstrap_densities(values, edges, replicas, rng)
        for a in alphas:
            pulls = Band.from_replicas((1 - a) * exact + a * follow).pulls(data_band)
            ok = np.isfinite(pulls)
            inside[a] += int((np.abs(pulls[ok]) <= 1).sum())
        total += int(np.isfinite(data_band.mean).sum())
    return {a: inside[a] / total for a in alphas}


def main(argv: list[str] | None = None) -> dict[float, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=10, help="model replicas (gan-unfold's replicas)")
    parser.add_argument("--samples", type=int, default=20, help="independent pseudo-data samples")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5],
                        help="fractions of the data's fluctuations the model follows")
    args = parser.parse_args(argv)
    per_sample = [exact_model_fractions(s, args.replicas, args.alphas) for s in range(args.samples)]
    out = {a: [f[a] for f in per_sample] for a in args.alphas}
    print(f"exact model, {args.replicas} replicas, {DATA_EVENTS} data events, {BINS} bins of "
          f"{', '.join(OBSERVABLES)}, {args.samples} pseudo-data samples (target >= 0.90):")
    figures = []
    for a, values in out.items():
        print(f"alpha {a:.2f}: |pull| <= 1 in {np.mean(values):.2f} of the bins "
              f"(per sample {min(values):.2f}-{max(values):.2f})")
        figures.append(Figure(f"detector pulls of an exact model copying {a:.0%} of the data's noise",
                              float(np.mean(values)), "fraction", "closure target", 0.90, target=">= 1",
                              meets=bool(np.mean(values) >= 0.90),
                              note=f"{args.replicas} replicas, {args.samples} samples"))
    write_json("bench_pull_ceiling", {"replicas": args.replicas, "samples": args.samples,
                                      "fractions": {str(a): v for a, v in out.items()},
                                      "figures": [asdict(f) for f in figures]})
    return out


if __name__ == "__main__":
    main()
