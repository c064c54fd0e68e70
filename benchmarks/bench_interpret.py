"""Benchmark of model interpretation: thesis Figs. 21-22 for a multi-energy cFAT-GAN and Fig. 45-style landscapes.

1. Trains a cFAT-GAN on the multi-energy sample (``sample_data/sym_multienergy_train.root``,
   E = 10, 20, 30, 40, 50 GeV, symmetric beams), then
   - maps generator hidden layers 2, 5 and the last with PCA, t-SNE (and UMAP
     when umap-learn is installed) at the five trained energies plus an
     extrapolated 60 GeV (Fig. 21), in the ``response`` view (the same noise
     at every energy, each noise vector's mean over the energies removed) and
     the ``independent`` view (fresh noise per energy), with the k-NN
     separability of the energies on each map (chance: 1/6), the PC1
     ordering |Spearman ρ| and the energy's share of the activation variance;
   - controls: the same maps of an untrained network of the same
     architecture (what the response view shows without any learning), and
     the k-NN separability of the energies on the truth and generated events
     in the model's own output features (the ceiling of the independent view);
   - maps the discriminator's last hidden layer for Pythia truth and generated
     events at 10 and 50 GeV (trained), 35 GeV (interpolated, from
     ``sym_multienergy_test.root``) and 60 GeV (extrapolated), PCA fitted on
     the truth (Fig. 22), with the truth-vs-generated k-NN accuracy (chance 0.5).
2. Trains the same cFAT-GAN deep (``--deep-layers``, default 10) without and
   with residual blocks, same seed and steps, and computes both the generator's
   MMD²-to-truth landscape and the discriminator-loss landscape (Fig. 45) on the
   same filter-normalized grid; the roughness ratio feed-forward / residual is
   measured side by side.

Every step is timed (wall seconds on this machine, torch on 1 thread: the
networks are small; the load average is recorded beside them). Run:
``python benchmarks/bench_interpret.py [--quick] [--part maps|landscapes|all]``
(a part updates its keys of the JSON and keeps the others).
Writes ``benchmarks/results/bench_interpret.json`` and the PNGs
``benchmarks/results/interpret_*.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.interpret.maps import discriminator_maps, generator_layer_maps
from mlegpipe.interpret.plots import plot_discriminator_maps, plot_landscapes, plot_layer_maps
from mlegpipe.interpret.probes import stage_landscape
from mlegpipe.interpret.runs import read_sample
from mlegpipe.plots import save_png
from mlegpipe.schema import build_params

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TRAIN = ROOT / "sample_data" / "sym_multienergy_train.root"
TEST = ROOT / "sample_data" / "sym_multienergy_test.root"


def _subsample(events: EventBatch, n: int, seed: int) -> EventBatch:
    """``n`` events in random order (the sample files are ordered by beam energy)."""
    return events.take(np.random.default_rng(seed).choice(len(events), min(n, len(events)), replace=False))


def train_cfatgan(train: EventBatch, valid: EventBatch, layers: int, width: int, steps: int, residual: bool,
                  seed: int = 1) -> tuple[Any, float]:
    """A cFAT-GAN (default WGAN-GP critic + MMD), trained in this process; returns (model, seconds)."""
    from mlegpipe_builtins.generators.gans import CFATGAN

    raw = {"layers": layers, "width": width, "noise_dim": 16, "batch_size": 512, "critic_steps": 3,
           "steps": steps, "validate_every": 0, "residual": residual, "lr": 2e-4}
    gan = CFATGAN(build_params(CFATGAN.Params, raw, "generator"), StageContext("generator", seed=seed))
    start = time.perf_counter()
    gan.fit(train, valid)
    return gan, time.perf_counter() - start


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def load_average() -> float:
    """The 1-minute load average (timings on a shared machine are inflated by it)."""
    return float(os.getloadavg()[0])


def energy_ceiling(gan: Any, train: EventBatch, trained: list[float], per_energy: int) -> dict[str, float]:
    """k-NN separability of the training energies on truth and generated events in the model's own features."""
    from mlegpipe.interpret.embed import chance_level, separability

    rng = np.random.default_rng(5)
    eb = train.column("beam_energy")
    truth = EventBatch.concat([train.take(np.sort(rng.choice(np.flatnonzero(eb == e), per_energy, replace=False)))
                               for e in trained])
    generated = EventBatch.concat([gan.sample(per_energy, np.random.SeedSequence([7, i]), {"beam_energy": e})
                                   for i, e in enumerate(trained)])
    labels = np.repeat(trained, per_energy)
    out = {"chance": chance_level(labels)}
    for name, batch in (("truth", truth), ("generated", generated)):
        out[name] = separability(gan.interpretation_inputs(batch).features.numpy(), labels)
    return out


