"""Small but real stages used to test the core independently of the built-in plugins.

Registered directly with ``load_plugins(extra=[toy_stages])``, the way a
notebook or a test registers a plugin without installing it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlegpipe import hookimpl
from mlegpipe.events import EventBatch
from mlegpipe.schema import param
from mlegpipe.stages import Detector, Generator, Report, RunRecord, TruthSource


class GaussTruth(TruthSource):
    """Correlated 2D Gaussian events (fields a, b)."""

    @dataclass
    class Params:
        events: int = param(2000, min=1)
        chunk_size: int = param(500, min=1)
        mean: list[float] = param([1.0, -2.0])

    def iter_batches(self) -> Iterator[EventBatch]:
        done, chunk = 0, 0
        while done < self.params.events:
            n = min(self.params.chunk_size, self.params.events - done)
            rng = self.ctx.rng("events", chunk)
            z = rng.normal(size=(n, 2))
            a = self.params.mean[0] + z[:, 0]
            b = self.params.mean[1] + 0.5 * z[:, 0] + z[:, 1]
            yield EventBatch.from_columns({"a": a, "b": b})
            done, chunk = done + n, chunk + 1


class GaussFit(Generator):
    """Maximum-likelihood multivariate Gaussian fitted to the truth (a real, if simple, generator)."""

    @dataclass
    class Params:
        features: list[str] = param(["a", "b"])

    def __init__(self, params: Any, ctx: Any) -> None:
        super().__init__(params, ctx)
        self.features = list(params.features)
        self.conditions = []
        self.mean = np.zeros(len(self.features))
        self.cov = np.eye(len(self.features))

    def fit(self, train: EventBatch, valid: EventBatch, discriminator: Any = None) -> dict[str, Any]:
        x = train.matrix(self.features)
        self.mean, self.cov = x.mean(axis=0), np.cov(x, rowvar=False)
        return {"steps": [{"step": 1, "nll": 0.0}]}

    def sample(self, n: int, seed: np.random.SeedSequence,
               conditions: Mapping[str, Any] | None = None) -> EventBatch:
        x = np.random.default_rng(seed).multivariate_normal(self.mean, self.cov, size=n)
        return EventBatch.from_matrix(x, self.features, meta={"generator": "gauss-fit"})

    def state_dict(self) -> dict[str, Any]:
        import torch

        return {"mean": torch.tensor(self.mean), "cov": torch.tensor(self.cov)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mean, self.cov = np.asarray(state["mean"]), np.asarray(state["cov"])


class Noise(Detector):
    """Adds Gaussian noise of fixed width to every feature."""

    @dataclass
    class Params:
        width: float = param(0.1, min=0.0)

    def fold(self, events: EventBatch, seed: np.random.SeedSequence) -> EventBatch:
        rng = np.random.default_rng(seed)
        cols = {f: events.column(f) + self.params.width * rng.normal(size=len(events)) for f in events.fields}
        return EventBatch.from_columns(cols, events.beams, events.meta)


class Summary(Report):
    """Writes the sample sizes to summary.txt."""

    def write(self, record: RunRecord) -> list[str]:
        path = record.run_dir / "summary.txt"
        path.write_text("\n".join(f"{k} {len(v)}" for k, v in record.samples.items()))
        record.metrics["summary"] = {k: len(v) for k, v in record.samples.items()}
        return [str(path)]


@hookimpl
def mlegpipe_register_stages(registry) -> None:  # noqa: ANN001
    registry.add(GaussTruth, "test-gauss")
    registry.add(GaussFit, "test-gauss-fit")
    registry.add(Noise, "test-noise")
    registry.add(Summary, "test-summary")
