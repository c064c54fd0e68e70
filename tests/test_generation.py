"""Streaming generation to ROOT: block seeds, the background writer, errors, thread settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import uproot

from mlegpipe.events import EventBatch
from mlegpipe.generation import BLOCK, generate_blocks, generate_to_file, single_threaded_kernels


class _Gaussian:
    """A stand-in generator: events drawn from the block's seed only (fails on block ``fail_at``)."""

    conditions: list[str] = []

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.calls = fail_at, 0

    def sample(self, n: int, seed: np.random.SeedSequence, conditions: object = None) -> EventBatch:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("generator failed")
        rng = np.random.default_rng(seed)
        return EventBatch.from_columns({"a": rng.normal(size=n), "b": rng.uniform(size=n)})


def _read(path: Path) -> dict[str, np.ndarray]:
    with uproot.open(path) as f:
        return f["events"].arrays(["a", "b"], library="np")


def test_streamed_file_holds_exactly_the_blocks(tmp_path: Path) -> None:
    n = 2 * BLOCK + 1000  # two full blocks and a short one, written while the next is generated
    path = generate_to_file(_Gaussian(), n, tmp_path / "g.root", seed=4)
    expected = EventBatch.concat(list(generate_blocks(_Gaussian(), n, seed=4)))
    got = _read(path)
    assert len(got["a"]) == n
    np.testing.assert_array_equal(got["a"], expected.column("a"))
    np.testing.assert_array_equal(got["b"], expected.column("b"))


@pytest.mark.parametrize("where", ["generator", "writer"])
def test_a_failure_propagates_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    from mlegpipe.rootio import RootWriter

    gen = _Gaussian(fail_at=2 if where == "generator" else None)
    if where == "writer":
        original, calls = RootWriter.write, []

        def failing(self: RootWriter, batch: EventBatch) -> None:
            calls.append(1)
            if len(calls) == 2:
                raise OSError("disk full")
            original(self, batch)

        monkeypatch.setattr(RootWriter, "write", failing)
    with pytest.raises(RuntimeError if where == "generator" else OSError):
        generate_to_file(gen, 3 * BLOCK, tmp_path / "g.root", seed=1)
    assert not (tmp_path / "g.root").exists()
    assert not list(tmp_path.iterdir())  # no temporary file left either


@pytest.fixture
def two_threads():  # noqa: ANN201
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_single_threaded_kernels_restores_the_thread_count(two_threads) -> None:  # noqa: ANN001
    with pytest.raises(ValueError), single_threaded_kernels():
        assert torch.get_num_threads() == 1
        raise ValueError
    assert torch.get_num_threads() == 2


def test_single_threaded_kernels_nested_and_from_several_threads(two_threads) -> None:  # noqa: ANN001
    import threading

    inside = threading.Barrier(3)
    seen: list[int] = []

    def worker() -> None:
        with single_threaded_kernels():
            inside.wait()  # all three blocks open at once
            seen.append(torch.get_num_threads())
            inside.wait()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    with single_threaded_kernels():
        for t in threads:
            t.start()
        inside.wait()
        with single_threaded_kernels():
            seen.append(torch.get_num_threads())
        inside.wait()
        for t in threads:
            t.join()
    assert seen == [1, 1, 1]
    assert torch.get_num_threads() == 2
