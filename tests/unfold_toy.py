"""A toy unfolding pipeline for the ``ibu`` and ``omnifold`` plugins: two correlated observables, Gaussian smearing.

The pseudo-data's truth (``[truth]``, means (1.5, −1.5)) differs from the
simulation's (``[sim]``, means (1, −2)); both are folded by ``test-noise``
(σ = 0.7 on each observable). The unfolding gets the data ``truth_test_detector``,
its truth ``truth_test`` and the simulation pairs ``sim_train``,
``sim_train_detector`` from the planner (no surrogate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlegpipe.config import PipelineConfig, parse_config
from mlegpipe.events import EventBatch
from mlegpipe.pipeline import run_pipeline
from mlegpipe.rootio import read_events

TOML = """
[pipeline]
name = "unfold-toy"
seed = 5
split = [0.5, 0.25, 0.25]

# the pseudo-data's truth: its test split folded by [detector] is the data to unfold
[truth]
plugin = "test-gauss"
events = 8000
mean = [1.5, -1.5]

# the simulation: its training split and that split folded by [detector] are the response's pairs
[sim]
kind = "truth"
plugin = "test-gauss"
events = 12000

[detector]
plugin = "test-noise"
width = 0.7

[unfolding]
plugin = "{plugin}"
observables = ["a", "b"]
bins = 12
{extra}

[report]
plugin = "test-summary"
"""


def toy_config(registry: Any, plugin: str, extra: str = "", *overrides: str) -> PipelineConfig:
    """The toy pipeline unfolding with ``plugin`` (``extra``: more lines of its section)."""
    return parse_config(TOML.format(plugin=plugin, extra=extra), "unfold_toy.toml", list(overrides),
                        registry=registry)


def run_toy(config: PipelineConfig, out: Path) -> tuple[Path, dict[str, EventBatch]]:
    """Run ``config`` into ``out``; return the run folder and its samples read back."""
    run = run_pipeline(config, output=str(out), progress=False)
    samples = {p.stem: EventBatch.concat(list(read_events(p))) for p in sorted(run.glob("*.root"))}
    return run, samples
