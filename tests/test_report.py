"""Run reports: what is compared, the HTML page, the html stage in a pipeline, `report` and `compare` commands."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from mlegpipe.beams import Beams
from mlegpipe.cli import main
from mlegpipe.config import parse_config
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.plan import Comparison, ReportPlan, Response
from mlegpipe.report import analyse_run, build_report, compare_runs, render_report
from mlegpipe.report.analysis import truth_cross_section
from mlegpipe.report.html import HEADER_PACKAGES, versions
from mlegpipe.toys import CamelBack

PLANNED = """
[pipeline]
seed = 1
[truth]
plugin = "dis"
[generator]
plugin = "flow"
[second]
kind = "generator"
plugin = "dsgan"
[detector]
plugin = "smear"
[surrogate]
kind = "detector"
plugin = "flowfold"
inputs = ["truth_test"]
[unfolding]
plugin = "gan-unfold"
"""


def test_the_plan_compares_every_generated_folded_and_unfolded_sample() -> None:
    plan = parse_config(PLANNED, "planned.toml").report_plan
    by_label = {c.label: c for c in plan.comparisons}
    gen = by_label["generated"]
    assert (gen.reference, gen.reference2, gen.training, gen.truth_section) == \
        ("truth_test", "truth_valid", "truth_train", "truth")
    assert by_label["second"].reference == "truth_test"  # a second generator section is compared too
    assert by_label["generated_detector"].reference == "truth_test_detector"
    assert by_label["second_detector"].reference2 == "truth_valid_detector"
    assert (by_label["unfolded"].reference, by_label["unfolded"].data) == ("truth_test", "truth_test_detector")
    assert by_label["omnifold"].optional and by_label["refolded"].reference == "truth_test_detector"
    surrogate = by_label["truth_test_surrogate"]
    assert (surrogate.reference, surrogate.reference2) == ("truth_valid_detector", "truth_test_detector")
    assert plan.responses[0] == Response("truth_test", "truth_test_detector", {"surrogate": "truth_test_surrogate"})


def _camel_samples(generated: np.ndarray, train: np.ndarray, rng: np.random.Generator) -> dict[str, EventBatch]:
    toy = CamelBack()
    batch = lambda a: EventBatch.from_columns({"x": np.asarray(a).ravel()})  # noqa: E731
    return {"truth_train": batch(train), "truth_valid": batch(toy.sample(5000, rng)),
            "truth_test": batch(toy.sample(5000, rng)), "generated": batch(generated)}


def test_amplification_in_the_report_of_a_toy() -> None:
    rng = np.random.default_rng(0)
    toy = CamelBack()
    train = toy.sample(100, rng)
    plan, truths = ReportPlan.generated("generated"), {"truth": {"exact_density": toy}}
    perfect = analyse_run(_camel_samples(toy.sample(20_000, rng), train, rng), plan, truths=truths,
                          classifier=False, plots=False)
    copier = analyse_run(_camel_samples(train[rng.integers(0, 100, 20_000)], train, rng), plan, truths=truths,
                         classifier=False, plots=False)
    amp_perfect, amp_copier = perfect.metrics["amplification"], copier.metrics["amplification"]
    assert amp_perfect["n_quantiles"] == 50 and amp_perfect["n_train"] == 100
    assert amp_perfect["amplification"] > 20  # a perfect generator: limited only by the generated statistics
    # resampling the training set is worth the training set: its asymptote is the training sample's own MSE
    assert amp_copier["asymptotic_mse"] == pytest.approx(amp_copier["train_mse"], rel=0.3)
    assert copier.metrics["comparisons"]["generated"]["memorization"]["ratio"] < 0.1


def _conditional_samples(rng: np.random.Generator, shift_at_60: float) -> dict[str, EventBatch]:
    def batch(energies: list[float], n: int, shift: float = 0.0) -> EventBatch:
        e = np.repeat(energies, n)
        return EventBatch.from_columns({"lepton_E": rng.normal(0.8 * e + (shift * (e == 60.0)), 1.0),
                                        "beam_energy": e})
    return {"truth_train": batch([10.0, 20.0, 30.0], 2000), "truth_valid": batch([10.0, 15.0, 20.0, 60.0], 1000),
            "truth_test": batch([10.0, 15.0, 20.0, 60.0], 1000),
            "generated": batch([10.0, 15.0, 20.0, 60.0], 1000, shift_at_60)}


def test_conditional_kl_per_energy_with_regimes() -> None:
    rng = np.random.default_rng(1)
    out = analyse_run(_conditional_samples(rng, 2.0), ReportPlan.generated("generated"),
                      conditions={"generated": ["beam_energy"]}, classifier=False, plots=True, dpi=40)
    kl = out.metrics["conditional_kl"]["lepton_E"]
    assert kl["10"]["regime"] == "trained" and kl["15"]["regime"] == "interpolated"
    assert kl["60"]["regime"] == "extrapolated"
    assert kl["60"]["kl"] > 10 * kl["10"]["kl"]
    assert "conditional__lepton_E" in out.figures


def test_unfolding_and_refolding_comparisons() -> None:
    rng = np.random.default_rng(2)
    b = lambda a: EventBatch.from_columns({"v": a})  # noqa: E731
    truth = rng.normal(size=4000)
    data = truth + rng.normal(0, 0.5, 4000)
    replicas = np.concatenate([rng.normal(size=4000) for _ in range(4)])
    unfolded = EventBatch.from_columns({"v": replicas, "replica": np.repeat(np.arange(4.0), 4000)})
    sim = rng.normal(0.3, 1, 4000)
    omnifold = EventBatch.from_columns({"v": sim, "weight": np.exp(-0.3 * sim + 0.045)})  # reweighted to N(0, 1)
    samples = {"truth_test": b(truth), "truth_test_detector": b(data), "unfolded": unfolded,
               "refolded": b(rng.normal(size=4000) + rng.normal(0, 0.5, 4000)), "omnifold": omnifold}
    plan = ReportPlan([
        Comparison("unfolded", "unfolded", "truth_test", data="truth_test_detector", baselines=("omnifold",),
                   kind="unfolding"),
        Comparison("omnifold", "omnifold", "truth_test", optional=True, kind="unfolding"),
        Comparison("refolded", "refolded", "truth_test_detector", level="detector", kind="unfolding")],
        [Response("truth_test", "truth_test_detector")])
    out = analyse_run(samples, plan, classifier=False, dpi=40)
    assert set(out.metrics["comparisons"]) == {"unfolded", "refolded", "omnifold"}
    assert out.metrics["comparisons"]["omnifold"]["features"]["v"]["w1"] < 0.06  # weights honoured
    assert out.metrics["comparisons"]["refolded"]["features"]["v"]["chi2_ndf"] < 2.0
    assert "unfolded__v" in out.figures and "detector__v" in out.figures


def test_learned_surrogates_are_compared_with_the_detector_they_learned() -> None:
    """A surrogate with the right resolution passes at the floor, one 3x too narrow fails; both are profiled."""
    rng = np.random.default_rng(5)
    b = lambda a: EventBatch.from_columns({"v": a})  # noqa: E731
    vertex = {n: rng.uniform(1.0, 10.0, 20_000) for n in ("truth_test", "truth_valid")}
    smear = lambda v, width: v * (1 + width * rng.normal(size=v.size))  # noqa: E731
    # the detector does not measure v > 9.5: zero-filled and flagged, as smear's output is
    detector = lambda v, width: EventBatch.from_columns(  # noqa: E731
        {"v": np.where(v > 9.5, 0.0, smear(v, width)), "measured": v <= 9.5})
    samples = {**{n: b(v) for n, v in vertex.items()},
               **{f"{n}_detector": detector(v, 0.2) for n, v in vertex.items()},
               "truth_test_good": detector(vertex["truth_test"], 0.2),
               "truth_test_narrow": b(smear(vertex["truth_test"], 0.07))}
    plan = ReportPlan([Comparison(f"truth_test_{s}", f"truth_test_{s}", "truth_valid_detector", "truth_test_detector",
                                  level="detector", kind="detector") for s in ("good", "narrow")],
                      [Response("truth_test", "truth_test_detector",
                                {"good": "truth_test_good", "narrow": "truth_test_narrow"})], ["good", "narrow"])
    out = analyse_run(samples, plan, classifier=False, dpi=40)
    comparisons = out.metrics["comparisons"]
    assert comparisons["truth_test_good"]["reference_sample"] == "truth_valid_detector"
    assert comparisons["truth_test_good"]["reference2_sample"] == "truth_test_detector"
    # distributions compare the measured events (no spike at the zero fill); the fractions are reported
    assert comparisons["truth_test_good"]["measured_fraction"]["model"] == pytest.approx(17 / 18, abs=0.01)
    assert comparisons["truth_test_narrow"]["measured_fraction"]["model"] is None
    assert comparisons["truth_test_good"]["features"]["v"]["range"][0] > 0.5  # the zero fill is not binned
    good, narrow = (comparisons[f"truth_test_{s}"]["features"]["v"] for s in ("good", "narrow"))
    assert good["chi2_ndf"] < 1.5 * good["chi2_ndf_floor"] < narrow["chi2_ndf"]
    assert "truth_test_good__v" in out.figures and "detector__v" in out.figures
    assert any("learned surrogates: good, narrow" in title for title, _ in out.sections)


def test_render_report_colours_targets() -> None:
    metrics = {"comparisons": {}, "summary": {"passed": 1, "failed": 1, "undefined": 0},
               "targets": {"generated": [
                   {"metric": "classifier AUC", "value": 0.51, "target": "≤ 0.55", "passed": True},
                   {"metric": "unphysical fraction", "value": 0.02, "target": "≤ 0", "passed": False}]}}
    page = render_report(metrics, {"p": b"\x89PNGfake"}, [("Plots", ["p"])], title="t <1>",
                         config_text="[pipeline]\nname = 'x'", seed=7)
    assert '<td class="pass">PASS</td>' in page and '<td class="fail">FAIL</td>' in page
    assert "t &lt;1&gt;" in page and "data:image/png;base64," in page and "name = &#x27;x&#x27;" in page
    assert "torch" in page and "numpy" in page


def test_header_gives_seed_sigma_and_library_versions() -> None:
    sigma = {"value": 1234.5, "error": 6.25, "sample": "truth_test", "source": "truth_test.root"}
    page = render_report({"comparisons": {}, "targets": {}, "run_label": "ep  √s = 318.7 GeV"}, {}, [],
                         seed=20240517, cross_section=sigma)
    header = page[page.index("<h1>"):page.index("<h2>")]
    assert "seed 20240517" in header and "20,240,517" not in page  # seeds as typed, no thousands separator
    assert "σ(truth) = 1234.5 ± 6.2 pb" in header and "truth_test.root" in header
    assert "ep  √s = 318.7 GeV" in header
    found = versions()
    for name in HEADER_PACKAGES:  # mlegpipe, torch, zuko, vector, pluggy, uproot, awkward, numpy, matplotlib
        assert f"{name} {found[name]}" in header, name
    assert {"zuko", "vector", "pluggy", "uproot", "awkward"} <= set(HEADER_PACKAGES)
    unknown = render_report({"comparisons": {}, "targets": {}}, {}, [], seed=7)
    assert "σ(truth) not known" in unknown


def test_truth_cross_section_from_the_file_the_sample_or_the_stage(tmp_path: Path) -> None:
    from mlegpipe.rootio import write_events

    batch = EventBatch.from_columns({"x": np.ones(3)}, meta={"sigma_pb": 3.0, "sigma_err_pb": 0.5})
    assert truth_cross_section({"truth_test": batch})["source"] == "truth_test metadata"
    write_events(tmp_path / "truth_test.root", EventBatch.from_columns({"x": np.ones(3)}),
                 meta={"cross_section_pb": 7.5, "cross_section_error_pb": 0.25})
    found = truth_cross_section({"truth_test": batch}, ReportPlan.generated("generated"), {}, tmp_path)
    assert (found["value"], found["error"], found["source"]) == (7.5, 0.25, "truth_test.root")
    stage = truth_cross_section({}, None, {"truth": {"cross_section_pb": 2.0, "cross_section_err_pb": 0.1}})
    assert (stage["value"], stage["error"]) == (2.0, 0.1)
    assert truth_cross_section({"truth_test": EventBatch.from_columns({"x": np.ones(2)})}) is None


def test_figures_carry_beams_captions_and_pdfs(monkeypatch) -> None:
    import mlegpipe.plots

    drawn: list[str] = []
    original = mlegpipe.plots.label_figure
    monkeypatch.setattr(mlegpipe.plots, "label_figure", lambda fig, text: (drawn.append(text), original(fig, text)))
    rng = np.random.default_rng(11)
    hera = Beams.preset("hera")
    samples = {n: EventBatch.from_columns({"phi": rng.uniform(-np.pi, np.pi, 800)}, hera)
               for n in ("truth_train", "truth_valid", "truth_test", "generated")}
    out = analyse_run(samples, ReportPlan.generated("generated"), classifier=False, dpi=30, lower_panel="ratio",
                      histories={"generator": [{"step": s, "loss": 1.0 / s} for s in range(1, 5)]})
    assert set(out.figures) == set(out.pdfs) == set(out.captions) == {"generated__phi", "training__generator"}
    assert all(out.pdfs[name][:4] == b"%PDF" for name in out.pdfs)
    assert drawn == ["ep  √s = 318.7 GeV"] * 2 and out.metrics["run_label"] == "ep  √s = 318.7 GeV"
    caption = out.captions["generated__phi"]
    assert caption.startswith("<b>phi</b>: generated (800 events) vs truth")
    assert "truth_test" in caption and "ratio" in caption and caption.endswith("ep  √s = 318.7 GeV")
    with pytest.raises(ConfigError, match="lower_panel"):
        analyse_run(samples, ReportPlan.generated("generated"), plots=False, classifier=False, lower_panel="x")


PIPELINE = """
[pipeline]
name = "{name}"
seed = {seed}
split = [0.5, 0.25, 0.25]

