"""Physics plots: figures render, and the numbers they draw are the right ones."""

from __future__ import annotations

import numpy as np
import pytest

from mlegpipe.beams import Beams
from mlegpipe.metrics import amplification
from mlegpipe.observables import Observable
from mlegpipe.plots import (
    conditional_kl,
    energy_regime,
    flat_like,
    history_columns,
    label_figure,
    normalized,
    pdf_bytes,
    plot_amplification,
    plot_conditional,
    plot_distribution,
    plot_history,
    plot_pair,
    plot_resolution,
    plot_unfolding,
    png_bytes,
    resolution_profile,
    run_label,
    save_figure,
    save_png,
)

PNG = b"\x89PNG"


def test_normalized_density_integrates_to_one() -> None:
    rng = np.random.default_rng(0)
    edges = np.linspace(-6, 6, 25)
    d, e = normalized(rng.normal(size=10_000), edges)
    assert np.sum(d * np.diff(edges)) == pytest.approx(1.0)
    assert e == pytest.approx(np.sqrt(d * np.diff(edges) * 10_000) / 10_000 / np.diff(edges))  # Poisson
    log_edges = np.geomspace(1, 100, 21)
    d, _ = normalized(10 ** rng.uniform(0, 2, 10_000), log_edges, log=True)
    assert np.sum(d * np.diff(np.log10(log_edges))) == pytest.approx(1.0)
    assert d == pytest.approx(np.full(20, 0.5), rel=0.15)  # uniform in log10 over two decades


def test_distribution_pull_panel_is_standard_normal_for_one_distribution(tmp_path) -> None:
    rng = np.random.default_rng(1)
    fig = plot_distribution("lepton_E", rng.normal(size=50_000), rng.normal(size=50_000),
                            edges=np.linspace(-2, 2, 41))
    pulls = fig.axes[1].lines[0].get_ydata()
    assert len(pulls) == 40
    assert abs(np.mean(pulls)) < 0.4 and 0.6 < np.std(pulls) < 1.4
    assert fig.axes[1].get_xlabel() == "$E'$ [GeV]"
    shifted = plot_distribution("a", rng.normal(size=50_000), rng.normal(0.2, 1, size=50_000),
                                edges=np.linspace(-2, 2, 41), panel="ratio")
    ratio = shifted.axes[1].lines[0].get_ydata()
    assert ratio[0] < 0.9 < 1.1 < ratio[-1]  # the shifted model is low on the left, high on the right
    assert save_png(fig, tmp_path / "d.png").read_bytes()[:4] == PNG


def test_q2x_map_draws_the_kinematic_limit() -> None:
    """The DIS domain's (x, Q²) pair: log axes, the limit y = 1 and the Q² cut drawn by its overlay."""
    from mlegpipe_builtins.dis.observables import Q2X_PAIR

    rng = np.random.default_rng(2)
    beams = Beams.preset("eic10x100")
    x, q2 = 10 ** rng.uniform(-3, 0, 5000), 10 ** rng.uniform(0, 3, 5000)
    fig = plot_pair(Q2X_PAIR, (x, q2), (x, q2), beams=beams, cuts={"q2_min": 1.0})
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"
    limit = fig.axes[0].lines[0]
    xs, ys = limit.get_xdata(), limit.get_ydata()
    assert ys == pytest.approx(xs * (beams.s - beams.hadron_mass**2))
    assert fig.axes[0].lines[1].get_ydata()[0] == 1.0
    assert png_bytes(fig)[:4] == PNG


def test_resolution_profile_recovers_known_bias_and_resolution() -> None:
    rng = np.random.default_rng(3)
    v = rng.uniform(1, 10, 50_000)
    d = v + 0.2 + 0.5 * rng.normal(size=v.size)
    prof = resolution_profile(v, d, np.linspace(1, 10, 10))
    assert prof["bias"] == pytest.approx(np.full(9, 0.2), abs=0.03)
    assert prof["resolution"] == pytest.approx(np.full(9, 0.5), rel=0.05)
    fig = plot_resolution("lepton_E", v, d, surrogate=d + 0.1)
    assert png_bytes(fig)[:4] == PNG
    # not-measured entries (eic-smear's zero fill) are left out of the profile rather than read as d = 0
    unmeasured = np.where(v > 5.5, 0.0, d)
    prof = resolution_profile(v, unmeasured, np.linspace(1, 10, 10))
    assert prof["resolution"][:4] == pytest.approx(np.full(4, 0.5), rel=0.05)
    assert np.all(prof["counts"][5:] == 0) and np.all(np.isnan(prof["resolution"][5:]))
    fig = plot_resolution("lepton_E", v, unmeasured, surrogate={"a": d, "b": d - 0.1})
    assert [t.get_text() for t in fig.axes[-2].get_legend().get_texts()][2:] == [
        "a: resolution", "a: bias", "b: resolution", "b: bias"]


