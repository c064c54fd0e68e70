"""The bad-input corpus: every malformed pipeline, file or argument gives exit code 2,
a message naming the file / TOML path / branch and the problem, no traceback, and
leaves existing outputs untouched.

Pipeline cases are the files in ``tests/bad_inputs/``: the first lines say what to
expect (``# expect: ...``), which command to run (``# command: run``, default
``validate``) and overrides (``# set: section.key=value``). ``{data}`` in a file is
replaced by a folder of deliberately broken ROOT files made by the fixture below.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

from mlegpipe.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"


def _headers(raw: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(":")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def broken_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT files with the defects users bring: NaN, jagged, truncated, not ROOT, empty."""
    d = tmp_path_factory.mktemp("broken")
    rng = np.random.default_rng(1)
    n = 500
    good = {"lepton_E": rng.uniform(5, 20, n), "lepton_px": rng.normal(size=n), "lepton_py": rng.normal(size=n),
            "lepton_pz": rng.normal(size=n), "Q2": rng.uniform(1, 100, n), "x": rng.uniform(0.001, 0.5, n)}
    with uproot.recreate(d / "good.root") as f:
        f.mktree("events", {k: np.float64 for k in good})
        f["events"].extend(good)
    bad = dict(good, Q2=np.where(np.arange(n) == 17, np.nan, good["Q2"]))
    with uproot.recreate(d / "nan.root") as f:
        f.mktree("events", {k: np.float64 for k in bad})
        f["events"].extend(bad)
    import awkward as ak

    with uproot.recreate(d / "jagged.root") as f:
        f.mktree("events", {"x": "var * float64", "Q2": np.float64})
        f["events"].extend({"x": ak.Array([[0.1, 0.2], [0.3]] * 10), "Q2": np.ones(20)})
    with uproot.recreate(d / "empty.root") as f:
        f.mktree("events", {k: np.float64 for k in good})
    (d / "not_root.root").write_text("this is a CSV file, not ROOT\n1,2,3\n")
    raw = (d / "good.root").read_bytes()
    (d / "truncated.root").write_bytes(raw[: len(raw) // 3])
    return d


def _corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.toml"))


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.mark.parametrize("case", _corpus(), ids=lambda p: p.stem)
def test_pipeline_corpus(case: Path, broken_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = case.read_bytes()
    headers = _headers(raw)
    assert headers.get("expect"), f"{case.name} has no '# expect:' line"
    text = raw.replace(b"{data}", str(broken_data).encode())
    path = tmp_path / case.name
    path.write_bytes(text)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("an earlier result")
    before = _snapshot(tmp_path)
    command = headers.get("command", ["validate"])[0]
    args = [command, str(path)]
    for assignment in headers.get("set", []):
        args += ["--set", assignment.replace("{tmp}", str(tmp_path))]
    if command == "run":
        output = headers.get("output", [str(existing if "existing" in headers else tmp_path / "run")])[0]
        args += ["--no-progress", "-o", output.replace("{tmp}", str(tmp_path))]
    code, out = _run_cli(args, capsys)
    assert code == 2, out
    for fragment in headers["expect"]:
        assert fragment.replace("{data}", str(broken_data)) in out, out
    assert "Traceback" not in out
    assert str(path) in out or str(broken_data) in out or str(tmp_path) in out, \
        "the message must name the pipeline file or the input/output file at fault"
    after = {k: v for k, v in _snapshot(tmp_path).items() if k in before}
    assert after == before, "an existing file was modified"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists(), "a formula executed code"


def test_corpus_is_large_enough() -> None:
    assert len(_corpus()) + len(OTHER_CASES) >= 40


def _malicious_checkpoint(path: Path) -> None:
    class Exploit:
        def __reduce__(self):  # noqa: ANN204 - executes on unpickling with full pickle
            return (os.system, (f"touch {path.parent / 'pwned'}",))

    import torch

    torch.save({"state": Exploit()}, path)


OTHER_CASES = {
    "missing_pipeline_file": (["validate", "{tmp}/nope.toml"], "no such pipeline file"),
    "pipeline_is_directory": (["validate", "{tmp}"], "not a file"),
    "override_without_equals": (["validate", "{corpus}/../bad_inputs/unknown_plugin.toml", "--set", "seed"],
                                "section.key=value"),
    "inspect_missing": (["inspect", "{tmp}/nope.root"], "nope.root"),
    "inspect_not_root": (["inspect", "{data}/not_root.root"], "not_root.root"),
    "inspect_truncated": (["inspect", "{data}/truncated.root"], "truncated.root"),
    "generate_missing_checkpoint": (["generate", "{tmp}/nope.pt", "-n", "10", "-o", "{tmp}/o.root"], "nope.pt"),
    "generate_garbage_checkpoint": (["generate", "{data}/not_root.root", "-n", "10", "-o", "{tmp}/o.root"],
                                    "not_root.root"),
    "generate_zero_events": (["generate", "{tmp}/nope.pt", "-n", "0", "-o", "{tmp}/o.root"], "-n = 0"),
    "generate_malicious_checkpoint": (["generate", "{tmp}/evil.pt", "-n", "10", "-o", "{tmp}/o.root"], "evil.pt"),
    "plugins_unknown": (["plugins", "nosuchplugin"], "plugins = 'nosuchplugin': no such plugin"),
}


@pytest.mark.parametrize("name", sorted(OTHER_CASES))
def test_other_bad_inputs(name: str, broken_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, fragment = OTHER_CASES[name]
    _malicious_checkpoint(tmp_path / "evil.pt")
    subst = {"{tmp}": str(tmp_path), "{data}": str(broken_data), "{corpus}": str(CORPUS)}
    for key, value in subst.items():
        args = [a.replace(key, value) for a in args]
        fragment = fragment.replace(key, value)
    before = _snapshot(broken_data)
    code, out = _run_cli(args, capsys)
    assert code == 2, out
    assert fragment in out, out
    assert "Traceback" not in out
    assert not (tmp_path / "pwned").exists(), "a checkpoint executed code on loading"
    assert _snapshot(broken_data) == before


def test_real_exit_code_and_no_traceback(tmp_path: Path) -> None:
    """The installed console script, in a subprocess: exit 2, one paragraph, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "mlegpipe", "validate", str(CORPUS / "negative_events.toml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "truth.events = -100: must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    debug = subprocess.run([sys.executable, "-m", "mlegpipe", "--debug", "validate",
                            str(CORPUS / "negative_events.toml")], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_pickle_is_never_used_for_checkpoints(tmp_path: Path) -> None:
    """Sanity check of the exploit itself: full pickle WOULD run it."""
    path = tmp_path / "evil.pt"
    _malicious_checkpoint(path)
    assert b"system" in path.read_bytes() or b"posix" in path.read_bytes()
    assert pickle  # the test above relies on torch.load(weights_only=True) refusing this file
