"""process_map: tasks on spawned worker processes, their errors and their log records."""

from __future__ import annotations

import logging
import os
import sys
import types

import pytest

from mlegpipe.exceptions import DataError
from mlegpipe.processes import process_map, usable_cores


def test_results_come_back_in_the_order_of_the_items() -> None:
    done: list[int] = []
    assert process_map(abs, [-3, 1, -2, 5], workers=2, on_result=lambda i, _: done.append(i)) == [3, 1, 2, 5]
    assert sorted(done) == [0, 1, 2, 3] and usable_cores() >= 1


def _failing_task(k: int) -> int:
    if k == 2:
        raise DataError("replica 2 failed", path="unfolding", value=k)
    return k


def test_an_error_in_a_worker_process_reaches_the_caller() -> None:
    with pytest.raises(DataError, match="unfolding = 2: replica 2 failed"):
        process_map(_failing_task, range(4), workers=2)
    with pytest.raises(TypeError, match="cannot be sent to worker processes"):
        process_map(lambda k: k, range(4), workers=2)  # a lambda does not pickle


def _logging_task(k: int) -> int:
    logging.getLogger("mlegpipe.unfolding.worker").warning("task %d ran in process %d", k, os.getpid())
    return k


def test_the_log_records_of_worker_processes_reach_this_process(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mlegpipe"):
        assert process_map(_logging_task, range(3), workers=2) == [0, 1, 2]
    ran = [r for r in caplog.records if r.name == "mlegpipe.unfolding.worker"]
    assert sorted(r.getMessage().split()[1] for r in ran) == ["0", "1", "2"]
    assert all(r.process != os.getpid() for r in ran)


def test_a_task_the_workers_cannot_import_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Task:  # its class belongs to a module that exists in this process only (like a notebook's)
        def __call__(self, k: int) -> int:
            return k

    module = types.ModuleType("mlegpipe_module_of_the_parent_only")
    Task.__module__, Task.__qualname__ = module.__name__, "Task"
    module.Task = Task  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    with pytest.raises(RuntimeError, match="could not load the task .*ModuleNotFoundError"):
        process_map(Task(), range(3), workers=2)
