"""How to GAN LHC Events reproduced: the ``howtogan`` generator with and without its MMD² term (issue 20, seed 003).

The ``howtogan`` generator learns Pythia all-hadronic tt̄ → b q q̄' b̄ q q̄'
(the six quarks of the hard process, 13 TeV) from one file and is judged on
an independent file never used in training, once with the paper's MMD² on the
W and top masses (``mmd``: ``mmd_observables = ["m_W1", "m_W2", "m_t1",
"m_t2"]``, weight 1) and once without it (``no-mmd``: ``mmd_observable_weight
= 0``, the ablation), each for every ``--seeds`` training seed, at the CPU
default (``preset = "cpu"``) unless ``--set`` says otherwise (``--variants
mmd,no-mmd,mmd-w2`` adds the MMD² term at weight 2). Per run:

- per mass (m_W1, m_W2, m_t1, m_t2): the fraction inside ±5 GeV of the pole,
  the Cauchy-fitted pole and width (:func:`mlegpipe.metrics.peaks.peak_figures`),
  and the χ²/ndf on 40 equal-population bins of the test sample with Poisson
  errors on both samples (:func:`mlegpipe.metrics.distances.sample_chi2_ndf`)
  beside the truth-vs-truth floor (a third independent Pythia file of the
  test's size against the test file);
- the same χ²/ndf for a few kinematic observables (p_T and η of the leading
  quarks, p_T of the top, m_tt̄) and the median |Σp_T| (truth: 0);
- the training time (wall and CPU seconds) and the generation speed (events/s).

Samples: ``--data`` holds ``ttbar_allhad_train_60k.root``,
``ttbar_allhad_test_100k.root`` and ``ttbar_allhad_floor_100k.root``; missing
ones are made with Pythia by ``scripts/make_ttbar_samples.py allhad`` (seeds
101, 202, 303; about 10 s each). ``--quick`` is a smoke run on the shipped
``sample_data/ttbar_allhad_small.root`` split in three (300 steps, one seed).
Prints the with/without-MMD table side by side and writes
``benchmarks/results/bench_howtogan.json`` and ``bench_howtogan.png`` (the four
mass histograms of truth and both variants).

    python benchmarks/bench_howtogan.py [--quick] [--seeds 1,2] [--set steps=6000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlegpipe.config import parse_override_value
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.metrics.distances import sample_chi2_ndf
from mlegpipe.metrics.peaks import peak_figures
from mlegpipe.observables import ObservableSet
from mlegpipe.registry import load_plugins
from mlegpipe.rootio import read_events
from mlegpipe.schema import build_params

__all__ = ["KINEMATICS", "MASSES", "VARIANTS", "judge", "main"]

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/data/ttbar")
SMALL = ROOT / "sample_data" / "ttbar_allhad_small.root"
#: The benchmark's Pythia files: name -> (events, seed of scripts/make_ttbar_samples.py).
FILES: dict[str, tuple[int, int]] = {"train": (60_000, 101), "test": (100_000, 202), "floor": (100_000, 303)}

MASSES = ["m_W1", "m_W2", "m_t1", "m_t2"]
KINEMATICS = ["quarks1_pt", "quarks2_pt", "quarks1_eta", "pt_t1", "m_tt"]
#: The runs of the table: the paper's loss (weight 1) and the ablation; on request a heavier MMD² term.
VARIANTS: dict[str, dict[str, Any]] = {"mmd": {}, "no-mmd": {"mmd_observable_weight": 0.0},
                                       "mmd-w2": {"mmd_observable_weight": 2.0}}


def load(path: Path, limit: int | None = None) -> EventBatch:
    """Events of a ROOT file (at most ``limit``)."""
    return EventBatch.concat(list(read_events(str(path), max_events=limit)))


def sample_file(data: Path, name: str) -> Path:
    """The benchmark file ``name`` (train, test, floor) in ``data``, made with Pythia when missing."""
    events, seed = FILES[name]
    path = data / f"ttbar_allhad_{name}_{events // 1000}k.root"
    if not path.exists():
        data.mkdir(parents=True, exist_ok=True)
        print(f"# making {path} with Pythia ({events} events, seed {seed})", flush=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_ttbar_samples.py"), "allhad", "--events",
                        str(events), "--seed", str(seed), "--output", str(path), "--quiet"], check=True)
    return path


def judge(model: EventBatch, test: EventBatch, floor: EventBatch) -> dict[str, Any]:
    """Peak figures and χ²/ndf (with the truth-vs-truth floor) of the masses; χ²/ndf of the kinematics."""
    obs = ObservableSet()
    out: dict[str, Any] = {}
    for name in (*MASSES, *KINEMATICS):
        t, m, f = (obs.values(b, name) for b in (test, model, floor))
        t, m, f = t[np.isfinite(t)], m[np.isfinite(m)], f[np.isfinite(f)]
        chi, chi_floor = sample_chi2_ndf(m, t, bins=40), sample_chi2_ndf(f, t, bins=40)
        row = {"chi2_ndf": chi, "floor": chi_floor, "ratio": chi / chi_floor if chi_floor > 0 else float("inf")}
        peak = obs.get(name).peak
        if peak is not None:
            row.update(peak_figures(m, peak))
        out[name] = row
    out["sum_pt_median"] = float(np.median(obs.values(model, "pt_tt")))
    return out


def run(variant: str, params: dict[str, Any], train: EventBatch, valid: EventBatch, test: EventBatch,
        floor: EventBatch, seed: int) -> dict[str, Any]:
    """Train one ``howtogan``, generate as many events as the test sample, judge them."""
    from mlegpipe_builtins.generators.howtogan import HowToGAN

    gen = HowToGAN(build_params(HowToGAN.Params, params, "generator"), StageContext("generator", seed=seed))
    wall, cpu = time.perf_counter(), time.process_time()
    fit = gen.fit(train, valid)
    train_s, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    gen.sample(1000, np.random.SeedSequence(seed + 1))  # warm-up
    start = time.perf_counter()
    model = gen.sample(len(test), np.random.SeedSequence(seed + 2))
    sample_s = time.perf_counter() - start
    last = fit["history"][-1] if fit["history"] else {}
    return {"variant": variant, "seed": seed, "params": params, "figures": judge(model, test, floor),
            "train_seconds": train_s, "train_cpu_seconds": train_cpu, "events_per_second": len(test) / sample_s,
            "steps": gen.settings["steps"], "final_mmd2": {k: v for k, v in last.items() if k.startswith("mmd2_")},
            "_model": model}


def truth_figures(test: EventBatch, floor: EventBatch) -> dict[str, Any]:
    """The peak figures of the test and floor samples (what a perfect generator would show)."""
    obs = ObservableSet()
    return {name: {"test": peak_figures(obs.values(test, name), obs.get(name).peak),
                   "floor": peak_figures(obs.values(floor, name), obs.get(name).peak)} for name in MASSES}


def _mean_std(values: list[float], digits: int = 3) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f}±{v.std(ddof=1):.{digits}f}"


def _fit(value: float) -> str:
    """A fitted pole or width; beyond 10³ GeV (no peak to fit) as such."""
    return f"{value:.4g}" if np.isfinite(value) and abs(value) < 1e3 else "no peak"


def table(rows: list[dict[str, Any]], truth: dict[str, Any]) -> str:
    """The with/without-MMD table: one column per run, the truth (test file) beside them."""
    heads = [f"{r['variant']} s{r['seed']}" for r in rows]
    width = 12
    lines = [f"{'':<22}{'truth':>{width}}" + "".join(f"{h:>{width}}" for h in heads)]
    lines.append("-" * len(lines[0]))

    def line(label: str, truth_value: str, cells: list[str]) -> None:
        lines.append(f"{label:<22}{truth_value:>{width}}" + "".join(f"{c:>{width}}" for c in cells))

    for name in MASSES:
        t = truth[name]["test"]
        line(f"{name} window ±5", f"{t['window_fraction']:.3f}",
             [f"{r['figures'][name]['window_fraction']:.3f}" for r in rows])
        line(f"{name} width_fit", f"{t['width_fit']:.2f}", [_fit(r["figures"][name]["width_fit"]) for r in rows])
        line(f"{name} pole_fit", f"{t['pole_fit']:.2f}", [_fit(r["figures"][name]["pole_fit"]) for r in rows])
        floor = rows[0]["figures"][name]["floor"]
        line(f"{name} χ²/ndf", f"{floor:.2f}", [f"{r['figures'][name]['chi2_ndf']:.1f}" for r in rows])
    for name in KINEMATICS:
        floor = rows[0]["figures"][name]["floor"]
        line(f"{name} χ²/ndf", f"{floor:.2f}", [f"{r['figures'][name]['chi2_ndf']:.1f}" for r in rows])
    line("median |ΣpT| (GeV)", "0", [f"{r['figures']['sum_pt_median']:.1f}" for r in rows])
    line("train wall s", "", [f"{r['train_seconds']:.0f}" for r in rows])
    line("train CPU s", "", [f"{r['train_cpu_seconds']:.0f}" for r in rows])
    line("events/s", "", [f"{r['events_per_second']:.3g}" for r in rows])
    lines.append("(truth column: the test file's figures; for χ²/ndf the truth-vs-truth floor)")
    summary = ["", "mean over seeds:"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        parts = [f"{n} win {_mean_std([r['figures'][n]['window_fraction'] for r in mine])}" for n in MASSES]
        summary.append(f"  {variant:<7} " + ", ".join(parts)
                       + f"; train {_mean_std([r['train_seconds'] for r in mine], 0)} s")
    return "\n".join(lines + summary)


def figure(rows: list[dict[str, Any]], test: EventBatch, path: Path) -> None:
    """Histograms of the four masses: truth and the first run of each variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = ObservableSet()
    firsts = {r["variant"]: r for r in reversed(rows)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, name in zip(axes.flat, MASSES, strict=True):
        pole = obs.get(name).peak.pole
        edges = np.linspace(pole - 30, pole + 30, 121)
        ax.hist(obs.values(test, name), edges, histtype="step", color="k", label="Pythia (test)", density=True)
        for k, (variant, r) in enumerate(firsts.items()):
            ax.hist(obs.values(r["_model"], name), edges, histtype="step", color=f"C{k}", density=True,
                    label=f"howtogan {variant} (seed {r['seed']})")
        ax.set_xlabel(f"{name} [GeV]")
        ax.set_yscale("log")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="folder of the Pythia files (made when missing)")
    ap.add_argument("--seeds", default="1,2", help="comma-separated training seeds")
    ap.add_argument("--variants", default="mmd,no-mmd", help="comma-separated rows of VARIANTS")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="generator parameter (all runs)")
    ap.add_argument("--quick", action="store_true", help="smoke run: the small shipped sample, 300 steps, one seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: no oversubscription on a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_plugins()
    if args.quick:
        small = load(SMALL)
        third = len(small) // 3
        train_all, test, floor = (small.take(slice(k * third, (k + 1) * third)) for k in range(3))
        source = f"{SMALL.name} split in three"
    else:
        train_all, test, floor = (load(sample_file(args.data, name)) for name in ("train", "test", "floor"))
        source = f"Pythia files in {args.data}"
    n_valid = max(2, len(train_all) // 20)
    train, valid = train_all.take(slice(n_valid, None)), train_all.take(slice(0, n_valid))
    overrides = {k: parse_override_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.quick:
        overrides.setdefault("steps", 300)
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.quick else None]
    print(f"# {source}: {len(train)} training, {len(valid)} validation, {len(test)} test, {len(floor)} floor events; "
          f"{platform.node()}, torch threads {args.threads}; overrides {overrides}", flush=True)
    rows = []
    for seed in seeds:
        for variant in args.variants.split(","):
            if variant not in VARIANTS:
                raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
            rows.append(run(variant, {**VARIANTS[variant], **overrides}, train, valid, test, floor, seed))
            r = rows[-1]
            print(f"# {variant} seed {seed}: {r['train_seconds']:.0f} s, W window "
                  f"{r['figures']['m_W1']['window_fraction']:.3f}, top window "
                  f"{r['figures']['m_t1']['window_fraction']:.3f}", flush=True)
    truth = truth_figures(test, floor)
    print(table(rows, truth))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "bench_howtogan_quick" if args.quick else "bench_howtogan"
    figure(rows, test, RESULTS / f"{stem}.png")
    out = RESULTS / f"{stem}.json"
    out.write_text(json.dumps({"source": source, "n_train": len(train), "n_test": len(test), "overrides": overrides,
                               "truth": truth, "runs": [{k: v for k, v in r.items() if k != "_model"} for r in rows]},
                              indent=2, default=float))
    print(f"# wrote {out} and {stem}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
