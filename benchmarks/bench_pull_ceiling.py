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
    python benchmarks/bench_pull_ceiling.py --vertex        # IBU's vertex pulls: own truth vs true density

Writes ``benchmarks/results/bench_pull_ceiling.json`` (figures: each α's fraction beside the 0.90 target).

Example output line: ``alpha 0.00: |pull| <= 1 in 0.80 of the bins (per sample 0.70-0.86)``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

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
from mlegpipe_builtins.unfolding._observables import binning, density, observable

__all__ = ["exact_model_fractions", "exact_model_pulls", "ibu_vertex_pulls", "main", "true_density_band"]

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


def _exact_model(sample_seed: int, replicas: int, observables: tuple[str, ...], rng: np.random.Generator,
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, Band, np.ndarray]]:
    """Per observable of one pseudo-data sample: the data's measured values, the edges, the data's bootstrap
    band and the exact model's replica densities (independent samples folded by the real detector).

    Lazy, one observable at a time, the data's bands drawn from ``rng``: a caller drawing more from it
    between observables (the α-mixtures) keeps its draws interleaved in the same order."""
    truth, data = _folded(1000 + sample_seed, DATA_EVENTS)
    models = [_folded(10_000 + 100 * sample_seed + r, DATA_EVENTS)[1] for r in range(replicas)]
    for name in observables:
        values = _measured(data, name)
        edges = binning(name, [values, observable(truth, name)], BINS)
        data_band = Band.from_replicas(bootstrap_densities(values, edges, REFERENCE_REPLICAS, rng))
        exact = np.stack([np.histogram(_measured(m, name), edges)[0] for m in models]).astype(float)
        yield values, edges, data_band, exact / exact.sum(axis=1, keepdims=True)


def exact_model_pulls(sample_seed: int, replicas: int, observables: tuple[str, ...] = OBSERVABLES) -> np.ndarray:
    """Detector-level pulls of the exact model (α = 0) against one pseudo-data sample, pooled over the bins of
    ``observables`` (NaN where both bands are empty): what ``bench_unfold`` shows beside the refolded pulls."""
    return np.concatenate([Band.from_replicas(exact).pulls(data_band)
                           for _, _, data_band, exact in _exact_model(sample_seed, replicas, observables,
                                                                      np.random.default_rng(sample_seed))])


#: the unfolding pipelines' observables
UNFOLDED = ("nu1", "nu2", "x", "Q2", "lepton_E", "lepton_theta")


def true_density_band(values: np.ndarray, edges: np.ndarray) -> Band:
    """The density of a large sample on ``edges`` with its multinomial variance p(1 − p)/N: the true density
    to within a variance 1/N of a bin's probability (no replicas kept)."""
    p = density(values, edges)
    n = int(np.isfinite(np.asarray(values, dtype=np.float64)).sum())
    return Band(p, p * (1 - p) / max(n, 1), np.zeros((0, p.size)))


def ibu_vertex_pulls(sample_seed: int, sim_events: int, replicas: int = 10,
                     true_events: int = 1_000_000) -> dict[str, np.ndarray]:
    """Vertex-level pulls of IBU (``gan-unfold``'s baseline code and binning) on one closure pseudo-data
    sample, against the pseudo-data's own truth (the issue-22 definition) and against the true density.

    The data are the truth sample folded: a method that follows the data also follows that sample's
    fluctuations, so against it even a calibrated band gives pulls narrower than N(0, 1); against the
    true density (an independent sample of ``true_events``) it gives N(0, 1). IBU's response comes from
    an independent simulation of ``sim_events`` (the pipelines': 20 000; a large one makes it exact).
    """
    from mlegpipe.unfold import band_pulls
    from mlegpipe_builtins.unfolding._closure import Closure
    from mlegpipe_builtins.unfolding._inputs import Simulation
    from mlegpipe_builtins.unfolding.ibu import run_ibu, simulated_values

    truth, data = _folded(1000 + sample_seed, DATA_EVENTS)
    sim = Simulation(*_folded(50_000 + sample_seed, sim_events), ["sim", "sim_detector"])
    big = DISTruth(DISTruth.Params(beams="hera", events=true_events, q2_min=2.0),
                   StageContext("truth", seed=90_000 + sample_seed))
    big_batch = EventBatch.concat(list(big.iter_batches()))
    measured = data.take(pass_mask(data))
    rng = np.random.default_rng(sample_seed)
    names = list(UNFOLDED)
    closure = Closure.build(names, {n: observable(measured, n) for n in names},
                            {n: observable(truth, n) for n in names}, bins=BINS, rng=rng)
    sim_v, sim_d = simulated_values(sim, names)
    closure.flag_unrecoverable(sim_v, sim_d, 10.0, 0.05)
    binned = {n: closure.binned(n) for n in names}
    run_ibu(sim_v, sim_d, closure, iterations=4, replicas=replicas, rng=rng, binned=binned,
            figures={n: {} for n in names})
    for n in names:
        binned[n]["true_density"] = true_density_band(observable(big_batch, n), closure.edges[n]).to_dict()
    return {"vs_truth_sample": band_pulls(binned, "ibu"), "vs_true_density": band_pulls(binned, "ibu", "true_density")}


