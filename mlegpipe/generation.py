"""Streaming generation from a trained generator, reproducible whatever the chunking.

Events are generated in fixed blocks of :data:`BLOCK` events; block ``k`` draws
from the stream ``SeedSequence(seed, spawn_key=(key("generate"), k))``. Writing
buffers, chunk sizes and shards only group whole blocks, so they never change
the events: the same seed gives the same events, bit for bit.

Example:
    >>> # events = EventBatch.concat(generate_blocks(gen, 1000, seed=1))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlegpipe.context import seed_key
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError
from mlegpipe.stages import Generator

__all__ = ["BLOCK", "block_seed", "generate_blocks", "generate_to_root"]

#: Events per random-stream block.
BLOCK = 65_536


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
    needed = list(getattr(generator, "conditions", []) or [])
    conditions = dict(conditions or {})
    missing = [c for c in needed if c not in conditions]
    if missing:
        raise ConfigError(f"this generator is conditional on {', '.join(needed)}; give a value for each, "
                          f"e.g. --condition {missing[0]}=50", path="--condition")
    unknown = [c for c in conditions if c not in needed]
    if unknown:
        raise ConfigError("this generator takes no such condition; it takes: " + (", ".join(needed) or "none"),
                          path="--condition", value=unknown[0])
    done, block = 0, first_block
    while done < n:
        size = min(BLOCK, n - done)
        cond: dict[str, Any] | None = {k: np.full(size, float(v)) for k, v in conditions.items()} or None
        yield generator.sample(size, block_seed(seed, block), cond)
        done += size
        block += 1


def generate_to_root(
    generator: Generator,
    n: int,
    path: str | Path,
    seed: int,
    conditions: Mapping[str, float] | None = None,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Stream ``n`` generated events to a ROOT file (bounded memory; atomic write)."""
    from tqdm import tqdm

    from mlegpipe.rootio import RootWriter

    meta = {**(meta or {}), "seed": seed, "events": n, "conditions": dict(conditions or {})}
    bar = tqdm(total=n, unit="ev", unit_scale=True, disable=not progress, desc="generate")
    with RootWriter(path, meta=meta, overwrite=overwrite) as writer:
        for batch in generate_blocks(generator, n, seed, conditions):
            writer.write(batch)
            bar.update(len(batch))
    bar.close()
    return Path(path)
