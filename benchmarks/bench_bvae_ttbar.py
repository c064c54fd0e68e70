"""Benchmark of the B-VAE on semileptonic tt̄ events with a variable number of jets (issue 20, seed 001).

The ``bvae`` generator learns Pythia semileptonic tt̄ events (anti-kT R = 0.4
jets with p_T > 20 GeV, their number varying event by event, the prompt
lepton, MET and its azimuth) from one file and is judged on an independent
file never used in training:

- per observable (n_jets, leading-jet p_T, lepton p_T, MET, the best three-jet
  top mass m_jjj; also jets1_eta, jets2_pt, lepton_eta, m_jj) the χ²/ndf on 40
  equal-population bins of the test sample with Poisson errors on both samples
  (:func:`mlegpipe.metrics.distances.sample_chi2_ndf`), beside the
  truth-vs-truth floor: the same χ²/ndf between the training file (an
  independent truth sample of the same size) and the test file, and their
  ratio (target ≤ 1.5);
- the classifier two-sample AUC (gradient-boosted trees, target ≤ 0.6) on
  n_jets, p_T, η, φ of the four leading jets, of the lepton, MET and its
  azimuth, m_jjj and m_jj (absent jets as a sentinel value), and on the
  compared observables alone;
- the nearest-neighbour memorization ratio, the training time and the generation speed (events/s),
  beside Pythia's own rate for the same events in the same run (full semileptonic events with
  showers, hadronization and anti-kT clustering through the ``pythia8`` source, one core;
  ``--pythia-events``, 0 to skip).

Samples: ``/work/data/ttbar/ttbar_semilep_{train,test}_100k.root`` (or
``--train``/``--test``; made by ``scripts/make_ttbar_samples.py semilep``);
without them the shipped ``sample_data/ttbar_semilep_small.root`` is split in
halves. ``--variants`` picks rows of :data:`VARIANTS` (B-VAE settings tried),
``--set key=value`` overrides generator parameters of every row, ``--quick``
is a smoke run (5000 training events, 300 steps). Prints the table, writes
``benchmarks/results/bench_bvae_ttbar.json`` and a figure per row
(``benchmarks/results/bench_bvae_ttbar_<row>.png``: truth and model histograms).

    python benchmarks/bench_bvae_ttbar.py [--quick] [--variants jets,jets-rotated] [--set steps=6000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlegpipe.config import parse_override_value
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.metrics.classifier import classifier_auc
from mlegpipe.metrics.distances import sample_chi2_ndf
from mlegpipe.metrics.memorization import memorization_ratio
from mlegpipe.observables import ObservableSet
from mlegpipe.registry import load_plugins
from mlegpipe.rootio import read_events
from mlegpipe.schema import build_params

__all__ = ["FEATURES", "JUDGED", "VARIANTS", "Judge", "auc_matrix", "evaluate", "main", "train_variant"]

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/data/ttbar")
SMALL = ROOT / "sample_data" / "ttbar_semilep_small.root"

#: What the B-VAE learns.
FEATURES = ["jets", "lepton", "met", "met_phi"]
#: The issue's targets (≤ 1.5 × floor) first, then further observables.
TARGETED = ["n_jets", "jets1_pt", "lepton_pt", "met", "m_jjj"]
JUDGED = [*TARGETED, "jets1_eta", "jets2_pt", "lepton_eta", "m_jj"]
#: Observables the classifier sees (besides n_jets, m_jjj, m_jj).
_PER_OBJECT = [f"jets{i}_{c}" for i in range(1, 5) for c in ("pt", "eta", "phi")] + \
    ["lepton_pt", "lepton_eta", "lepton_phi", "met", "met_phi"]
_AUC_FULL = ["n_jets", *_PER_OBJECT, "m_jjj", "m_jj"]
_SENTINEL = -999.0  # an absent jet's value for the classifier (trees separate it cleanly)

#: B-VAE settings tried (rows of the table); ``jets`` is what the pipeline uses.
VARIANTS: dict[str, dict[str, Any]] = {
    "cpu": {"preset": "cpu"},
    "jets": {"preset": "jets", "azimuth": "rotated"},
    "jets-absolute-phi": {"preset": "jets"},
    "jets-standardized": {"preset": "jets", "azimuth": "rotated", "multiplicity_encoding": "standardized"},
    "jets-beta1e-5": {"preset": "jets", "azimuth": "rotated", "beta": 1e-5},
    "jets-beta1e-7": {"preset": "jets", "azimuth": "rotated", "beta": 1e-7},
    "jets-long": {"preset": "jets", "azimuth": "rotated", "steps": 24_000},
    "jets-latent24": {"preset": "jets", "azimuth": "rotated", "latent": 24},
    "jets-prior": {"preset": "jets", "azimuth": "rotated", "sampling": "prior"},
}


def pythia_semilep_rate(events: int, seed: int = 1) -> float:
    """Events/s of the ``pythia8`` source's ``ttbar-semilep`` preset (full events, jets clustered; one core)."""
    from mlegpipe_builtins.truth.pythia import PythiaSource

    source = PythiaSource(build_params(PythiaSource.Params, {"events": events, "process": "ttbar-semilep"}, "truth"),
                          StageContext("truth", seed=seed))
    start = time.perf_counter()
    n = len(source.read())
    return n / (time.perf_counter() - start)