def exact_model_fractions(sample_seed: int, replicas: int, alphas: list[float]) -> dict[float, float]:
    """Fraction of the ν₁, ν₂, x, Q² bins with |pull| <= 1 for each α, on one pseudo-data sample."""
    rng = np.random.default_rng(sample_seed)
    inside = {a: 0 for a in alphas}
    total = 0
    for values, edges, data_band, exact in _exact_model(sample_seed, replicas, OBSERVABLES, rng):
        follow = bootstrap_densities(values, edges, replicas, rng)
        for a in alphas:
            pulls = Band.from_replicas((1 - a) * exact + a * follow).pulls(data_band)
            ok = np.isfinite(pulls)
            inside[a] += int((np.abs(pulls[ok]) <= 1).sum())
        total += int(np.isfinite(data_band.mean).sum())
    return {a: inside[a] / total for a in alphas}


def vertex_definition(samples: int, replicas: int) -> dict[str, Any]:
    """Print and store the coverage of IBU's vertex-level pulls under both references (see :func:`ibu_vertex_pulls`)."""
    from mlegpipe.unfold import Coverage, CoverageTarget

    print(f"IBU, {replicas} bootstrap replicas of {DATA_EVENTS} data events, {BINS} bins of {', '.join(UNFOLDED)}, "
          f"recoverable bins, {samples} pseudo-data samples (N(0, 1): mean 0, std 1, |pull| < 1 in 0.683)")
    out: dict[str, Any] = {}
    figures = []
    target = CoverageTarget()
    for sim_events in (20_000, 500_000):
        per = [ibu_vertex_pulls(s, sim_events, replicas) for s in range(samples)]
        for key in ("vs_truth_sample", "vs_true_density"):
            c = Coverage.of(np.concatenate([p[key] for p in per]))
            out[f"sim{sim_events}_{key}"] = {**c.to_dict(), "meets": c.meets(target)}
            print(f"simulation {sim_events:>7} events, pulls {key:<16}: {c.bins} bins, mean {c.mean:+.3f}, "
                  f"std {c.std:.3f}, |pull| < 1 in {c.covered:.3f}")
            row = f"IBU, {sim_events // 1000}k simulation, against the {key[3:].replace('_', ' ')}"
            figures += [Figure(f"{row}: std", c.std, "", "N(0, 1)", 1.0, target="0.85-1.15",
                               meets=target.std_range[0] <= c.std <= target.std_range[1], group="vertex"),
                        Figure(f"{row}: |pull| < 1", c.covered, "", "N(0, 1)", 0.6827, target="0.60-0.76",
                               meets=target.covered_range[0] <= c.covered <= target.covered_range[1],
                               note=f"{c.bins} bins", group="vertex")]
    write_json("bench_pull_ceiling_vertex", {"replicas": replicas, "samples": samples, "coverage": out,
                                             "figures": [asdict(f) for f in figures]})
    return out


def main(argv: list[str] | None = None) -> dict[Any, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=10, help="model replicas (gan-unfold's replicas)")
    parser.add_argument("--samples", type=int, default=20, help="independent pseudo-data samples")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5],
                        help="fractions of the data's fluctuations the model follows")
    parser.add_argument("--vertex", action="store_true",
                        help="instead: IBU's vertex-level pulls against the pseudo-data's truth and against the true "
                        "density, with the pipelines' simulation (20k events) and a large one (500k)")
    args = parser.parse_args(argv)
    if args.vertex:
        return vertex_definition(args.samples, args.replicas)
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
