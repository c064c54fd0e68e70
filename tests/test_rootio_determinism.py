"""Bitwise reproducible ROOT output: same events → same bytes, whenever and wherever they are written."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import numpy as np
import uproot
import uproot.writing._cascade as cascade

from mlegpipe.events import EventBatch
from mlegpipe.rootio import RootWriter, read_meta, write_events
from mlegpipe.rootstamp import fixed_write_time, stamp_time, uuid_sequence


def _batch(seed: int = 0, n: int = 2000) -> EventBatch:
    rng = np.random.default_rng(seed)
    return EventBatch.from_columns({"x": rng.uniform(1e-3, 1, n), "Q2": rng.uniform(1, 100, n)})


def test_same_events_give_identical_bytes_at_different_times_and_folders(tmp_path: Path) -> None:
    a = write_events(tmp_path / "one" / "ev.root", _batch(), meta={"seed": 3}, chunk_events=500)
    time.sleep(1.1)  # ROOT time stamps have a one-second resolution
    b = write_events(tmp_path / "two" / "ev.root", _batch(), meta={"seed": 3}, chunk_events=500)
    assert a.read_bytes() == b.read_bytes()
    c = write_events(tmp_path / "three" / "ev.root", _batch(seed=1), meta={"seed": 3}, chunk_events=500)
    assert a.read_bytes() != c.read_bytes()
    assert read_meta(a)["seed"] == 3 and sorted(p.name for p in (tmp_path / "one").iterdir()) == ["ev.root"]


def test_stamps_are_fixed_in_the_file_and_restored_after(tmp_path: Path) -> None:
    path = write_events(tmp_path / "ev.root", _batch(n=10))
    raw = path.read_bytes()  # TDatime codes are 4-byte big-endian words
    code = uproot._util.datetime_to_code(stamp_time())
    assert code.to_bytes(4, "big") in raw
    now_code = uproot._util.datetime_to_code(datetime.datetime.now())
    assert now_code.to_bytes(4, "big") not in raw
    assert cascade.datetime is datetime  # the patch is gone once the writer closed


def test_nested_and_aborted_writers_restore_datetime(tmp_path: Path) -> None:
    with fixed_write_time(), fixed_write_time():
        assert cascade.datetime.datetime.now() == stamp_time()
    assert cascade.datetime is datetime
    try:
        with RootWriter(tmp_path / "x.root") as writer:
            writer.write(_batch(n=5))
            raise KeyError("crash")
    except KeyError:
        pass
    assert cascade.datetime is datetime and list(tmp_path.iterdir()) == []


def test_source_date_epoch_is_honoured(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert stamp_time() == datetime.datetime(2023, 11, 14, 22, 13, 20)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "junk")
    assert stamp_time() == datetime.datetime(1995, 1, 1)


def test_uuid_sequence_is_deterministic_and_distinct() -> None:
    first, again = uuid_sequence("f.root"), uuid_sequence("f.root")
    ids = [first() for _ in range(3)]
    assert ids == [again() for _ in range(3)] and len(set(ids)) == 3
    assert uuid_sequence("g.root")() != ids[0]
