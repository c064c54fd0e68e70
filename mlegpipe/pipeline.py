"""Run a validated pipeline: stages in file order, writing a complete run folder.

The run is written into a hidden ``.NAME.partial`` folder beside the requested
one and renamed when everything is complete, so a run killed half-way never
leaves a folder that looks finished, and ``--force`` replaces an old run only
once the new one is complete. ``--resume`` continues a partial run from its
checkpoints.

Run folder: ``config.toml`` (resolved), ``run.log``, ``metrics.json``,
``<sample>.root`` for every sample, ``checkpoints/<section>.pt`` for trained
stages, and whatever the report stages write (``report.html``, ``plots/``).

Example:
    >>> from mlegpipe.config import load_config  # doctest: +SKIP
    >>> run_dir = run_pipeline(load_config("pipelines/quickstart.toml"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlegpipe import __version__
from mlegpipe.config import PipelineConfig, in_file
from mlegpipe.context import StageContext
from mlegpipe.distributed import is_main_process
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError, OutputError
from mlegpipe.plan import Step, plan_pipeline
from mlegpipe.provenance import cross_section_meta
from mlegpipe.stages import Detector, Generator, Report, RunRecord, Stage, TruthSource, Unfolding, UnfoldingInputs

__all__ = ["build_stages", "check_run_folder", "generator_conditions", "run_pipeline", "run_folder"]

log = logging.getLogger("mlegpipe")


def run_folder(config: PipelineConfig, output: str | None = None) -> Path:
    """The run folder a pipeline writes to (``pipeline.output`` with ``{name}`` filled in)."""
    template = output or config.settings.output
    return Path(template.replace("{name}", config.settings.name))


def build_stages(config: PipelineConfig, run_dir: Path | None = None, progress: bool = False,
                 resume: bool = False) -> dict[str, Stage]:
    """Instantiate every stage (cheap: stages do their work later)."""
    stages: dict[str, Stage] = {}
    with in_file(config.source):
        for spec in config.stages:
            ctx = StageContext(spec.section, config.settings.seed, run_dir, progress, config.settings.threads, resume,
                               registry=config.registry, observables=config.observables)
            stages[spec.section] = spec.plugin.cls(spec.params, ctx)
    return stages


def generator_conditions(config: PipelineConfig, stages: Mapping[str, Stage]) -> dict[str, list[str]]:
    """Per generated sample, the fields its generator is conditioned on."""
    return {step.outputs[0]: list(stage.conditions) for step in config.steps
            if isinstance(stage := stages[step.section], Generator)}


def _split(batch: EventBatch, fractions: list[float], rng: np.random.Generator) -> list[EventBatch]:
    n = len(batch)
    order = rng.permutation(n)
    n_train = int(round(fractions[0] * n))
    n_valid = int(round(fractions[1] * n))
    cuts = [0, n_train, n_train + n_valid, n]
    return [batch.take(np.sort(order[a:b])) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


class _Runner:
    """Executes the planned steps, keeping the samples and the record."""

    def __init__(self, config: PipelineConfig, work_dir: Path, progress: bool, resume: bool) -> None:
        self.config = config
        self.work_dir = work_dir
        self.steps = config.steps or plan_pipeline(config)
        self.stages = build_stages(config, work_dir, progress, resume)
        self._cross_section: dict[str, Any] = {}
        self._process = ""  # the first truth's process, carried by what is generated from it
        self._truth_samples: set[str] = set()
        self._made_by: dict[str, str] = {}  # sample -> the trained section that generated or folded it
        self._checkpoint_sha256: dict[str, str] = {}
        self._config_text = _portable_config(config)
        self._unchecked = [s for s in self.steps if s.spec.kind == "unfolding"]  # see check_unfoldings
        self.record = RunRecord(config=config.resolved(), samples={}, stages=self.stages, metrics={},
                                histories={}, timings={}, run_dir=work_dir, seed=config.settings.seed,
                                plan=config.report_plan, observables=config.observables)

    # -- per kind ---------------------------------------------------------------
    def truth(self, step: Step, stage: TruthSource) -> None:
        batch = stage.read()
        if len(batch) == 0:
            raise DataError("the truth source produced no events (all cut away?)", path=step.section)
        needed = 3 if all(f > 0 for f in self.config.settings.split) else 1
        if len(batch) < needed * 2:
            raise DataError(f"only {len(batch)} events: too few to split into train/valid/test",
                            path=step.section)
        rng = stage.ctx.rng("split")
        for name, part in zip(step.outputs, _split(batch, self.config.settings.split, rng), strict=True):
            self.record.samples[name] = part
            self._truth_samples.add(name)
        info = stage.info()
        self.record.metrics[step.section] = {"events": len(batch), **info}
        if not self._cross_section:  # the pipeline's first truth normalizes what is generated from it
            self._cross_section = cross_section_meta({**batch.meta, **info})
            self._process = str(batch.meta.get("process") or info.get("process") or "")
        self.record.truths[step.section] = {"beams": batch.beams, "cuts": stage.cuts(),
                                            "exact_density": stage.exact_density()}
        if len(self.record.truths) == 1:  # the pipeline's observables must be computable on its truth
            with in_file(self.config.source):
                self.config.observables.check(batch)

    def generator(self, step: Step, stage: Generator) -> None:
        train, valid = (self.record.samples[n] for n in step.train_on)
        discriminator = next((s for s in self.stages.values() if s.kind == "discriminator"), None)
        history = stage.fit(train, valid, discriminator)
        self.record.histories[step.section] = history
        self._save_checkpoint(step.section, stage)
        reference = self.record.samples[step.reference]
        n = self.config.settings.generate or len(reference)
        conditions: dict[str, Any] = {}
        if stage.conditions:  # the truth's own condition values, event by event (resampled jointly if n differs)
            rows = np.arange(len(reference)) if n == len(reference) else \
                stage.ctx.rng("conditions").choice(len(reference), size=n)
            for name in stage.conditions:
                conditions[name] = self.config.observables.values(reference, name)[rows]
        generated = stage.sample(n, stage.ctx.seed_sequence("generate"), conditions or None)
        self.record.samples[step.outputs[0]] = generated
        self._made_by[step.outputs[0]] = step.section
        self.record.metrics[step.section] = stage.info()

    def detector(self, step: Step, stage: Detector) -> None:
        if stage.trainable:
            vertex, detector = (self.record.samples[n] for n in step.train_on)
            self.record.histories[step.section] = stage.fit(vertex, detector)
            self._save_checkpoint(step.section, stage)
        for name, out in zip(step.inputs, step.outputs, strict=True):
            self.record.samples[out] = stage.fold(self.record.samples[name], stage.ctx.seed_sequence("fold", name))
            if stage.trainable:
                self._made_by[out] = step.section
        self.record.metrics[step.section] = stage.info()

    def _unfolding_inputs(self, step: Step) -> UnfoldingInputs:
        samples = self.record.samples
        simulation = tuple(samples[n] for n in step.simulation) if step.simulation else None
        surrogate = self.stages[step.surrogate] if step.surrogate else None  # None: an ibu or omnifold needs none
        return UnfoldingInputs(samples[step.inputs[0]], step.inputs[0], surrogate,
                               step.surrogate or "", samples.get(step.reference) if step.reference else None,
                               step.reference, simulation, list(step.simulation))  # type: ignore[arg-type]

    def check_unfoldings(self) -> None:
        """Check the inputs of every unfolding whose samples exist now and that was not checked yet
        (:meth:`Unfolding.check_inputs`): called before each step, so a bad unfolding setting fails before the
        stages between (a surrogate's training) run."""
        for step in [s for s in self._unchecked if all(n in self.record.samples for n in _unfolding_samples(s))]:
            self._unchecked.remove(step)
            stage = self.stages[step.section]
            if isinstance(stage, Unfolding):
                stage.check_inputs(self._unfolding_inputs(step), self.record)

    def unfolding(self, step: Step, stage: Unfolding) -> None:
        inputs = self._unfolding_inputs(step)
        results = stage.unfold(inputs, self.record)
        prefix = "" if step.section == "unfolding" else f"{step.section}_"
        for key, batch in results.items():
            self.record.samples[f"{prefix}{key}"] = batch
        self.record.metrics[step.section] = stage.info()

    def report(self, step: Step, stage: Report) -> None:
        if not is_main_process():  # under torchrun only rank 0 writes; the others' folders are scratch
            return
        self._write_samples()
        files = stage.write(self.record)
        self.record.metrics.setdefault(step.section, {})["files"] = [str(f) for f in files]

    # -- helpers ----------------------------------------------------------------------
    def _save_checkpoint(self, section: str, stage: Stage) -> None:
        from mlegpipe.checkpoint import save_stage

        path = self.work_dir / "checkpoints" / f"{section}.pt"
        truth = next(iter(self.record.truths.values()), {})
        beams = truth.get("beams")
        extra = {"cross_section": self._cross_section, "beams": beams.to_dict() if beams is not None else None,
                 "process": self._process}
        save_stage(path, stage, seed=self.config.settings.seed, extra=extra)

    def _sample_meta(self, name: str, batch: EventBatch) -> dict[str, Any]:
        """Provenance of one run output: σ (the truth's, stated as such for generated events), seeds, config."""
        from mlegpipe.provenance import sha256_file

        meta = {**batch.meta, "sample": name, "pipeline": self.config.settings.name,
                "seed": self.config.settings.seed, "mlegpipe_version": __version__,
                "config": self._config_text}
        if batch.beams is not None:
            meta["beams"] = batch.beams.to_dict()
        origin = None if name in self._truth_samples else "the truth sample of this run (generated and unfolded " \
            "events carry the σ of the sample they were trained on)"
        meta.update(cross_section_meta(self._cross_section, origin=origin))
        if self._process:
            meta.setdefault("process", self._process)
        section = self._made_by.get(name)
        checkpoint = self.work_dir / "checkpoints" / f"{section}.pt"
        if section is not None and checkpoint.is_file():
            if section not in self._checkpoint_sha256:  # hashed once per trained section, not per sample
                self._checkpoint_sha256[section] = sha256_file(checkpoint)
            meta.update({"checkpoint": f"checkpoints/{checkpoint.name}",
                         "checkpoint_sha256": self._checkpoint_sha256[section],
                         "training_seed": self.config.settings.seed, "generation_seed": self.config.settings.seed})
        return meta

    def _write_samples(self) -> None:
        from mlegpipe.formats import format_for, open_writer

        if not is_main_process():
            return
        formats = [format_for("", f) for f in ["root", *self.config.settings.also_write]]
        for name, batch in self.record.samples.items():
            paths = {fmt.name: self.work_dir / f"{name}{fmt.extensions[0]}" for fmt in formats}
            missing = {fmt: path for fmt, path in paths.items() if not path.exists()}
            meta = self._sample_meta(name, batch) if missing else {}  # once per sample, for all its formats
            for fmt, path in missing.items():
                with in_file(self.config.source), open_writer(path, meta, format=fmt) as writer:
                    writer.write(batch)

    def _write_metrics(self) -> None:
        out = {"pipeline": self.config.settings.name, "seed": self.config.settings.seed,
               "version": __version__, "timings_s": self.record.timings, "stages": self.record.metrics}
        tmp = self.work_dir / "metrics.json.tmp"
        tmp.write_text(json.dumps(out, indent=2, default=_jsonable), encoding="utf-8")
        os.replace(tmp, self.work_dir / "metrics.json")

    def run(self) -> None:
        handlers = {"truth": self.truth, "generator": self.generator, "detector": self.detector,
                    "unfolding": self.unfolding, "report": self.report}
        for step in self.steps:
            stage = self.stages[step.section]
            handler = handlers.get(step.spec.kind)
            if handler is None:  # discriminators are used by the stages that train against them
                continue
            self.check_unfoldings()
            log.info("[%s] %s: %s", step.section, step.spec.plugin.name, step.spec.plugin.summary)
            start = time.perf_counter()
            handler(step, stage)  # type: ignore[arg-type]
            self.record.timings[step.section] = round(time.perf_counter() - start, 3)
            log.info("[%s] done in %.1f s", step.section, self.record.timings[step.section])
            self._write_metrics()
        self._write_samples()
        self._write_metrics()


def _unfolding_samples(step: Step) -> list[str]:
    """The samples an unfolding step reads: its data, the simulation pairs and the data's truth."""
    return [*step.inputs[:1], *step.simulation, *([step.reference] if step.reference else [])]


def _portable_config(config: PipelineConfig) -> str:
    """The resolved pipeline as TOML for file metadata, without where it was read from or written to (so the
    same pipeline and seed give byte-identical files wherever they run)."""
    import tomli_w

    resolved = config.resolved()
    resolved["pipeline"] = {k: v for k, v in resolved.get("pipeline", {}).items() if k != "output"}
    return tomli_w.dumps(resolved)


def _jsonable(obj: Any) -> Any:
    from mlegpipe.rootio import json_default

    try:
        return json_default(obj)
    except TypeError:
        return repr(obj)


def _attach_log(work_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(work_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mlegpipe").addHandler(handler)
    return handler


def check_run_folder(config: PipelineConfig, output: str | None, force: bool) -> Path:
    """The run folder, which must not exist unless ``force`` (the old run is replaced once the new one is complete).

    Raises:
        OutputError: the folder exists and ``force`` is not set.
    """
    run_dir = run_folder(config, output)
    if run_dir.exists() and not force:
        raise OutputError("the run folder exists already; use --force to replace it (the old run is kept "
                          "until the new one is complete) or choose another --output", path=str(run_dir))
    return run_dir


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the output folder: {err.strerror}", path=str(folder)) from None
    if not os.access(folder, os.W_OK):
        raise OutputError("the output folder is not writable", path=str(folder))


def run_pipeline(
    config: PipelineConfig,
    *,
    output: str | None = None,
    force: bool = False,
    resume: bool = False,
    progress: bool | None = None,
) -> Path:
    """Run ``config`` and return the completed run folder.

    Arguments:
        config: a validated pipeline.
        output: run folder (default ``pipeline.output``).
        force: replace an existing run folder (only once the new run is complete).
        resume: continue the partial run left by an interrupted ``run``.
        progress: show progress bars (default: when stderr is a terminal).

    Raises:
        OutputError: the run folder exists (without ``force``) or cannot be written.
    """
    run_dir = check_run_folder(config, output, force)
    _check_writable(run_dir.parent)
    work_dir = run_dir.parent / f".{run_dir.name}.partial"
    if resume:
        if not work_dir.is_dir():
            raise OutputError("nothing to resume: no partial run found", path=str(work_dir))
        for stale in work_dir.glob("*.root"):
            stale.unlink()
    else:
        if work_dir.exists():
            shutil.rmtree(work_dir)
        work_dir.mkdir(parents=True)
    (work_dir / "config.toml").write_text(config.resolved_toml(), encoding="utf-8")
    if progress is None:
        progress = sys.stderr.isatty()
    handler = _attach_log(work_dir)
    try:
        if config.settings.threads:
            import torch

            torch.set_num_threads(config.settings.threads)
        log.info("mlegpipe %s: pipeline %r from %s, seed %d", __version__, config.settings.name, config.source,
                 config.settings.seed)
        _Runner(config, work_dir, progress, resume).run()
    finally:
        logging.getLogger("mlegpipe").removeHandler(handler)
        handler.close()
    if run_dir.exists():
        trash = run_dir.parent / f".{run_dir.name}.old"
        if trash.exists():
            shutil.rmtree(trash)
        os.replace(run_dir, trash)
        os.replace(work_dir, run_dir)
        shutil.rmtree(trash)
    else:
        os.replace(work_dir, run_dir)
    return run_dir
