"""Benchmark of the unfolding closure pipelines: pulls, triangular discriminator and W1 beside IBU and OmniFold.

Runs ``pipelines/unfold_closure.toml`` (surrogate trained on an independent
sample of the same physics) and ``pipelines/unfold_reweighted.toml`` (pseudo-data
whose Q² spectrum is smoothly reweighted by (Q²/10 GeV²)^-0.5; on request
``unfold_truncated.toml``, hard cuts Q² > 5, x < 0.1), times them, and prints per observable the
triangular discriminator ×10³ and W1 against the vertex-level truth for the GAN,
IBU, OmniFold and the uncorrected detector-level data, all from the same run,
plus the pull targets:

- detector level: |pull| ≤ 1 in ≥ 90% of the bins of ν₁, ν₂, x, Q² (refolded vs data);
- vertex level: |pull| < 1 in ≥ 80% of the populated, recoverable bins of all observables.

For the reweighted (and truncated) scenario it also prints the vertex-level pulls
and triangular discriminators against the data's own truth *and* against the
surrogate's training truth: the first must pass, the second fail (the result is
not the prior).

The GAN's variance in these pulls includes the learned surrogate's own uncertainty
(its non-closure on held-out simulation pairs, see ``gan-unfold``'s
``surrogate_uncertainty``); the statistical-only fractions are printed beside them.

Usage::

    python benchmarks/bench_unfold.py            # the pipelines' default settings (the ≤ 30 min target)
    python benchmarks/bench_unfold.py --quick    # fewer events and steps: a smoke test
    python benchmarks/bench_unfold.py --toy      # 2D Gaussian toy closure (minutes)
    python benchmarks/bench_unfold.py --only reweighted --from-run RUN_DIR   # figures of a finished run

Writes ``benchmarks/results/bench_unfold.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlegpipe.config import load_config
from mlegpipe.pipeline import run_pipeline

__all__ = ["main", "summarize"]

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = {"closure": ROOT / "pipelines" / "unfold_closure.toml",
             "reweighted": ROOT / "pipelines" / "unfold_reweighted.toml",
             "truncated": ROOT / "pipelines" / "unfold_truncated.toml"}
#: Scenarios run without ``--only`` (the truncated variant only on request).
DEFAULT_SCENARIOS = ("closure", "reweighted")
DETECTOR_OBSERVABLES = ("nu1", "nu2", "x", "Q2")
QUICK = ["truth.events=8000", "sim.events=10000", "surrogate.steps=200", "surrogate.acceptance_steps=300",
         "unfolding.steps=300", "unfolding.replicas=2", "unfolding.omnifold_epochs=2"]


def _fraction(values: list[float | None], bound: float, strict: bool) -> tuple[int, int]:
    v = np.array([x for x in values if x is not None], dtype=float)
    inside = np.abs(v) < bound if strict else np.abs(v) <= bound
    return int(inside.sum()), int(v.size)


def _pull_fractions(binned: dict[str, Any], suffix: str = "") -> tuple[int, int, int, int]:
    """(detector within, detector bins, vertex within, vertex bins) of the pulls ``*_pulls{suffix}``."""
    det_in = det_n = vtx_in = vtx_n = 0
    detector_level = [n for n in binned if n in DETECTOR_OBSERVABLES] or list(binned)
    for name, b in binned.items():
        if name in detector_level and f"refolded_pulls{suffix}" in b:
            k, n = _fraction(b[f"refolded_pulls{suffix}"], 1.0, strict=False)
            det_in, det_n = det_in + k, det_n + n
        if f"gan_pulls{suffix}" in b:
            usable = [p for p, bad in zip(b[f"gan_pulls{suffix}"], b["unrecoverable"], strict=True) if not bad]
            k, n = _fraction(usable, 1.0, strict=True)
            vtx_in, vtx_n = vtx_in + k, vtx_n + n
    return det_in, det_n, vtx_in, vtx_n


def _per_observable(binned: dict[str, Any], suffix: str = "") -> dict[str, dict[str, float | None]]:
    out = {}
    for name, b in binned.items():
        row: dict[str, float | None] = {}
        if f"refolded_pulls{suffix}" in b:
            k, n = _fraction(b[f"refolded_pulls{suffix}"], 1.0, strict=False)
            row["detector"] = round(k / n, 3) if n else None
        if f"gan_pulls{suffix}" in b:
            usable = [p for p, bad in zip(b[f"gan_pulls{suffix}"], b["unrecoverable"], strict=True) if not bad]
            k, n = _fraction(usable, 1.0, strict=True)
            row["vertex"] = round(k / n, 3) if n else None
        out[name] = row
    return out


def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
    """Targets and per-observable figures from a run's ``metrics.json`` unfolding entry.

    The headline pulls include the surrogate's uncertainty when the run measured it
    (``surrogate_uncertainty``); the ``*_stat`` figures are the replicas' spread alone.
    """
    info = metrics["stages"]["unfolding"]
    binned, obs = info["binned"], info["observables"]
    det_in, det_n, vtx_in, vtx_n = _pull_fractions(binned)
    sdet_in, sdet_n, svtx_in, svtx_n = _pull_fractions(binned, "_stat")
    table = {}
    for name, entry in obs.items():
        row = {}
        for method in ("gan", "ibu", "omnifold", "data_uncorrected"):
            fig = entry.get(method, {})
            fig = fig.get("vertex", fig) if method == "gan" else fig
            row[method] = {"triangular_e3": fig.get("triangular_e3"), "w1": fig.get("w1")}
        row["unrecoverable_bins"] = len(entry.get("unrecoverable_bins", []))
        table[name] = row
    return {
        "detector_pulls_within_1": round(det_in / det_n, 4) if det_n else None,
        "detector_bins": det_n,
        "detector_target_met": bool(det_n and det_in / det_n >= 0.9),
        "vertex_pulls_within_1": round(vtx_in / vtx_n, 4) if vtx_n else None,
        "vertex_bins": vtx_n,
        "vertex_target_met": bool(vtx_n and vtx_in / vtx_n >= 0.8),
        "detector_pulls_within_1_stat": round(sdet_in / sdet_n, 4) if sdet_n else None,
        "vertex_pulls_within_1_stat": round(svtx_in / svtx_n, 4) if svtx_n else None,
        "per_observable_within_1": _per_observable(binned),
        "per_observable_within_1_stat": _per_observable(binned, "_stat"),
        "surrogate_uncertainty": info.get("surrogate_uncertainty"),
        "replicas": info.get("replicas"),
        "completion": info.get("completion"),
        "method_pull_fractions": info.get("summary", {}),
        "pair_2d": info.get("pair"),
        "observables": table,
    }


def against_both_truths(run_dir: Path, metrics: dict[str, Any], bins: int = 30,
                        replicas: int = 20, seed: int = 0) -> dict[str, Any]:
    """The GAN's unfolded sample against the data's own truth and against the surrogate's training truth.

    The reweighted scenario must recover the first, not the second. Per observable:

    - triangular ×10³ of the pooled unfolded sample against either truth, and of the
      simulation against the data's truth, on bins spanning both truths;
    - the fraction of the report's populated, recoverable bins (its edges and flags) with
      |pull| < 1 (eq. 29: the GAN's replicas, plus the surrogate's variance when the run
      measured it, against ``replicas`` bootstrap resamples of either truth). Against the
      data's truth this is the headline vertex-level figure (recomputed: the truth's
      bootstrap differs), against the simulation's truth it shows whether the result
      moved away from the prior.
    """
    from mlegpipe.beams import Beams
    from mlegpipe.events import EventBatch
    from mlegpipe.metrics.pulls import bootstrap_densities
    from mlegpipe.rootio import read_events
    from mlegpipe.unfold import Band
    from mlegpipe_builtins.unfolding._observables import binning, compare, density, observable

    def load(name: str) -> EventBatch:
        batch = EventBatch.concat(list(read_events(str(run_dir / f"{name}.root"))))
        return batch if batch.beams is not None else EventBatch.from_columns(
            {f: batch.column(f) for f in batch.fields}, beams=Beams.preset("hera"))

    binned = metrics["stages"]["unfolding"]["binned"]
    unfolded, truth, sim = load("unfolded"), load("truth_test"), load("sim_train")
    prior = unfolded.column("prior") > 0 if unfolded.has("prior") else np.zeros(len(unfolded), bool)
    replica = unfolded.column("replica")
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"prior_fraction": round(float(prior.mean()), 4)}
    totals = {"data_truth": [0, 0], "simulation_truth": [0, 0]}
    for n, b in binned.items():
        u, t, s = (observable(batch, n) for batch in (unfolded, truth, sim))
        edges = binning(n, [t, s], bins)  # both ranges: events outside the data truth's count against it
        row: dict[str, Any] = {"gan_vs_data_truth": compare(u, t, edges)["triangular_e3"],
                               "gan_vs_simulation_truth": compare(u, s, edges)["triangular_e3"],
                               "simulation_vs_data_truth": compare(s, t, edges)["triangular_e3"]}
        report_edges = np.asarray(b["edges"])
        gan = Band.from_replicas(np.array([density(u[replica == r], report_edges) for r in np.unique(replica)]))
        extra = None
        if "surrogate_std_vertex" in b:
            extra = np.array([0.0 if v is None else v * v for v in b["surrogate_std_vertex"]])
        flags = np.asarray(b["unrecoverable"], dtype=bool)
        for key, ref in (("data_truth", t), ("simulation_truth", s)):
            band = Band.from_replicas(bootstrap_densities(ref[np.isfinite(ref)], report_edges, replicas, rng))
            pulls = gan.pulls(band, extra)
            used = np.isfinite(pulls) & ~flags
            within = int((np.abs(pulls[used]) < 1).sum())
            row[f"vertex_pulls_within_1_vs_{key}"] = round(within / used.sum(), 3) if used.sum() else None
            totals[key][0] += within
            totals[key][1] += int(used.sum())
        out[n] = row
    for key, (within, count) in totals.items():
        out[f"vertex_pulls_within_1_vs_{key}"] = round(within / count, 4) if count else None
    return out


def _print_both(both: dict[str, Any]) -> None:
    print(f"\nreweighted: GAN vs the data's truth / vs the surrogate's training truth "
          f"(prior fraction of the unfolded events {both['prior_fraction']})")
    print(f"vertex |pull| < 1 in the recoverable bins: vs data truth {both['vertex_pulls_within_1_vs_data_truth']}, "
          f"vs simulation truth {both['vertex_pulls_within_1_vs_simulation_truth']}")
    print(f"{'observable':<14}{'pulls<1 data':>14}{'pulls<1 sim':>13}{'tri GAN-data':>14}{'tri GAN-sim':>13}"
          f"{'tri sim-data':>14}")
    for n, r in both.items():
        if isinstance(r, dict):
            print(f"{n:<14}{r['vertex_pulls_within_1_vs_data_truth']!s:>14}"
                  f"{r['vertex_pulls_within_1_vs_simulation_truth']!s:>13}{r['gan_vs_data_truth']:>14.3g}"
                  f"{r['gan_vs_simulation_truth']:>13.3g}{r['simulation_vs_data_truth']:>14.3g}")


def _print(name: str, seconds: float, s: dict[str, Any]) -> None:
    cpu = "-" if s.get("cpu_seconds") is None else f"{s['cpu_seconds'] / 60:.1f}"
    print(f"\n== {name}: {seconds / 60:.1f} min wall, {cpu} min CPU (all threads) ==")
    print(f"detector level |pull| <= 1: {s['detector_pulls_within_1']} of {s['detector_bins']} bins "
          f"(target >= 0.9: {'met' if s['detector_target_met'] else 'MISSED'})")
    print(f"vertex level   |pull| <  1: {s['vertex_pulls_within_1']} of {s['vertex_bins']} recoverable bins "
          f"(target >= 0.8: {'met' if s['vertex_target_met'] else 'MISSED'})")
    print(f"statistical only (without the surrogate's uncertainty): detector {s['detector_pulls_within_1_stat']}, "
          f"vertex {s['vertex_pulls_within_1_stat']}")
    print("per observable |pull| < 1 (detector, vertex):", s["per_observable_within_1"])
    print("pull fractions by method:", s["method_pull_fractions"])
    if s.get("pair_2d"):
        pair = s["pair_2d"]
        print(f"2D {pair['observables']} on {pair['bins']} bins, triangular x1e3 vs truth:", pair["triangular_e3"])
    head = f"{'observable':<14}" + "".join(f"{m:>22}" for m in ("GAN", "IBU", "OmniFold", "uncorrected"))
    print(head + "   (triangular x1e3 / W1 vs truth)")
    for obs, row in s["observables"].items():
        cells = []
        for m in ("gan", "ibu", "omnifold", "data_uncorrected"):
            t, w = row[m]["triangular_e3"], row[m]["w1"]
            cells.append(f"{'-' if t is None else f'{t:.3g}'} / {'-' if w is None else f'{w:.3g}'}")
        print(f"{obs:<14}" + "".join(f"{c:>22}" for c in cells) + f"   unrecoverable bins: {row['unrecoverable_bins']}")


def toy_closure(steps: int, replicas: int, seed: int = 1) -> dict[str, Any]:
    """Closure on a 2D Gaussian toy (20% shifted truth, σ = 0.3 smearing) through a cfold surrogate."""
    import torch

    from mlegpipe.context import StageContext
    from mlegpipe.events import EventBatch
    from mlegpipe.registry import load_plugins
    from mlegpipe.stages import RunRecord, UnfoldingInputs

    registry = load_plugins()
    rng = np.random.default_rng(seed)

    def pairs(n: int, shift: float) -> tuple[EventBatch, EventBatch]:
        a = rng.normal(shift, 1.0, n)
        b = 0.5 * a + rng.normal(0.0, 1.0, n)
        v = EventBatch.from_columns({"a": a, "b": b})
        return v, EventBatch.from_columns({"a": a + 0.3 * rng.normal(size=n), "b": b + 0.3 * rng.normal(size=n)})

    sim_v, sim_d = pairs(20000, 0.0)
    truth, data = pairs(10000, 0.5)
    fold = registry.get("detector", "cfold").cls
    surrogate = fold(fold.Params(vertex_features=["a", "b"], steps=600), StageContext("surrogate", seed=seed))
    surrogate.fit(sim_v, sim_d)
    cls = registry.get("unfolding", "gan-unfold").cls
    stage = cls(cls.Params(steps=steps, replicas=replicas, observables=["a", "b"], bins=20, plots=False),
                StageContext("unfolding", seed=seed + 1))

    record = RunRecord(config={}, samples={"sim_train": sim_v, "sim_train_det": sim_d, "truth_test": truth,
                                           "truth_test_det": data},
                       stages={"surrogate": surrogate, "unfolding": stage},  # type: ignore[dict-item]
                       metrics={}, histories={}, timings={})
    inputs = UnfoldingInputs(data, "truth_test_det", surrogate, "surrogate", truth, "truth_test", (sim_v, sim_d),
                             ["sim_train", "sim_train_det"])
    torch.set_num_threads(2)
    stage.unfold(inputs, record)
    return summarize({"stages": {"unfolding": stage.info()}})


def _scenario(name: str, run_dir: Path, seconds: float | None, cpu: float | None) -> dict[str, Any]:
    """Summary of one finished run folder (``seconds``, ``cpu``: the run's cost when this process ran it)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    summary = summarize(metrics)
    timings = metrics.get("timings_s", {})
    summary["seconds"] = round(seconds if seconds is not None else sum(timings.values()), 1)
    # CPU seconds of all threads: on a shared machine the wall time overstates the cost
    summary["cpu_seconds"] = None if cpu is None else round(cpu, 1)
    summary["timings_s"] = timings
    summary["load_average_after"] = Path("/proc/loadavg").read_text().split()[:3] \
        if Path("/proc/loadavg").exists() else None
    if name != "closure":
        summary["both_truths"] = against_both_truths(run_dir, metrics)
    _print(name, summary["seconds"], summary)
    if name != "closure":
        _print_both(summary["both_truths"])
    return summary


def main() -> None:
    """Run the pipelines (or read finished runs), print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and steps (smoke test)")
    parser.add_argument("--only", choices=tuple(PIPELINES), help="run one scenario only (the truncated variant runs only when named here)")
    parser.add_argument("--set", action="append", default=[], help="extra overrides SECTION.KEY=VALUE")
    parser.add_argument("--output", default="bench_unfold.json", help="file name under benchmarks/results/")
    parser.add_argument("--toy", action="store_true", help="run the 2D Gaussian toy closure instead of the pipelines")
    parser.add_argument("--from-run", type=Path, metavar="DIR",
                        help="summarize a finished run folder of the --only scenario instead of running it")
    args = parser.parse_args()
    results: dict[str, Any] = {"quick": args.quick, "overrides": args.set}
    if args.toy:
        start, cpu = time.perf_counter(), time.process_time()
        summary = toy_closure(steps=300 if args.quick else 1000, replicas=2 if args.quick else 3)
        summary["seconds"] = round(time.perf_counter() - start, 1)
        summary["cpu_seconds"] = round(time.process_time() - cpu, 1)
        results["toy"] = summary
        _print("toy", summary["seconds"], summary)
    elif args.from_run:
        if not args.only:
            parser.error("--from-run needs --only SCENARIO")
        results["from_run"] = str(args.from_run)
        results[args.only] = _scenario(args.only, args.from_run, None, None)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for name, path in PIPELINES.items():
                if (args.only and name != args.only) or (not args.only and name not in DEFAULT_SCENARIOS):
                    continue
                overrides = (QUICK if args.quick else []) + list(args.set)
                config = load_config(str(path), overrides or None)
                start, cpu = time.perf_counter(), time.process_time()
                run_dir = run_pipeline(config, output=str(Path(tmp) / name), force=True, progress=False)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                results[name] = _scenario(name, run_dir, seconds, cpu)
    out = ROOT / "benchmarks" / "results" / args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
