"""The shipped energy-scan pipeline: a conditional flow trained at 10-50 GeV, judged at 15-60 GeV from TOML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mlegpipe

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "energy_scan.toml"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:  # noqa: ANN001
    if not (ROOT / "sample_data" / "sym_multienergy_test.root").exists():
        pytest.skip("sample_data/sym_multienergy_*.root are missing")
    config = mlegpipe.load_pipeline(PIPELINE, overrides={
        "generator.steps": 150, "generator.replicas": 1, "generator.validate_every": 0,
        "report.classifier": False, "report.pdf": False})
    return mlegpipe.run(config, output=tmp_path_factory.mktemp("scan") / "run", force=True)


def _report_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["stages"]["report"]


def test_the_scan_is_generated_at_the_unseen_energies_and_judged_there(run: Path) -> None:
    table = _report_metrics(run)["comparisons"]["generated"]
    assert (table["reference_sample"], table["reference2_sample"], table["training_sample"]) == \
        ("unseen_test", "unseen_valid", "truth_train")
    events = mlegpipe.read_events(run / "generated.root")
    assert sorted(np.unique(np.asarray(events.beam_energy)).tolist()) == [15.0, 25.0, 35.0, 45.0, 60.0]
    assert np.all(np.asarray(events.x) <= 1) and np.all(np.asarray(events.y) <= 1)
    assert np.all(np.asarray(events.lepton.E) <= 2 * np.asarray(events.beam_energy))
    assert table["physicality"]["unphysical"] == 0


def test_the_report_draws_every_energy_marked_interpolated_or_extrapolated(run: Path) -> None:
    kl = _report_metrics(run)["conditional_kl"]
    assert {"Q2", "x", "y", "lepton_E"} <= set(kl)
    regimes = {energy: entry["regime"] for energy, entry in kl["x"].items()}
    assert regimes == {"15": "interpolated", "25": "interpolated", "35": "interpolated", "45": "interpolated",
                       "60": "extrapolated"}
    page = (run / "report.html").read_text()
    assert "per beam_energy (trained / interpolated / extrapolated)" in page
    assert (run / "plots" / "conditional__x.png").exists()