def load(path: Path, limit: int | None = None) -> EventBatch:
    """Events of a ROOT file written by ``scripts/make_ttbar_samples.py`` (at most ``limit``)."""
    return EventBatch.concat(list(read_events(str(path), max_events=limit)))


def auc_matrix(events: EventBatch, names: list[str]) -> np.ndarray:
    """``(n, len(names))`` observable values (event fields as they are), NaN (an absent jet) as a sentinel."""
    obs = ObservableSet()
    cols = [events.column(n) if n in events.fields else obs.values(events, n) for n in names]
    return np.nan_to_num(np.stack(cols, axis=1).astype(np.float64), nan=_SENTINEL)


class Judge:
    """Judges generated samples against the test sample, the floor computed once (see the module docstring).

    Arguments:
        test: the independent test events.
        floor: a truth sample of the same size (the training file) for the truth-vs-truth floors.
        train: the generator's training events (memorization).
    """

    def __init__(self, test: EventBatch, floor: EventBatch, train: EventBatch, seed: int = 0) -> None:
        self.obs = ObservableSet()
        self.test, self.train, self.seed = test, train, seed
        self.values = {name: self._finite(test, name) for name in JUDGED}
        self.floors = {name: sample_chi2_ndf(self._finite(floor, name), self.values[name], bins=40) for name in JUDGED}
        self.test_matrix = auc_matrix(test, _AUC_FULL)
        self.auc_floor = classifier_auc(auc_matrix(floor, _AUC_FULL), self.test_matrix, seed=seed)["auc"]

    def _finite(self, events: EventBatch, name: str) -> np.ndarray:
        v = self.obs.values(events, name)
        return v[np.isfinite(v)]

    def chi2(self, model: EventBatch) -> dict[str, dict[str, float]]:
        """Per judged observable: χ²/ndf of the model, the floor and their ratio."""
        out = {}
        for name in JUDGED:
            chi = sample_chi2_ndf(self._finite(model, name), self.values[name], bins=40)
            floor = self.floors[name]
            out[name] = {"chi2_ndf": chi, "floor": floor, "ratio": chi / floor if floor > 0 else float("inf")}
        return out

    def full(self, model: EventBatch) -> dict[str, Any]:
        """:meth:`chi2` plus the classifier AUCs, memorization and the multiplicity fractions."""
        out: dict[str, Any] = {"observables": self.chi2(model)}
        out["auc"] = classifier_auc(auc_matrix(model, _AUC_FULL), self.test_matrix, seed=self.seed)["auc"]
        out["auc_floor"] = self.auc_floor
        out["auc_judged"] = classifier_auc(auc_matrix(model, JUDGED), auc_matrix(self.test, JUDGED),
                                           seed=self.seed)["auc"]
        names = ["n_jets", *_PER_OBJECT]
        a, b, c = (auc_matrix(x, names) for x in (model, self.test, self.train))
        mean, std = c.mean(0), np.where(c.std(0) > 0, c.std(0), 1.0)
        out["memorization"] = float(memorization_ratio((a - mean) / std, (b - mean) / std, (c - mean) / std,
                                                       max_events=20_000, standardize=False)["ratio"])
        mult = [np.bincount(x.multiplicity("jets"), minlength=16)[:16] / len(x) for x in (model, self.test)]
        out["n_jets_fractions"] = {"model": mult[0].round(4).tolist(), "test": mult[1].round(4).tolist()}
        return out


