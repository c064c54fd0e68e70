"""Pipeline files: TOML parsing, command-line overrides, validation against plugin schemas.

A pipeline file has a ``[pipeline]`` table, optionally an ``[observables]``
table (:func:`mlegpipe.observables.observable_set`: derived observables, what
the report compares, 2D pairs), and stage sections that run in file order. A
section is named after its kind (``[truth]``, ``[generator]``, ...) or carries
``kind = "..."``; ``plugin`` names the plugin, every other key is a parameter of
that plugin's ``Params`` dataclass.

Example:
    >>> text = '''
    ... [pipeline]
    ... seed = 3
    ... [truth]
    ... plugin = "camel"
    ... '''
    >>> cfg = parse_config(text, "example.toml")  # doctest: +SKIP
    >>> cfg.settings.seed  # doctest: +SKIP
    3
"""

from __future__ import annotations

import contextlib
import dataclasses
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlegpipe.exceptions import ConfigError, MlegpipeError
from mlegpipe.registry import PluginInfo, StageRegistry, default_registry
from mlegpipe.schema import build_params, param, suggest
from mlegpipe.stages import STAGE_KINDS

__all__ = ["PipelineConfig", "PipelineSettings", "StageSpec", "apply_override", "in_file", "load_config",
           "parse_config", "parse_override_value"]

#: Keys of a stage section that are read by the pipeline runner, not by the plugin.
#: ``inputs``: the samples a stage consumes (detector: samples to fold; unfolding: the data).
#: ``train_on``: what a trainable stage learns from (generator: a truth prefix such as
#: ``"truth"``; learned detector: ``[vertex_sample, detector_sample]``).
#: ``surrogate``: the section of the frozen detector surrogate an unfolding uses.
#: ``judge_on``: a generator's reference truth prefix when it is not the one it learns from (e.g. a
#: conditional generator judged at conditions it never saw); its events give the conditions to generate at.
RESERVED_KEYS = ("plugin", "kind", "inputs", "train_on", "surrogate", "judge_on")
#: Top-level tables that are not stages.
NON_STAGE_SECTIONS = ("pipeline", "observables")


@dataclass
class PipelineSettings:
    """The ``[pipeline]`` table."""

    name: str = param("pipeline", doc="name of the pipeline (used in the output folder)")
    seed: int = param(0, min=0, max=2**63 - 1, doc="the one seed behind every random stream")
    output: str = param("runs/{name}", doc="run folder; {name} is replaced by the pipeline name")
    split: list[float] = param([0.6, 0.2, 0.2], min=0.0, max=1.0,
                               doc="fractions of truth events for training, validation and test")
    generate: int | None = param(None, min=1, doc="events to generate (default: as many as the test set)")
    threads: int | None = param(None, min=1, doc="CPU threads for torch (default: all cores)")
    description: str = param("", doc="free text shown in the report")
    also_write: list[str] = param([], doc="formats every sample is also written in beside ROOT (hepmc3, lhe, "
                                          "parquet): SAMPLE.hepmc, SAMPLE.lhe, SAMPLE.parquet in the run folder")

    def __post_init__(self) -> None:
        from mlegpipe.formats import format_for

        for i, name in enumerate(self.also_write):
            format_for("", name, where=f"pipeline.also_write[{i}]")
        if len(self.split) != 3 or abs(sum(self.split) - 1.0) > 1e-6 or min(self.split) < 0:
            raise ConfigError("must be three non-negative fractions (train, valid, test) adding up to 1",
                              path="pipeline.split", value=self.split)
        if self.split[0] == 0:
            raise ConfigError("the training fraction must be positive", path="pipeline.split", value=self.split)


@dataclass
class StageSpec:
    """One validated stage section."""

    section: str
    kind: str
    plugin: PluginInfo
    params: Any
    raw: dict[str, Any]
    inputs: list[str] | None = None
    train_on: list[str] | None = None
    surrogate: str | None = None
    judge_on: str | None = None


