"""Independent tasks on worker processes, for work that Python threads cannot share.

Training a small network is mostly per-op overhead that holds the GIL, so
threads do not help; separate processes do. :func:`process_map` starts
``workers`` fresh ("spawned") interpreters, sends each one the task once
(pickled: a module-level function or an instance of a module-level class, with
the models and samples it needs) and pickles each result back. Fresh
interpreters rather than forked copies: a process that has run autograd with
a CUDA build of torch cannot fork a worker that runs it again, and macOS
cannot fork safely at all.

Log records of the workers go through a queue to this process's loggers (the
run's log file, the console), in the order they arrive.

Tasks must draw their random numbers from streams keyed by the task itself
(``ctx.rng(..., replica)``), never from a process-global state: then the
results do not depend on the number of workers, one included.

Example:
    >>> process_map(abs, [-2, 3, -5], workers=2)
    [2, 3, 5]
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
from collections.abc import Callable, Iterable
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TypeVar

import torch

__all__ = ["dask_map", "process_map", "usable_cores"]

T = TypeVar("T")
R = TypeVar("R")

#: the task of this worker process, or why it could not be loaded (set by the pool's initializer)
_TASK: Callable[[Any], Any] | None = None
_LOAD_ERROR: str | None = None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one).

    Example:
        >>> usable_cores() >= 1
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


class _ToParentLoggers(logging.Handler):
    """Hands each record from a worker to this process's logger of the same name (its handlers, its file)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


def _start_worker(payload: bytes, log_queue: Any, levels: dict[str, int]) -> None:
    global _TASK, _LOAD_ERROR
    torch.set_num_threads(1)  # the workers share the cores: one intra-op thread each
    root = logging.getLogger()
    root.handlers[:] = [QueueHandler(log_queue)]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    try:  # unpickled here, not by multiprocessing: a failure then reaches the caller instead of respawning workers
        _TASK = pickle.loads(payload)
    except Exception as err:  # noqa: BLE001 - any import or unpickling failure
        _LOAD_ERROR = f"{type(err).__name__}: {err}"


def _run_task(indexed: tuple[int, Any]) -> tuple[int, Any]:
    if _TASK is None:
        raise RuntimeError(f"a worker process could not load the task ({_LOAD_ERROR}); its classes must be "
                           "importable by name (not defined in a notebook or script): or run with one worker")
    return indexed[0], _TASK(indexed[1])


def process_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                on_result: Callable[[int, R], None] | None = None) -> list[R]:
    """``[fn(item) for item in items]``, on up to ``workers`` worker processes.

    Arguments:
        fn: the task: picklable (a module-level function, or an instance of a module-level class), as are
            the items and the results. Each worker receives it once.
        items: the task's arguments, one task each.
        workers: processes at most (1: in this process, in order, nothing pickled).
        on_result: called in this process with (index, result) as each task finishes (progress, logs).

    Returns:
        the results in the order of ``items``.

    An exception in a task is raised here (with its message; its type where it pickles) once the pool has
    stopped.
    """
    todo = list(items)
    workers = min(int(workers), len(todo))
    results: list[Any] = [None] * len(todo)
    if workers <= 1:
        for i, item in enumerate(todo):
            results[i] = fn(item)
            if on_result is not None:
                on_result(i, results[i])
        return results
    try:
        payload = pickle.dumps(fn)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        raise TypeError(f"the task cannot be sent to worker processes ({err}): or run with one worker") from None
    context = multiprocessing.get_context("spawn")
    log_queue = context.Queue()
    levels = {name: logging.getLogger(name or None).getEffectiveLevel() for name in ("", "mlegpipe")}
    listener = QueueListener(log_queue, _ToParentLoggers())
    listener.start()
    try:
        pool = context.Pool(workers, initializer=_start_worker, initargs=(payload, log_queue, levels))
        try:
            for i, value in pool.imap_unordered(_run_task, enumerate(todo)):
                results[i] = value
                if on_result is not None:
                    on_result(i, value)
        except BaseException:
            pool.terminate()
            raise
        else:  # let the workers exit on their own: their clean-up (semaphores of tqdm's locks) then runs
            pool.close()
        finally:
            pool.join()
    finally:
        listener.stop()
        log_queue.close()
        log_queue.join_thread()
    return results


def dask_map(fn: Callable[[T], R], items: Iterable[T], scheduler: str, workers: int = 0,
             on_result: Callable[[int, R], None] | None = None, where: str = "dask") -> list[R]:
    """``[fn(item) for item in items]`` as one Dask task per item; results in the order of ``items``.

    Arguments:
        fn: the task (picklable, as for :func:`process_map`).
        scheduler: ``"local"`` (a ``LocalCluster`` of ``workers`` single-threaded processes; 0: one per
            usable core) or the address of a running scheduler (``tcp://host:8786``).
        on_result: called here with (index, result) as each task finishes.
        where: the option that asked for Dask, for the error when the ``dask`` extra is missing.

    Example:
        >>> dask_map(abs, [-3, 2], "local", workers=1)  # doctest: +SKIP
        [3, 2]
    """
    from mlegpipe.sharding import require_dask

    require_dask(where)
    from dask.distributed import Client, LocalCluster, as_completed

    todo = list(items)
    results: list[Any] = [None] * len(todo)
    cluster = LocalCluster(n_workers=workers or usable_cores(), threads_per_worker=1, processes=True,
                           dashboard_address=None) if scheduler == "local" else None
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            futures = [client.submit(fn, item, pure=False) for item in todo]
            index = {future.key: i for i, future in enumerate(futures)}
            for future in as_completed(futures):
                i = index[future.key]
                results[i] = future.result()
                if on_result is not None:
                    on_result(i, results[i])
    finally:
        if cluster is not None:
            cluster.close()
    return results