def train_variant(name: str, params: dict[str, Any], train: EventBatch, valid: EventBatch, seed: int,
                  save: bool = False, load: bool = False) -> tuple[Any, float]:
    """A trained B-VAE (or the one saved by an earlier ``--save`` run, with ``--load``) and its training time."""
    from mlegpipe_builtins.generators.bvae import BVAEGenerator

    raw = {"features": FEATURES, **params}
    gen = BVAEGenerator(build_params(BVAEGenerator.Params, raw, "generator"), StageContext("generator", seed=seed))
    path = RESULTS / f"bench_bvae_ttbar_{name}.pt"
    if load and path.exists():
        state = torch.load(path, weights_only=False)
        gen.load_state_dict(state)
        return gen, float(state["training"].get("seconds", float("nan")))
    start = time.perf_counter()
    gen.fit(train, valid)
    seconds = time.perf_counter() - start
    if save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        torch.save(gen.state_dict(), path)
    return gen, seconds


def evaluate(name: str, gen: Any, sampling: dict[str, Any], judge: Judge, seeds: int, seed: int) -> dict[str, Any]:
    """Generate as many events as the test sample ``seeds`` times with the ``sampling`` settings; judge them."""
    gen.params = dataclasses.replace(gen.params, draws=sampling["draws"])
    gen.alpha = float(sampling["alpha"])
    gen.sample(1000, np.random.SeedSequence(seed + 1))  # warm-up
    n = len(judge.test)
    runs, seconds = [], []
    for k in range(seeds):
        start = time.perf_counter()
        model = gen.sample(n, np.random.SeedSequence([seed, 2, k]))
        seconds.append(time.perf_counter() - start)
        runs.append(judge.full(model) if k == 0 else {"observables": judge.chi2(model)})
        if k == 0:
            _figure(name, model, judge.test)
    result = runs[0]
    for obs_name, row in result["observables"].items():
        ratios = [r["observables"][obs_name]["ratio"] for r in runs]
        row.update({"target": obs_name in TARGETED, "ratio_mean": float(np.mean(ratios)),
                    "ratio_std": float(np.std(ratios, ddof=1)) if len(ratios) > 1 else 0.0,
                    "ratios": ratios})
    info = gen.info()
    result.update({"sampling": sampling, "events_per_second": n / float(np.median(seconds)),
                   "rejected_fraction": info.get("rejected_fraction", 0.0), "seeds": seeds})
    return result


