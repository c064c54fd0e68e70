"""Tests of the importance-grid sampler and the ``dis`` truth source."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from mlegpipe.beams import PROTON_MASS, Beams
from mlegpipe.exceptions import ConfigError, PhysicsError
from mlegpipe.registry import load_plugins
from mlegpipe.sampling import GridSettings, UnweightedSampler
from mlegpipe.schema import build_params
from mlegpipe.stages import StageContext
from mlegpipe_builtins.dis.cross_section import born_d2sigma_dx_dq2
from mlegpipe_builtins.dis.kinematics import dis_from_lepton, physical_mask
from mlegpipe_builtins.truth.dis import BLOCK_SIZE, DISTruth


def make_source(seed: int = 7, name: str = "truth", **raw: object) -> DISTruth:
    """A ``dis`` source built the way the pipeline builds it: TOML table → Params."""
    return DISTruth(build_params(DISTruth.Params, dict(raw), name), StageContext(name, seed=seed))


def quad_sigma(beams: Beams, q2_min: float, w2_min: float = 3.0, lq: tuple | None = None,
               lx: tuple | None = None) -> float:
    """σ (pb) by scipy.integrate.dblquad over (ln Q², ln x), with the region's edges written out here.

    x ranges over [max(3e-6, Q²/(s-M²), Q²(s-M²)/((s-M²)² - Q²M²)), min(0.85, Q²/(Q² + W²_min - M²))],
    optionally intersected with a bin ``lx`` in ln x; ``lq`` restricts ln Q².
    """
    smm = 2 * beams.lepton_energy * (beams.hadron_energy + beams.hadron_momentum)
    m2 = PROTON_MASS**2
    lq_lo, lq_hi = lq or (math.log(q2_min), math.log(smm))
    lq_lo = max(lq_lo, math.log(q2_min))

    def x_lo(l2: float) -> float:
        q2 = math.exp(l2)
        lo = math.log(max(3e-6, q2 / smm, q2 * smm / (smm * smm - q2 * m2)))
        return max(lo, lx[0]) if lx else lo

    def x_hi(l2: float) -> float:
        q2 = math.exp(l2)
        hi = math.log(min(0.85, q2 / (q2 + w2_min - m2)))
        hi = min(hi, lx[1]) if lx else hi
        return max(hi, x_lo(l2))  # empty interval where the cuts close

    def density(l1: float, l2: float) -> float:
        x, q2 = math.exp(l1), math.exp(l2)
        return x * q2 * float(born_d2sigma_dx_dq2(x, q2, q2 / (x * smm)))

    value, _ = integrate.dblquad(density, lq_lo, lq_hi, x_lo, x_hi, epsrel=1e-7, epsabs=0.0)
    return value


# -- the generic sampler ---------------------------------------------------------------


def test_sampler_gaussian() -> None:
    """∫ exp(-r²/2) = 2π within 4σ and 1%; accepted points follow the unit normal (KS, 20 000 events)."""
    sampler = UnweightedSampler(lambda z: np.exp(-0.5 * (z**2).sum(axis=1)), [-7, -7], [7, 7],
                                GridSettings(bins=48), np.random.SeedSequence(3))
    z = sampler.unweighted(20_000, np.random.default_rng(4))
    value, error = sampler.integral()
    assert abs(value - 2 * math.pi) < max(4 * error, 0.0) and abs(value / (2 * math.pi) - 1) < 0.01
    for d in range(2):
        assert stats.kstest(z[:, d], "norm").pvalue > 1e-3
    fresh, fresh_err = sampler.integrate(50_000, np.random.default_rng(5))
    assert abs(fresh - 2 * math.pi) < 4 * fresh_err


def test_sampler_triangle_support() -> None:
    """A density with a diagonal edge: f = 1 on x + y < 1 in the unit square (∫ = 1/2); no point outside."""
    sampler = UnweightedSampler(lambda z: (z.sum(axis=1) < 1).astype(float), [0, 0], [1, 1],
                                GridSettings(bins=32), np.random.SeedSequence(1))
    z = sampler.unweighted(10_000, np.random.default_rng(2))
    assert np.all(z.sum(axis=1) < 1)
    value, error = sampler.integral()
    assert abs(value - 0.5) < 4 * error
    # uniform on the triangle: P(x < 1/2) = 3/4, binomial error ≈ 0.0043
    assert np.mean(z[:, 0] < 0.5) == pytest.approx(0.75, abs=0.02)
    report = sampler.report()
    assert report["overweight_fraction"] == 0.0 and 0.3 < report["unweighting_efficiency"] <= 1.0


def test_sampler_reports_overweights() -> None:
    """A spike narrower than a cell and missed by the probes is counted as overweight, not hidden."""
    def spiky(z: np.ndarray) -> np.ndarray:
        return 1.0 + 1e4 * (np.abs(z[:, 0] - 0.123456) < 1e-4)

    sampler = UnweightedSampler(spiky, [0.0], [1.0], GridSettings(bins=8, adapt_iterations=0, probes=1,
                                                                   check_points=100), np.random.SeedSequence(0))
    sampler.unweighted(50_000, np.random.default_rng(1))
    report = sampler.report()
    # the spike holds 2/3 of ∫ f = 3; the envelope (1.25 per cell) misses it: ratios up to 8000
    assert report["overweight_fraction"] > 0 and report["max_weight_ratio"] > 1000
    assert report["overweight_bias"] > 0.5
    value, error = sampler.integral()
    assert abs(value - (1.0 + 1e4 * 2e-4)) < 5 * error  # the weights stay unbiased


# -- the dis truth source ----------------------------------------------------------------


@pytest.mark.parametrize("preset", ["hera", "jlab", "eic10x100"])
def test_total_cross_section_matches_quadrature(preset: str) -> None:
    """σ_tot of the sampler (40 000 events) agrees with a direct dblquad within 1% and 4σ."""
    src = make_source(events=40_000, beams=preset)
    src.read()
    info = src.info()
    reference = quad_sigma(src.beams, q2_min=1.0)
    sigma, error = info["cross_section_pb"], info["cross_section_error_pb"]
    assert abs(sigma / reference - 1) < 0.01
    assert abs(sigma - reference) < 4 * error
    assert error / sigma < 0.005
    assert 0.5 < info["unweighting_efficiency"] <= 1.0
    assert info["overweight_bias"] < 1e-3


def test_hera_histograms_follow_cross_section() -> None:
    """x and Q² histograms of 40 000 HERA events vs N·σ_bin/σ from dblquad: Pearson χ²/ndf < 2."""
    n = 40_000
    src = make_source(events=n, seed=11)
    batch = src.read()
    total = quad_sigma(src.beams, q2_min=1.0)
    log_x, log_q2 = np.log(batch.column("x")), np.log(batch.column("Q2"))
    lo, hi = src.region.box()
    for axis, values in ((0, log_x), (1, log_q2)):
        edges = np.linspace(lo[axis], hi[axis], 13)
        counts, _ = np.histogram(values, edges)
        expected = np.array([
            n * quad_sigma(src.beams, 1.0, lx=(a, b) if axis == 0 else None, lq=(a, b) if axis == 1 else None) / total
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        ])
        use = expected >= 5
        chi2 = float(((counts[use] - expected[use]) ** 2 / expected[use]).sum())
        ndf = int(use.sum()) - 1
        assert ndf >= 6
        print(f"axis {axis}: chi2/ndf = {chi2:.1f}/{ndf}")
        assert chi2 / ndf < 2.0, (axis, chi2, ndf)


@pytest.mark.parametrize("preset", ["hera", "eic18x275", "jlab", "sym50"])
def test_events_inside_kinematic_limits(preset: str) -> None:
    """Every event is physical and inside the cuts; the labels agree with the lepton."""
    src = make_source(events=5_000, beams=preset, q2_min=2.0, y_min=0.01, y_max=0.9, w2_min=4.0)
    b = src.read()
    cols = {k: b.column(k) for k in ("x", "Q2", "y", "W2", "nu", "lepton_E", "lepton_px", "lepton_py",
                                     "lepton_pz", "beam_energy")}
    beams = src.beams
    assert physical_mask(cols["x"], cols["Q2"], cols["y"], cols["W2"], beams, q2_min=2.0, w2_min=4.0,
                         y_min=0.01, y_max=0.9).all()
    again = dis_from_lepton(cols["lepton_E"], cols["lepton_px"], cols["lepton_py"], cols["lepton_pz"], beams)
    for key in ("x", "Q2", "y", "W2", "nu"):
        np.testing.assert_allclose(again[key], cols[key], rtol=1e-6)
    assert np.all(cols["beam_energy"] == beams.lepton_energy)
    if beams.is_fixed_target:
        assert np.all(cols["lepton_E"] < beams.lepton_energy)
    phi = np.arctan2(cols["lepton_py"], cols["lepton_px"])
    assert stats.kstest((phi + np.pi) / (2 * np.pi), "uniform").pvalue > 1e-3


def test_reproducible_and_chunk_invariant() -> None:
    """Same seed → identical events whatever chunk_size; another seed → other events; prefixes agree."""
    n = BLOCK_SIZE + 3000
    reference = make_source(seed=5, events=n).read()
    x_ref = reference.column("x")
    for chunk in (1000, BLOCK_SIZE, 7777):
        batches = list(make_source(seed=5, events=n, chunk_size=chunk).iter_batches())
        assert all(len(b) == chunk for b in batches[:-1]) and sum(map(len, batches)) == n
        x = np.concatenate([b.column("x") for b in batches])
        np.testing.assert_array_equal(x, x_ref)
        pz = np.concatenate([b.column("lepton_pz") for b in batches])
        np.testing.assert_array_equal(pz, reference.column("lepton_pz"))
    short = make_source(seed=5, events=2000).read()
    np.testing.assert_array_equal(short.column("Q2"), reference.column("Q2")[:2000])
    other = make_source(seed=6, events=2000).read()
    assert not np.array_equal(other.column("Q2"), short.column("Q2"))


def test_longitudinal_structure_function_lowers_sigma() -> None:
    """R = 0.2 removes y²F_L: σ drops, by under 5% with Q² > 1 at HERA."""
    plain = make_source(events=20_000, seed=1)
    plain.read()
    with_fl = make_source(events=20_000, seed=1, r_longitudinal=0.2)
    with_fl.read()
    s0, s1 = plain.info()["cross_section_pb"], with_fl.info()["cross_section_pb"]
    assert 0.95 < s1 / s0 < 0.999


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"lepton_energy": -5.0}, "gen.lepton_energy"),
        ({"hadron_energy": 0.5}, "gen.hadron_energy"),
        ({"q2_min": 1e6}, "gen.q2_min"),
        ({"beams": "jlab", "q2_min": 25.0}, "gen.q2_min"),
        ({"y_min": 0.6, "y_max": 0.5}, "gen.y_min"),
        ({"q2_min": 0.0}, "gen.q2_min"),
    ],
)
def test_bad_settings_raise_physics_error(raw: dict, path: str) -> None:
    """Impossible settings raise PhysicsError naming the TOML path of the stage's section."""
    with pytest.raises(PhysicsError) as err:
        make_source(name="gen", **raw)
    assert err.value.path == path


def test_schema_rejects_bad_types() -> None:
    """Schema-level mistakes are ConfigErrors with the TOML path."""
    with pytest.raises(ConfigError, match="truth.events"):
        make_source(events=0)
    with pytest.raises(ConfigError, match="truth.beams"):
        make_source(beams="herra")


@pytest.mark.filterwarnings("ignore::mlegpipe.registry.PluginLoadWarning")
def test_registered_and_overrides() -> None:
    """The entry point registers ``dis``; beam overrides reach the events."""
    assert load_plugins().get("truth", "dis").cls is DISTruth
    src = make_source(events=2000, beams="sym50", lepton_energy=20.0, lepton_direction=-1)
    assert src.beams.lepton_energy == 20.0 and src.beams.lepton_direction == -1
    b = src.read()
    assert np.all(b.column("beam_energy") == 20.0)
    assert np.all(b.column("lepton_E") <= 20.0 + 50.0)
    info = src.info()
    assert info["n_events"] == 2000 and info["settings"]["beams"]["lepton_energy"] == 20.0
