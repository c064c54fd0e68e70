"""Benchmark of the ``dis`` truth source: events/s, unweighting efficiency, σ_tot against quadrature.

Run ``python benchmarks/bench_dis.py [--events N]``. For each beam set-up it
times the grid build and the generation of N unweighted events, and sets the
sampler's σ_tot beside a direct scipy dblquad of the same region (ratio in the
same run). The unweighting efficiency of the envelope table is shown beside two
baselines measured on the same density in the same run: a flat proposal over
the (ln x, ln Q²) box and the adapted VEGAS map alone, each against its largest
weight in 10⁶ points (an optimistic estimate of the true maximum).
σ_tot(HERA, Q² > 1 GeV²) is the figure to compare with Pythia's.
Writes benchmarks/results/bench_dis.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
from scipy import integrate

from mlegpipe.schema import build_params
from mlegpipe.stages import StageContext
from mlegpipe_builtins.dis.cross_section import born_d2sigma_dx_dq2
from mlegpipe_builtins.truth.dis import DISTruth

__all__ = ["main", "quadrature_sigma"]

SETUPS: list[tuple[str, dict]] = [
    ("hera, Q2>1", {"beams": "hera"}),
    ("hera, Q2>1, 0.01<y<0.95", {"beams": "hera", "y_min": 0.01, "y_max": 0.95}),
    ("eic18x275, Q2>1", {"beams": "eic18x275"}),
    ("eic10x100, Q2>1", {"beams": "eic10x100"}),
    ("jlab, Q2>1", {"beams": "jlab"}),
]


def quadrature_sigma(src: DISTruth) -> float:
    """σ (pb) of the source's region by dblquad over (ln Q², ln x), edges from the region."""
    region = src.region
    smm = region.s_minus_m2
    lo, hi = region.box()

    def x_lo(l2: float) -> float:
        return math.log(float(region.x_range(math.exp(l2))[0]))

    def x_hi(l2: float) -> float:
        return max(math.log(float(region.x_range(math.exp(l2))[1])), x_lo(l2))

    def density(l1: float, l2: float) -> float:
        x, q2 = math.exp(l1), math.exp(l2)
        return x * q2 * float(born_d2sigma_dx_dq2(x, q2, q2 / (x * smm), src.params.r_longitudinal))

    value, _ = integrate.dblquad(density, lo[1], hi[1], x_lo, x_hi, epsrel=1e-8, epsabs=0.0)
    return value


def baseline_efficiencies(src: DISTruth, n: int = 1_000_000) -> tuple[float, float]:
    """Unweighting efficiency mean(w)/max(w) of a flat box proposal and of the VEGAS map alone."""
    sampler = src.sampler()
    rng = np.random.default_rng(12345)
    lo, hi = src.region.box()
    z = lo + (hi - lo) * rng.random((n, 2))
    flat = src.cross_section.density_log(z)
    _, vegas = sampler.vegas_weighted(n, rng)
    return float(flat.mean() / flat.max()), float(vegas.mean() / vegas.max())


def main() -> None:
    """Run the benchmark, print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    header = (f"{'set-up':28s} {'build s':>8s} {'gen s':>7s} {'events/s':>10s} {'eff':>6s} {'flat':>6s} "
              f"{'vegas':>6s} {'sigma_pb':>12s} {'err_pb':>9s} {'quad_pb':>12s} {'ratio':>8s} {'pull':>6s}")
    print(header)
    print("-" * len(header))
    for label, raw in SETUPS:
        src = DISTruth(build_params(DISTruth.Params, {**raw, "events": args.events}, "truth"),
                       StageContext("truth", seed=args.seed))
        t0 = time.perf_counter()
        src.sampler()
        t1 = time.perf_counter()
        n = sum(len(b) for b in src.iter_batches())
        t2 = time.perf_counter()
        info = src.info()
        quad = quadrature_sigma(src)
        eff_flat, eff_vegas = baseline_efficiencies(src)
        sigma, err = info["cross_section_pb"], info["cross_section_error_pb"]
        row = {
            "setup": label, "params": raw, "events": n, "build_s": t1 - t0, "generate_s": t2 - t1,
            "events_per_s": n / (t2 - t1), "unweighting_efficiency": info["unweighting_efficiency"],
            "efficiency_flat_box": eff_flat, "efficiency_vegas_only": eff_vegas,
            "overweight_fraction": info["overweight_fraction"], "overweight_bias": info["overweight_bias"],
            "sigma_pb": sigma, "sigma_err_pb": err, "quadrature_pb": quad, "ratio": sigma / quad,
            "pull": (sigma - quad) / err, "sqrt_s": src.beams.sqrt_s,
        }
        rows.append(row)
        print(f"{label:28s} {row['build_s']:8.2f} {row['generate_s']:7.2f} {row['events_per_s']:10.3g} "
              f"{row['unweighting_efficiency']:6.3f} {eff_flat:6.3f} {eff_vegas:6.3f} {sigma:12.6g} {err:9.3g} {quad:12.6g} "
              f"{row['ratio']:8.5f} {row['pull']:6.2f}")
    out = Path(__file__).parent / "results" / "bench_dis.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "bench_dis", "events": args.events, "seed": args.seed,
                               "machine": platform.platform(), "python": platform.python_version(),
                               "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