[truth]
plugin = "test-gauss"
events = 4000

[generator]
plugin = "test-gauss-fit"

[detector]
plugin = "test-noise"
width = 0.5

[report]
plugin = "html"
dpi = 40
plots = {plots}
lower_panel = "both"
"""


@pytest.fixture(scope="module")
def two_runs(toy_registry, tmp_path_factory) -> tuple[Path, Path]:
    from mlegpipe.config import parse_config
    from mlegpipe.pipeline import run_pipeline

    base = tmp_path_factory.mktemp("runs")
    runs = []
    for name, seed, plots in (("a", 1, "true"), ("b", 2, "false")):  # one run without plots: faster
        cfg = parse_config(PIPELINE.format(name=name, seed=seed, plots=plots), f"{name}.toml", registry=toy_registry)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs.append(run_pipeline(cfg, output=str(base / name), progress=False))
    return runs[0], runs[1]


def test_html_stage_writes_report_metrics_and_plots(two_runs) -> None:
    run, _ = two_runs
    metrics = json.loads((run / "metrics.json").read_text())
    report = metrics["stages"]["report"]
    assert set(report["comparisons"]) == {"generated", "generated_detector"}
    gen = report["comparisons"]["generated"]
    assert gen["n_model"] == 1000 and gen["n_reference2"] == 1000
    assert gen["classifier"]["auc"] == pytest.approx(0.5, abs=0.08)  # the toy generator fits the truth
    assert report["summary"]["passed"] > 0
    assert any(f.endswith("report.html") for f in report["files"])
    page = (run / "report.html").read_text()
    assert "Summary against targets" in page and "Resolved configuration" in page and 'plugin = &quot;html&quot;' in page
    pngs = sorted((run / "plots").glob("*.png"))
    assert page.count("data:image/png;base64,") == len(pngs)
    assert (run / "plots" / "generated__a.png").is_file() and (run / "plots" / "detector__a.png").is_file()
    for png in pngs:  # every figure as PDF beside its PNG, linked from its caption
        assert png.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
        assert f"<a href='plots/{png.stem}.pdf'>[PDF]</a>" in page
    caption = report["captions"]["generated__a"]
    assert "<code>a</code>" in caption or "<b>a</b>" in caption
    assert "generated" in caption and "truth_test" in caption and "ratio" in caption and "pulls" in caption
    assert "σ(truth) not known" in page and f"seed {metrics['seed']}" in page  # a toy truth has no σ
    assert all(f"{name} " in page[:page.index("<h2>")] for name in HEADER_PACKAGES)


def test_report_command_rebuilds_the_page(two_runs, capsys) -> None:
    import toy_stages

    from mlegpipe.registry import load_plugins

    run, _ = two_runs
    with warnings.catch_warnings():  # the run's plugins active (other tests may have loaded the installed ones only)
        warnings.simplefilter("ignore")
        load_plugins(extra=[toy_stages])
    out = run.parent / "rebuilt.html"
    assert main(["report", str(run), "-o", str(out), "--no-classifier"]) == 0
    page = out.read_text()
    assert "generated vs truth" in page and "Summary against targets" in page
    assert f"<a href='{run.name}/plots/generated__a.pdf'>[PDF]</a>" in page  # links relative to the page
    assert main(["report", str(run), "--no-recompute", "-o", str(run.parent / "stored.html")]) == 0
    assert "data:image/png;base64," in (run.parent / "stored.html").read_text()


def test_report_errors_name_the_folder(tmp_path: Path, capsys) -> None:
    with pytest.raises(DataError, match="no such run folder"):
        build_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="metrics.json is missing"):
        build_report(tmp_path / "empty")
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "metrics.json is missing" in capsys.readouterr().err


def test_compare_command_puts_runs_side_by_side(two_runs, tmp_path: Path) -> None:
    a, b = two_runs
    out = tmp_path / "cmp.html"
    assert main(["compare", str(a), str(b), "-o", str(out)]) == 0
    page = out.read_text()
    assert "report.comparisons.generated.classifier.auc" in page
    n_plots = len(list((a / "plots").glob("*.png")))
    assert n_plots > 0 and page.count("<img") == n_plots and page.count("(absent)") == n_plots
    with pytest.raises(DataError):
        compare_runs(a, tmp_path / "nope", tmp_path / "x.html")


def test_html_stage_needs_a_run_folder() -> None:
    from mlegpipe.context import StageContext
    from mlegpipe.exceptions import OutputError
    from mlegpipe.stages import RunRecord
    from mlegpipe_builtins.reports.html import HtmlReport

    stage = HtmlReport(HtmlReport.Params(), StageContext("report"))
    record = RunRecord(config={}, samples={}, stages={}, metrics={}, histories={}, timings={})
    with pytest.raises(OutputError, match="no run folder"):
        stage.write(record)


def test_metrics_recomputed_from_the_run_folder_equal_the_stage_ones(two_runs) -> None:
    from mlegpipe.rootio import read_events

    run, _ = two_runs
    stored = json.loads((run / "metrics.json").read_text())
    samples = {p.stem: EventBatch.concat(read_events(p)) for p in run.glob("*.root")}
    again = analyse_run(samples, ReportPlan.generated("generated"), plots=False,
                        seed=stored["seed"]).metrics["comparisons"]["generated"]
    first = stored["stages"]["report"]["comparisons"]["generated"]
    assert again["classifier"]["auc"] == first["classifier"]["auc"]
    assert again["features"]["a"]["chi2_ndf"] == pytest.approx(first["features"]["a"]["chi2_ndf"], rel=1e-12)