def generator_maps(gan: Any, label: str, trained: list[float], per_energy: int, methods: list[str], views: list[str],
                   prefix: str, out: dict[str, Any], rows: list[tuple], times: dict[str, float]) -> None:
    """Fig. 21 maps of ``gan`` for each method and view: figures, JSON entries, table rows."""
    for view in views:
        for method in methods:
            if method == "tsne" and label == "untrained":
                continue  # the PCA control says it; t-SNE costs a minute
            key = f"{label}_{view}_{method}"
            maps, seconds = timed(generator_layer_maps, gan, [2, 5, -1], trained, [60.0], per_energy, method,
                                  "beam_energy", 0, view=view)
            times[f"generator_maps_{key}"] = seconds
            save_png(plot_layer_maps(maps, f"cFAT-GAN generator, {label}, {method}, {view} view "
                                           "(60 GeV extrapolated)"),
                     RESULTS / f"{prefix}interpret_generator_{key}.png")
            out[f"generator_maps_{key}"] = [m.summary() for m in maps]
            for m in maps:
                centres = {e: m.coords[m.labels == e].mean(axis=0) for e in [*trained, 60.0]}
                nearest = min(trained, key=lambda e: float(np.linalg.norm(centres[e] - centres[60.0])))
                rows.append((f"{label} generator {m.title}", f"{method}/{view}", m.separability,
                             m.separability_full, m.ordering, m.condition_fraction, m.chance, nearest,
                             seconds / len(maps)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke test, minutes less)")
    parser.add_argument("--part", choices=("all", "maps", "landscapes"), default="all",
                        help="run only the maps (Figs. 21-22) or only the landscapes (Fig. 45)")
    parser.add_argument("--events", type=int, default=30000, help="training events")
    parser.add_argument("--steps", type=int, default=1000, help="steps of the multi-energy model")
    parser.add_argument("--layers", type=int, default=8, help="hidden layers of the multi-energy generator "
                        "(thesis cFAT-GAN: 8)")
    parser.add_argument("--width", type=int, default=64, help="hidden width (thesis: 512)")
    parser.add_argument("--per-energy", type=int, default=300, help="noise vectors per energy in the maps")
    parser.add_argument("--deep-layers", type=int, default=10, help="hidden layers of the landscape pair")
    parser.add_argument("--deep-steps", type=int, default=500, help="steps of each landscape model")
    parser.add_argument("--grid", type=int, default=15, help="landscape grid points per axis")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.steps, args.layers, args.per_energy = 4000, 60, 5, 60
        args.deep_layers, args.deep_steps, args.grid = 4, 40, 5
    prefix = "quick_" if args.quick else ""  # a smoke test never overwrites the real figures
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / ("bench_interpret_quick.json" if args.quick else "bench_interpret.json")
    out: dict[str, Any] = {}
    if args.part != "all" and json_path.is_file():  # keep the other part's figures
        out = json.loads(json_path.read_text(encoding="utf-8"))
        out = {k: v for k, v in out.items() if not k.startswith(("generator_maps", "discriminator_maps",
                                                                  "energy_ceiling") if args.part == "maps"
                                                                 else ("landscape_",))}
    out.update({"settings": {**out.get("settings", {}), **vars(args)}, "cpu_count": os.cpu_count(),
                "torch_threads": 1})
    times = out.setdefault("timings_s", {})
    redone = ("generator_maps", "train_cfatgan", "discriminator_maps", "energy_ceiling") if args.part == "maps" \
        else ("train_feedforward", "train_residual", "landscape_") if args.part == "landscapes" else ("",)
    for key in [k for k in times if k.startswith(redone)]:
        del times[key]
    loads = out.setdefault("load_average", {})
    loads[f"{args.part}_start"] = load_average()

    full = read_sample(TRAIN)
    sample = _subsample(full, args.events + 5000, 0)
    train, valid = sample.take(slice(0, args.events)), sample.take(slice(args.events, None))
    trained = [float(e) for e in np.unique(train.column("beam_energy"))]
    test = read_sample(TEST)
    truth = EventBatch.concat([train.take(np.isin(train.column("beam_energy"), [10.0, 50.0])),
                               test.take(np.isin(test.column("beam_energy"), [35.0, 60.0]))])
    rows: list[tuple] = []
    drows: list[tuple] = []
    land_rows: list[tuple] = []

    # -- 1. multi-energy model: generator maps (Fig. 21) and discriminator maps (Fig. 22) ---------------------
    if args.part in ("all", "maps"):
        gan, times["train_cfatgan"] = train_cfatgan(train, valid, args.layers, args.width, args.steps, False)
        print(f"cFAT-GAN {args.layers}x{args.width}, {args.steps} steps on {len(train)} events: "
              f"{times['train_cfatgan']:.1f} s", file=sys.stderr)
        methods = ["pca", "tsne"]
        try:
            import umap  # noqa: F401
            methods.append("umap")
        except ImportError:
            print("umap-learn is not installed: no UMAP maps", file=sys.stderr)
        generator_maps(gan, "trained", trained, args.per_energy, methods, ["response", "independent"], prefix, out,
                       rows, times)
        from mlegpipe_builtins.generators.gans import CFATGAN

        untrained = CFATGAN(gan.params, StageContext("generator", seed=1)).prepare(train)  # the same initial weights
        generator_maps(untrained, "untrained", trained, args.per_energy, ["pca"], ["response", "independent"],
                       prefix, out, rows, times)
        out["energy_ceiling"], times["energy_ceiling"] = timed(energy_ceiling, gan, train, trained, args.per_energy)
        net = gan.discriminator_net
        dmaps, times["discriminator_maps"] = timed(discriminator_maps, gan, net, truth, None,
                                                   [10.0, 50.0, 35.0, 60.0], trained, -1,
                                                   5000 if not args.quick else 500, 0)
        save_png(plot_discriminator_maps(dmaps, title="cFAT-GAN discriminator, last hidden layer (PCA fitted on "
                                         "truth)"), RESULTS / f"{prefix}interpret_discriminator_pca.png")
        out["discriminator_maps"] = [d.summary() for d in dmaps]
        for d in dmaps:
            drows.append((f"discriminator E={d.value:g} ({d.regime})", d.separability, d.chance,
                          times["discriminator_maps"] / len(dmaps)))

    # -- 2. feed-forward vs residual landscapes (Fig. 45) ------------------------------------------------------------
    if args.part in ("all", "landscapes"):
        landscapes: dict[str, dict[str, Any]] = {"mmd": {}, "discriminator": {}}
        for residual in (False, True):
            name = f"{'residual' if residual else 'feed-forward'} {args.deep_layers}x{args.width}"
            model, seconds = train_cfatgan(train, valid, args.deep_layers, args.width, args.deep_steps, residual)
            times[f"train_{'residual' if residual else 'feedforward'}"] = seconds
            for loss in ("mmd", "discriminator"):
                land = stage_landscape(model, truth if loss == "mmd" else train, loss, model.discriminator,
                                       model.discriminator_net, steps=args.grid, span=1.0, events=1024, seed=0)
                landscapes[loss][name] = land
                times[f"landscape_{loss}_{'residual' if residual else 'feedforward'}"] = land.info["seconds"]
                land_rows.append((name, loss, land.center, float(np.nanmin(land.values)),
                                  float(np.nanmax(land.values)), land.roughness(), land.finite_fraction,
                                  land.info["seconds"], seconds, land.sharpness()))
        for loss, lands in landscapes.items():
            save_png(plot_landscapes(lands, title=f"{'generator MMD² to truth' if loss == 'mmd' else 'discriminator'}"
                                     f"{' loss' if loss != 'mmd' else ''} landscape, feed-forward vs residual "
                                     f"({args.grid}×{args.grid})"),
                     RESULTS / f"{prefix}interpret_landscape_{loss}.png")
            rough = {k: v.roughness() for k, v in lands.items()}
            sharp = {k: v.sharpness() for k, v in lands.items()}
            ff, res = (next(v for k, v in rough.items() if k.startswith(p)) for p in ("feed-forward", "residual"))
            ff_s, res_s = (next(v for k, v in sharp.items() if k.startswith(p)) for p in ("feed-forward", "residual"))
            out[f"landscape_{loss}"] = {k: {"center": v.center, "min": float(np.nanmin(v.values)),
                                            "max": float(np.nanmax(v.values)), "roughness": v.roughness(),
                                            "sharpness": v.sharpness(),
                                            "finite_fraction": v.finite_fraction, "seconds": v.info["seconds"]}
                                        for k, v in lands.items()}
            out[f"landscape_{loss}"]["roughness_ratio_feedforward_over_residual"] = ff / res if res > 0 else None
            out[f"landscape_{loss}"]["sharpness_ratio_feedforward_over_residual"] = ff_s / res_s if res_s > 0 else None
    loads[f"{args.part}_end"] = load_average()

    # -- table ------------------------------------------------------------------------------------------------------
    if rows:
        print(f"\n{'map':<42} {'method/view':<17} {'k-NN 2D':>8} {'layer':>6} {'PC1 |ρ|':>8} {'E share':>8} "
              f"{'chance':>7} {'60→':>4} {'s':>6}")
        for r in rows:
            order = "-" if r[4] is None else f"{r[4]:.3f}"
            share = "-" if r[5] is None else f"{r[5]:.3f}"
            print(f"{r[0]:<42} {r[1]:<17} {r[2]:>8.3f} {r[3]:>6.3f} {order:>8} {share:>8} {r[6]:>7.3f} "
                  f"{r[7]:>4g} {r[8]:>6.1f}")
        ceiling = out["energy_ceiling"]
        print(f"k-NN separability of the {len(trained)} training energies in the model's output features: truth "
              f"{ceiling['truth']:.3f}, generated {ceiling['generated']:.3f} (chance {ceiling['chance']:.3f})")
        for r in drows:
            print(f"{r[0]:<42} truth vs generated k-NN {r[1]:.3f} (chance {r[2]:.3f}) {r[3]:.1f} s")
    if land_rows:
        print(f"\n{'model':<24} {'loss':<14} {'L(θ*)':>10} {'min':>10} {'max':>10} {'rough':>8} {'sharp':>8} "
              f"{'finite':>7} {'land s':>7} {'train s':>8}")
        for r in land_rows:
            print(f"{r[0]:<24} {r[1]:<14} {r[2]:>10.4g} {r[3]:>10.4g} {r[4]:>10.4g} {r[5]:>8.4f} {r[9]:>8.3g} "
                  f"{r[6]:>7.2f} {r[7]:>7.1f} {r[8]:>8.1f}")
        for loss in ("mmd", "discriminator"):
            ratio = out[f"landscape_{loss}"]["roughness_ratio_feedforward_over_residual"]
            print(f"roughness feed-forward / residual ({loss}): {ratio:.3f}" if ratio else f"{loss}: ratio n/a")
            ratio = out[f"landscape_{loss}"]["sharpness_ratio_feedforward_over_residual"]
            print(f"sharpness feed-forward / residual ({loss}): {ratio:.3f}" if ratio else f"{loss}: ratio n/a")
    print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    print("load average: " + ", ".join(f"{k} {v:.2f}" for k, v in loads.items()))
    json_path.write_text(json.dumps(out, indent=2, default=float), encoding="utf-8")
    print(f"wrote {json_path} and {RESULTS}/{prefix}interpret_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
