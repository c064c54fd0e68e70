"""Crash safety and determinism of whole runs (subprocesses, the real CLI).

- a run killed with SIGKILL mid-training leaves no folder that looks complete;
  ``--resume`` continues from the last checkpoint and ends with the same events
  as an uninterrupted run with the same seed;
- SIGINT stops cleanly (exit 130), keeping the checkpoints for ``--resume``;
- the same seed gives bitwise identical ROOT files; another seed differs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import uproot

PIPELINE = """
[pipeline]
name = "crash"
seed = {seed}
split = [0.6, 0.2, 0.2]

[truth]
plugin = "camel"
events = 3000

[generator]
plugin = "flow"
feature_map = "columns"
features = ["x"]
steps = 1500
batch_size = 256
transforms = 2
hidden = [16, 16]
validate_every = 100
checkpoint_every = 50
"""


def _write(tmp_path: Path, seed: int = 1) -> Path:
    path = tmp_path / f"crash{seed}.toml"
    path.write_text(PIPELINE.format(seed=seed))
    return path


def _cmd(pipeline: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mlegpipe", "-q", "run", str(pipeline), "-o", str(out), "--no-progress", *extra]


def _events(run: Path) -> dict[str, np.ndarray]:
    with uproot.open(run / "generated.root") as f:
        return f["events"].arrays(library="np")


def _interrupt_after_checkpoint(cmd: list[str], partial: Path, sig: int) -> tuple[int, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    last = partial / "checkpoints" / "generator-last.pt"
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and last.stat().st_size > 0:
            time.sleep(0.5)
            break
        time.sleep(0.1)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before it could be interrupted: {proc.stderr.read().decode()[-2000:]}")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ref")
    subprocess.run(_cmd(_write(tmp), tmp / "a"), check=True, capture_output=True, timeout=600,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return tmp / "a"


def test_sigkill_then_resume_gives_the_uninterrupted_result(reference: Path, tmp_path: Path) -> None:
    pipeline = _write(tmp_path)
    out = tmp_path / "b"
    code, _ = _interrupt_after_checkpoint(_cmd(pipeline, out), tmp_path / ".b.partial", signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not out.exists(), "a killed run must not leave a folder that looks complete"
    done = subprocess.run(_cmd(pipeline, out, "--resume"), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _events(reference), _events(out)
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_sigint_saves_a_checkpoint_and_resume_finishes_identically(reference: Path, tmp_path: Path) -> None:
    pipeline = _write(tmp_path)
    out = tmp_path / "c"
    code, err = _interrupt_after_checkpoint(_cmd(pipeline, out), tmp_path / ".c.partial", signal.SIGINT)
    assert code == 130, err[-2000:]
    assert "interrupted at step" in err and "checkpoint saved" in err and "Traceback" not in err
    assert not out.exists()
    done = subprocess.run(_cmd(pipeline, out, "--resume"), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_array_equal(_events(reference)["x"], _events(out)["x"])


def test_same_seed_same_events_other_seed_differs(reference: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    other = tmp_path / "other"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cmd(_write(tmp_path), again), check=True, capture_output=True, timeout=600, env=env)
    subprocess.run(_cmd(_write(tmp_path, seed=2), other), check=True, capture_output=True, timeout=600, env=env)
    np.testing.assert_array_equal(_events(reference)["x"], _events(again)["x"])
    assert not np.array_equal(_events(reference)["x"], _events(other)["x"])
    roots = sorted(p.name for p in reference.glob("*.root"))
    assert roots and roots == sorted(p.name for p in again.glob("*.root"))
    for name in roots:  # every ROOT file of the run, byte for byte (time stamps and UUIDs included)
        assert (reference / name).read_bytes() == (again / name).read_bytes(), name
    assert (reference / "generated.root").read_bytes() != (other / "generated.root").read_bytes()
