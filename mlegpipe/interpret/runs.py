"""Open a finished run folder for interpretation: its generator, discriminator and samples.

A run folder (written by :func:`mlegpipe.pipeline.run_pipeline`) holds
``config.toml``, ``checkpoints/<section>.pt`` (the trained generator),
``checkpoints/<section>-last.pt`` (the last training state, with the GAN's
discriminator) and the samples as ROOT files (``truth_test.root``, ...).

Example:
    >>> # run = open_run("runs/cfatgan")
    >>> # run.generator.plugin_name, run.sample("truth_test").fields
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError, OutputError
from mlegpipe.stages import Generator

__all__ = ["RunModels", "open_run", "read_sample"]


def read_sample(path: str | Path, max_events: int | None = None) -> EventBatch:
    """All events of a ROOT sample file, with the beams recorded in its metadata
    (:func:`mlegpipe.rootio.beams_from_meta`, per-event beam fields included).

    Raises:
        DataError: the file does not exist.
    """
    from mlegpipe.rootio import beams_from_meta, read_events, read_meta

    path = Path(path)
    if not path.is_file():
        raise DataError("no such sample file", path=str(path))
    beams = beams_from_meta(read_meta(path))
    batch = EventBatch.concat(list(read_events(path, max_events=max_events)))
    return EventBatch(batch.arrays, beams or batch.beams, batch.meta)


@dataclass
class RunModels:
    """The trained models of a run.

    Attributes:
        run_dir: the folder; section: the generator's TOML section.
        generator: the generator, loaded from its checkpoint.
        discriminator: the discriminator stage (the run's ``[discriminator]``
            section, or the generator's default adversary; None for generators
            not trained adversarially).
        config: the run's validated configuration.
    """

    run_dir: Path
    section: str
    generator: Generator
    discriminator: Any
    config: Any

    def sample(self, name: str, max_events: int | None = None) -> EventBatch:
        """A sample of the run (``truth_test``, ``generated``, ...) or any ROOT file path."""
        path = Path(name) if name.endswith(".root") else self.run_dir / f"{name}.root"
        return read_sample(path, max_events)

    @property
    def plots_dir(self) -> Path:
        """``RUN_DIR/plots`` (the report's figures)."""
        return self.run_dir / "plots"

    def training_values(self, most: int = 12) -> list[float]:
        """The distinct values of the generator's first condition in the training sample (``truth_train``, else
        ``truth_test``).

        Empty for unconditional models, samples without the condition, or a
        condition with more than ``most`` distinct values (a continuous one:
        choose the values to feed then).
        """
        from mlegpipe.observables import values_of

        if not self.generator.conditions:
            return []
        condition = self.generator.conditions[0]
        for name in ("truth_train", "truth_test"):
            path = self.run_dir / f"{name}.root"
            if path.is_file():
                try:
                    values = np.unique(values_of(read_sample(path), condition, name))
                except DataError:
                    continue
                values = values[np.isfinite(values)]
                return [float(v) for v in values] if len(values) <= most else []
        return []

    def discriminator_net(self) -> Any:
        """The trained discriminator network (see :func:`~mlegpipe.interpret.probes.load_discriminator_net`)."""
        from mlegpipe.interpret.probes import load_discriminator_net

        if self.discriminator is None:
            raise ConfigError(f"generator {self.generator.plugin_name!r} has no discriminator", path=self.section)
        return load_discriminator_net(self.generator, self.run_dir, self.section, self.discriminator)


def open_run(run_dir: str | Path, section: str | None = None) -> RunModels:
    """Load the generator (and its discriminator stage) of a finished run.

    Arguments:
        run_dir: the run folder.
        section: the generator section (default: the only/first generator).

    Raises:
        OutputError: not a run folder; ConfigError: no such generator section;
        CheckpointError: the checkpoint is missing or unsafe.
    """
    from mlegpipe.checkpoint import load_generator
    from mlegpipe.config import load_config
    from mlegpipe.context import StageContext

    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise OutputError("not a run folder (no config.toml): give a folder written by 'mlegpipe run'",
                          path=str(run_dir))
    config = load_config(run_dir / "config.toml")
    generators = config.stages_of("generator")
    if not generators:
        raise ConfigError("the run has no generator section", path=str(run_dir / "config.toml"))
    names = [g.section for g in generators]
    if section is None:
        section = names[0]
    elif section not in names:
        raise ConfigError(f"no generator section of that name; the run has {names}", path="section", value=section)
    ctx = StageContext(section, config.settings.seed, None)
    generator = load_generator(run_dir / "checkpoints" / f"{section}.pt", config.registry, ctx)
    discriminator = generator.default_discriminator()
    specs = config.stages_of("discriminator")
    if discriminator is not None and specs:  # the adversary the run trained it against
        spec = specs[0]
        discriminator = spec.plugin.cls(spec.params, StageContext(spec.section, config.settings.seed))
        discriminator.plugin_name = discriminator.plugin_name or spec.plugin.name
    return RunModels(run_dir, section, generator, discriminator, config)
