"""Streaming generation from a trained generator, reproducible whatever the chunking.

Events are generated in fixed blocks of :data:`BLOCK` events; block ``k`` draws
from the stream ``SeedSequence(seed, spawn_key=(key("generate"), k))``. Writing
buffers, chunk sizes and shards only group whole blocks, so they never change
the events: the same seed gives the same events, bit for bit.

Example:
    >>> # events = EventBatch.concat(generate_blocks(gen, 1000, seed=1))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from mlegpipe.context import seed_key
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError
from mlegpipe.formats import format_for
from mlegpipe.shared_setting import SharedSetting
from mlegpipe.stages import Generator, checked_conditions

__all__ = ["BLOCK", "block_seed", "generate_blocks", "generate_to_file", "map_in_chunks", "map_spans",
           "single_threaded_kernels"]

#: Events per random-stream block.
BLOCK = 65_536

T = TypeVar("T")


def _one_thread() -> int:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


_ONE_THREAD = SharedSetting(_one_thread, torch.set_num_threads)


@contextlib.contextmanager
def single_threaded_kernels() -> Iterator[None]:
    """Run the block with one intra-op torch thread (restored after), for data-parallel Python threads.

    Generators split large draws into cache-sized chunks and run them on as many
    Python threads as torch has threads (torch releases the GIL inside kernels):
    their ops are too small for intra-op threads to pay off, and independent
    chunks need no barrier, which matters on an oversubscribed machine. The
    setting is process-wide: nested blocks and blocks entered from several
    threads at once restore the original count when the last one leaves.

    Example:
        >>> with single_threaded_kernels():
        ...     torch.get_num_threads()
        1
    """
    with _ONE_THREAD():
        yield


def map_spans(fn: Callable[[int, int], T], n: int, chunk: int, workers: int | None = None) -> list[T]:
    """``fn(lo, hi)`` for the fixed spans ``[0, chunk), [chunk, 2·chunk), …`` of ``n`` rows, on ``workers``
    data-parallel threads; the results in span order.

    Each thread takes every ``workers``-th span as one long-lived task (no
    per-span scheduling cost), with :func:`single_threaded_kernels` and in
    inference mode; the spans are fixed, so the results do not depend on the
    thread count. ``workers`` defaults to torch's thread count.

    Example:
        >>> map_spans(lambda lo, hi: (lo, hi), 10, chunk=4, workers=2)
        [(0, 4), (4, 8), (8, 10)]
    """
    spans = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    out: list[Any] = [None] * len(spans)

    def run(i: int) -> None:
        with torch.inference_mode():  # thread-local: enter it in every worker
            out[i] = fn(*spans[i])

    workers = min(torch.get_num_threads() if workers is None else workers, len(spans))
    if workers <= 1:
        for i in range(len(spans)):
            run(i)
        return out

    def share(w: int) -> None:
        for i in range(w, len(spans), workers):
            run(i)

    with single_threaded_kernels(), ThreadPoolExecutor(workers) as pool:
        list(pool.map(share, range(workers)))
    return out


def map_in_chunks(
    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    noise: torch.Tensor,
    context: torch.Tensor | None,
    n_out: int,
    chunk: int,
    workers: int | None = None,
) -> torch.Tensor:
    """``fn(noise, context)`` row-wise in fixed ``chunk``-event pieces, on ``workers`` data-parallel threads
    (:func:`map_spans`): the result does not depend on the thread count.

    Example:
        >>> x = torch.arange(10.0)[:, None]
        >>> map_in_chunks(lambda n, c: 2 * n, x, None, 1, chunk=3, workers=2)[:, 0].tolist()
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]
    """
    out = noise.new_empty(len(noise), n_out)

    def run(lo: int, hi: int) -> None:
        out[lo:hi] = fn(noise[lo:hi], None if context is None else context[lo:hi])

    map_spans(run, len(noise), chunk, workers)
    return out


def block_seed(seed: int, block: int) -> np.random.SeedSequence:
    """The SeedSequence of generation block ``block``."""
    return np.random.SeedSequence(seed, spawn_key=(seed_key("generate"), block))


def generate_blocks(
    generator: Generator,
    n: int,
    seed: int,
    conditions: Mapping[str, float] | None = None,
    first_block: int = 0,
) -> Iterator[EventBatch]:
    """Yield ``n`` events block by block (the last block may be short).

    Arguments:
        generator: a trained generator stage.
        n: number of events.
        seed: generation seed.
        conditions: one value per conditioning field (e.g. ``{"beam_energy": 60.0}``).
        first_block: index of the first block (shards start at their own block).
    """
    if n < 1:
        raise ConfigError("the number of events must be positive", path="-n", value=n)
    needed = list(generator.conditions)
    conditions = dict(conditions or {})
    missing = [c for c in needed if c not in conditions]
    if missing:
        raise ConfigError(f"this generator is conditional on {', '.join(needed)}; give a value for each, "
                          f"e.g. --condition {missing[0]}=50", path="--condition")
    checked_conditions(conditions, needed, "--condition")
    done, block = 0, first_block
    while done < n:
        size = min(BLOCK, n - done)
        cond: dict[str, Any] | None = {k: np.full(size, float(v)) for k, v in conditions.items()} or None
        yield generator.sample(size, block_seed(seed, block), cond)
        done += size
        block += 1


def generate_to_file(
    generator: Generator,
    n: int,
    path: str | Path,
    seed: int,
    conditions: Mapping[str, float] | None = None,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    format: str | None = None,  # noqa: A002 - the CLI's name
    **writer_options: Any,
) -> Path:
    """Stream ``n`` generated events to a file of any format (bounded memory; atomic write).

    The format comes from ``path``'s extension or ``format``
    (:func:`mlegpipe.formats.format_for`); ``writer_options`` go to its writer
    (e.g. ``compression="lz4:1"`` for ROOT). Writing (formatting, compression)
    runs on a background thread while the next block is generated, so on two
    cores the slower of the two sets the pace, not their sum; at most one block
    waits to be written. The file records the generation seed, the conditions
    and ``meta`` (the checkpoint's provenance, for ``mlegpipe generate``).

    Example:
        >>> # generate_to_file(gen, 10_000_000, "events.root", seed=1)
    """
    from tqdm import tqdm

    from mlegpipe.formats import open_writer
    from mlegpipe.provenance import SUM_WEIGHTS

    fmt = format_for(path, format)  # an unknown format fails before any event is generated
    meta = {**(meta or {}), "generation_seed": seed, "seed": seed, "events": n, "conditions": dict(conditions or {})}
    bar = tqdm(total=n, unit="ev", unit_scale=True, disable=not progress, desc="generate")
    meta.setdefault(SUM_WEIGHTS, float(n))  # streamed headers (HepMC3, LHE) are written before the events
    with open_writer(path, meta, format=fmt.name, overwrite=overwrite, **writer_options) as writer, \
            ThreadPoolExecutor(1) as pool:
        pending: Future[None] | None = None
        for batch in generate_blocks(generator, n, seed, conditions):
            if pending is not None:
                pending.result()  # re-raises a write error; bounds the events held in memory
            pending = pool.submit(writer.write, batch)
            bar.update(len(batch))
        if pending is not None:
            pending.result()
        writer.meta[SUM_WEIGHTS] = writer.sum_weights
    bar.close()
    return Path(path)
