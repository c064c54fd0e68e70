"""Reading event files too large for one machine: ``uproot.dask`` arrays, per-partition EventBatches, Dask reductions.

:func:`dask_events` opens any number of ROOT files lazily as one
dask-awkward array (one partition per ``step_size`` of each file); nothing is
read until a partition is computed. :func:`iter_partition_batches` computes
the partitions one at a time and yields them as :class:`EventBatch` (particle
collections written by :class:`~mlegpipe.rootio.RootWriter` are zipped back
into records, beams and provenance come from the file metadata), so a client
holds one partition at a time. :func:`reduce_partitions` runs a function on
every partition where the data lies (one Dask task each, on any scheduler)
and combines the small results, e.g. histograms of a 10⁹-event sample.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from mlegpipe.rootio import write_events
    >>> p = write_events(pathlib.Path(tempfile.mkdtemp()) / "a.root", EventBatch.from_columns({"Q2": np.arange(5.0)}))
    >>> array = dask_events(p)
    >>> [len(b) for b in iter_partition_batches(array)], float(reduce_partitions(array, lambda b: b.column("Q2").sum()))
    ([5], 10.0)
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import awkward as ak

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch, limit_events
from mlegpipe.exceptions import DataError
from mlegpipe.rootio import PathLike, _auto_collections, _get_tree, _open, beams_from_meta, expand_paths, read_meta

__all__ = ["dask_events", "iter_partition_batches", "partition_to_batch", "read_events_dask", "reduce_partitions"]

T = TypeVar("T")


def dask_events(
    paths: PathLike | Sequence[PathLike],
    tree: str = "events",
    step_size: int | str = "100 MB",
    branches: Sequence[str] | None = None,
) -> Any:
    """A lazy dask-awkward array of the events in ``paths`` (files or glob patterns).

    Arguments:
        paths: ROOT files written by mlegpipe (or any TTree of flat and jagged branches).
        tree: TTree name in every file.
        step_size: entries (int) or memory ("100 MB") per partition.
        branches: read only these branches (default all).

    The files' ``mlegpipe_meta`` of the first file is attached as
    ``array.attrs["mlegpipe_meta"]`` (beams, generator, seed, ...).

    Raises:
        DataError: a file is missing or is not a ROOT file with this tree.
        ConfigError: the optional ``dask`` extra is not installed.
    """
    import uproot

    from mlegpipe.sharding import require_dask

    require_dask("dask_events")
    files = expand_paths(paths)
    meta = read_meta(files[0])
    for path in files:  # check here, where the message can name the file, not inside a Dask task
        with _open(path) as file:
            names = set(_get_tree(file, path, tree).keys())
        missing = sorted(set(branches or ()) - names)
        if missing:
            raise DataError(f"no such branch in tree {tree!r}", path=f"{path}: {missing[0]}")
    kwargs: dict[str, Any] = {"step_size": step_size}
    if branches is not None:
        kwargs["filter_name"] = list(branches)
    array = uproot.dask({str(p): tree for p in files}, **kwargs)
    array._meta.attrs["mlegpipe_meta"] = meta  # noqa: SLF001 - dask-awkward keeps attrs on the meta
    return array


def _meta_of(array: Any) -> dict[str, Any]:
    attrs = getattr(getattr(array, "_meta", None), "attrs", None) or {}
    return dict(attrs.get("mlegpipe_meta", {}))


def partition_to_batch(chunk: ak.Array, beams: Beams | None = None,
                       meta: Mapping[str, Any] | None = None) -> EventBatch:
    """One computed partition (a record array of branches) as an :class:`EventBatch`.

    Collections stored as ``nNAME`` + ``NAME_field`` branches become a jagged ``NAME`` record field.

    Example:
        >>> partition_to_batch(ak.Array({"x": [0.1], "nparticles": [1], "particles_px": [[2.0]]})).fields
        ['x', 'particles']
    """
    names = list(chunk.fields)
    collections = _auto_collections(names)
    used = {b for fields in collections.values() for b in fields.values()} | {f"n{c}" for c in collections}
    columns: dict[str, Any] = {b: chunk[b] for b in names if b not in used}
    for coll, fields in collections.items():
        columns[coll] = ak.zip({f: chunk[b] for f, b in fields.items()})
    return EventBatch.from_columns(columns, beams, dict(meta or {}))


def iter_partition_batches(array: Any) -> Iterator[EventBatch]:
    """Compute the partitions of :func:`dask_events` one at a time and yield them as EventBatches."""
    meta = _meta_of(array)
    beams = beams_from_meta(meta)
    for i in range(array.npartitions):
        yield partition_to_batch(array.partitions[i].compute(), beams, meta)


def _apply(fn: Callable[[EventBatch], T], meta: dict[str, Any], chunk: ak.Array) -> T:
    return fn(partition_to_batch(chunk, beams_from_meta(meta), meta))


def reduce_partitions(
    array: Any,
    fn: Callable[[EventBatch], T],
    combine: Callable[[T, T], T] = operator.add,
    scheduler: Any = None,
) -> T:
    """Apply ``fn`` to every partition as an EventBatch (one Dask task each) and fold the results with ``combine``.

    Arguments:
        array: from :func:`dask_events`.
        fn: a picklable function of one EventBatch (module-level when the
            scheduler runs in other processes) returning something small:
            a histogram, a sum, a count.
        combine: how two results merge (default ``+``, e.g. NumPy histograms).
        scheduler: passed to ``dask.compute`` (None: the current default, a
            ``dask.distributed.Client`` when one is active).
    """
    import dask

    meta = _meta_of(array)
    tasks = [dask.delayed(_apply)(fn, meta, part) for part in array.to_delayed()]
    results = dask.compute(*tasks, scheduler=scheduler) if scheduler is not None else dask.compute(*tasks)
    if not results:
        raise DataError("the array has no partitions")
    return functools.reduce(combine, results)


def read_events_dask(
    paths: PathLike | Sequence[PathLike],
    tree: str = "events",
    branches: Mapping[str, str] | None = None,
    collections: Mapping[str, Mapping[str, str]] | None = None,
    step_size: int | str = "50 MB",
    cut: str | None = None,
    max_events: int | None = None,
    cut_where: str = "cut",
    scheduler: str = "threads",
) -> list[EventBatch]:
    """The events of :func:`mlegpipe.rootio.read_events`, read through ``uproot.dask`` as Dask tasks.

    The same mapping, cut and checks as the streaming reader (one
    :class:`~mlegpipe.rootio.ReadPlan`, checked against every file first); the
    partitions are read in parallel and come back in file order.

    Arguments:
        scheduler: ``"threads"`` (Dask's local threads), ``"local"`` (a
            ``LocalCluster`` of one process per core) or the address of a running
            scheduler (``tcp://host:8786``).

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> from mlegpipe.rootio import write_events
        >>> p = write_events(pathlib.Path(tempfile.mkdtemp()) / "d.root", EventBatch.from_columns({"x": np.arange(5.0)}))
        >>> [len(b) for b in read_events_dask(p, cut="x > 1")]
        [3]
    """
    import dask
    import uproot

    from mlegpipe.rootio import plan_reading
    from mlegpipe.sharding import require_dask

    require_dask("dask")
    files = expand_paths(paths)
    plans = [plan_reading(path, tree, branches, collections, cut, cut_where) for path in files]
    plan, meta = plans[0]
    if any(p.branches() != plan.branches() for p, _ in plans[1:]):
        raise DataError("the files do not share one branch layout; read them with the streaming reader",
                        path=str(files[0]))
    meta = {**meta, "source_file": str(files[0])}
    beams = beams_from_meta(meta)
    array = uproot.dask({str(p): tree for p in files}, filter_name=plan.branches(), step_size=step_size)
    parts = array.to_delayed()
    if scheduler in ("threads", "sync", "synchronous"):
        chunks = dask.compute(*parts, scheduler=scheduler)
    else:
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(threads_per_worker=1, processes=True, dashboard_address=None) \
            if scheduler == "local" else None
        try:
            with Client(cluster if cluster is not None else scheduler) as client:
                chunks = client.gather(client.compute(list(parts)))
        finally:
            if cluster is not None:
                cluster.close()
    starts = itertools.accumulate((len(chunk) for chunk in chunks), initial=0)  # each chunk's first entry
    batches = (plan.batch(chunk, beams, meta, files[0], start) for chunk, start in zip(chunks, starts, strict=False))
    return list(limit_events(batches, max_events))
