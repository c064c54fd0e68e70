"""The Python API: load and run pipelines, sample trained generators, read and write event files.

Everything a notebook needs is at the package top level (``mlegpipe.run``,
``mlegpipe.sample``, ...), imported on first use so that ``import mlegpipe``
stays light. Plugins are loaded from their entry points when needed; no
registry has to be built by hand. Events come as awkward arrays with vector
behaviour: flat fields (``events.Q2``) and collections of ``Momentum4D``
records (``events.lepton.pt``, ``events.jets.eta``).

Example:
    >>> import mlegpipe, numpy as np, tempfile, pathlib
    >>> events = mlegpipe.events_from_columns({"x": np.array([0.1, 0.2]), "Q2": np.array([3.0, 9.0])})
    >>> path = mlegpipe.write_events(events, pathlib.Path(tempfile.mkdtemp()) / "e.parquet")
    >>> back = mlegpipe.read_events(path)
    >>> back.Q2.tolist(), back.event_number.tolist(), mlegpipe.read_meta(path)["mlegpipe_version"] == mlegpipe.__version__
    ([3.0, 9.0], [0, 1], True)
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import awkward as ak

from mlegpipe.events import EventBatch

if TYPE_CHECKING:
    from mlegpipe.beams import Beams
    from mlegpipe.config import PipelineConfig
    from mlegpipe.stages import Generator

__all__ = ["events_from_columns", "load_generator", "load_pipeline", "read_events", "read_meta", "run", "sample",
           "show_progress", "write_events"]

PathLike = str | os.PathLike[str]


def _overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    """``{"generator.steps": 200}`` or ``["generator.steps=200"]`` as ``--set`` assignments."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        import tomli_w

        out = []
        for key, value in overrides.items():
            text = tomli_w.dumps({"v": value}).strip()  # a TOML literal, parsed back by the pipeline's parser
            out.append(f"{key}={text.partition('=')[2].strip()}")
        return out
    return [str(o) for o in overrides]


