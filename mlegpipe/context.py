"""What a stage gets from the pipeline: its name, random streams, run folder, log.

Every random stream derives from the pipeline seed through
``numpy.random.SeedSequence``: a stage's stream is keyed by its TOML section
name, and a stage derives sub-streams by purpose (``ctx.rng("train")``), so the
same seed always gives the same events whatever other stages are present.

Example:
    >>> ctx = StageContext("truth", seed=42)
    >>> a = ctx.rng("sample").normal(size=2)
    >>> b = StageContext("truth", seed=42).rng("sample").normal(size=2)
    >>> bool((a == b).all())
    True
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["StageContext", "seed_key"]


def seed_key(text: str) -> int:
    """A stable 32-bit key for a name (crc32), used as a SeedSequence spawn key."""
    return zlib.crc32(text.encode("utf-8"))


@dataclass
class StageContext:
    """Run-time services for one stage.

    Arguments:
        name: the TOML section of the stage (``truth``, ``generator``, ...).
        seed: the pipeline seed.
        run_dir: the run folder being written (None outside a run).
        progress: show progress bars on long work.
        threads: CPU threads torch may use (None: leave torch's default).
        resume: continue from checkpoints found in ``run_dir`` (``mlegpipe run --resume``).
        log: the stage's logger (default ``mlegpipe.<name>``).
        registry: the plugin registry names are looked up in (feature maps, observables, ...;
            None: :func:`mlegpipe.registry.default_registry`).
        observables: the pipeline's :class:`~mlegpipe.observables.ObservableSet` (None: registered ones only).
    """

    name: str
    seed: int = 0
    run_dir: Path | None = None
    progress: bool = False
    threads: int | None = None
    resume: bool = False
    log: logging.Logger = field(default=None)  # type: ignore[assignment]
    registry: Any = None
    observables: Any = None

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = logging.getLogger(f"mlegpipe.{self.name}")

    def seed_sequence(self, *purpose: str | int) -> np.random.SeedSequence:
        """The SeedSequence for this stage and purpose.

        Integers in ``purpose`` (chunk or replica indices) are used as they are;
        strings are hashed with :func:`seed_key`.
        """
        key = [seed_key(self.name)] + [p if isinstance(p, int) else seed_key(p) for p in purpose]
        return np.random.SeedSequence(self.seed, spawn_key=tuple(key))

    def rng(self, *purpose: str | int) -> np.random.Generator:
        """A NumPy generator for this stage and purpose."""
        return np.random.default_rng(self.seed_sequence(*purpose))

    def torch_seed(self, *purpose: str | int) -> int:
        """A 63-bit integer seed for ``torch.Generator().manual_seed``."""
        return int(self.seed_sequence(*purpose).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))

    def torch_generator(self, *purpose: str | int):  # noqa: ANN201 - torch imported lazily
        """A seeded ``torch.Generator`` (CPU) for this stage and purpose."""
        import torch

        gen = torch.Generator()
        gen.manual_seed(self.torch_seed(*purpose))
        return gen

    def child(self, name: str) -> StageContext:
        """A context for a sub-component (a replica, an internal model)."""
        return StageContext(f"{self.name}/{name}", self.seed, self.run_dir, self.progress, self.threads,
                            self.resume, logging.getLogger(f"mlegpipe.{self.name}.{name}"), self.registry,
                            self.observables)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the registry and observables (functions of plugins): a worker process looks them up
        in its own registry."""
        state = dict(self.__dict__)
        state["registry"] = state["observables"] = None
        return state

    def lookup(self) -> Any:
        """The registry this stage looks names up in."""
        if self.registry is not None:
            return self.registry
        from mlegpipe.registry import default_registry

        return default_registry()
