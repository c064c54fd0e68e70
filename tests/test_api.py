"""The Python API: README's example runs as written, and the top-level functions keep their promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

import mlegpipe
from mlegpipe.exceptions import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def readme_api_example() -> str:
    """The python block under README's ``## Python API`` heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no python block"
    return match.group(1)


def test_the_readme_example_runs(tmp_path: Path) -> None:
    """README's example, verbatim, in a folder holding the quickstart pipeline (its truth cut to 8000 events so
    that the test takes seconds: the code under test is the API, not the pipeline)."""
    (tmp_path / "pipelines").mkdir()
    pipeline = (ROOT / "pipelines" / "quickstart.toml").read_text(encoding="utf-8")
    (tmp_path / "pipelines" / "quickstart.toml").write_text(pipeline.replace("events = 60000", "events = 8000"))
    code = readme_api_example() + "\nprint('EVENTS', len(events), len(back))\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "EVENTS 10000 10000" in done.stdout
    assert (tmp_path / "runs" / "api-demo" / "report.html").is_file()


def test_events_have_vector_behaviour_and_round_trip_through_every_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 50
    pt, eta, phi = rng.uniform(20, 100, n), rng.uniform(-2, 2, n), rng.uniform(-np.pi, np.pi, n)
    lepton = {"lepton_px": pt * np.cos(phi), "lepton_py": pt * np.sin(phi), "lepton_pz": pt * np.sinh(eta)}
    lepton["lepton_E"] = np.sqrt(lepton["lepton_px"] ** 2 + lepton["lepton_py"] ** 2 + lepton["lepton_pz"] ** 2)
    events = mlegpipe.events_from_columns({"Q2": rng.uniform(1, 100, n), **lepton}, beams="hera",
                                          meta={"cross_section_pb": 12.5, "cross_section_error_pb": 0.5})
    np.testing.assert_allclose(events.lepton.pt, pt)
    np.testing.assert_allclose(events.lepton.eta, eta)
    for suffix in (".root", ".parquet"):
        path = mlegpipe.write_events(events, tmp_path / f"e{suffix}")
        back = mlegpipe.read_events(path)
        np.testing.assert_allclose(back.lepton.pt, pt)
        np.testing.assert_array_equal(back.event_number, np.arange(n))
        meta = mlegpipe.read_meta(path)
        assert meta["cross_section_pb"] == 12.5 and meta["beams"]["name"] == "hera"
        assert back.attrs["@beams"].name == "hera"


def test_overrides_as_a_mapping_or_as_assignments() -> None:
    path = ROOT / "pipelines" / "quickstart.toml"
    a = mlegpipe.load_pipeline(path, {"generator.steps": 7, "truth.beams": "eic"})
    b = mlegpipe.load_pipeline(path, ["generator.steps=7", "truth.beams=eic"])
    assert a.resolved() == b.resolved()
    with pytest.raises(ConfigError, match="generator.stepz"):
        mlegpipe.load_pipeline(path, {"generator.stepz": 7})


def test_the_api_is_at_the_top_level_and_loads_lazily() -> None:
    code = "import sys, mlegpipe; print('mlegpipe.api' in sys.modules, callable(mlegpipe.sample))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
    assert {"run", "sample", "load_generator", "read_events", "write_events", "read_meta"} <= set(dir(mlegpipe))
    with pytest.raises(AttributeError):
        mlegpipe.no_such_function  # noqa: B018


def test_sample_gives_the_events_generate_writes(tmp_path: Path) -> None:
    """``mlegpipe.sample`` and ``mlegpipe generate`` with the same seed: the same events."""
    from mlegpipe.cli import main

    run_dir = mlegpipe.run(ROOT / "pipelines" / "quickstart.toml", output=tmp_path / "run", progress=False,
                           overrides={"truth.events": 3000, "generator.steps": 20, "pipeline.threads": 1,
                                      "generator.flow": "maf", "generator.transforms": 1})
    checkpoint = run_dir / "checkpoints" / "generator.pt"
    events = mlegpipe.sample(mlegpipe.load_generator(checkpoint), 1000, seed=4)
    assert main(["generate", str(checkpoint), "-n", "1000", "-o", str(tmp_path / "g.root"), "--seed", "4",
                 "--double"]) == 0
    written = mlegpipe.read_events(tmp_path / "g.root")
    np.testing.assert_array_equal(np.asarray(written.Q2), np.asarray(events.Q2))
    assert events.attrs["meta"]["generation_seed"] == 4 and len(events.attrs["meta"]["checkpoint_sha256"]) == 64
    assert isinstance(events, ak.Array)


def test_a_notebook_run_shows_the_stage_log(tmp_path: Path) -> None:
    """In a notebook (ipykernel loaded) the run's log reaches stderr without any set-up."""
    code = f"""
import sys, types
sys.modules["ipykernel"] = types.ModuleType("ipykernel")
import mlegpipe
mlegpipe.run({str(ROOT / "pipelines" / "quickstart.toml")!r}, output={str(tmp_path / "nb")!r},
             overrides={{"truth.events": 2000, "generator.steps": 5, "pipeline.threads": 1,
                        "generator.flow": "maf", "generator.transforms": 1}})
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[truth] dis" in done.stderr and "[generator] done in" in done.stderr
