"""Benchmark of the event generators: quality against the truth-vs-truth floor, speed and training cost.

Each model is trained on a truth sample (default: ``sample_data/hera_pythia_lepton.root``)
and judged on independent events with :func:`mlegpipe.metrics.compare_samples`:
1D χ²/ndf for E', p_x, p_y, p_z, p_T, θ, φ, x, Q² beside the same figure between
two independent truth samples of the same sizes (the floor), the joint Q²–x
χ²/ndf, the classifier AUC, the unphysical and rejected fractions, generation
speed (events/s) and training cost (CPU minutes, wall seconds).

Other generators join the same table through :func:`register_model` (or by
calling :func:`run_model` directly)::

    from bench_generators import register_model
    register_model("fatgan", "fatgan", {"steps": 3000})

Run: ``python benchmarks/bench_generators.py [--models flow,flow-lepton_t] [--sample hera_pythia]``.
Writes ``benchmarks/results/bench_generators.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.registry import StageRegistry, load_plugins
from mlegpipe.schema import build_params
from mlegpipe_builtins.dis import LEPTON_FIELDS
from mlegpipe_builtins.dis.labels import beams_at

__all__ = ["FEATURES", "MODELS", "SAMPLES", "add_observables", "drawn_fractions", "evaluate_model", "format_table",
           "load_truth", "main", "perfect_model_null", "register_model", "run_conditional", "run_flow_samplers", "run_model",
           "split_truth", "train_model"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Truth samples by short name: (file, conditional sample).
SAMPLES: dict[str, str] = {
    "hera_pythia": "sample_data/hera_pythia_lepton.root",
    "hera_dis": "sample_data/hera_dis.root",
    "sym_multienergy": "sample_data/sym_multienergy_train.root",
}
#: Features of the comparison table.
FEATURES: tuple[str, ...] = ("lepton_E", "lepton_px", "lepton_py", "lepton_pz", "lepton_pT", "lepton_theta",
                             "lepton_phi", "x", "Q2")
#: Models of the table: name -> (plugin, parameters). Other benchmarks (bench_gans) add theirs with :func:`register_model`.
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "flow": ("flow", {}),
    "flow-lepton_t": ("flow", {"feature_map": "lepton_t"}),
    "flow-nu": ("flow", {"feature_map": "nu"}),
    "flow-maf": ("flow", {"flow": "maf", "transforms": 6, "steps": 5000}),
    "flow-small": ("flow", {"preset": "small"}),
    # conditional by construction: use with --conditional. Its cpu defaults (6000 steps, ln E_b condition; see
    # CFATGAN): with 4000 steps and the E_b condition, training seed 2 left 7.4e-3 at 10 GeV
    "cfatgan": ("cfatgan", {}),
}


def register_model(name: str, plugin: str, params: Mapping[str, Any] | None = None) -> None:
    """Add a generator configuration to the benchmark table."""
    MODELS[name] = (plugin, dict(params or {}))


def load_truth(sample: str = "hera_pythia", registry: StageRegistry | None = None,
               beams: str | None = None) -> EventBatch:
    """All events of a sample file, read by the ``root`` truth plugin (falls back on the ``dis`` plugin)."""
    registry = registry or load_plugins()
    if sample == "sym50":  # the 50 × 50 GeV events of the multi-energy sample (thesis ch. 4's collider)
        events = load_truth("sym_multienergy", registry, beams="sym50")
        return events.take(events.column("beam_energy") == 50.0)
    path = ROOT / SAMPLES.get(sample, sample)
    if path.exists():
        info = registry.get("truth", "root")
        raw: dict[str, Any] = {"files": [str(path)]} | ({"beams": beams} if beams else {})
        params = build_params(info.cls.Params, raw, "truth")
        return info.cls(params, StageContext("truth", seed=1)).read()
    print(f"[bench] {path} not found: generating HERA events with the dis plugin", file=sys.stderr)
    info = registry.get("truth", "dis")
    params = build_params(info.cls.Params, {"events": 100_000}, "truth")
    return info.cls(params, StageContext("truth", seed=1)).read()


def split_truth(batch: EventBatch, n_train: int, n_valid: int, n_test: int, seed: int = 0
                ) -> tuple[EventBatch, EventBatch, EventBatch, EventBatch]:
    """Shuffle and split into train, valid, test and an equal-size independent reference (the floor)."""
    need = n_train + n_valid + 2 * n_test
    if need > len(batch):
        raise SystemExit(f"the sample has {len(batch)} events, the split needs {need}")
    idx = np.random.default_rng(seed).permutation(len(batch))
    cuts = np.cumsum([n_train, n_valid, n_test, n_test])
    parts = np.split(idx[: cuts[-1]], cuts[:-1])
    return tuple(batch.take(np.sort(p)) for p in parts)  # type: ignore[return-value]


def add_observables(batch: EventBatch) -> EventBatch:
    """Add lepton p_T, θ (from +z) and φ, and the DIS labels if missing, for the comparison table."""
    e, px, py, pz = (batch.column(f) for f in LEPTON_FIELDS)
    pt = np.hypot(px, py)
    out = batch.with_columns(lepton_pT=pt, lepton_theta=np.arctan2(pt, pz), lepton_phi=np.arctan2(py, px))
    if not batch.has("x"):
        from mlegpipe_builtins.dis.physicality import dis_variables

        dis = dis_variables(batch)
        out = out.with_columns(**{k: dis[k] for k in ("x", "Q2", "y", "W2", "nu")})
    return out


def train_model(plugin: str, params: Mapping[str, Any], train: EventBatch, valid: EventBatch, *, seed: int = 1,
                registry: StageRegistry | None = None) -> tuple[Any, dict[str, float]]:
    """Build a generator from the registry and train it; return it with its training cost."""
    registry = registry or load_plugins()
    info = registry.get("generator", plugin)
    stage = info.cls(build_params(info.cls.Params, dict(params), "generator"), StageContext("generator", seed=seed))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    stage.fit(train, valid)
    return stage, {"train_cpu_minutes": (time.process_time() - cpu0) / 60,
                   "train_wall_seconds": time.perf_counter() - wall0}


def evaluate_model(stage: Any, test: EventBatch, reference: EventBatch, train: EventBatch | None = None, *,
                   seed: int = 1, speed_events: int = 200_000, classifier: bool = True) -> dict[str, Any]:
    """Sample as many events as ``reference`` holds (at its conditions) and compare them with ``test``.

    ``reference`` (independent of ``test``, same size) gives the truth-vs-truth floors.
    """
    from mlegpipe.metrics import compare_samples

    def conditions_for(events: EventBatch) -> dict[str, np.ndarray] | None:
        conds = list(getattr(stage, "conditions", []) or [])
        return {c: events.column(c) for c in conds} or None

    generated = stage.sample(len(reference), np.random.SeedSequence([seed, 1]), conditions_for(reference))
    big = reference.take(np.resize(np.arange(len(reference)), speed_events))
    t0, c0 = time.perf_counter(), time.process_time()
    stage.sample(speed_events, np.random.SeedSequence([seed, 2]), conditions_for(big))
    speed = speed_events / (time.perf_counter() - t0)
    speed_cpu = speed_events / (time.process_time() - c0)

    generated, test_o, ref_o = (add_observables(b) for b in (generated, test, reference))
    table = compare_samples(generated, test_o, ref_o, features=list(FEATURES), beams=test.beams,
                            training=add_observables(train) if train is not None else None,
                            classifier=classifier, seed=seed)
    chi2 = {}
    for name, entry in table["features"].items():
        floor = entry.get("chi2_ndf_floor")
        chi2[name] = {"model": entry["chi2_ndf"], "floor": floor,
                      "ratio": entry["chi2_ndf"] / floor if floor else None}
    joint = table.get("joint_q2x", {})
    stage_info = stage.info()
    return {
        "n_test": len(test),
        "chi2": chi2,
        "joint_q2x": {"model": joint.get("chi2_ndf"), "floor": joint.get("chi2_ndf_floor"),
                      "thesis_chi2": joint.get("thesis_chi2"), "thesis_chi2_floor": joint.get("thesis_chi2_floor")},
        "auc": table.get("classifier", {}).get("auc"),
        "auc_null_std": table.get("classifier", {}).get("auc_null_std"),
        "unphysical": table.get("physicality", {}).get("unphysical"),
        "rejected_fraction": stage_info.get("rejected_fraction"),
        **drawn_fractions(generated),
        "memorization": table.get("memorization"),
        "events_per_second": speed,
        "events_per_cpu_second": speed_cpu,
        "threads": torch.get_num_threads(),
        "table": table,
    }


def run_model(
    plugin: str,
    params: Mapping[str, Any],
    train: EventBatch,
    valid: EventBatch,
    test: EventBatch,
    reference: EventBatch,
    *,
    label: str | None = None,
    seed: int = 1,
    registry: StageRegistry | None = None,
    speed_events: int = 200_000,
    classifier: bool = True,
) -> dict[str, Any]:
    """Train one generator, sample as many events as ``reference`` holds, and measure it.

    Arguments:
        plugin, params: the generator plugin and its parameters (as in TOML).
        train, valid: training and validation truth events.
        test, reference: two independent truth samples of equal size: the model is
            compared with ``test``; ``reference`` against ``test`` gives the floors.
        speed_events: events generated for the speed figure.

    Returns:
        A JSON-able row: per-feature χ²/ndf with floor and ratio, joint Q²–x,
        AUC, fractions, speed, training cost, and the full ``compare_samples`` table.
    """
    stage, cost = train_model(plugin, params, train, valid, seed=seed, registry=registry)
    row = evaluate_model(stage, test, reference, train, seed=seed, speed_events=speed_events, classifier=classifier)
    return {"model": label or plugin, "plugin": plugin, "params": dict(params), "n_train": len(train), **cost, **row}


def run_flow_samplers(params: Mapping[str, Any], samplers: Sequence[str], train: EventBatch, valid: EventBatch,
                      test: EventBatch, reference: EventBatch, *, label: str = "flow", seed: int = 1,
                      registry: StageRegistry | None = None, classifier: bool = True) -> list[dict[str, Any]]:
    """One ``flow`` trained once, measured with each of its ``samplers`` (e.g. fast, distilled) side by side.

    The flow is trained with ``sampler = "distilled"`` when that is among ``samplers`` (the distillation
    runs at the end of ``fit``; its time is in the training cost), then sampled with each in turn.
    """
    fit_as = "distilled" if "distilled" in samplers else samplers[0]
    stage, cost = train_model("flow", {**params, "sampler": fit_as}, train, valid, seed=seed, registry=registry)
    report = list(getattr(stage, "distill_report", []))
    if report:  # what the distillation added to the training, and its deviation from the exact inverse
        cost = {**cost, "distill_seconds": sum(r["seconds"] for r in report), "distill_rmse": report[0]["rmse"]}
    rows = []
    for sampler in samplers:
        stage.p = dataclasses.replace(stage.p, sampler=sampler)
        stage._samplers = None  # noqa: SLF001 - switch the sampling path of the same trained flow
        row = evaluate_model(stage, test, reference, train, seed=seed, classifier=classifier)
        rows.append({"model": f"{label}[{sampler}]", "plugin": "flow", "params": {**params, "sampler": sampler},
                     "n_train": len(train), **cost, **row})
    return rows


def run_conditional(plugin: str, params: Mapping[str, Any], energies: Sequence[float], *, n_train: int,
                    n_valid: int, n_test: int, seed: int = 1, label: str | None = None,
                    registry: StageRegistry | None = None, classifier: bool = True,
                    kl_events: int = 0) -> list[dict[str, Any]]:
    """cFAT-GAN test: train on sym_multienergy_train (E = 10-50 GeV), evaluate at the test file's ``energies``.

    ``kl_events`` > 0 adds :func:`kl_high_statistics` with that many events a side (fresh Pythia truth).
    """
    registry = registry or load_plugins()
    train_all = load_truth("sym_multienergy", registry, beams="sym50")
    test_all = load_truth("sample_data/sym_multienergy_test.root", registry, beams="sym50")
    train, valid, _, _ = split_truth(train_all, n_train, n_valid, 0, seed=seed)
    hadron_follows = dict(test_all.meta.get("beam_setup") or {}).get("hadron_energy") == "beam_energy"
    fields = {f.name for f in dataclasses.fields(registry.get("generator", plugin).cls.Params)}
    switch = {"conditional": True} if "conditional" in fields else {}  # cfatgan is conditional by construction
    stage, cost = train_model(plugin, {**params, **switch}, train, valid, seed=seed, registry=registry)
    rows = []
    for energy in energies:
        at = test_all.take(np.flatnonzero(test_all.column("beam_energy") == energy))
        if len(at) == 0:  # a trained energy (10-50 GeV): only the high-statistics KL against fresh Pythia truth
            if kl_events:
                rows.append({"model": f"{label or plugin}@{energy:g}GeV", "plugin": plugin, "params": dict(params),
                             "n_train": len(train), "beam_energy": energy, **cost,
                             "kl_high_statistics": kl_high_statistics(stage, energy, kl_events, seed=seed)})
            continue
        n = min(n_test, len(at) // 2)
        _, _, test, reference = split_truth(at, 0, 0, n, seed=seed)
        if test.beams is not None:  # this energy's beams (E × E: the hadron's too) for x, W² and the limits
            beams = beams_at(test.beams, energy, hadron_follows)
            test, reference = (dataclasses.replace(b, beams=beams) for b in (test, reference))
        row = evaluate_model(stage, test, reference, train, seed=seed, classifier=classifier)
        if kl_events:
            row["kl_high_statistics"] = kl_high_statistics(stage, energy, kl_events, seed=seed)
        rows.append({"model": f"{label or plugin}@{energy:g}GeV", "plugin": plugin, "params": dict(params),
                     "n_train": len(train), "beam_energy": energy, **cost, **row})
    return rows


def perfect_model_null(truth: EventBatch, n_train: int, n_valid: int, n_test: int, splits: int = 40,
                       threshold: float = 1.5) -> dict[str, Any]:
    """The benchmark's ratios for a *perfect* generator: independent truth events in the model's place.

    For each of ``splits`` splits (seeds 1, 2, ...) the same split as the benchmark is made, ``n_test``
    events of its training part stand in for the generated sample, and the χ²/ndf ratios to the floor
    (the 1D features and the joint Q²–x) are computed as for a model. How often a perfect model exceeds
    ``threshold`` says how much of a single run's miss is the scatter of the measurement itself.

    Example:
        >>> # null = perfect_model_null(load_truth("sym50"), 10_000, 2_000, 4_000, splits=40)
        >>> # null["p_any_above"]  # 0.225 on sym50 with 40 splits
    """
    from mlegpipe.metrics import compare_samples

    if n_train < n_test:
        raise SystemExit(f"a perfect-model null needs --train >= --test ({n_train} < {n_test})")
    maxima, ratios = [], {}
    for seed in range(1, splits + 1):
        train, _, test, reference = split_truth(truth, n_train, n_valid, n_test, seed=seed)
        model = train.take(np.arange(n_test))
        table = compare_samples(*(add_observables(b) for b in (model, test, reference)), features=list(FEATURES),
                                beams=test.beams, classifier=False)
        row = {k: v["chi2_ndf"] / v["chi2_ndf_floor"] for k, v in table["features"].items()}
        joint = table["joint_q2x"]
        row["joint_q2x"] = joint["chi2_ndf"] / joint["chi2_ndf_floor"]
        for k, v in row.items():
            ratios.setdefault(k, []).append(v)
        maxima.append(max(row.values()))
    return {"splits": splits, "threshold": threshold, "n_test": n_test,
            "p_any_above": float(np.mean(np.asarray(maxima) > threshold)),
            "median_max_ratio": float(np.median(maxima)),
            "p_above_by_feature": {k: float(np.mean(np.asarray(v) > threshold)) for k, v in ratios.items()},
            "q90_by_feature": {k: float(np.quantile(v, 0.9)) for k, v in ratios.items()}}


def drawn_fractions(events: EventBatch) -> dict[str, float]:
    """This sample's fractions of drawn events beyond the kinematic limits (before rejection) and redrawn.

    From the generator's sampling record in ``events.meta`` (GAN generators); empty for others. The
    fraction after rejection is the ``unphysical`` figure of the comparison table.
    """
    drawn = events.meta.get("drawn")
    if not drawn:
        return {}
    return {"unphysical_before_rejection": events.meta.get("unphysical_drawn", 0) / drawn,
            "rejected_fraction_sample": events.meta.get("rejected_fraction", 0.0)}


#: Features of the cFAT-GAN KL target (thesis Fig. 16) and the binning used for it.
KL_FEATURES = ("lepton_E", "lepton_px", "lepton_py", "lepton_pz")
KL_BINS = 50


def pythia_truth(energy: float, n: int, seed: int) -> EventBatch:
    """``n`` fresh Pythia 8 events at E × E GeV, made as sym_multienergy_* are (full events, Q² > 1 on the lepton)."""
    from mlegpipe_builtins.truth.pythia import PythiaSource

    name = f"kl_reference_E{energy:g}"
    raw = {"events": n, "beams": {"preset": "sym50", "lepton_energy": energy, "hadron_energy": energy},
           "q2_min": 1.0, "level": "full", "particles": False, "cut": "Q2 > 1"}
    source = PythiaSource(build_params(PythiaSource.Params, raw, name), StageContext(name, seed=seed))
    return EventBatch.concat(list(source.iter_batches()))


def kl_high_statistics(stage: Any, energy: float, n: int, seed: int = 1) -> dict[str, Any]:
    """Binned KL(truth ‖ model) of E', p_x, p_y, p_z at ``energy`` with ``n`` events a side, beside its floor.

    With the ~10⁴ events per energy of the sample files, KL between two *truth*
    samples is already 3-35·10⁻³ (its bias is about (bins - 1) / 2N per sample), so
    the 5·10⁻³ target cannot be resolved there. Here 2n fresh Pythia events at the
    energy (new seed) give the reference and an independent truth sample for the
    floor, and the model draws n events; bins: KL_BINS equal bins over the
    reference's 0.1-99.9 % quantiles, ε = 10⁻¹⁰ (``kl_divergence``).
    """
    from mlegpipe.metrics.distances import kl_divergence

    truth = pythia_truth(energy, 2 * n, seed=seed)
    ref, other = truth.take(np.arange(n)), truth.take(np.arange(n, len(truth)))
    gen = stage.sample(n, np.random.SeedSequence([seed, 3]),
                       {"beam_energy": np.full(n, energy)} if getattr(stage, "conditions", None) else None)
    out: dict[str, Any] = {"events_per_side": n, "bins": KL_BINS, "beam_energy": energy, **drawn_fractions(gen)}
    if hasattr(stage, "physical_mask"):
        out["unphysical_after_rejection"] = float(1.0 - np.mean(stage.physical_mask(gen)))
    for f in KL_FEATURES:
        r = ref.column(f)
        edges = np.linspace(*np.quantile(r, [0.001, 0.999]), KL_BINS + 1)
        counts = [np.histogram(b.column(f), edges)[0] for b in (ref, gen, other)]
        out[f] = {"kl": kl_divergence(counts[0], counts[1]), "kl_floor": kl_divergence(counts[0], counts[2])}
    return out


#: Thesis ch. 4 (FAT-GAN, Pythia 50 × 50 GeV, Q² > 1 GeV²): joint Q²–x χ² per bin and its sample size.
PUBLISHED_THESIS_CHI2 = 1.58
PUBLISHED_THESIS_EVENTS = 95_765


def _fmt(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _thesis_cell(row: Mapping[str, Any]) -> str:
    """The thesis χ² of a row with its ratio to the truth-vs-truth value."""
    j = row["joint_q2x"]
    model, floor = j.get("thesis_chi2"), j.get("thesis_chi2_floor")
    if model is None:
        return "n/a"
    return f"{model:.2f} ({model / floor:.2f}x)" if floor else f"{model:.2f}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The benchmark table: χ²/ndf (ratio to the floor) per feature, then the summary figures."""
    if not rows:
        return "(no rows)"
    feats = list(rows[0]["chi2"])
    head = f"{'feature':16s}" + "".join(f"{r['model']:>24s}" for r in rows) + f"{'truth floor':>14s}"
    lines = [head, "-" * len(head)]
    for f in feats:
        cells = "".join(f"{r['chi2'][f]['model']:.2f} ({r['chi2'][f]['ratio']:.2f}x)".rjust(24) for r in rows)
        lines.append(f"{f:16s}{cells}{rows[0]['chi2'][f]['floor']:>14.2f}")
    j = rows[0]["joint_q2x"]
    lines.append(f"{'Q2-x joint':16s}" + "".join(
        f"{r['joint_q2x']['model']:.2f} ({r['joint_q2x']['model'] / r['joint_q2x']['floor']:.2f}x)".rjust(24)
        for r in rows) + f"{j['floor']:>14.2f}")
    lines.append(f"{'thesis chi2 49^2':16s}" + "".join(_thesis_cell(r).rjust(24) for r in rows)
                 + f"{_fmt(j.get('thesis_chi2_floor'), '.2f'):>14s}")
    lines.append(f"{'':16s}(thesis χ² per bin, 49 × 49 log bins; published FAT-GAN {PUBLISHED_THESIS_CHI2} on "
                 f"{PUBLISHED_THESIS_EVENTS} sym50 events; it grows with the sample size)")
    lines.append(f"{'memorization':16s}" + "".join(
        _fmt((r.get("memorization") or {}).get("ratio"), ".3f").rjust(24) for r in rows) + f"{'(>= 0.9)':>14s}")
    for key, fmt, label in (("auc", ".3f", "AUC"), ("unphysical_before_rejection", ".2e", "unphys. drawn"),
                            ("unphysical", ".2e", "unphysical"),
                            ("rejected_fraction", ".2e", "rejected"), ("events_per_second", ".3g", "events/s (wall)"),
                            ("events_per_cpu_second", ".3g", "events/CPU-s"),
                            ("train_cpu_minutes", ".2f", "train CPU min"), ("train_wall_seconds", ".0f", "train wall s")):
        lines.append(f"{label:16s}" + "".join(
            (format(r[key], fmt) if r.get(key) is not None else "n/a").rjust(24) for r in rows))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train the chosen models, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="flow,flow-lepton_t,flow-maf", help="comma-separated names of MODELS")
    ap.add_argument("--sample", default="hera_pythia", help="one of " + ", ".join(SAMPLES) + ", sym50 (the 20 000 "
                    "50 × 50 GeV events of sym_multienergy; try --train 10000 --valid 2000 --test 4000)")
    ap.add_argument("--conditional", action="store_true",
                    help="cFAT-GAN test: train conditional models on sym_multienergy_train, test at --energies")
    ap.add_argument("--energies", default="35,60", help="test beam energies for --conditional (15, 25, 35, 45, 60)")
    ap.add_argument("--train", type=int, default=50_000)
    ap.add_argument("--valid", type=int, default=10_000)
    ap.add_argument("--test", type=int, default=20_000)
    ap.add_argument("--set", action="append", default=[], help="parameter override for every model: key=json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these sizes)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/bench_generators[_conditional]"
                                               ".json)")
    ap.add_argument("--no-classifier", action="store_true")
    ap.add_argument("--samplers", default="", help="for flow models: train once, measure each of these samplers "
                    "side by side (e.g. fast,distilled)")
    ap.add_argument("--null-splits", type=int, default=0, help="also the ratios of a perfect generator (independent "
                    "truth in the model's place) over this many splits (e.g. 40): how often the scatter alone misses")
    ap.add_argument("--kl-events", type=int, default=0, help="with --conditional: also the KL of E', p_x, p_y, p_z "
                    "on this many events a side against fresh Pythia truth at each energy (e.g. 200000)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    registry = load_plugins()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    rows = []
    if args.conditional:
        args.sample = "sym_multienergy"
        for name in args.models.split(","):
            plugin, params = MODELS[name]
            print(f"[bench] {name}: training conditional {plugin} on sym_multienergy_train", file=sys.stderr)
            rows += run_conditional(plugin, {**params, **overrides}, [float(e) for e in args.energies.split(",")],
                                    n_train=args.train, n_valid=args.valid, n_test=args.test, seed=args.seed,
                                    label=name, registry=registry, classifier=not args.no_classifier,
                                    kl_events=args.kl_events)
            print(format_table([r for r in rows if "chi2" in r]), file=sys.stderr)
        args.models = ""
    else:
        truth = load_truth(args.sample, registry)
        train, valid, test, reference = split_truth(truth, args.train, args.valid, args.test, seed=args.seed)
    for name in filter(None, args.models.split(",")):
        plugin, params = MODELS[name]
        print(f"[bench] {name}: training {plugin} {params | overrides} on {len(train)} events", file=sys.stderr)
        if args.samplers and plugin == "flow":
            rows += run_flow_samplers({**params, **overrides}, args.samplers.split(","), train, valid, test,
                                      reference, label=name, seed=args.seed, registry=registry,
                                      classifier=not args.no_classifier)
            print(format_table(rows[-len(args.samplers.split(",")):]), file=sys.stderr)
            continue
        rows.append(run_model(plugin, {**params, **overrides}, train, valid, test, reference, label=name,
                              seed=args.seed, registry=registry, classifier=not args.no_classifier))
        print(format_table(rows[-1:]), file=sys.stderr)
    print(f"sample {args.sample}: {rows[0]['n_train'] if rows else 0} train, {rows[0].get('n_test', 0) if rows else 0} "
          f"test events, {args.threads} torch thread(s), {os.cpu_count()} CPUs")
    print(format_table([r for r in rows if "chi2" in r]))
    for row in rows:
        if "kl_high_statistics" in row:
            kl = row["kl_high_statistics"]
            cells = "  ".join(f"{f} {kl[f]['kl']:.2e} (floor {kl[f]['kl_floor']:.1e})" for f in KL_FEATURES)
            if "unphysical_before_rejection" in kl:
                cells += (f"  unphysical drawn {kl['unphysical_before_rejection']:.2e}, kept "
                          f"{kl.get('unphysical_after_rejection', float('nan')):.1e}")
            print(f"KL x 1, {kl['events_per_side']} events a side, {row['model']}: {cells}")
    null = None
    if args.null_splits and not args.conditional:
        null = perfect_model_null(truth, args.train, args.valid, args.test, splits=args.null_splits)
        print(f"perfect generator over {null['splits']} splits: some ratio > {null['threshold']} in "
              f"{100 * null['p_any_above']:.0f} %, median largest ratio {null['median_max_ratio']:.2f}; 90 % quantile "
              "by feature: " + ", ".join(f"{k} {v:.2f}" for k, v in null["q90_by_feature"].items()))
    out = Path(args.out or RESULTS / ("bench_generators_conditional.json" if args.conditional
                                      else "bench_generators.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"sample": args.sample, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
    if null is not None:
        payload["perfect_model_null"] = null
    out.write_text(json.dumps(payload, indent=1, default=float))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
