"""Sharded generation: K ROOT files from one checkpoint, identical whatever the number of workers.

Shards are whole runs of generation blocks (see :mod:`mlegpipe.generation`):
shard ``i`` holds blocks ``[b_i, b_{i+1})``, so concatenating the shards gives
exactly the events of one unsharded file with the same seed. Shards run in this
process, or one Dask task per shard on a ``dask.distributed`` cluster (a
``LocalCluster`` or the address of a running scheduler).

Example:
    >>> shard_plan(200_000, 3)
    [(0, 65536), (1, 131072), (3, 3392)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlegpipe.exceptions import ConfigError
from mlegpipe.generation import BLOCK, generate_blocks

__all__ = ["generate_shard", "generate_shards", "require_dask", "shard_paths", "shard_plan"]

#: The modules of the optional ``dask`` extra.
DASK_MODULES = ("dask", "distributed", "dask_awkward")


def require_dask(where: str = "--dask") -> None:
    """Raise a :class:`ConfigError` naming the missing extra when dask, distributed or dask-awkward is absent.

    Example:
        >>> require_dask()  # the test environment has the extra
    """
    import importlib.util

    missing = [m for m in DASK_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"needs the optional 'dask' extra ({', '.join(missing)} not installed): "
                          "pip install 'mlegpipe[dask]' (or make install, which installs it)", path=where)


def shard_plan(n: int, shards: int) -> list[tuple[int, int]]:
    """``(first_block, events)`` of each shard; shards hold whole blocks."""
    if shards < 1:
        raise ConfigError("the number of shards must be positive", path="--shards", value=shards)
    blocks = math.ceil(n / BLOCK)
    if shards > blocks:
        raise ConfigError(f"{n} events make only {blocks} generation blocks of {BLOCK}; use at most {blocks} shards",
                          path="--shards", value=shards)
    edges = [round(i * blocks / shards) for i in range(shards + 1)]
    return [(a, min(n, b * BLOCK) - a * BLOCK) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def shard_paths(output: str | Path, shards: int) -> list[Path]:
    """``out.root`` → ``out_000.root``, ``out_001.root``, ..."""
    output = Path(output)
    return [output.with_name(f"{output.stem}_{i:03d}{output.suffix or '.root'}") for i in range(shards)]


def generate_shard(
    checkpoint: str | Path,
    events: int,
    first_block: int,
    path: str | Path,
    seed: int,
    conditions: Mapping[str, float] | None = None,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    format: str | None = None,  # noqa: A002 - the CLI's name
    **writer_options: Any,
) -> str:
    """Load the generator and write one shard (runs inside a Dask task as well)."""
    from mlegpipe.checkpoint import load_generator
    from mlegpipe.formats import open_writer
    from mlegpipe.registry import load_plugins

    generator = load_generator(checkpoint, load_plugins())
    info = {**(meta or {}), "seed": seed, "generation_seed": seed, "events": events, "first_block": first_block,
            "conditions": dict(conditions or {})}
    with open_writer(path, info, format=format, overwrite=overwrite, first_event=first_block * BLOCK,
                     **writer_options) as writer:
        for batch in generate_blocks(generator, events, seed, conditions, first_block=first_block):
            writer.write(batch)
    return str(path)


def generate_shards(
    checkpoint: str | Path,
    n: int,
    output: str | Path,
    seed: int,
    shards: int,
    conditions: Mapping[str, float] | None = None,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    scheduler: str | None = None,
    workers: int = 2,
    format: str | None = None,  # noqa: A002 - the CLI's name
    **writer_options: Any,
) -> list[Path]:
    """Write ``shards`` ROOT files holding ``n`` events in total.

    Arguments:
        scheduler: None runs the shards here one after the other; ``"local"``
            starts a ``LocalCluster`` with ``workers`` processes; anything else
            is the address of a running Dask scheduler (``tcp://host:8786``).
    """
    plan = shard_plan(n, shards)
    paths = shard_paths(output, shards)
    if not overwrite:
        from mlegpipe.exceptions import OutputError

        for p in paths:
            if p.exists():
                raise OutputError("the output file exists already; use --force to overwrite", path=str(p))
    args = [(str(checkpoint), ev, first, str(p), seed, dict(conditions or {}), dict(meta or {}), overwrite, format)
            for (first, ev), p in zip(plan, paths, strict=True)]
    if scheduler is None:
        return [Path(generate_shard(*a, **writer_options)) for a in args]
    require_dask()
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) \
        if scheduler == "local" else None
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            futures = [client.submit(generate_shard, *a, pure=False, **writer_options) for a in args]
            return [Path(p) for p in client.gather(futures)]
    finally:
        if cluster is not None:
            cluster.close()
