"""Benchmark of the truth sources side by side: events/s of ``dis``, ``pythia8`` (hard, full) and ``root`` reading.

Run ``python benchmarks/bench_truth.py [--scale 1.0]``. All sources run in the
same process one after the other at HERA (e⁺p 27.6 × 920 GeV, Q² > 1 GeV²):
the ``dis`` sampler (grid build included), Pythia 8 hard process only, Pythia
8 full events keeping only the scattered lepton, and full events with the
whole final state; then the ``root`` source reads back a file written from the
``dis`` events (flat branches) and one written from the full events (jagged
particles). Pythia's σ(Q² > 1) is printed beside the ``dis`` sampler's σ
(ALLM97, W² > 3) with their ratio. Writes benchmarks/results/truth.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.rootio import write_events
from mlegpipe.schema import build_params

__all__ = ["main", "time_source"]

RESULTS = Path(__file__).resolve().parent / "results"


def time_source(cls: type, raw: dict[str, Any], name: str) -> tuple[EventBatch, float, dict[str, Any]]:
    """Build a source from a TOML-like table, read all its events; return (events, seconds, info)."""
    t0 = time.perf_counter()
    src = cls(build_params(cls.Params, raw, name), StageContext(name, seed=7))
    batch = src.read()
    seconds = time.perf_counter() - t0
    return batch, seconds, src.info()


def _row(label: str, n: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"source": label, "events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds, 1),
            **extra}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="scale every event count")
    args = parser.parse_args(argv)
    n_dis, n_hard, n_lep, n_full = (max(int(k * args.scale), 100) for k in (200_000, 50_000, 20_000, 5_000))
    rows: list[dict[str, Any]] = []
    sigmas: dict[str, Any] = {}

    dis_events = None
    try:
        from mlegpipe_builtins.truth.dis import DISTruth

        dis_events, sec, info = time_source(DISTruth, {"events": n_dis, "beams": "hera", "q2_min": 1.0}, "dis")
        rows.append(_row("dis (ALLM97, incl. grid build)", n_dis, sec))
        sigmas["dis_pb"] = info.get("cross_section_pb")
        sigmas["dis_err_pb"] = info.get("cross_section_error_pb")
    except ImportError as err:
        rows.append({"source": "dis", "error": str(err)})

    from mlegpipe_builtins.truth.pythia import PythiaSource

    # Pythia init cost on its own (one block = one init)
    t0 = time.perf_counter()
    time_source(PythiaSource, {"events": 1, "level": "hard"}, "pythia-init")
    init_s = time.perf_counter() - t0

    _, sec, info = time_source(PythiaSource, {"events": n_hard, "level": "hard"}, "pythia-hard")
    rows.append(_row("pythia8 hard process", n_hard, sec, init_s=round(init_s, 2)))
    sigmas["pythia_pb"], sigmas["pythia_err_pb"] = info["sigma_process_pb"], info["sigma_process_error_pb"]
    _, sec, info = time_source(PythiaSource, {"events": n_lep, "level": "full", "particles": False}, "pythia-lep")
    rows.append(_row("pythia8 full event, lepton only", n_lep, sec))
    full_events, sec, info = time_source(PythiaSource, {"events": n_full, "level": "full"}, "pythia-full")
    mean_particles = float(np.mean(ak.to_numpy(ak.num(full_events.arrays["particles"]))))
    rows.append(_row("pythia8 full event + final state", n_full, sec, particles_per_event=round(mean_particles, 1)))

    from mlegpipe_builtins.truth.rootfile import RootSource

    with tempfile.TemporaryDirectory() as tmp:
        for label, batch in (("root read, flat (dis events)", dis_events),
                             ("root read, jagged (full final state)", full_events)):
            if batch is None:
                continue
            path = write_events(Path(tmp) / "bench.root", batch, overwrite=True)
            size = path.stat().st_size
            _, sec, _ = time_source(RootSource, {"files": [str(path)], "step_size": "20 MB"}, "root")
            rows.append(_row(label, len(batch), sec, file_mb=round(size / 1e6, 2), mb_per_s=round(size / 1e6 / sec, 1)))

    if sigmas.get("dis_pb") and sigmas.get("pythia_pb"):
        sigmas["pythia_over_dis"] = sigmas["pythia_pb"] / sigmas["dis_pb"]

    width = max(len(r["source"]) for r in rows)
    print(f"{'source':<{width}}  {'events':>8}  {'seconds':>8}  {'events/s':>10}  notes")
    for r in rows:
        if "error" in r:
            print(f"{r['source']:<{width}}  unavailable: {r['error']}")
            continue
        notes = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("source", "events", "seconds", "events_per_s"))
        print(f"{r['source']:<{width}}  {r['events']:>8}  {r['seconds']:>8.2f}  {r['events_per_s']:>10.0f}  {notes}")
    print()
    print("HERA e+p, Q2 > 1 GeV2:  sigma(pythia8) = {:.4g} ± {:.2g} pb;  sigma(dis, W2 > 3) = {} pb;  ratio = {}".format(
        sigmas["pythia_pb"], sigmas["pythia_err_pb"],
        f"{sigmas['dis_pb']:.4g}" if sigmas.get("dis_pb") else "n/a",
        f"{sigmas['pythia_over_dis']:.3f}" if "pythia_over_dis" in sigmas else "n/a"))

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "truth.json"
    out.write_text(json.dumps({"rows": rows, "sigma": sigmas, "scale": args.scale, "python": platform.python_version(),
                               "machine": platform.machine()}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