def test_conditional_regimes_and_kl() -> None:
    trained = [10.0, 20.0, 30.0]
    assert [energy_regime(e, trained) for e in (20.0, 25.0, 60.0, 5.0)] == [
        "trained", "interpolated", "extrapolated", "extrapolated"]
    rng = np.random.default_rng(4)
    ref = {e: rng.normal(e, 1, 20_000) for e in (10.0, 25.0, 60.0)}
    mod = {10.0: rng.normal(10, 1, 20_000), 25.0: rng.normal(25, 1, 20_000), 60.0: rng.normal(61, 1, 20_000)}
    kls = conditional_kl(ref, mod, trained)
    assert kls[10.0]["kl"] < 0.01 and kls[25.0]["regime"] == "interpolated"
    assert kls[60.0]["kl"] > 0.3  # KL of a 1σ shift is 0.5
    fig = plot_conditional("lepton_E", ref, mod, trained)
    assert "extrapolated" in fig.axes[2].get_title()


def test_unfolding_plot_pulls_use_replica_spread() -> None:
    rng = np.random.default_rng(5)
    truth = rng.normal(size=20_000)
    replicas = [rng.normal(size=20_000) for _ in range(5)]
    fig = plot_unfolding("x", truth, truth + rng.normal(0, 0.5, 20_000), replicas,
                         baselines={"direct": rng.normal(0, 1.2, 20_000)}, edges=np.linspace(-2, 2, 21))
    pulls = fig.axes[1].lines[0].get_ydata()
    assert np.nanmax(np.abs(pulls)) < 5
    biased = plot_unfolding("x", truth, None, [r + 0.3 for r in replicas], edges=np.linspace(-2, 2, 21))
    assert np.nanmax(np.abs(biased.axes[1].lines[0].get_ydata())) > 5


def test_unfolding_plots_from_recorded_bands(tmp_path) -> None:
    from mlegpipe.plots import plot_unfolding_info

    band = {"mean": [0.2, 0.5, 0.3], "std": [0.01, 0.02, 0.01]}
    shifted = {"mean": [0.25, 0.5, 0.25], "std": [0.01, 0.02, 0.01]}
    info = {"binned": {"nu1": {"edges": [0.0, 1.0, 2.0, 3.0], "gan": shifted, "truth": band, "data": band,
                               "ibu": band, "unrecoverable": [0, 0, 1]}}}
    files = plot_unfolding_info(info, tmp_path / "plots", prefix="unfolding")
    # the closure plot, and the pulls of the recoverable bins (two: 3.54 and 0) against N(0, 1)
    assert [f.name for f in files] == ["unfolding__nu1.png", "unfolding__pulls_vertex.png"]
    assert all(f.read_bytes()[:4] == PNG for f in files)
    assert files[0].with_suffix(".pdf").read_bytes()[:4] == b"%PDF"  # the PDF beside it
    from mlegpipe.plots import plot_unfolding_bands

    fig = plot_unfolding_bands("nu1", [0.0, 1.0, 2.0, 3.0], shifted, truth=band)
    pulls = fig.axes[1].lines[0].get_ydata()
    assert pulls == pytest.approx([0.05 / np.sqrt(2e-4), 0.0, -0.05 / np.sqrt(2e-4)])


def test_history_formats_and_plot() -> None:
    rows = [{"step": s, "loss_g": 1.0 / s, "loss_d": 0.5, "metric": 3.0 / s if s % 10 == 0 else None}
            for s in range(1, 101)]
    cols = history_columns(rows)
    assert cols["step"][-1] == 100 and np.isfinite(cols["metric"]).sum() == 10
    assert history_columns({"history": rows})["loss_d"][0] == 0.5
    assert history_columns({"steps": rows, "train_seconds": 3.0})["loss_g"][1] == 0.5
    assert history_columns({"loss": [3.0, 2.0]})["step"].tolist() == [1.0, 2.0]
    fig = plot_history(rows, title="generator")
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 1


