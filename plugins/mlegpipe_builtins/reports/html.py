"""Report plugin "html": metrics against targets, physics plots (PNG and PDF) and a self-contained report.html.

Example:
    >>> from mlegpipe.context import StageContext
    >>> p = HtmlReport(HtmlReport.Params(), StageContext("report")).params
    >>> p.bins, p.lower_panel, p.pdf
    (50, 'pull', True)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mlegpipe import __version__, hookimpl
from mlegpipe.exceptions import OutputError
from mlegpipe.plan import ReportPlan
from mlegpipe.schema import param
from mlegpipe.stages import Generator, Report, RunRecord

if TYPE_CHECKING:
    from mlegpipe.registry import StageRegistry

__all__ = ["HtmlReport", "mlegpipe_register_stages"]


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


class HtmlReport(Report):
    """Compare generated, folded and unfolded samples with truth; write metrics.json, plots/ and report.html.

    The comparisons are the pipeline's plan (:func:`mlegpipe.plan.plan_report`):
    each generator section's sample against its truth's test split (floors from
    the validation split, memorization against the training split), folded
    generated samples against the folded truth, learned surrogates against the
    detector they learned, ``unfolded`` against the data's vertex truth and
    ``refolded`` against the data; on the pipeline's observables with 2D maps
    of its pairs; the amplification factor when the truth source is a toy with
    an exact density; distributions per condition value for conditional
    generators; detector response; training curves. The figures go into
    ``record.metrics[<section>]``.

    Every plot carries the beams and process (``ep  √s = 318.7 GeV``), is
    written as PNG and PDF into ``plots/`` and captioned with the observable
    (label and unit) and the samples compared; φ-like observables are drawn on
    a linear density axis. The page's header gives the seed, the σ of the truth
    sample (from its file, else the truth stage) and the versions of mlegpipe,
    torch, zuko, vector, pluggy, uproot, awkward, numpy and matplotlib.
    """

    plugin_name: ClassVar[str] = "html"

    @dataclass
    class Params:
        bins: int = param(50, min=5, max=1000, doc="bins per feature for χ², KL and triangular")
        classifier: bool = param(True, doc="run the classifier two-sample test (ROC AUC)")
        max_classifier_events: int = param(50_000, min=100, doc="events per sample for the classifier")
        plots: bool = param(True, doc="draw the physics plots")
        dpi: int = param(90, min=30, max=300, doc="resolution of the PNG plots")
        title: str = param("", doc="page title (default: the pipeline name)")
        lower_panel: str = param("pull", choices=("pull", "ratio", "both"),
                                 doc="below the 1D distributions: pulls, the ratio to truth with the truth's "
                                     "statistical band, or both")
        pdf: bool = param(True, doc="also write every figure as PDF beside its PNG (linked from the page)")

    def write(self, record: RunRecord) -> list[str]:
        """Compute the metrics and write metrics.json, histories.json, plots/*.png and report.html."""
        from mlegpipe.report.analysis import analyse_run, truth_cross_section
        from mlegpipe.report.html import write_report

        p = self.params
        if record.run_dir is None and self.ctx.run_dir is None:
            raise OutputError("no run folder to write the report into", path=self.ctx.name)
        run_dir = Path(record.run_dir if record.run_dir is not None else self.ctx.run_dir)
        conditions = {c.label: list(stage.conditions) for c in (record.plan.comparisons if record.plan else [])
                      if isinstance(stage := record.stages.get(c.section), Generator)}
        analysis = analyse_run(record.samples, record.plan or ReportPlan(), histories=record.histories,
                               observables=record.observables, truths=record.truths, conditions=conditions,
                               bins=p.bins, classifier=p.classifier,
                               max_classifier_events=p.max_classifier_events, plots=p.plots, dpi=p.dpi,
                               seed=int(record.seed),  # the pipeline seed: `mlegpipe report` reproduces it
                               lower_panel=p.lower_panel, pdf=p.pdf)  # type: ignore[arg-type]
        analysis.metrics["truth_cross_section"] = truth_cross_section(
            record.samples, record.plan, {k: v for k, v in record.metrics.items() if k != self.ctx.name}, run_dir)
        record.metrics[self.ctx.name] = analysis.metrics
        config_path = run_dir / "config.toml"
        config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else _toml(record.config)
        settings = record.config.get("pipeline", {})
        stage_metrics = {k: v for k, v in record.metrics.items() if k != self.ctx.name}
        files = write_report(run_dir, analysis, dpi=p.dpi,
                             title=p.title or f"mlegpipe run: {settings.get('name', run_dir.name)}",
                             config_text=config_text, stage_metrics=stage_metrics, timings=record.timings,
                             seed=record.seed, description=settings.get("description", ""))
        files += self._write_json(run_dir, record)
        return [str(f) for f in files]

    def _write_json(self, run_dir: Path, record: RunRecord) -> list[Path]:
        """metrics.json (the runner's layout, rewritten by the runner later) and histories.json."""
        out = {"pipeline": record.config.get("pipeline", {}).get("name"), "seed": record.seed,
               "version": __version__, "timings_s": record.timings, "stages": record.metrics}
        written = []
        try:
            for name, data in (("metrics.json", out), ("histories.json", record.histories)):
                path = run_dir / name
                tmp = path.with_name(name + ".tmp")
                tmp.write_text(json.dumps(data, indent=2, default=_jsonable), encoding="utf-8")
                os.replace(tmp, path)
                written.append(path)
        except OSError as err:
            raise OutputError(f"cannot write the report metrics: {err}", path=str(run_dir)) from None
        return written


def _toml(config: dict[str, Any]) -> str:
    try:
        import tomli_w

        return tomli_w.dumps(config)
    except (ImportError, TypeError, ValueError):
        return json.dumps(config, indent=2, default=str)


@hookimpl
def mlegpipe_register_stages(registry: StageRegistry) -> None:
    """Register the ``html`` report."""
    registry.add(HtmlReport)
