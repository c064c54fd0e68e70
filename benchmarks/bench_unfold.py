"""Benchmark of the unfolding closure pipelines: pulls, triangular discriminator and W1 beside IBU and OmniFold.

Runs ``pipelines/unfold_closure.toml`` (surrogate trained on an independent
sample of the same physics) and ``pipelines/unfold_reweighted.toml`` (pseudo-data
from a different x, Q² spectrum), times them, and prints per observable the
triangular discriminator ×10³ and W1 against the vertex-level truth for the GAN,
IBU, OmniFold and the uncorrected detector-level data, all from the same run,
plus the pull targets:

- detector level: |pull| ≤ 1 in ≥ 90% of the bins of ν₁, ν₂, x, Q² (refolded vs data);
- vertex level: |pull| < 1 in ≥ 80% of the populated, recoverable bins of all observables.

Usage::

    python benchmarks/bench_unfold.py            # the pipelines' default settings (the ≤ 30 min target)
    python benchmarks/bench_unfold.py --quick    # fewer events and steps: a smoke test
    python benchmarks/bench_unfold.py --toy      # 2D Gaussian toy closure (minutes)

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
             "reweighted": ROOT / "pipelines" / "unfold_reweighted.toml"}
DETECTOR_OBSERVABLES = ("nu1", "nu2", "x", "Q2")
QUICK = ["truth.events=8000", "sim.events=10000", "surrogate.steps=200", "surrogate.acceptance_steps=300",
         "unfolding.steps=300", "unfolding.replicas=2", "unfolding.omnifold_epochs=2"]


def _fraction(values: list[float | None], bound: float, strict: bool) -> tuple[int, int]:
    v = np.array([x for x in values if x is not None], dtype=float)
    inside = np.abs(v) < bound if strict else np.abs(v) <= bound
    return int(inside.sum()), int(v.size)


def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
    """Targets and per-observable figures from a run's ``metrics.json`` unfolding entry."""
    info = metrics["stages"]["unfolding"]
    binned, obs = info["binned"], info["observables"]
    det_in = det_n = vtx_in = vtx_n = 0
    detector_level = [n for n in binned if n in DETECTOR_OBSERVABLES] or list(binned)
    for name, b in binned.items():
        if name in detector_level:
            k, n = _fraction(b["refolded_pulls"], 1.0, strict=False)
            det_in, det_n = det_in + k, det_n + n
        if "gan_pulls" in b:
            usable = [p for p, bad in zip(b["gan_pulls"], b["unrecoverable"], strict=True) if not bad]
            k, n = _fraction(usable, 1.0, strict=True)
            vtx_in, vtx_n = vtx_in + k, vtx_n + n
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
        "method_pull_fractions": info.get("summary", {}),
        "pair_2d": info.get("pair"),
        "observables": table,
    }


def _print(name: str, seconds: float, s: dict[str, Any]) -> None:
    print(f"\n== {name}: {seconds / 60:.1f} min wall, {s['cpu_seconds'] / 60:.1f} min CPU (all threads) ==")
    print(f"detector level |pull| <= 1: {s['detector_pulls_within_1']} of {s['detector_bins']} bins "
          f"(target >= 0.9: {'met' if s['detector_target_met'] else 'MISSED'})")
    print(f"vertex level   |pull| <  1: {s['vertex_pulls_within_1']} of {s['vertex_bins']} recoverable bins "
          f"(target >= 0.8: {'met' if s['vertex_target_met'] else 'MISSED'})")
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
    from mlegpipe.stages import RunRecord

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

    class Parametric:
        kind, trainable = "detector", False

    record = RunRecord(config={"pipeline": {}, "surrogate": {"train_on": ["sim_train", "sim_train_det"]}},
                       samples={"sim_train": sim_v, "sim_train_det": sim_d, "truth_test": truth,
                                "truth_test_det": data},
                       stages={"det": Parametric(), "surrogate": surrogate, "unfolding": stage},  # type: ignore[dict-item]
                       metrics={}, histories={}, timings={})
    torch.set_num_threads(2)
    stage.unfold(data, surrogate, record)
    return summarize({"stages": {"unfolding": stage.info()}})


def main() -> None:
    """Run the pipelines, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and steps (smoke test)")
    parser.add_argument("--only", choices=tuple(PIPELINES), help="run one scenario only")
    parser.add_argument("--set", action="append", default=[], help="extra overrides SECTION.KEY=VALUE")
    parser.add_argument("--output", default="bench_unfold.json", help="file name under benchmarks/results/")
    parser.add_argument("--toy", action="store_true", help="run the 2D Gaussian toy closure instead of the pipelines")
    args = parser.parse_args()
    results: dict[str, Any] = {"quick": args.quick, "overrides": args.set}
    if args.toy:
        start, cpu = time.perf_counter(), time.process_time()
        summary = toy_closure(steps=300 if args.quick else 1000, replicas=2 if args.quick else 3)
        summary["seconds"] = round(time.perf_counter() - start, 1)
        summary["cpu_seconds"] = round(time.process_time() - cpu, 1)
        results["toy"] = summary
        _print("toy", summary["seconds"], summary)
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in PIPELINES.items():
            if args.toy:
                break
            if args.only and name != args.only:
                continue
            overrides = (QUICK if args.quick else []) + list(args.set)
            config = load_config(str(path), overrides or None)
            start, cpu = time.perf_counter(), time.process_time()
            run_dir = run_pipeline(config, output=str(Path(tmp) / name), force=True, progress=False)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            metrics = json.loads((run_dir / "metrics.json").read_text())
            summary = summarize(metrics)
            summary["seconds"] = round(seconds, 1)
            # CPU seconds of all threads: on a shared machine the wall time overstates the cost
            summary["cpu_seconds"] = round(cpu, 1)
            summary["timings_s"] = metrics.get("timings_s", {})
            results[name] = summary
            _print(name, seconds, summary)
    out = ROOT / "benchmarks" / "results" / args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