@dataclass
class PipelineConfig:
    """A validated pipeline: settings, stages in file order, and where it came from."""

    source: str
    settings: PipelineSettings
    stages: list[StageSpec]
    registry: StageRegistry
    raw: dict[str, Any] = field(default_factory=dict)
    steps: list[Any] = field(default_factory=list)
    observables: Any = None

    @property
    def report_plan(self) -> Any:
        """What the report compares (:func:`mlegpipe.plan.plan_report` of the planned steps)."""
        from mlegpipe.plan import plan_report

        return plan_report(self.steps)

    def resolved(self) -> dict[str, Any]:
        """The configuration with every default filled in (TOML-able: no None)."""
        out: dict[str, Any] = {"pipeline": _drop_none(dataclasses.asdict(self.settings))}
        if isinstance(self.raw.get("observables"), dict):
            out["observables"] = dict(self.raw["observables"])
        for spec in self.stages:
            table: dict[str, Any] = {}
            if spec.section != spec.kind:
                table["kind"] = spec.kind
            table["plugin"] = spec.plugin.name
            for key in ("inputs", "train_on", "surrogate", "judge_on"):
                if getattr(spec, key) is not None:
                    table[key] = getattr(spec, key)
            if dataclasses.is_dataclass(spec.params):
                table.update(_drop_none(dataclasses.asdict(spec.params)))
            out[spec.section] = table
        return out

    def resolved_toml(self) -> str:
        """:meth:`resolved` as TOML text, with provenance comments."""
        import tomli_w

        return f"# resolved from {self.source}\n" + tomli_w.dumps(self.resolved())

    def stages_of(self, kind: str) -> list[StageSpec]:
        """The stage sections of one kind, in file order."""
        return [s for s in self.stages if s.kind == kind]


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_drop_none(v) for v in obj if v is not None]
    return obj


def parse_override_value(text: str) -> Any:
    """Parse an override value as a TOML value; fall back to a plain string.

    Example:
        >>> parse_override_value("[1.0, 4.0]"), parse_override_value("1e-6"), parse_override_value("jets")
        ([1.0, 4.0], 1e-06, 'jets')
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as TOML, else a string) to ``raw`` in place.

    Example:
        >>> raw = {"generator": {"plugin": "flow"}}
        >>> apply_override(raw, "generator.steps=500")
        >>> raw["generator"]["steps"]
        500
    """
    if "=" not in assignment:
        raise ConfigError("an override must look like section.key=value", path="--set", value=assignment)
    key, _, text = assignment.partition("=")
    parts = [p.strip() for p in key.strip().split(".")]
    if len(parts) < 2 or not all(parts):
        raise ConfigError("an override must name a section and a key, e.g. generator.steps=500",
                          path="--set", value=assignment)
    table = raw
    for i, part in enumerate(parts[:-1]):
        if part not in table:
            if i == 0:
                raise ConfigError("the pipeline has no such section; sections: " + ", ".join(raw),
                                  path="--set", value=assignment, hint=suggest(part, raw))
            table[part] = {}
        table = table[part]
        if not isinstance(table, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])} is not a table", path="--set", value=assignment)
    table[parts[-1]] = parse_override_value(text.strip())


def parse_config(
    text: str,
    source: str,
    overrides: list[str] | None = None,
    registry: StageRegistry | None = None,
) -> PipelineConfig:
    """Parse and validate pipeline TOML text; errors name ``source`` and the TOML path."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"TOML syntax error: {err}", path=source) from None
    from mlegpipe.plan import plan_pipeline

    with in_file(source):
        config = _validate(raw, source, overrides or [], registry)
        config.steps = plan_pipeline(config)
        return config


@contextlib.contextmanager
def in_file(source: str) -> Iterator[None]:
    """Prefix the path of any MlegpipeError raised inside with the pipeline file name."""
    try:
        yield
    except MlegpipeError as err:
        if not (err.path or "").startswith(source):
            err.path = f"{source}: {err.path}" if err.path else source
            err.args = (str(err),)
        raise


def load_config(
    path: str | Path,
    overrides: list[str] | None = None,
    registry: StageRegistry | None = None,
) -> PipelineConfig:
    """Read and validate a pipeline file.

    Raises:
        ConfigError: the file is missing or unreadable, or its content is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such pipeline file" if not path.exists() else "not a file", path=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the pipeline file: {err}", path=str(path)) from None
    return parse_config(text, str(path), overrides, registry)