def test_amplification_plot_marks_the_asymptote() -> None:
    rng = np.random.default_rng(6)
    train = rng.random(200)
    result = amplification(rng.choice(train, 20_000), np.linspace(0, 1, 11), 200)
    fig = plot_amplification(result)
    asymptote = [ln for ln in fig.axes[0].lines if "asymptote" in str(ln.get_label())]
    assert asymptote and asymptote[0].get_ydata()[0] == pytest.approx(result["asymptotic_mse"])
    assert png_bytes(fig)[:4] == PNG


def test_ratio_panel_has_the_reference_band_and_both_panels_stack() -> None:
    rng = np.random.default_rng(7)
    edges = np.linspace(-2, 2, 21)
    ref, mod = rng.normal(size=40_000), rng.normal(size=40_000)
    fig = plot_distribution("a", ref, mod, edges=edges, panel="ratio")
    low = fig.axes[1]
    assert low.get_ylabel() == "ratio" and low.lines[0].get_ydata() == pytest.approx(np.ones(20), abs=0.15)
    band = [p for p in low.patches if "stat." in str(p.get_label())]  # the reference's statistical band around 1
    d, e = normalized(ref, edges)
    upper = band[0].get_data().values
    assert upper == pytest.approx(1 + e / d)
    both = plot_distribution("a", ref, mod, edges=edges, panel="both")
    assert [a.get_ylabel() for a in both.axes] == ["normalized density", "ratio", "pull"]
    assert both.axes[2].get_xlabel() == "a" and both.axes[1].get_xlabel() == ""
    with pytest.raises(ValueError, match="panel"):
        plot_distribution("a", ref, mod, panel="residual")  # type: ignore[arg-type]


def test_phi_like_observables_get_a_linear_density_axis() -> None:
    rng = np.random.default_rng(8)
    flat = rng.uniform(-np.pi, np.pi, 5000)
    for name in ("lepton_phi", "jets1_phi", "phi"):
        assert plot_distribution(name, flat, flat).axes[0].get_yscale() == "linear", name
    assert plot_distribution("Q2", flat + 4, flat + 4).axes[0].get_yscale() == "log"
    declared = Observable("azimuth", lambda b: b, periodic=True)
    assert flat_like(declared) and not flat_like(Observable("deltaphi", lambda b: b))
    assert plot_distribution("azimuth", flat, flat, observable=declared).axes[0].get_yscale() == "linear"
    assert plot_distribution("lepton_phi", flat, flat, log_y=True).axes[0].get_yscale() == "log"  # asked for


def test_beam_and_process_label_and_pdf(tmp_path) -> None:
    assert run_label(Beams.preset("hera")) == "ep  √s = 318.7 GeV"
    assert run_label(Beams.preset("lhc13"), meta={"process": "ttbar-allhad"}) == \
        r"pp → $t\bar{t}$ (all-hadronic)  √s = 13 TeV"
    assert run_label(Beams.preset("hera"), "Z+jets").startswith("ep → Z+jets")
    scan = Beams.preset("hera")
    from dataclasses import replace

    assert run_label(replace(scan, fields=(None, "beam_energy"))) == "ep  √s per event"
    rng = np.random.default_rng(9)
    fig = plot_distribution("a", rng.normal(size=500), rng.normal(size=500))
    label_figure(fig, "ep  √s = 318.7 GeV")
    assert [t.get_text() for t in fig.axes[0].texts] == ["ep  √s = 318.7 GeV"]
    from mlegpipe.observables import Pair

    pair = plot_pair(Pair("a", "b"), (rng.normal(size=500), rng.normal(size=500)),
                     (rng.normal(size=500), rng.normal(size=500)))
    label_figure(pair, "pp  √s = 13 TeV")  # titled maps side by side: above the figure
    assert pair.get_suptitle() == "pp  √s = 13 TeV" and not pair.axes[0].texts
    assert pdf_bytes(fig)[:4] == b"%PDF"
    files = save_figure(fig, tmp_path / "sub" / "a.png")
    assert [f.name for f in files] == ["a.png", "a.pdf"] and all(f.is_file() for f in files)
