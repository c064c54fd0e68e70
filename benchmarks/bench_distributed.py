"""Scaling out: training with 1 and 2 torchrun processes per trainer, generation on 1, 2 and 4 Dask workers.

    python benchmarks/bench_distributed.py [--quick] [--only flow,fatgan]

Every figure is measured side by side in this run, on this machine (gloo, CPU):

- **training**: each trainer's pipeline (tiny DIS and tt̄ samples, a fixed
  number of steps) run by ``mlegpipe run`` with one process and with
  ``--nproc 2``; the figure is the stage's training time from the run's
  ``metrics.json`` (``train_seconds`` where the stage reports it, else the
  section's wall time): steps/s and the parallel efficiency t₁ / (2 t₂). With the
  same global batch, 2 processes reproduce the 1-process training (the
  ``test_ddp_*`` tests check it), so the time to a given quality scales as
  the time per step: time-to-quality ratio = wall-time ratio;
- **generation**: ``mlegpipe generate --shards 8`` of the DIS flow on a Dask
  ``LocalCluster`` of 1, 2 and 4 single-threaded worker processes (events/s;
  efficiency = rate_k / (k · rate_1)); the cluster is started before the
  clock. On a 2-core machine 4 workers oversubscribe the cores.

Prints one table and writes ``benchmarks/results/bench_distributed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import Figure, format_table, machine_info, write_json

__all__ = ["main", "measure"]

GROUP = "bench_distributed"
ROOT = Path(__file__).resolve().parent.parent
TTBAR = ROOT / "sample_data" / "ttbar_allhad_small.root"

_DIS = """
[pipeline]
name = "{name}"
seed = 3
split = [0.6, 0.2, 0.2]
generate = 2000

[truth]
plugin = "dis"
beams = "hera"
events = {events}
"""

#: trainer -> (section whose time is measured, the rest of the pipeline TOML)
TRAINERS: dict[str, tuple[str, str]] = {
    "flow": ("generator", '[generator]\nplugin = "flow"\nsteps = {steps}\nvalidate_every = 0\n'),
    "fatgan": ("generator", '[generator]\nplugin = "fatgan"\nsteps = {steps}\nvalidate_every = 0\n'),
    "bvae": ("generator", '[generator]\nplugin = "bvae"\nsteps = {steps}\nvalidate_every = 0\n'),
    "flowfold": ("flowfold", '[detector]\nplugin = "smear"\npreset = "matrix-0.2"\n\n[flowfold]\nkind = "detector"\n'
                 'plugin = "flowfold"\ninputs = ["truth_test"]\nvertex_features = ["lepton_E", "lepton_P", '
                 '"lepton_eta", "lepton_phi"]\ndetector_features = ["lepton_E", "lepton_P"]\nsteps = {steps}\n'),
    "howtogan": ("generator", ""),  # its own truth: the tt̄ sample
}

_HOWTOGAN = f"""
[pipeline]
name = "{{name}}"
seed = 3
generate = 2000

[truth]
plugin = "root"
files = ["{TTBAR}"]
events = {{events}}

[generator]
plugin = "howtogan"
steps = {{steps}}
validate_every = 0
"""


def _pipeline(trainer: str, steps: int, events: int) -> str:
    if trainer == "howtogan":
        return _HOWTOGAN.format(name=trainer, steps=steps, events=min(events, 10_000))
    return _DIS.format(name=trainer, events=events) + "\n" + TRAINERS[trainer][1].format(steps=steps)


def _run(toml: Path, out: Path, nproc: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mlegpipe", "-q", "run", str(toml), "-o", str(out), "--force", "--no-progress",
           "--set", "pipeline.threads=1"]
    if nproc > 1:
        cmd[5:5] = ["--nproc", str(nproc)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{toml.name} with {nproc} process(es) failed:\n{done.stderr[-2000:]}")
    return json.loads((out / "metrics.json").read_text())


def training_figures(trainers: list[str], steps: int, events: int, tmp: Path,
                     details: dict[str, Any]) -> list[Figure]:
    """Each trainer's section time with 1 and 2 processes."""
    figures = []
    for name in trainers:
        section = TRAINERS[name][0]
        toml = tmp / f"{name}.toml"
        toml.write_text(_pipeline(name, steps, events))
        times = {}
        for nproc in (1, 2):
            metrics = _run(toml, tmp / f"{name}-{nproc}", nproc)
            # the stage's own training time where it reports one (sampling, distillation excluded), else the section's
            times[nproc] = metrics["stages"][section].get("train_seconds", metrics["timings_s"][section])
        details[name] = {"steps": steps, "seconds": times}
        figures += [
            Figure(f"{name} training [2 processes]", steps / times[2], "steps/s", f"{name} training [1 process]",
                   steps / times[1], group=GROUP, note=f"{steps} steps, global batch as in one process"),
            Figure(f"{name} parallel efficiency", times[1] / (2 * times[2]), "", "ideal", 1.0, group=GROUP,
                   note="t1 / (2 t2); time-to-quality ratio = wall-time ratio (same training)"),
        ]
    return figures


def generation_figures(events: int, tmp: Path, details: dict[str, Any]) -> list[Figure]:
    """``generate --shards 8`` on LocalClusters of 1, 2 and 4 workers."""
    from dask.distributed import LocalCluster

    from mlegpipe.sharding import generate_shards

    toml = tmp / "gen.toml"
    toml.write_text(_pipeline("flow", 200, 20_000))
    _run(toml, tmp / "gen", 1)
    checkpoint = tmp / "gen" / "checkpoints" / "generator.pt"
    rates = {}
    for workers in (1, 2, 4):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            generate_shards(checkpoint, 65_536 * workers, tmp / "warm.root", 1, workers, overwrite=True,
                            scheduler=cluster.scheduler_address)  # loads the plugins on every worker
            start = time.perf_counter()
            generate_shards(checkpoint, events, tmp / "shard.root", 1, 8, overwrite=True,
                            scheduler=cluster.scheduler_address)
            rates[workers] = events / (time.perf_counter() - start)
    details["generation_events_per_s"] = rates
    figures = []
    for workers in (2, 4):
        figures += [
            Figure(f"generate on {workers} Dask workers", rates[workers], "events/s", "1 Dask worker", rates[1],
                   group=GROUP, note=f"{events} events in 8 shards (ROOT)"),
            Figure(f"generation parallel efficiency [{workers} workers]", rates[workers] / (workers * rates[1]), "",
                   "ideal", 1.0, group=GROUP, note=f"{os.cpu_count()} cores"),
        ]
    return figures


def measure(quick: bool, trainers: list[str]) -> dict[str, Any]:
    """Every figure; the JSON-able result."""
    details: dict[str, Any] = {"quick": quick, "cores": os.cpu_count()}
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="mlegpipe-bench-dist-") as name:
        tmp = Path(name)
        figures += training_figures(trainers, 100 if quick else 400, 10_000 if quick else 30_000, tmp, details)
        figures += generation_figures(1_048_576 if quick else 4_194_304, tmp, details)
    return {"benchmark": GROUP, "figures": [f.to_dict() for f in figures], "details": details,
            "machine": machine_info(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: measure, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and events (a few minutes)")
    parser.add_argument("--only", default=",".join(TRAINERS), help="comma-separated trainers")
    args = parser.parse_args(argv)
    result = measure(args.quick, [t for t in args.only.split(",") if t])
    print(format_table([Figure(**f) for f in result["figures"]]))
    print(f"\nwrote {write_json(GROUP, result)}")
    return result


if __name__ == "__main__":
    main()