def _figure(name: str, model: EventBatch, test: EventBatch) -> None:
    """Truth and model histograms of the judged observables (PNG in benchmarks/results)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return
    obs = ObservableSet()
    fig, axes = plt.subplots(3, 3, figsize=(12, 10))
    for ax, obs_name in zip(axes.flat, JUDGED, strict=True):
        t, m = obs.values(test, obs_name), obs.values(model, obs_name)
        t, m = t[np.isfinite(t)], m[np.isfinite(m)]
        if obs_name == "n_jets":
            edges = np.arange(-0.5, 16.5)
        else:
            lo, hi = np.quantile(t, [0.001, 0.995])
            edges = np.linspace(lo, hi, 61)
        ax.hist(t, edges, histtype="step", color="k", label="Pythia (test)", density=True)
        ax.hist(m, edges, histtype="step", color="C1", label=f"bvae {name}", density=True)
        ax.set_xlabel(obs_name)
        if obs_name in ("jets1_pt", "jets2_pt", "lepton_pt", "met", "n_jets"):
            ax.set_yscale("log")
    axes.flat[0].legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"bench_bvae_ttbar_{name}.png", dpi=80)
    plt.close(fig)


def _table(results: dict[str, dict[str, Any]]) -> str:
    """One line per row: ratio to the floor of each judged observable (mean over seeds), AUC, memorization, speed."""
    short = {"n_jets": "n_jets", "jets1_pt": "j1_pt", "lepton_pt": "l_pt", "met": "met", "m_jjj": "m_jjj",
             "jets1_eta": "j1_eta", "jets2_pt": "j2_pt", "lepton_eta": "l_eta", "m_jj": "m_jj"}
    width = max(len(n) for n in results) + 2
    head = f"{'row':<{width}}" + "".join(f"{short[o] + ('*' if o in TARGETED else ''):>12}" for o in JUDGED) + \
        f"{'worst*':>8}{'AUC':>7}{'mem':>7}{'train s':>9}{'ev/s':>9}"
    lines = ["χ²/ndf (40 quantile bins, model vs test) / floor (training file vs test): mean ± std over sampling "
             "seeds; target ≤ 1.5 for *", head, "-" * len(head)]
    for name, r in results.items():
        obs = r["observables"]
        cells = "".join(f"{obs[o]['ratio_mean']:>6.2f}±{obs[o]['ratio_std']:<5.2f}" for o in JUDGED)
        worst = max(obs[o]["ratio_mean"] for o in TARGETED)
        lines.append(f"{name:<{width}}{cells}{worst:>8.2f}{r['auc']:>7.3f}{r['memorization']:>7.3f}"
                     f"{r['train_seconds']:>9.0f}{r['events_per_second']:>9.2g}")
    first = next(iter(results.values()))["observables"]
    lines.append(f"{'floor χ²/ndf':<{width}}" + "".join(f"{first[o]['floor']:>12.2f}" for o in JUDGED)
                 + f"{'':>8}{next(iter(results.values()))['auc_floor']:>7.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=DATA / "ttbar_semilep_train_100k.root")
    ap.add_argument("--test", type=Path, default=DATA / "ttbar_semilep_test_100k.root")
    ap.add_argument("--events", type=int, default=0, help="training-file events used (0: all)")
    ap.add_argument("--variants", default="jets", help="comma-separated trainings (rows of VARIANTS)")
    ap.add_argument("--samplings", default="iid,stratified", help="buffer draws of each trained model (iid, stratified)")
    ap.add_argument("--alphas", default="1", help="buffer widths α sampled with (comma-separated)")
    ap.add_argument("--seeds", type=int, default=3, help="generation seeds per row (χ² ratios: mean ± std)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="generator parameter (all rows)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--save", action="store_true", help="train and save each model to benchmarks/results/")
    ap.add_argument("--load", action="store_true", help="reuse the models saved by --save (sampling studies)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 5000 training events, 300 steps, one seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--pythia-events", type=int, default=500,
                    help="full Pythia events timed for the speed comparison (0: skip)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_plugins()
    limit = 5000 if args.quick else (args.events or None)
    if args.train.exists() and args.test.exists():
        train_all, test = load(args.train, limit), load(args.test, limit)
        source = f"train {args.train.name}, test {args.test.name}"
    else:
        small = load(SMALL)
        half = len(small) // 2
        train_all, test = small.take(slice(0, half)), small.take(slice(half, 2 * half))
        source = f"{SMALL.name} split in halves (the 100k files are missing)"
    n_valid = max(2, len(train_all) // 10)
    train, valid = train_all.take(slice(n_valid, None)), train_all.take(slice(0, n_valid))
    floor = train_all.take(slice(0, min(len(test), len(train_all))))
    test = test.take(slice(0, len(floor)))
    overrides = {k: parse_override_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    seeds = 1 if args.quick else args.seeds
    if args.quick:
        overrides.setdefault("steps", 300)
    print(f"# {source}: {len(train)} training, {len(valid)} validation, {len(test)} test events; "
          f"floor: {len(floor)} training-file events; {platform.node()}, torch threads {args.threads}", flush=True)
    judge = Judge(test, floor, train, args.seed)
    pythia_rate = pythia_semilep_rate(100 if args.quick else args.pythia_events) if args.pythia_events else None
    if pythia_rate is not None:
        print(f"# Pythia 8 semileptonic tt̄, full events with jet clustering: {pythia_rate:,.1f} events/s (one core)",
              flush=True)
    results = {}
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        params = {**VARIANTS[variant], **overrides}
        gen, train_s = train_variant(variant, params, train, valid, args.seed, args.save, args.load)
        for sampling in args.samplings.split(","):
            for alpha in (float(a) for a in args.alphas.split(",")):
                name = f"{variant}/{sampling}" + ("" if alpha == 1.0 else f"/a{alpha:g}") + \
                    ("" if args.seed == 1 else f"/seed{args.seed}")
                row = evaluate(name.replace("/", "_"), gen, {"draws": sampling, "alpha": alpha},
                               judge, seeds, args.seed)
                row.update({"params": {"features": FEATURES, **params}, "train_seconds": train_s,
                            "best_metric": gen.info().get("best_metric"), "pythia_events_per_second": pythia_rate,
                            "speed_ratio": (row["events_per_second"] / pythia_rate) if pythia_rate else None})
                results[name] = row
                print(f"# {name}: worst targeted ratio "
                      f"{max(row['observables'][o]['ratio_mean'] for o in TARGETED):.2f}, AUC {row['auc']:.3f}",
                      flush=True)
    print(_table(results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("bench_bvae_ttbar_quick.json" if args.quick else "bench_bvae_ttbar.json")
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update({"source": source, "n_train": len(train), "n_test": len(test)})
    previous.setdefault("rows", {}).update(results)
    out.write_text(json.dumps(previous, indent=2, default=float))
    print(f"# wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
