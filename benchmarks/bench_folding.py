"""Benchmark of the learned detector surrogates cfold, dfold and flowfold (thesis ch. 6, issue 5).

Part 1, the thesis toy (ch. 6.5.2): train on Gaussian vertex events v ~ N(0, 1)²
smeared by 5 % relative Gaussian noise, fold UNIFORM vertex events U(-2, 2)²;
χ²/ndf of the folded vs the true smeared uniform sample beside the floor (two
independent true smeared samples), and the resolution per bin of vertex value.

Part 2, HERA DIS (`dis` truth, e⁺p 27.6 × 920 GeV, Q² > 1 GeV²) through `smear`
(Matrix 0.2): surrogates learn (E', P' | E, P, θ, φ) of the scattered lepton and
the acceptance p(measured | vertex). Figures on measured events: χ²/ndf of
detector-level ν₁, ν₂, log x, log Q² vs smear output of an independent vertex
sample, beside the smear-vs-smear floor; resolution per bin of vertex value
(ratio of widths of detector - vertex; "med fl": the median deviation of two smear
runs of the same events, the statistical floor of that figure); classifier two-sample AUC (detector-level
lepton; and (detector, vertex) pairs); acceptance; all also on a vertex sample
unlike the training one (x spectrum reweighted by (x/0.01)^0.5 → harder x).
Throughput: fold events/s for each surrogate beside `smear` in the same run.

Run: ``python benchmarks/bench_folding.py [--quick]``; writes benchmarks/results/folding.json
(``--quick``: folding_quick.json, so a smoke run never replaces the full figures;
``--surrogates flowfold``: only those, to folding_partial.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.kinematics import nu_from_lepton
from mlegpipe.metrics import classifier_auc
from mlegpipe.registry import load_plugins
from mlegpipe.toys import VertexGaussian, VertexUniform
from mlegpipe_builtins.detectors._fold_metrics import chi2_ndf, resolution_profile

SURROGATES = ("cfold", "dfold", "flowfold")
TOY_NAMES = ["v1", "v2"]
LEPTON_VERTEX = ["lepton_E", "lepton_P", "lepton_theta", "lepton_phi"]
LEPTON_DETECTOR = ["lepton_E", "lepton_P"]


def _smear_toy(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return v * (1.0 + 0.05 * rng.standard_normal(v.shape))


def _train(plugin: str, params: dict[str, Any], vertex: EventBatch, detector: EventBatch) -> tuple[Any, float]:
    cls = load_plugins().get("detector", plugin).cls
    det = cls(cls.Params(**params), StageContext("detector", seed=11))
    start = time.process_time()
    det.fit(vertex, detector)
    return det, time.process_time() - start


def _throughput(det: Any, events: EventBatch) -> float:
    start = time.perf_counter()
    det.fold(events, np.random.SeedSequence(77))
    return len(events) / (time.perf_counter() - start)


def toy(n_train: int, n_test: int, steps: int) -> dict[str, Any]:
    """Part 1: Gaussian-trained surrogates folding uniform vertex events."""
    rng = np.random.default_rng(2026)
    vg = VertexGaussian().sample(n_train, rng)
    vertex, detector = EventBatch.from_matrix(vg, TOY_NAMES), EventBatch.from_matrix(_smear_toy(vg, rng), TOY_NAMES)
    uniform = VertexUniform()
    vu = uniform.sample(n_test, rng)
    du = _smear_toy(vu, rng)
    du2 = _smear_toy(uniform.sample(n_test, rng), rng)
    edges = np.linspace(-2.4, 2.4, 49)
    res_edges = np.linspace(-2.0, 2.0, 9)
    floor = float(np.mean([chi2_ndf(du2[:, j], du[:, j], edges) for j in range(2)]))
    rows = {}
    for plugin in SURROGATES:
        det, cpu = _train(plugin, {"vertex_features": TOY_NAMES, "steps": steps}, vertex, detector)
        test = EventBatch.from_matrix(vu, TOY_NAMES)
        folded = det.fold(test, np.random.SeedSequence(5)).matrix(TOY_NAMES)
        chi = float(np.mean([chi2_ndf(folded[:, j], du[:, j], edges) for j in range(2)]))
        ratio = np.concatenate([resolution_profile(vu[:, j], folded[:, j], res_edges)
                                / resolution_profile(vu[:, j], du[:, j], res_edges) for j in range(2)])
        rows[plugin] = {"chi2_ndf": chi, "floor": floor, "chi2_over_floor": chi / floor,
                        "resolution_ratio_min": float(np.nanmin(ratio)), "resolution_ratio_max": float(np.nanmax(ratio)),
                        "train_cpu_s": cpu, "fold_events_per_s": _throughput(det, test)}
    return rows


def _dis_observables(events: EventBatch) -> dict[str, np.ndarray]:
    nu1, nu2 = nu_from_lepton(events.column("lepton_E"), events.column("lepton_pz"), events.beams)
    return {"nu1": nu1, "nu2": nu2, "log10_x": np.log10(np.clip(events.column("x"), 1e-12, None)),
            "log10_Q2": np.log10(np.clip(events.column("Q2"), 1e-12, None))}


def _measured(events: EventBatch) -> np.ndarray:
    return events.column("measured") > 0.5


def _reweight_x(events: EventBatch, rng: np.random.Generator, power: float = 0.5) -> EventBatch:
    """Accept-reject the events with weight ∝ (x / x_max)^power: a harder x spectrum than the training one."""
    w = events.column("x") ** power
    return events.take(rng.random(len(events)) < w / w.max())


def _compare(ref: EventBatch, ref_vertex: EventBatch, model: EventBatch, floor_sample: EventBatch,
             model_vertex: EventBatch, floor_again: EventBatch) -> dict[str, Any]:
    """Figures of ``model`` (folded ``model_vertex``) against ``ref`` (smeared ``ref_vertex``, independent events).

    ``floor_sample`` is ``smear`` of ``model_vertex``: the floor of every figure, and the
    reference of the per-bin resolution (same vertex events). ``floor_again`` is ``smear``
    of ``model_vertex`` with other noise: its resolution ratio is the statistical floor of that figure.
    """
    obs_ref, obs_model, obs_floor = (_dis_observables(b) for b in (ref, model, floor_sample))
    m_ref, m_model, m_floor = _measured(ref), _measured(model), _measured(floor_sample)
    out: dict[str, Any] = {"acceptance_model": float(m_model.mean()), "acceptance_ref": float(m_ref.mean()),
                           "acceptance_floor": float(m_floor.mean())}
    for name in obs_ref:
        r = obs_ref[name][m_ref & np.isfinite(obs_ref[name])]
        g = obs_model[name][m_model & np.isfinite(obs_model[name])]
        f = obs_floor[name][m_floor & np.isfinite(obs_floor[name])]
        edges = np.quantile(r, np.linspace(0, 1, 41))
        out[f"chi2_{name}"] = chi2_ndf(g, r, edges)
        out[f"floor_{name}"] = chi2_ndf(f, r, edges)
        out[f"ratio_{name}"] = out[f"chi2_{name}"] / out[f"floor_{name}"]
    lep = ["lepton_E", "lepton_px", "lepton_py", "lepton_pz"]
    out["auc_detector"] = classifier_auc(model.take(m_model).matrix(lep), ref.take(m_ref).matrix(lep), seed=1)["auc"]
    out["auc_floor"] = classifier_auc(floor_sample.take(m_floor).matrix(lep), ref.take(m_ref).matrix(lep), seed=1)["auc"]
    # resolution: model and smear fold the SAME vertex events (floor_sample is smear of model_vertex)
    both = m_model & m_floor
    vert = _dis_observables(model_vertex)
    worst, floor_median = {}, {}
    obs_again = _dis_observables(floor_again)
    for name in ("nu1", "log10_x", "log10_Q2"):
        ok = both & np.isfinite(vert[name]) & np.isfinite(obs_model[name]) & np.isfinite(obs_floor[name])
        edges = np.quantile(vert[name][ok], np.linspace(0, 1, 11))
        w_model = resolution_profile(vert[name][ok], obs_model[name][ok], edges)
        w_smear = resolution_profile(vert[name][ok], obs_floor[name][ok], edges)
        ratio = w_model / w_smear
        worst[name] = float(np.nanmax(np.abs(ratio - 1.0)))
        out[f"resolution_ratio_{name}"] = [round(float(x), 3) for x in ratio]
        again = m_floor & _measured(floor_again) & np.isfinite(vert[name]) & np.isfinite(obs_floor[name]) \
            & np.isfinite(obs_again[name])
        w_again = resolution_profile(vert[name][again], obs_again[name][again], edges)
        w_ref = resolution_profile(vert[name][again], obs_floor[name][again], edges)
        floor_median[name] = float(np.nanmedian(np.abs(w_again / w_ref - 1.0)))
    out["resolution_floor_median_deviation"] = floor_median
    out["resolution_worst_deviation"] = worst
    out["resolution_median_deviation"] = {n: float(np.nanmedian(np.abs(np.array(out[f"resolution_ratio_{n}"]) - 1)))
                                          for n in worst}

    def pairs(det_events: EventBatch, vertex: EventBatch, mask: np.ndarray) -> np.ndarray:
        return np.concatenate([det_events.matrix(lep), vertex.matrix(lep)], axis=1)[mask]

    # (detector, vertex) pairs against pairs of independent vertex events: tests the response event by event
    ref_pairs = pairs(ref, ref_vertex, m_ref)
    out["auc_pairs"] = classifier_auc(pairs(model, model_vertex, m_model), ref_pairs, seed=2)["auc"]
    out["auc_pairs_floor"] = classifier_auc(pairs(floor_sample, model_vertex, m_floor), ref_pairs, seed=2)["auc"]
    return out


def dis(n_train: int, n_test: int, steps: int) -> dict[str, Any]:
    """Part 2: HERA DIS through smear Matrix 0.2."""
    reg = load_plugins()
    dis_cls, smear_cls = reg.get("truth", "dis").cls, reg.get("detector", "smear").cls
    truth = dis_cls(dis_cls.Params(events=n_train + 2 * n_test), StageContext("truth", seed=5)).read()
    smear = smear_cls(smear_cls.Params(preset="matrix-0.2"), StageContext("smear", seed=5))
    train_v = truth.take(slice(0, n_train))
    train_d = smear.fold(train_v, np.random.SeedSequence(1))
    ref_v = truth.take(slice(n_train, n_train + n_test))
    test_v = truth.take(slice(n_train + n_test, n_train + 2 * n_test))
    ref = smear.fold(ref_v, np.random.SeedSequence(2))
    floor = smear.fold(test_v, np.random.SeedSequence(3))
    floor_again = smear.fold(test_v, np.random.SeedSequence(12))
    rng = np.random.default_rng(9)
    pool = _reweight_x(dis_cls(dis_cls.Params(events=8 * n_test), StageContext("truth-hard", seed=6)).read(), rng)
    half = len(pool) // 2
    hard_ref_v, hard_v = pool.take(slice(0, half)), pool.take(slice(half, 2 * half))
    hard_ref = smear.fold(hard_ref_v, np.random.SeedSequence(4))
    hard_floor = smear.fold(hard_v, np.random.SeedSequence(6))
    hard_floor_again = smear.fold(hard_v, np.random.SeedSequence(13))
    start = time.perf_counter()
    smear.fold(test_v, np.random.SeedSequence(8))
    rows: dict[str, Any] = {"smear": {"fold_events_per_s": len(test_v) / (time.perf_counter() - start)},
                            "sizes": {"train": n_train, "test": n_test, "hard_test": len(hard_v)}}
    for plugin in SURROGATES:
        params = {"vertex_features": LEPTON_VERTEX, "detector_features": LEPTON_DETECTOR, "steps": steps}
        det, cpu = _train(plugin, params, train_v, train_d)
        folded = det.fold(test_v, np.random.SeedSequence(10))
        hard = det.fold(hard_v, np.random.SeedSequence(11))
        rows[plugin] = {"train_cpu_s": cpu, "fold_events_per_s": _throughput(det, test_v),
                        "pass_model": det.info()["pass_model"],
                        "like_training": _compare(ref, ref_v, folded, floor, test_v, floor_again),
                        "hard_x": _compare(hard_ref, hard_ref_v, hard, hard_floor, hard_v, hard_floor_again)}
    return rows


def _print(toy_rows: dict[str, Any], dis_rows: dict[str, Any]) -> None:
    if toy_rows:
        _print_toy(toy_rows)
    if dis_rows:
        _print_dis(dis_rows)


def _print_toy(toy_rows: dict[str, Any]) -> None:
    print("\nThesis toy: trained on Gaussian vertex events, folding uniform ones (5 % relative smearing)")
    print(f"{'surrogate':10s} {'chi2/ndf':>9s} {'floor':>7s} {'ratio':>7s} {'res min':>8s} {'res max':>8s} "
          f"{'train CPU s':>11s} {'fold ev/s':>10s}")
    for name, r in toy_rows.items():
        print(f"{name:10s} {r['chi2_ndf']:9.2f} {r['floor']:7.2f} {r['chi2_over_floor']:7.2f} "
              f"{r['resolution_ratio_min']:8.2f} {r['resolution_ratio_max']:8.2f} {r['train_cpu_s']:11.1f} "
              f"{r['fold_events_per_s']:10.3g}", flush=True)


def _print_dis(dis_rows: dict[str, Any]) -> None:
    print(f"\nHERA DIS through smear matrix-0.2 (sizes {dis_rows['sizes']}); smear folds "
          f"{dis_rows['smear']['fold_events_per_s']:.3g} events/s")
    head = ["nu1", "nu2", "log10_x", "log10_Q2"]
    print(f"{'surrogate':10s} {'sample':13s} " + " ".join(f"{'χ²/fl ' + h:>15s}" for h in head)
          + f" {'AUC':>6s} {'AUC fl':>6s} {'AUCpair':>7s} {'pair fl':>7s} {'acc':>6s} {'acc ref':>7s} {'res max':>8s} {'res med':>8s}"
          f" {'med fl':>7s}")
    for name in SURROGATES:
        for sample in ("like_training", "hard_x"):
            r = dis_rows[name][sample]
            print(f"{name:10s} {sample:13s} " + " ".join(f"{r['ratio_' + h]:15.2f}" for h in head)
                  + f" {r['auc_detector']:6.3f} {r['auc_floor']:6.3f} {r['auc_pairs']:7.3f} {r['auc_pairs_floor']:7.3f} "
                  f"{r['acceptance_model']:6.3f} {r['acceptance_ref']:7.3f} "
                  f"{max(r['resolution_worst_deviation'].values()):8.2f} "
                  f"{max(r['resolution_median_deviation'].values()):8.2f} "
                  f"{max(r['resolution_floor_median_deviation'].values()):7.2f}")
        print(f"{'':10s} train CPU {dis_rows[name]['train_cpu_s']:.0f} s, fold "
              f"{dis_rows[name]['fold_events_per_s']:.3g} events/s")


def targets(toy_rows: dict[str, Any], dis_rows: dict[str, Any]) -> dict[str, dict[str, bool]]:
    """Issue 5 targets per surrogate: χ²/ndf ≤ 1.5 × floor, AUC ≤ 0.55, resolution within 10 % (median bin)."""
    out: dict[str, dict[str, bool]] = {}
    for name in SURROGATES:
        row = {"toy_chi2": toy_rows[name]["chi2_over_floor"] <= 1.5} if name in toy_rows else {}
        for sample in ("like_training", "hard_x"):
            r = dis_rows.get(name, {}).get(sample)
            if r is None:
                continue
            row[f"{sample}_chi2"] = all(r[f"ratio_{h}"] <= 1.5 for h in ("nu1", "nu2", "log10_x", "log10_Q2"))
            row[f"{sample}_auc"] = r["auc_detector"] <= 0.55
            row[f"{sample}_resolution"] = max(r["resolution_median_deviation"].values()) <= 0.10
        out[name] = row
    return out


def main() -> None:
    global SURROGATES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small samples and few steps (a smoke run)")
    parser.add_argument("--skip-dis", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the plugins' defaults)")
    parser.add_argument("--surrogates", nargs="+", choices=SURROGATES, default=None,
                        help="only these surrogates (writes folding_partial.json)")
    args = parser.parse_args()
    SURROGATES = tuple(args.surrogates or SURROGATES)
    torch.set_num_threads(1)  # the figures are per core; more threads only spin on a shared machine
    steps = args.steps or (300 if args.quick else 2000)
    toy_rows = toy(20_000 if args.quick else 50_000, 50_000 if args.quick else 200_000, steps)
    _print(toy_rows, {})
    dis_rows = {} if args.skip_dis else dis(20_000 if args.quick else 100_000, 20_000 if args.quick else 50_000, steps)
    _print({}, dis_rows)
    name = "folding_quick.json" if args.quick else "folding_partial.json" if args.surrogates else "folding.json"
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    passed = targets(toy_rows, dis_rows)
    print("\ntargets met:")
    for name, row in passed.items():
        print(f"  {name:9s} " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in row.items()))
    out.write_text(json.dumps({"toy": toy_rows, "dis": dis_rows, "targets": passed, "steps": steps,
                               "quick": args.quick}, indent=1))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