def _string_list(value: Any, path: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("expected a sample name or a list of sample names", path=path, value=value)
    return list(value)


def _validate(
    raw: dict[str, Any], source: str, overrides: list[str], registry: StageRegistry | None
) -> PipelineConfig:
    for assignment in overrides:
        apply_override(raw, assignment)
    registry = registry or default_registry()
    settings_raw = raw.get("pipeline", {})
    settings = build_params(PipelineSettings, settings_raw, "pipeline")
    from mlegpipe.observables import observable_set

    observables_raw = raw.get("observables", {})
    if not isinstance(observables_raw, dict):
        raise ConfigError("expected a table of observables, e.g. [observables] m_jj = \"mass(jets[0] + jets[1])\"",
                          path="observables", value=observables_raw)
    observables = observable_set(observables_raw, "observables", registry)
    stages: list[StageSpec] = []
    for section, table in raw.items():
        if section in NON_STAGE_SECTIONS:
            continue
        if not isinstance(table, dict):
            raise ConfigError("expected a table ([section]) describing a stage; stage kinds: "
                              + ", ".join(STAGE_KINDS), path=section, value=table,
                              hint=suggest(section, list(STAGE_KINDS) + list(NON_STAGE_SECTIONS)))
        kind = table.get("kind", section)
        if not isinstance(kind, str):
            raise ConfigError("expected a stage kind (string): " + ", ".join(STAGE_KINDS), path=f"{section}.kind",
                              value=kind)
        if kind not in STAGE_KINDS:
            hint = suggest(kind, list(STAGE_KINDS) + ["pipeline"])
            message = ("unknown stage kind; name the section after a kind or add kind = \"...\"; kinds: "
                       + ", ".join(STAGE_KINDS))
            if "kind" in table:
                raise ConfigError(message, path=f"{section}.kind", value=kind, hint=hint)
            raise ConfigError(message, path=section, hint=hint)
        if "plugin" not in table:
            installed = ", ".join(registry.names(kind)) or "none"
            raise ConfigError(f"missing plugin = \"...\"; installed {kind} plugins: {installed}",
                              path=f"{section}.plugin")
        name = table["plugin"]
        if not isinstance(name, str):
            raise ConfigError("expected a plugin name (string)", path=f"{section}.plugin", value=name)
        info = registry.get(kind, name, path=f"{section}.plugin")
        params_raw = {k: v for k, v in table.items() if k not in RESERVED_KEYS}
        params = build_params(info.cls.Params, params_raw, section)
        wiring = {key: _string_list(table[key], f"{section}.{key}") for key in ("inputs", "train_on") if key in table}
        surrogate = table.get("surrogate")
        if surrogate is not None and not isinstance(surrogate, str):
            raise ConfigError("expected the name of a detector section", path=f"{section}.surrogate", value=surrogate)
        judge_on = table.get("judge_on")
        if judge_on is not None and (kind != "generator" or not isinstance(judge_on, str)):
            raise ConfigError("judge_on is a generator's reference truth: the prefix of a truth section (e.g. "
                              "\"truth\" or \"unseen\")", path=f"{section}.judge_on", value=judge_on)
        stages.append(StageSpec(section, kind, info, params, params_raw, surrogate=surrogate, judge_on=judge_on,
                                **wiring))
    if not stages:
        raise ConfigError("the pipeline declares no stage; add at least a [truth] section")
    return PipelineConfig(source, settings, stages, registry, raw, observables=observables)
