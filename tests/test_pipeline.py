"""End-to-end runs of the core runner with the test-only toy stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import uproot

from mlegpipe.config import parse_config
from mlegpipe.exceptions import OutputError
from mlegpipe.pipeline import run_pipeline

TEXT = """
[pipeline]
name = "toy"
seed = 11
split = [0.5, 0.25, 0.25]

[truth]
plugin = "test-gauss"
events = 2000

[generator]
plugin = "test-gauss-fit"

[detector]
plugin = "test-noise"
width = 0.5

[report]
plugin = "test-summary"
"""


def _run(toy_registry, out: Path, *overrides: str, **kw) -> Path:
    cfg = parse_config(TEXT, "toy.toml", list(overrides), registry=toy_registry)
    return run_pipeline(cfg, output=str(out), progress=False, **kw)


def test_run_folder_contents(toy_registry, tmp_path: Path) -> None:
    run = _run(toy_registry, tmp_path / "run")
    names = {p.name for p in run.iterdir()}
    assert {"config.toml", "run.log", "metrics.json", "generated.root", "truth_test.root",
            "generated_detector.root", "summary.txt", "checkpoints"} <= names
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stages"]["truth"]["events"] == 2000
    assert metrics["stages"]["summary"]["truth_train"] == 1000
    with uproot.open(run / "generated.root") as f:
        a = f["events"]["a"].array(library="np")
    assert len(a) == 500
    assert abs(a.mean() - 1.0) < 0.15  # the fitted Gaussian reproduces the truth mean
    with uproot.open(run / "generated_detector.root") as f:
        assert np.std(f["events"]["a"].array(library="np")) > np.std(a)  # noise widened it
    assert (run / "checkpoints" / "generator.pt").is_file()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_same_seed_same_events_and_refuse_overwrite(toy_registry, tmp_path: Path) -> None:
    a = _run(toy_registry, tmp_path / "a")
    b = _run(toy_registry, tmp_path / "b")
    c = _run(toy_registry, tmp_path / "c", "pipeline.seed=12")
    read = lambda run: uproot.open(run / "generated_detector.root")["events"].arrays(library="np")  # noqa: E731
    assert all(np.array_equal(read(a)[k], read(b)[k]) for k in ("a", "b"))
    assert not np.array_equal(read(a)["a"], read(c)["a"])
    before = (a / "metrics.json").read_bytes()
    with pytest.raises(OutputError, match="exists already"):
        _run(toy_registry, tmp_path / "a")
    assert (a / "metrics.json").read_bytes() == before
    _run(toy_registry, tmp_path / "a", "truth.events=1200", force=True)
    assert json.loads((a / "metrics.json").read_text())["stages"]["truth"]["events"] == 1200


def test_failed_run_leaves_no_complete_folder(toy_registry, tmp_path: Path) -> None:
    from mlegpipe.exceptions import DataError

    text = TEXT.replace("[generator]", "[generator]\ntrain_on = \"truth\"").replace(
        'plugin = "test-gauss-fit"', 'plugin = "test-gauss-fit"\nfeatures = ["a", "nope"]')
    cfg = parse_config(text, "toy.toml", registry=toy_registry)
    with pytest.raises(DataError, match="nope"):
        run_pipeline(cfg, output=str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()
