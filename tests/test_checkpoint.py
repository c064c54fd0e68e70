"""Checkpoints: round trip, refusal of unsafe pickles, wrong model or features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlegpipe.checkpoint import load_checkpoint, load_generator, save_checkpoint, save_stage
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError


def _touch(path: str) -> None:
    """What a malicious pickle would run on load (here: only creates a file)."""
    with open(path, "w") as handle:
        handle.write("pwned")


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (_touch, (self.marker,))


def test_round_trip_keeps_tensors_arrays_and_metadata(tmp_path) -> None:  # noqa: ANN001
    state = {"w": torch.randn(3, 4), "scaler": {"mean": np.array([1.0, 2.0])}, "n": 7, "names": ["a", "b"],
             "opt": {"betas": (0.5, 0.9)}}
    path = save_checkpoint(tmp_path / "sub" / "m.pt", state, kind="generator", plugin="flow",
                           params={"steps": 10}, features=["lepton_px"], seed=3, extra={"step": 10})
    ckpt = load_checkpoint(path, expect_kind="generator", expect_plugin="flow", expect_features=["lepton_px"])
    assert torch.equal(ckpt.state["w"], state["w"])
    assert torch.equal(ckpt.state["scaler"]["mean"], torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert ckpt.state["n"] == 7 and ckpt.state["names"] == ["a", "b"] and ckpt.state["opt"]["betas"] == (0.5, 0.9)
    meta = ckpt.metadata
    assert (meta["kind"], meta["plugin"], meta["params"], meta["seed"], meta["step"]) == \
        ("generator", "flow", {"steps": 10}, 3, 10)
    assert meta["version"] and "created" not in meta  # no wall-clock time: same training, same bytes
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.pt"]  # no temporary file left behind


def test_pickled_code_is_refused_and_never_runs(tmp_path) -> None:  # noqa: ANN001
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"format": "mlegpipe-checkpoint/1", "metadata_json": "{}", "state": {"x": _Payload(str(marker))}},
               path)
    with pytest.raises(CheckpointError, match="unsafe unpickling") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    assert not marker.exists()
    # the same file does run code under an unrestricted load: the refusal above is what protects
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"


def test_unstorable_state_is_refused_at_save_time(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(CheckpointError, match="state.bad"):
        save_checkpoint(tmp_path / "m.pt", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_missing_corrupt_and_foreign_files(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"w": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an mlegpipe checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_wrong_plugin_or_features_names_both(tmp_path) -> None:  # noqa: ANN001
    path = save_checkpoint(tmp_path / "m.pt", {}, kind="generator", plugin="flow", features=["x", "Q2"])
    with pytest.raises(CheckpointError, match="'flow'.*'fatgan'"):
        load_checkpoint(path, expect_plugin="fatgan")
    with pytest.raises(CheckpointError, match=r"\['x', 'Q2'\].*\['nu1', 'nu2'\]"):
        load_checkpoint(path, expect_features=["nu1", "nu2"])
    with pytest.raises(CheckpointError, match="'generator'.*'detector'"):
        load_checkpoint(path, expect_kind="detector")


def _fitted_gauss(toy_registry):  # noqa: ANN001, ANN202
    info = toy_registry.get("generator", "test-gauss-fit")
    gen = info.cls(info.cls.Params(), StageContext("generator", seed=5))
    rng = np.random.default_rng(0)
    train = EventBatch.from_columns({"a": rng.normal(1, 2, 500), "b": rng.normal(-1, 1, 500)})
    gen.fit(train, train)
    return gen


def test_load_generator_rebuilds_the_stage(tmp_path, toy_registry) -> None:  # noqa: ANN001
    gen = _fitted_gauss(toy_registry)
    path = save_stage(tmp_path / "gen.pt", gen)
    again = load_generator(path, toy_registry)
    assert type(again) is type(gen) and again.features == ["a", "b"]
    a = gen.sample(100, np.random.SeedSequence(1)).matrix(["a", "b"])
    b = again.sample(100, np.random.SeedSequence(1)).matrix(["a", "b"])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(CheckpointError, match="test-gauss-fit"):
        load_generator(path, toy_registry, expect_plugin="flow")


def test_load_generator_refuses_mismatched_features(tmp_path, toy_registry) -> None:  # noqa: ANN001
    gen = _fitted_gauss(toy_registry)
    path = save_checkpoint(tmp_path / "gen.pt", gen.state_dict(), kind="generator", plugin="test-gauss-fit",
                           params=gen.params, features=["x", "Q2"])
    with pytest.raises(CheckpointError, match=r"\['a', 'b'\].*\['x', 'Q2'\]"):
        load_generator(path, toy_registry)
    detector_ckpt = save_checkpoint(tmp_path / "det.pt", {}, kind="detector", plugin="test-noise")
    with pytest.raises(CheckpointError, match="'detector'.*'generator'"):
        load_generator(detector_ckpt, toy_registry)