def load_pipeline(path: PathLike, overrides: Mapping[str, Any] | Sequence[str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline file, with overrides as a mapping or ``section.key=value`` strings.

    Example:
        >>> cfg = load_pipeline("pipelines/quickstart.toml", {"generator.steps": 10})  # doctest: +SKIP
        >>> cfg.stage("generator").params.steps  # doctest: +SKIP
        10
    """
    from mlegpipe.config import load_config

    return load_config(path, _overrides(overrides))


def run(
    pipeline: PipelineConfig | PathLike,
    *,
    output: PathLike | None = None,
    force: bool = False,
    resume: bool = False,
    progress: bool | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Path:
    """Run a pipeline (a loaded config or a TOML file) and return the completed run folder.

    Arguments:
        pipeline: a :func:`load_pipeline` result or the path of a pipeline file.
        output: run folder (default: the pipeline's ``output``).
        force: replace an existing run folder once the new run is complete.
        resume: continue an interrupted run.
        progress: progress bars (default: when stderr is a terminal or a notebook; in a notebook the
            stage log is shown too, see :func:`show_progress`).
        overrides: applied when ``pipeline`` is a path.

    Example:
        >>> run_dir = run("pipelines/quickstart.toml", output="runs/qs", overrides={"generator.steps": 200})  # doctest: +SKIP
    """
    from mlegpipe.config import PipelineConfig
    from mlegpipe.pipeline import run_pipeline

    config = pipeline if isinstance(pipeline, PipelineConfig) else load_pipeline(pipeline, overrides)
    if progress is None:
        progress = sys.stderr.isatty() or _in_notebook()
    if _in_notebook() and not logging.getLogger("mlegpipe").handlers:
        show_progress()  # a notebook shows no log records unless a handler is attached
    return run_pipeline(config, output=None if output is None else os.fspath(output), force=force, resume=resume,
                        progress=progress)


def load_generator(path: PathLike) -> Generator:
    """A trained generator from a checkpoint (weights only; its hash checked against the run's record).

    The plugins are loaded from their entry points.

    Example:
        >>> generator = load_generator("runs/qs/checkpoints/generator.pt")  # doctest: +SKIP
    """
    from mlegpipe.checkpoint import open_generator
    from mlegpipe.registry import load_plugins

    generator, provenance = open_generator(path, load_plugins())
    _PROVENANCE[generator] = provenance
    return generator


_PROVENANCE: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()  # generator -> provenance


def sample(generator: Generator | PathLike, n: int, seed: int = 0,
           conditions: Mapping[str, float] | None = None) -> ak.Array:
    """``n`` events from a generator (or a checkpoint path) as an awkward array with vector behaviour.

    The events are those ``mlegpipe generate`` writes with the same seed.
    ``attrs["meta"]`` holds their provenance (checkpoint sha256, seeds, σ of
    the training sample).

    Example:
        >>> events = sample("runs/qs/checkpoints/generator.pt", 1000, seed=1)  # doctest: +SKIP
        >>> events.lepton.pt[:3], events.attrs["meta"]["checkpoint_sha256"]  # doctest: +SKIP
    """
    from mlegpipe.generation import generate_blocks

    if isinstance(generator, str | os.PathLike):
        generator = load_generator(generator)
    batch = EventBatch.concat(generate_blocks(generator, n, seed, conditions))
    meta = {**batch.meta, **_PROVENANCE.get(generator, {}), "generation_seed": seed}
    return EventBatch(batch.arrays, batch.beams, meta).to_awkward()


def events_from_columns(columns: Mapping[str, Any], beams: Beams | str | None = None,
                        meta: Mapping[str, Any] | None = None) -> ak.Array:
    """Events from columns (flat fields, ``NAME_px``... groups, or lists of particle records), for writing.

    ``beams`` is a :class:`~mlegpipe.beams.Beams` or a preset name (``"hera"``, ``"lhc13"``).

    Example:
        >>> events_from_columns({"x": [0.1], "lepton_px": [3.0], "lepton_py": [0.0], "lepton_pz": [4.0],
        ...                      "lepton_E": [5.0]}, beams="hera").lepton.pt.tolist()
        [3.0]
    """
    from mlegpipe.beams import Beams

    if isinstance(beams, str):
        beams = Beams.preset(beams)
    return EventBatch.from_columns(columns, beams, meta).to_awkward()


def write_events(events: ak.Array | EventBatch, path: PathLike, *, format: str | None = None,  # noqa: A002
                 meta: Mapping[str, Any] | None = None, overwrite: bool = False, **options: Any) -> Path:
    """Write events to ROOT, HepMC3, LHE or Parquet (by extension or ``format``); return the path.

    An existing file is kept (:class:`~mlegpipe.exceptions.OutputError`) unless ``overwrite``.

    ``options`` go to the format's writer (``float32=True`` and ``compression="lz4:1"`` for ROOT, ...).

    Example:
        >>> write_events(events, "events.hepmc", meta={"cross_section_pb": 1.2e6})  # doctest: +SKIP
    """
    from mlegpipe.formats import open_writer

    batch = events if isinstance(events, EventBatch) else EventBatch.from_awkward(events)
    with open_writer(path, meta, format=format, overwrite=overwrite, **options) as writer:
        writer.write(batch)
    return Path(path)


def read_events(path: PathLike, *, format: str | None = None, max_events: int | None = None,  # noqa: A002
                **options: Any) -> ak.Array:
    """All events of a file of any format (ROOT, HepMC3, LHE, Parquet) as an awkward array with vector behaviour.

    ``attrs["meta"]`` holds the file's provenance, ``attrs["@beams"]`` its beams.

    Example:
        >>> events = read_events("runs/qs/generated.root")  # doctest: +SKIP
    """
    from mlegpipe.formats import read_file

    batches = list(read_file(path, format=format, max_events=max_events, **options))
    if not batches:
        from mlegpipe.exceptions import DataError

        raise DataError("the file holds no events", path=str(path))
    return EventBatch.concat(batches).to_awkward()


def read_meta(path: PathLike, *, format: str | None = None) -> dict[str, Any]:  # noqa: A002
    """The provenance stored in an event file of any format: σ, version, seeds, checkpoint hash, config.

    Example:
        >>> read_meta("runs/qs/generated.root")["cross_section_pb"]  # doctest: +SKIP
    """
    from mlegpipe.formats import read_file_meta

    return read_file_meta(path, format=format)


def _in_notebook() -> bool:
    return "ipykernel" in sys.modules


def show_progress(level: int = logging.INFO) -> None:
    """Send mlegpipe's log (stage starts, training progress, timings) to stderr, e.g. in a notebook.

    Example:
        >>> show_progress()
        >>> logging.getLogger("mlegpipe").level == logging.INFO
        True
    """
    logger = logging.getLogger("mlegpipe")
    logger.setLevel(level)
    if not any(getattr(h, "_mlegpipe_progress", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler._mlegpipe_progress = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
