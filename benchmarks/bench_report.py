"""Benchmark: time to build the run report of 10⁶-event samples (target < 60 s on 2 cores).

Four DIS samples (truth_train, truth_valid, truth_test, generated) of N events
each at HERA beams, the scattered lepton made from (x, Q², φ) with
mlegpipe_builtins.dis.kinematics; the "generated" sample has a slightly distorted x
distribution so the report has something to find. Times each part (metrics,
plots, page) and the classifier test on 2 × 50k events (target < 10 s).

Run: python benchmarks/bench_report.py [--events 1000000]
Writes benchmarks/results/bench_report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.metrics import classifier_auc, compare_samples
from mlegpipe.report import analyse_run, write_report
from mlegpipe_builtins.dis.kinematics import dis_from_lepton, lepton_from_dis


def dis_sample(n: int, rng: np.random.Generator, beams: Beams, x_shift: float = 0.0) -> EventBatch:
    """Events falling like 1/Q⁴ in Q² > 1 GeV² and log-normal in x, inside y < 0.95."""
    s_eff = beams.s - beams.hadron_mass**2
    out_x, out_q2 = [], []
    need = n
    while need > 0:
        x = 10 ** rng.normal(-2.3 + x_shift, 0.6, 2 * need)
        q2 = 1.0 / (1.0 - rng.random(2 * need) * (1 - 1e-4))  # 1/Q⁴ above 1 GeV²
        ok = (x < 1) & (q2 < 0.95 * x * s_eff)
        out_x.append(x[ok][:need])
        out_q2.append(q2[ok][:need])
        need -= int(min(ok.sum(), need))
    x, q2 = np.concatenate(out_x), np.concatenate(out_q2)
    e, px, py, pz = lepton_from_dis(x, q2, rng.uniform(0, 2 * np.pi, n), beams)
    dis = dis_from_lepton(e, px, py, pz, beams)
    return EventBatch.from_columns({"lepton_E": e, "lepton_px": px, "lepton_py": py, "lepton_pz": pz, **dis},
                                   beams)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events per sample")
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    beams = Beams.preset("hera")
    n = args.events
    t0 = time.perf_counter()
    samples = {name: dis_sample(n, rng, beams, 0.02 if name == "generated" else 0.0)
               for name in ("truth_train", "truth_valid", "truth_test", "generated")}
    t_make = time.perf_counter() - t0

    c0, t0 = time.process_time(), time.perf_counter()
    table = compare_samples(samples["generated"], samples["truth_test"], samples["truth_valid"],
                            training=samples["truth_train"], q2_min=1.0)
    t_metrics, c_metrics = time.perf_counter() - t0, time.process_time() - c0

    c0, t0 = time.process_time(), time.perf_counter()
    analysis = analyse_run(samples, q2_min=1.0)
    t_analysis, c_analysis = time.perf_counter() - t0, time.process_time() - c0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = write_report(tmp, analysis, title="bench_report")
        t_page = time.perf_counter() - t0
        page_mb = Path(files[-1]).stat().st_size / 1e6

    a = samples["generated"].matrix(table["feature_names"])[:50_000]
    b = samples["truth_test"].matrix(table["feature_names"])[:50_000]
    t0 = time.perf_counter()
    auc = classifier_auc(a, b, seed=1)
    t_clf = time.perf_counter() - t0

    total = t_analysis + t_page
    load = os.getloadavg()[0]
    rows = [
        ("events per sample", f"{n:,}", ""),
        ("make 4 samples [s]", f"{t_make:.1f}", ""),
        ("compare_samples only (9 features, joint, AUC, MMD, memorization, physicality) [s]", f"{t_metrics:.1f}", ""),
        ("  of which CPU time of this process [s]", f"{c_metrics:.1f}", ""),
        ("full analysis: metrics + figures [s]", f"{t_analysis:.1f}", ""),
        ("  of which CPU time of this process [s]", f"{c_analysis:.1f}", ""),
        ("machine load average (1 min) at the end", f"{load:.1f}", "2 cores: > 2 means shared"),
        ("write plots + report.html [s]", f"{t_page:.2f}", ""),
        ("report total [s]", f"{total:.1f}", "PASS" if total < 60 else "MISS (target < 60 s)"),
        ("figures", str(len(analysis.figures)), ""),
        ("report.html size [MB]", f"{page_mb:.2f}", ""),
        ("classifier 2 x 50k events [s]", f"{t_clf:.2f}", "PASS" if t_clf < 10 else "MISS (target < 10 s)"),
        ("classifier AUC, x shifted by 0.02 decades", f"{auc['auc']:.4f} ± {auc['auc_null_std']:.4f}", ""),
        ("chi2/ndf x (floor)", f"{table['features']['x']['chi2_ndf']:.2f} ({table['features']['x']['chi2_ndf_floor']:.2f})",
         ""),
        ("joint Q2-x chi2/ndf (floor)",
         f"{table['joint_q2x']['chi2_ndf']:.2f} ({table['joint_q2x']['chi2_ndf_floor']:.2f})", ""),
        ("memorization ratio", f"{table['memorization']['ratio']:.3f}", ""),
        ("unphysical fraction", f"{table['physicality']['unphysical']:.2e}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, verdict in rows:
        print(f"{name:<{width}}  {value:>20}  {verdict}")
    results = {"events": n, "seconds": {"make_samples": t_make, "compare_samples": t_metrics,
                                        "analysis": t_analysis, "page": t_page, "report_total": total,
                                        "compare_samples_cpu": c_metrics, "analysis_cpu": c_analysis,
                                        "classifier_2x50k": t_clf},
               "figures": len(analysis.figures), "page_mb": page_mb, "classifier_auc": auc,
               "chi2_ndf_x": table["features"]["x"]["chi2_ndf"],
               "chi2_ndf_x_floor": table["features"]["x"]["chi2_ndf_floor"],
               "joint_q2x": table["joint_q2x"], "memorization": table["memorization"],
               "physicality": table["physicality"], "targets": {"report_total_s": 60, "classifier_s": 10},
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_avg_1min": load}}
    out = Path(__file__).parent / "results" / "bench_report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
