"""``python -m benchmarks [--quick]``: run every benchmark, print one table of side-by-side ratios, write summary.json.

Each ``benchmarks/bench_*.py`` runs in its own process (its thread settings
and memory cannot disturb the next one) with a time limit; scripts that are
not there are listed as "not available". Figures come from the JSON each
script writes in ``benchmarks/results/`` during this run (a JSON older than
the run is never used): a ``figures`` list of :class:`benchmarks.Figure`
dicts, or the known layouts of ``bench_dis``, ``bench_smear`` and ``bench_truth``. The whole
table and every script's status go to ``benchmarks/results/summary.json``
with a timestamp, the mlegpipe version and the git commit, so runs can be
compared.

Example:
    python -m benchmarks                    # about 7 minutes on an idle 2-core machine (make bench)
    python -m benchmarks --quick            # about 4 minutes
    python -m benchmarks --only bench_scale
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import RESULTS, Figure, format_table, machine_info, write_json

__all__ = ["SCRIPTS", "collect_figures", "main", "run_script"]

HERE = Path(__file__).resolve().parent

#: Benchmark scripts in the order they run (cheap ones first): arguments of a quick and of a full run, and
#: the name of the JSON each writes in results/.
SCRIPTS: dict[str, dict[str, Any]] = {
    "bench_scale": {"quick": ["--quick"], "full": [], "json": "bench_scale", "timeout": float("inf")},
    "bench_dis": {"quick": ["--events", "200000"], "full": ["--events", "1000000"], "json": "bench_dis"},
    "bench_distributed": {"quick": ["--quick"], "full": [], "json": "bench_distributed"},
    "bench_write": {"quick": ["--events", "500000", "--text-events", "20000", "--repeat", "1"], "full": [],
                    "json": "bench_write"},
    "bench_smear": {"quick": ["--events", "2000", "--repeat", "2"], "full": ["--events", "10000"],
                    "json": "bench_smear"},
    "bench_truth": {"quick": ["--scale", "0.2"], "full": [], "json": "truth"},
    "bench_report": {"quick": ["--events", "100000"], "full": ["--events", "1000000"], "json": "bench_report"},
    "bench_generators": {"quick": ["--models", "flow", "--train", "5000", "--valid", "2000", "--test", "5000",
                                   "--set", "steps=100"],
                         "full": ["--models", "flow", "--train", "20000", "--valid", "5000", "--test", "10000",
                                  "--set", "steps=1000"], "json": "bench_generators"},
    "bench_gans": {"quick": ["--models", "fatgan", "--train", "5000", "--test", "5000", "--set", "steps=100"],
                   "full": ["--models", "fatgan", "--train", "20000", "--test", "10000", "--set", "steps=1000"],
                   "json": "bench_gans"},
    "bench_folding": {"quick": ["--quick"], "full": [], "json": "folding"},
    # the two HERA closure pipelines take ~13 min on 2 cores: run them on their own
    # (python benchmarks/bench_unfold.py); the suite runs the 2D toy closure (~1.5 min)
    "bench_unfold": {"quick": ["--toy", "--quick"], "full": ["--toy"], "json": "bench_unfold"},
    # what the detector-level pull target asks of an exact model (~1 min)
    "bench_pull_ceiling": {"quick": ["--samples", "2"], "full": [], "json": "bench_pull_ceiling"},
    # the full interpretation study (python benchmarks/bench_interpret.py) takes ~6 min
    "bench_interpret": {"quick": ["--quick"], "full": ["--quick"], "json": "bench_interpret_quick"},
}


def run_script(name: str, quick: bool, timeout: float) -> dict[str, Any]:
    """Run ``benchmarks/<name>.py``; return its status, seconds and output tail."""
    path = HERE / f"{name}.py"
    if not path.exists():
        return {"status": "not available", "seconds": 0.0}
    if timeout <= 0:
        return {"status": "skipped (suite time budget spent)", "seconds": 0.0}
    args = list(SCRIPTS.get(name, {}).get("quick" if quick else "full", []))
    if quick and not args and '"--quick"' in path.read_text(encoding="utf-8"):
        args = ["--quick"]
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout,
                              cwd=HERE.parent, check=False)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:.0f} s", "seconds": timeout, "args": args}
    status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    return {"status": status, "seconds": time.perf_counter() - start, "args": args,
            "tail": (proc.stdout + proc.stderr)[-1500:]}


def _dis_figures(data: dict[str, Any]) -> list[Figure]:
    out = []
    for row in data.get("rows", []):
        setup = row.get("setup", "?")
        if "sigma_pb" in row and "quadrature_pb" in row:
            out.append(Figure(f"dis sigma_tot ({setup})", row["sigma_pb"], "pb", "scipy dblquad",
                              row["quadrature_pb"], target="|ratio-1| <= 0.002", group="bench_dis",
                              meets=abs(row["sigma_pb"] / row["quadrature_pb"] - 1) <= 0.002))
        if "unweighting_efficiency" in row and row.get("efficiency_flat_box"):
            out.append(Figure(f"dis unweighting efficiency ({setup})", row["unweighting_efficiency"], "",
                              "flat (ln x, ln Q2) proposal", row["efficiency_flat_box"], target="> 1",
                              group="bench_dis", note=f"{row.get('events_per_s', 0):,.0f} events/s"))
    return out


def _smear_figures(data: dict[str, Any]) -> list[Figure]:
    pythia = data.get("pythia_events_per_s") or data.get("pythia_events_per_s_cpu")
    return [Figure(f"smear fold ({row['preset']})", row["events_per_s"], "events/s", "pythia8 full DIS "
                   f"({data.get('beams', '?')})", pythia, target="> 10", group="bench_smear",
                   note=f"chain share {row.get('chain_share', float('nan')):.1%}")
            for row in data.get("presets", []) if pythia]


def _truth_figures(data: dict[str, Any]) -> list[Figure]:
    rows = [r for r in data.get("rows", []) if r.get("events_per_s")]
    ref = next((r for r in rows if r.get("source", "").startswith("pythia8 full event + final")), None)
    out = [Figure(r["source"], r["events_per_s"], "events/s", ref["source"], ref["events_per_s"], group="bench_truth")
           for r in rows if ref is not None and r is not ref]
    sigma = data.get("sigma", {})
    if sigma.get("pythia_pb") and sigma.get("dis_pb"):
        out.append(Figure("sigma_tot pythia8 (HERA, Q2>1)", sigma["pythia_pb"], "pb", "dis (ALLM97 Born)",
                          sigma["dis_pb"], group="bench_truth", note="different physics: radiative, QCD"))
    return out


_EXTRACTORS: dict[str, Callable[[dict[str, Any]], list[Figure]]] = {
    "bench_dis": _dis_figures, "bench_smear": _smear_figures, "bench_truth": _truth_figures}


def collect_figures(name: str, since: float) -> tuple[list[Figure], str]:
    """The figures of the script's JSON in ``results/`` if it was written after ``since`` (epoch seconds)."""
    path = RESULTS / f"{SCRIPTS.get(name, {}).get('json', name)}.json"
    if not path.exists() or path.stat().st_mtime < since:
        return [], "no results written in this run"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        return [], f"unreadable results: {err}"
    if isinstance(data, dict) and isinstance(data.get("figures"), list):
        figures = []
        for item in data["figures"]:
            try:
                figures.append(Figure(**{**item, "group": item.get("group") or name}))
            except TypeError:
                continue
        return figures, ""
    if name in _EXTRACTORS and isinstance(data, dict):
        return _EXTRACTORS[name](data), ""
    return [], f"no side-by-side figures in its JSON; see {path.name}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE.parent,
                             check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    """Run the suite; return 0 when every available script ran."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples (about 5 minutes in all when idle)")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this script (repeatable)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per script (default 200 quick, "
                        "300 full)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole suite; scripts that "
                        "would start after it are skipped (default 420 quick, 600 full)")
    args = parser.parse_args(argv)
    timeout = args.timeout or (200.0 if args.quick else 300.0)
    budget = args.budget or (420.0 if args.quick else 600.0)
    names = args.only or list(SCRIPTS)
    names += sorted(p.stem for p in HERE.glob("bench_*.py") if p.stem not in names and not args.only)
    started = time.time()
    figures: list[Figure] = []
    scripts: dict[str, Any] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        since = time.time()
        limit = min(SCRIPTS.get(name, {}).get("timeout", timeout), budget - (time.time() - started))
        info = run_script(name, args.quick, limit)
        if info["status"] == "ok":
            found, why = collect_figures(name, since)
            figures += found
            info["figures"] = len(found)
            if why:
                info["note"] = why
        scripts[name] = info
        print(f"  {name}: {info['status']} ({info['seconds']:.0f} s)", file=sys.stderr, flush=True)
    for f in figures:
        f.name = f"[{f.group.removeprefix('bench_')}] {f.name}"
    print(format_table(figures))
    print()
    for name, info in scripts.items():
        extra = f"; {info['note']}" if info.get("note") else ""
        print(f"{name:<18} {info['status']} ({info['seconds']:.0f} s){extra}")
    from mlegpipe import __version__

    summary = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": time.time() - started,
        "mlegpipe": __version__,
        "git_commit": _git_commit(),
        "quick": args.quick,
        "machine": machine_info(),
        "scripts": {k: {kk: vv for kk, vv in v.items() if kk != "tail" or v["status"] != "ok"}
                    for k, v in scripts.items()},
        "figures": [f.to_dict() for f in figures],
    }
    path = write_json("summary", summary)
    print(f"\nwrote {path}")
    failed = [k for k, v in scripts.items() if v["status"] not in ("ok", "not available")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
