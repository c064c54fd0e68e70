"""Benchmark of the GAN generators and the B-VAE, side by side with the flow, in the generator benchmark.

Part 1 adds the rows ``fatgan``, ``dsgan``, ``lsgan``, ``bvae`` (and the
B-VAE sampling its prior, to show what the latent buffer buys, and
``bvae-calibrated``, whose buffer is widened until it no longer copies its
training events) to
:mod:`bench_generators` through its :func:`~bench_generators.register_model`
and runs that benchmark on the HERA Pythia sample, so every model (the flow
included) is trained and judged in the same run against the same
truth-vs-truth floor.

Part 2 (``--conditional``) trains cFAT-GAN on the symmetric multi-energy
Pythia sample (E_b = 10, 20, 30, 40, 50 GeV) and compares it, energy by
energy, with independent Pythia events at the trained energies and at 15, 25,
35, 45 GeV (interpolation) and 60 GeV (extrapolation): the thesis Fig. 16 KL
divergences of E', p_x, p_y, p_z (40 bins over the truth range) beside the
same KL between two halves of the truth sample (the floor), and the fraction of
unphysical events.

Part 3 (``--amplification``) is the GANplifying study (seed 002): the
generator of ``pipelines/amplification_camel.toml`` and
``amplification_shell5d.toml`` is trained ``--repeats`` times, each time on an
independent truth sample (truth seed = first seed + k), and the asymptotic
quantile MSEs are averaged before the conversion into equivalent events
(:func:`~mlegpipe.metrics.amplification.pooled_amplification`).

Run: ``python benchmarks/bench_gans.py [--models flow,fatgan,dsgan] [--parallel] [--conditional] [--train 30000]``,
``python benchmarks/bench_gans.py --amplification [--repeats 10] [--first-seed 100]``.
With ``--parallel`` every model trains in its own process on the same split (same
seed, same test and floor samples) and the rows are merged into one table.
Writes ``benchmarks/results/bench_gans.json`` and ``benchmarks/results/bench_cfatgan.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_generators as bg  # noqa: E402 - the sibling benchmark module

from mlegpipe.context import StageContext  # noqa: E402
from mlegpipe.events import EventBatch  # noqa: E402
from mlegpipe.metrics.distances import kl_divergence  # noqa: E402
from mlegpipe.registry import load_plugins  # noqa: E402
from mlegpipe.schema import build_params  # noqa: E402

__all__ = ["GAN_MODELS", "amplification_study", "conditional_benchmark", "main"]

#: The rows this benchmark adds to the generator table (CPU defaults unless stated).
GAN_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "fatgan": ("fatgan", {"steps": 2000}),
    "dsgan": ("dsgan", {"steps": 2000}),
    "lsgan": ("lsgan", {"steps": 2000}),
    "bvae": ("bvae", {}),
    "bvae-prior": ("bvae", {"sampling": "prior"}),
    # the B-VAE with a buffer that does not copy: (ln Q², ln y, φ) features, buffer smeared toward latent
    # neighbours until generated events are as far from the training events as validation events are
    # (ratio 0.9), and the training sample's x, Q², W², y range kept
    "bvae-calibrated": ("bvae", {"feature_map": "nu_scaled", "buffer_smearing": "neighbours",
                                 "buffer_calibration": "memorization", "memorization_target": 0.9,
                                 "reject_outside_training": True}),
    # the same, learning (ln x + ln s, ln Q², φ) gaussianized through the training quantiles: the low-x edge of
    # the sample along one axis, the steep marginals flattened before the buffer is smeared; calibrated to 0.92
    # on the (ln Q², ln y, φ) features, which gives about 0.9 on the table's lepton features
    "bvae-calibrated-lnx": ("bvae", {"feature_map": "nu_scaled", "frame": "lnx", "preprocess": "gaussianize",
                                     "buffer_smearing": "neighbours", "buffer_calibration": "memorization",
                                     "memorization_target": 0.92, "reject_outside_training": True}),
}
for _name, (_plugin, _params) in GAN_MODELS.items():
    bg.register_model(_name, _plugin, _params)

KL_FEATURES = bg.KL_FEATURES  # E', p_x, p_y, p_z (thesis Fig. 16)


def _kl(truth: np.ndarray, model: np.ndarray, bins: int = 40) -> float:
    edges = np.linspace(truth.min(), truth.max(), bins + 1)
    return kl_divergence(np.histogram(truth, edges)[0], np.histogram(np.clip(model, edges[0], edges[-1]), edges)[0])


def _load_with_beams(path: str, beams: str, registry: Any) -> EventBatch:
    """Events of a sample file read by the ``root`` truth plugin with the given beam preset.

    The multi-energy files hold E × E GeV events; their metadata says the
    hadron energy follows the beam energy, so the preset only gives the
    directions and particle types.
    """
    info = registry.get("truth", "root")
    params = build_params(info.cls.Params, {"files": [str(bg.ROOT / path)], "beams": beams}, "truth")
    return info.cls(params, StageContext("truth", seed=1)).read()


def conditional_benchmark(n_train: int, steps: int | None, seed: int = 1) -> dict[str, Any]:
    """Train cFAT-GAN on the multi-energy sample; KL per energy against independent truth."""
    registry = load_plugins()
    train_all = _load_with_beams("sample_data/sym_multienergy_train.root", "sym50", registry)
    test_all = _load_with_beams("sample_data/sym_multienergy_test.root", "sym50", registry)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train_all))
    n_valid = min(10_000, len(train_all) - n_train)
    train = train_all.take(np.sort(idx[:n_train]))
    valid = train_all.take(np.sort(idx[n_train:n_train + n_valid]))
    held = train_all.take(np.sort(idx[n_train + n_valid:]))
    params = {"steps": bg.MODELS["cfatgan"][1]["steps"] if steps is None else steps}
    info = registry.get("generator", "cfatgan")
    gan = info.cls(build_params(info.cls.Params, params, "generator"), StageContext("generator", seed=seed))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    gan.fit(train, valid)
    cost = {"train_cpu_minutes": (time.process_time() - cpu0) / 60, "train_wall_seconds": time.perf_counter() - wall0}
    rows = []
    for sample, source, kind in ((held, "train", "trained"), (test_all, "test", None)):
        energies = np.unique(sample.column("beam_energy"))
        for energy in energies:
            truth = sample.take(sample.column("beam_energy") == energy)
            half = len(truth) // 2
            a, b = truth.take(slice(0, half)), truth.take(slice(half, 2 * half))
            generated = gan.sample(half, np.random.SeedSequence([seed, int(energy)]), {"beam_energy": float(energy)})
            label = kind or ("extrapolated" if energy > 50 else "interpolated")
            row = {"beam_energy": float(energy), "kind": label, "events": half, "source": source}
            for f in KL_FEATURES:
                row[f"kl_{f}"] = _kl(a.column(f), generated.column(f))
                row[f"kl_{f}_floor"] = _kl(a.column(f), b.column(f))
            row["mean_E_model"] = float(generated.column("lepton_E").mean())
            row["mean_E_truth"] = float(a.column("lepton_E").mean())
            row["unphysical"] = float(1.0 - gan.physical_mask(generated).mean())
            row.update(bg.drawn_fractions(generated))  # drawn beyond the limits (and redrawn) for this sample
            rows.append(row)
    return {"model": "cfatgan", "params": params, "n_train": len(train), **cost, "info": gan.info(), "rows": rows}


def format_conditional(result: dict[str, Any]) -> str:
    """Table: KL ×10³ per feature (model / floor) for each beam energy."""
    head = f"{'E_b':>6s} {'kind':>13s}" + "".join(f"{f[7:] + ' KLx1e3 (floor)':>22s}" for f in KL_FEATURES) \
        + f"{'<E> model/truth':>18s}{'unphys drawn/kept':>19s}"
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        cells = "".join(f"{1e3 * r[f'kl_{f}']:9.2f} ({1e3 * r[f'kl_{f}_floor']:6.2f})".rjust(22) for f in KL_FEATURES)
        lines.append(f"{r['beam_energy']:6.0f} {r['kind']:>13s}{cells}"
                     f"{r['mean_E_model']:9.2f}/{r['mean_E_truth']:<8.2f}"
                     f"{r.get('unphysical_before_rejection', float('nan')):10.1e}/{r['unphysical']:<8.1e}")
    lines.append(f"cfatgan: {result['n_train']} training events, {result['train_wall_seconds']:.0f} s wall, "
                 f"{result['train_cpu_minutes']:.1f} CPU min")
    return "\n".join(lines)


def _run_parallel(models: list[str], common: list[str], out: Path) -> None:
    """Train each model in its own process (same split and floors), then merge the rows into one table."""
    parts = {m: out.with_name(f"{out.stem}.{m}.json") for m in models}
    procs = [subprocess.Popen([sys.executable, __file__, "--models", m, "--out", str(parts[m]), *common],
                              stdout=subprocess.DEVNULL) for m in models]
    failed = [m for m, p in zip(models, procs, strict=True) if p.wait() != 0]
    rows = [row for m in models if m not in failed for row in json.loads(parts[m].read_text())["rows"]]
    print(bg.format_table(rows))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    out.write_text(json.dumps({"created": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows,
                               "failed": failed}, indent=1, default=float))
    for part in parts.values():
        part.unlink(missing_ok=True)
    print(f"wrote {out}")


def amplification_study(pipeline: Path, repeats: int, first_seed: int, n_generate: int | None = None
                        ) -> dict[str, Any]:
    """Train the pipeline's generator ``repeats`` times on independent toy samples; pooled amplification.

    The toy truth (``[truth]``), the split (``pipeline.split``: train, validation)
    and the generator (``[generator]``) come from the TOML; truth and training
    seeds are ``first_seed + k``. Each training's generated sample gives the
    asymptotic quantile MSE (:func:`~mlegpipe.metrics.amplification.amplification_from_cells`);
    their mean gives the factor.
    """
    import tomllib

    from mlegpipe.metrics.amplification import amplification_from_cells, pooled_amplification
    from mlegpipe.report.analysis import _n_quantiles

    cfg = tomllib.loads(pipeline.read_text())
    registry = load_plugins()
    truth_cfg, gen_cfg = dict(cfg["truth"]), dict(cfg["generator"])
    truth_cls = registry.get("truth", truth_cfg.pop("plugin")).cls
    gen_cls = registry.get("generator", gen_cfg.pop("plugin")).cls
    n_total = int(truth_cfg.get("events", 0))
    split = cfg["pipeline"].get("split", [0.5, 0.25, 0.25])
    n_train, n_valid = int(round(split[0] * n_total)), int(round(split[1] * n_total))
    n_generate = n_generate or int(cfg["pipeline"].get("generate", 100_000))
    runs, asymptotic = [], []
    for k in range(repeats):
        seed = first_seed + k
        source = truth_cls(build_params(truth_cls.Params, truth_cfg, "truth"), StageContext("truth", seed=seed))
        toy, events = source.exact_density(), source.read()
        train, valid = events.take(slice(0, n_train)), events.take(slice(n_train, n_train + n_valid))
        gen = gen_cls(build_params(gen_cls.Params, gen_cfg, "generator"), StageContext("generator", seed=seed))
        start = time.perf_counter()
        gen.fit(train, valid)
        generated = gen.sample(n_generate, np.random.SeedSequence([seed, 1]))
        n_q = _n_quantiles(toy.dim, n_train)
        cells = toy.quantile_index(generated.matrix(list(toy.features)), n_q)
        result = amplification_from_cells(cells, toy.n_cells(n_q), n_train)
        asymptotic.append(result["asymptotic_mse"])
        runs.append({"seed": seed, "amplification": result["amplification"], "asymptotic_mse": result["asymptotic_mse"],
                     "train_mse": float(toy.quantile_mse(train.matrix(list(toy.features)), n_q)),
                     "seconds": time.perf_counter() - start})
        print(f"[bench] {pipeline.name} seed {seed}: amplification {result['amplification']:.2f}", file=sys.stderr)
    pooled = pooled_amplification(asymptotic, toy.n_cells(n_q), n_train)
    train_pooled = pooled_amplification([r["train_mse"] for r in runs], toy.n_cells(n_q), n_train)
    return {"pipeline": pipeline.name, "generator": cfg["generator"], "n_train": n_train, "n_valid": n_valid,
            "n_generate": n_generate, "quantiles_per_coordinate": n_q, "cells": toy.n_cells(n_q), **pooled,
            "training_sample_amplification": train_pooled["amplification"], "runs": runs}


def format_amplification(results: Sequence[dict[str, Any]]) -> str:
    """One line per pipeline: pooled factor with its ±1σ range, the spread of single trainings, the check value."""
    lines = [f"{'pipeline':28s}{'cells':>7s}{'trainings':>10s}{'amplification':>16s}{'(±1σ)':>16s}"
             f"{'single min-max':>16s}{'train sample':>14s}"]
    for r in results:
        singles = [run["amplification"] for run in r["runs"]]
        band = f"{r['amplification_low']:.2f}-{r['amplification_high']:.2f}"
        spread = f"{min(singles):.2f}-{max(singles):.2f}"
        lines.append(f"{r['pipeline']:28s}{r['cells']:>7d}{r['trainings']:>10d}{r['amplification']:>16.2f}"
                     f"{band:>16s}{spread:>16s}{r['training_sample_amplification']:>14.2f}")
    lines.append("(targets, seed 002: camel 100 events / 50 quantiles >= 5; shell5d 500 events / 3^5 cells >= 4; "
                 "'train sample' is the training events themselves, expected 1)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: the generator table with the GAN rows, then (optionally) the cFAT-GAN energy scan."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="flow,fatgan,dsgan,lsgan,bvae,bvae-calibrated")
    ap.add_argument("--sample", default="hera_pythia")
    ap.add_argument("--train", type=int, default=30_000)
    ap.add_argument("--valid", type=int, default=10_000)
    ap.add_argument("--test", type=int, default=20_000)
    ap.add_argument("--set", action="append", default=[], help="parameter override for every model: key=json")
    ap.add_argument("--conditional", action="store_true", help="also run the cFAT-GAN energy scan")
    ap.add_argument("--conditional-only", action="store_true")
    ap.add_argument("--cfatgan-steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-classifier", action="store_true")
    ap.add_argument("--parallel", action="store_true", help="one process per model, rows merged")
    ap.add_argument("--out", default=str(bg.RESULTS / "bench_gans.json"))
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="only merge the rows of these result files into --out (later rows replace earlier "
                         "ones of the same model; same split and floors) and print the table")
    ap.add_argument("--amplification", action="store_true",
                    help="only the GANplifying study of pipelines/amplification_*.toml over --repeats trainings")
    ap.add_argument("--pipelines", default="amplification_camel.toml,amplification_shell5d.toml")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=100)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    if args.amplification:
        results = [amplification_study(bg.ROOT / "pipelines" / name, args.repeats, args.first_seed)
                   for name in args.pipelines.split(",")]
        print(format_amplification(results))
        out = bg.RESULTS / "bench_amplification.json"
        kept = json.loads(out.read_text()).get("results", []) if out.exists() else []
        done = {r["pipeline"] for r in results}  # a rerun of one pipeline keeps the others' results
        results = [r for r in kept if r.get("pipeline") not in done] + results
        out.write_text(json.dumps({"created": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results}, indent=1,
                                  default=float))
        print(f"wrote {out}")
        return 0
    if args.merge:
        rows: dict[str, Any] = {}
        for path in args.merge:
            for row in json.loads(Path(path).read_text())["rows"]:
                rows[row["model"]] = row
        print(bg.format_table(list(rows.values())))
        Path(args.out).write_text(json.dumps({"created": time.strftime("%Y-%m-%d %H:%M:%S"),
                                              "merged_from": args.merge, "rows": list(rows.values())},
                                             indent=1, default=float))
        print(f"wrote {args.out}")
        return 0
    if not args.conditional_only:
        common = ["--sample", args.sample, "--train", str(args.train), "--valid", str(args.valid), "--test", str(args.test),
                  "--threads", str(args.threads)]
        common += [x for s in args.set for x in ("--set", s)]
        if args.no_classifier:
            common.append("--no-classifier")
        if args.parallel:
            _run_parallel(args.models.split(","), common, Path(args.out))
        else:
            bg.main(["--models", args.models, "--out", args.out, *common])
    if args.conditional or args.conditional_only:
        result = conditional_benchmark(args.train, args.cfatgan_steps)
        print(format_conditional(result))
        out = bg.RESULTS / "bench_cfatgan.json"
        out.write_text(json.dumps({"created": time.strftime("%Y-%m-%d %H:%M:%S"), **result}, indent=1, default=float))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
