"""The self-contained HTML run report: summary against targets, metric tables, figures, config, versions.

Plots are embedded as base64 PNG, so ``report.html`` is one file that can be
mailed or archived; every figure is also written as ``plots/<name>.png`` and
``plots/<name>.pdf`` (linked from its caption, for papers and talks). The
header gives the seed, the beams and process, the truth sample's σ and the
versions of the physics and ML libraries. :func:`write_report` is used by the
``html`` report stage; :func:`build_report` rebuilds the page from the files
of a run folder (``mlegpipe report RUN_DIR``).

Example:
    >>> page = render_report({"comparisons": {}, "targets": {}}, {}, [], title="empty run", seed=20240517)
    >>> page.startswith("<!DOCTYPE html>") and "empty run" in page and "seed 20240517" in page
    True
    >>> "σ(truth) not known" in page and "zuko" in page
    True
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import importlib.metadata as md
import json
import os
import platform
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlegpipe import __version__
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError, MlegpipeError, OutputError
from mlegpipe.report.analysis import RunAnalysis, analyse_run, truth_cross_section, truth_setups
from mlegpipe.report.text import math_html, sigma_text

__all__ = ["HEADER_PACKAGES", "build_report", "load_run", "render_report", "versions", "write_report"]

#: The libraries whose versions the page's header gives (all of :func:`versions` are in its Versions table).
HEADER_PACKAGES: tuple[str, ...] = ("mlegpipe", "torch", "zuko", "vector", "pluggy", "uproot", "awkward", "numpy",
                                    "matplotlib")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1250px;
color:#1c1c1c;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td.name,th.name{text-align:left}
td.pass{background:#d5f5d5;color:#0b5d0b;font-weight:600}td.fail{background:#f9d3d3;color:#8b0000;font-weight:600}
td.na{background:#eee;color:#666}
.figs{display:flex;flex-wrap:wrap;gap:10px}.figs figure{margin:0;max-width:600px}
.figs img{max-width:600px;border:1px solid #eee}.figs figure.wide,.figs figure.wide img{max-width:1200px}
figcaption{font-size:.85em;color:#333;margin-top:.2em}figcaption a{margin-left:.4em}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.8em;overflow-x:auto;font-size:.85em}
.meta{color:#555}
"""


def versions() -> dict[str, str]:
    """Versions of Python, mlegpipe and the physics and ML libraries (installed metadata, no imports).

    Example:
        >>> {"python", "mlegpipe", "zuko", "vector", "pluggy"} <= set(versions())
        True
    """
    out = {"python": platform.python_version(), "mlegpipe": __version__}
    for dist in ("torch", "zuko", "numpy", "scipy", "awkward", "uproot", "vector", "pluggy", "hist", "scikit-learn",
                 "matplotlib", "mplhep", "pyarrow"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0:
            return "0"
        if abs(value) >= 1e4 or abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], name_columns: int = 1) -> str:
    head = "".join(f'<th class="name">{html.escape(h)}</th>' if i < name_columns else f"<th>{html.escape(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if isinstance(cell, tuple) and len(cell) == 2 and cell[0] in ("pass", "fail", "na"):
                cells.append(f'<td class="{cell[0]}">{html.escape(cell[1])}</td>')
            elif i < name_columns:
                cells.append(f'<td class="name">{_fmt(cell)}</td>')
            else:
                cells.append(f"<td>{_fmt(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _verdict(passed: bool | None) -> tuple[str, str]:
    return ("na", "n/a") if passed is None else (("pass", "PASS") if passed else ("fail", "FAIL"))


def _summary(metrics: Mapping[str, Any]) -> str:
    rows = []
    for label, target_rows in metrics.get("targets", {}).items():
        for r in target_rows:
            rows.append([label, r["metric"], r["value"], r["target"], _verdict(r["passed"])])
    if not rows:
        return "<p>No comparison of a model sample with truth was possible in this run.</p>"
    s = metrics.get("summary", {})
    head = (f"<p><b>{s.get('passed', 0)} passed</b>, <b>{s.get('failed', 0)} failed</b>, "
            f"{s.get('undefined', 0)} undefined.</p>")
    return head + _table(["comparison", "metric", "value", "target", "verdict"], rows, name_columns=2)


def _comparison_tables(label: str, table: Mapping[str, Any]) -> str:
    parts = [f"<h3>{html.escape(label)}: {html.escape(str(table.get('model_sample')))} vs "
             f"{html.escape(str(table.get('reference_sample')))}</h3>",
             f"<p class='meta'>events: model {_fmt(table.get('n_model'))}, reference {_fmt(table.get('n_reference'))}"
             f", independent reference (floors) {_fmt(table.get('n_reference2'))}. χ²/ndf with both statistical "
             "errors after normalizing; floor = the same figure for two independent truth samples; KL(truth‖model) "
             "with ε = 1e-10; triangular ×10³.</p>"]
    rows = []
    for name, f in table.get("features", {}).items():
        tri, tri_floor = f.get("triangular"), f.get("triangular_floor")
        rows.append([name, f.get("bins"), f.get("chi2_ndf"), f.get("chi2_ndf_floor"), f.get("kl"), f.get("kl_floor"),
                     f.get("w1"), f.get("w1_floor"), None if tri is None else 1e3 * tri,
                     None if tri_floor is None else 1e3 * tri_floor, f.get("outside_range")])
    if rows:
        parts.append(_table(["feature", "bins", "χ²/ndf", "floor", "KL", "KL floor", "W1", "W1 floor", "Δ×10³",
                             "Δ floor×10³", "outside bins"], rows))
    peaks = [[name, label, f[key].get("window_fraction"), f[key].get("pole_fit"), f[key].get("width_fit"),
              f[key].get("fwhm"), f[key].get("iqr")]
             for name, f in table.get("features", {}).items() if "peak" in f
             for key, label in (("peak", "model"), ("peak_reference", "truth"), ("peak_reference2", "truth (floor)"))
             if key in f]
    if peaks:
        parts.append("<p class='meta'>Resonance peaks: fraction of events within the mass window, pole and full "
                     "width of a Cauchy fitted to the peak region, FWHM of the histogram, interquartile range.</p>")
        parts.append(_table(["observable", "sample", "window fraction", "fitted pole", "fitted width", "FWHM", "IQR"],
                            peaks, name_columns=2))
    extra = []
    for j in table.get("joints", {}).values():
        bins = "×".join(str(b) for b in j.get("bins", []))
        extra.append([f"joint {j.get('x')}–{j.get('y')} χ²/ndf ({bins} bins)", j.get("chi2_ndf"),
                      j.get("chi2_ndf_floor")])
        if "holes" in j:
            h, hf = j["holes"], j.get("holes_floor") or {}
            fixed = "×".join(str(b) for b in j.get("thesis_bins", []))
            extra.append([f"holes in {j.get('x')}–{j.get('y')} ({fixed} bins; empty where truth has ≥ 3 events and expects ≥ 5; "
                          f"{h['tested']} bins tested, {h.get('by_chance', float('nan')):.1f} empty by chance; "
                          f"n = {j.get('n_model')} vs {j.get('n_reference')})", h["holes"], hf.get("holes")])
        if "thesis_chi2" in j:
            fixed = "×".join(str(b) for b in j.get("thesis_bins", []))
            extra.append([f"thesis χ² per bin ({fixed} fixed bins; n = {j.get('n_model')} vs {j.get('n_reference')})",
                          j.get("thesis_chi2"), j.get("thesis_chi2_floor")])
    if "classifier" in table:
        c = table["classifier"]
        extra.append([f"classifier AUC (null std {c['auc_null_std']:.4f}, {c['n_test']} test events per class)",
                      c["auc"], None])
    if "mmd2" in table:
        extra.append(["MMD² (standardized features, Gaussian σ = 1)", table["mmd2"], table.get("mmd2_floor")])
    if "memorization" in table:
        m = table["memorization"]
        extra.append([f"memorization: median NN distance ratio (exact copies {m['exact_copies']:.2%})",
                      m["ratio"], None])
    for key in ("physicality", "physicality_reference"):
        if key in table:
            p = table[key]
            detail = ", ".join(f"{k} {v:.2e}" for k, v in p.items() if k not in ("unphysical", "n_events"))
            extra.append([f"unphysical fraction ({'model' if key == 'physicality' else 'truth'}: {detail})",
                          p["unphysical"], None])
    if extra:
        parts.append(_table(["figure", "value", "floor"], extra))
    if table.get("skipped"):
        parts.append("<p class='meta'>not computed: " + "; ".join(
            f"{html.escape(k)} ({html.escape(str(v))})" for k, v in table["skipped"].items()) + "</p>")
    return "".join(parts)


def _figures(sections: Sequence[tuple[str, Sequence[str]]], figures: Mapping[str, bytes],
             captions: Mapping[str, str] | None = None, pdf_links: Mapping[str, str] | None = None) -> str:
    parts = []
    for title, names in sections:
        imgs = []
        for name in names:
            if name not in figures:
                continue
            data = base64.b64encode(figures[name]).decode("ascii")
            wide = " class='wide'" if "__pair__" in name or name.startswith(("detector__", "conditional__")) else ""
            caption = (captions or {}).get(name) or html.escape(name)  # captions are HTML made by the analysis
            link = (pdf_links or {}).get(name)
            pdf = f"<a href='{html.escape(link)}'>[PDF]</a>" if link else ""
            imgs.append(f"<figure{wide}><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
                        f"<figcaption>{caption}{pdf}</figcaption></figure>")
        if imgs:
            parts.append(f"<h2>{html.escape(title)}</h2><div class='figs'>{''.join(imgs)}</div>")
    return "".join(parts)


def _seed(seed: Any) -> str:
    """A seed as it is typed into a config: all digits, no thousands separator.

    Example:
        >>> _seed(1234567), _seed(12345.0), _seed(None)
        ('1234567', '12345', '–')
    """
    if seed is None:
        return "–"
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    return html.escape(str(seed))


def _header(metrics: Mapping[str, Any], seed: Any, sigma: Mapping[str, Any] | None) -> str:
    """The lines under the title: seed, beams and process, σ of the truth sample, library versions."""
    built = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    first = [f"seed {_seed(seed)}", f"built {built}"]
    if metrics.get("run_label"):
        first.insert(1, math_html(str(metrics["run_label"])))
    sigma = sigma if sigma is not None else metrics.get("truth_cross_section")
    where = ""
    if sigma:
        origin = sigma.get("source") or ""
        where = f" <span class='meta'>({html.escape(str(origin))})</span>" if origin else ""
    sigma_line = f"σ(truth) = {html.escape(sigma_text(sigma))}{where}" if sigma else "σ(truth) not known"
    found = versions()
    libraries = " · ".join(f"{html.escape(name)} {html.escape(found.get(name, 'not installed'))}"
                           for name in HEADER_PACKAGES)
    return (f"<p class='meta'>{' · '.join(first)}</p><p class='header'><b>{sigma_line}</b></p>"
            f"<p class='meta'>{libraries}</p>")


def render_report(
    metrics: Mapping[str, Any],
    figures: Mapping[str, bytes],
    sections: Sequence[tuple[str, Sequence[str]]],
    *,
    title: str = "mlegpipe run",
    config_text: str = "",
    stage_metrics: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    seed: int | None = None,
    description: str = "",
    cross_section: Mapping[str, Any] | None = None,
    pdf_links: Mapping[str, str] | None = None,
) -> str:
    """The report page as one HTML string (figures embedded as base64 PNG).

    Arguments:
        metrics: the report's metrics (:class:`~mlegpipe.report.analysis.RunAnalysis`); its ``captions``,
            ``run_label`` and ``truth_cross_section`` go into the captions and the header.
        figures: PNG bytes by figure name; ``sections``: (title, figure names) in page order.
        cross_section: σ of the truth sample (:func:`~mlegpipe.report.analysis.truth_cross_section`;
            default ``metrics["truth_cross_section"]``); absent: "not known".
        pdf_links: figure name → link to its PDF, relative to the page.
        title, config_text, stage_metrics, timings, seed, description: the page's other parts.
    """
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", _header(metrics, seed, cross_section)]
    if description:
        parts.append(f"<p>{html.escape(description)}</p>")
    parts.append("<h2>Summary against targets</h2>" + _summary(metrics))
    comparisons = metrics.get("comparisons", {})
    if comparisons:
        parts.append("<h2>Metrics</h2>")
        parts.extend(_comparison_tables(label, table) for label, table in comparisons.items())
    amp = metrics.get("amplification")
    if amp:
        parts.append("<h3>Amplification</h3>" + _table(["figure", "value"], [
            ["quantile cells", amp["n_quantiles"]], ["training events", amp["n_train"]],
            ["generated events", amp["n_generated"]], ["asymptotic quantile MSE", amp["asymptotic_mse"]],
            ["equivalent true events", amp["equivalent_events"]], ["amplification factor", amp["amplification"]],
            ["training sample's own quantile MSE", amp.get("train_mse")]]))
    cond = metrics.get("conditional_kl")
    if cond:
        rows = [[f, e, v["regime"], v["kl"], v["n_model"]] for f, per in cond.items() for e, v in per.items()]
        parts.append("<h3>KL per beam energy</h3>" + _table(["feature", "E_b [GeV]", "regime", "KL", "events"],
                                                            rows, name_columns=3))
    if metrics.get("skipped"):
        parts.append("<p class='meta'>not computed: " + "; ".join(
            f"{html.escape(k)} ({html.escape(str(v))})" for k, v in metrics["skipped"].items()) + "</p>")
    parts.append(_figures(sections, figures, metrics.get("captions"), pdf_links))
    if stage_metrics:
        parts.append("<h2>Stage figures</h2><pre>" + html.escape(json.dumps(stage_metrics, indent=2, default=str))
                     + "</pre>")
    if timings:
        parts.append("<h2>Timings</h2>" + _table(["section", "seconds"], [[k, float(v)] for k, v in timings.items()]))
    parts.append("<h2>Versions</h2>" + _table(["package", "version"], list(versions().items())))
    if config_text:
        parts.append("<h2>Resolved configuration</h2><pre>" + html.escape(config_text) + "</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def write_report(
    run_dir: str | Path,
    analysis: RunAnalysis,
    output: str | Path | None = None,
    write_plots: bool = True,
    dpi: int = 90,
    **page: Any,
) -> list[Path]:
    """Write ``plots/<name>.png`` and ``.pdf`` and the page (default ``run_dir/report.html``); return the files.

    ``page`` passes through to :func:`render_report` (title, config_text, ...). Each figure's caption links
    its PDF in ``run_dir/plots`` when there is one (written now, or by an earlier run of the report).
    """
    run_dir = Path(run_dir)
    files: list[Path] = []
    plot_dir = run_dir / "plots"
    try:
        if write_plots and analysis.figures:
            plot_dir.mkdir(parents=True, exist_ok=True)
            for name, data in analysis.figures.items():
                for suffix, content in ((".png", data), (".pdf", analysis.pdfs.get(name))):
                    if content is not None:
                        path = plot_dir / f"{name}{suffix}"
                        path.write_bytes(content)
                        files.append(path)
        out = Path(output) if output is not None else run_dir / "report.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        links = {name: Path(os.path.relpath(plot_dir.resolve() / f"{name}.pdf", out.parent.resolve())).as_posix()
                 for name in analysis.figures if (plot_dir / f"{name}.pdf").is_file()}
        page.setdefault("pdf_links", links)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(render_report(analysis.metrics, analysis.figures, analysis.sections, **page), encoding="utf-8")
        tmp.replace(out)
    except OSError as err:
        raise OutputError(f"cannot write the report: {err}", path=str(run_dir)) from None
    files.append(out)
    return files


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read JSON: {err}", path=str(path)) from None


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read a run folder: ``metrics.json`` (required), ``config.toml``, ``histories.json``, ``*.root`` samples.

    Returns:
        dict with ``run_dir``, ``metrics``, ``config_text``, ``config``, ``histories``, ``samples`` (name → path).

    Raises:
        DataError: the folder or its ``metrics.json`` is missing or unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError("no such run folder" if not run_dir.exists() else "not a folder", path=str(run_dir))
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise DataError("not a finished run folder: metrics.json is missing", path=str(run_dir),
                        hint="run the pipeline first with 'mlegpipe run PIPELINE.toml'")
    config_path = run_dir / "config.toml"
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    try:
        config = tomllib.loads(config_text) if config_text else {}
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"TOML syntax error: {err}", path=str(config_path)) from None
    histories_path = run_dir / "histories.json"
    return {"run_dir": run_dir, "metrics": _read_json(metrics_path), "config_text": config_text, "config": config,
            "histories": _read_json(histories_path) if histories_path.is_file() else {},
            "samples": {p.stem: p for p in sorted(run_dir.glob("*.root"))}}


def _report_section(config: Mapping[str, Any]) -> str:
    for section, table in config.items():
        if isinstance(table, Mapping) and (section == "report" or table.get("kind") == "report"):
            return section
    return "report"


def build_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    recompute: bool = True,
    classifier: bool = True,
    dpi: int = 90,
) -> Path:
    """Rebuild the report page of a run folder from its files; return the page's path.

    With ``recompute`` (and sample files present) every metric and plot is
    computed again from the ``*.root`` samples (truth cuts and toy densities
    from ``config.toml``; the report section's ``bins``, ``classifier``,
    ``lower_panel`` and ``pdf``); otherwise the report metrics stored in
    ``metrics.json`` and the PNGs (and PDFs) in ``plots/`` are used. The σ
    of the truth sample comes from its file, else from the truth stage's figures.

    Raises:
        DataError: missing run folder, ``metrics.json`` or unreadable samples.
    """
    run = load_run(run_dir)
    stored = run["metrics"]
    stage_metrics = dict(stored.get("stages", {}))
    section = _report_section(run["config"])
    report_metrics = stage_metrics.pop(section, None) or {}
    settings = run["config"].get("pipeline", {})
    page = {"title": f"mlegpipe run: {settings.get('name', Path(run_dir).name)}", "config_text": run["config_text"],
            "stage_metrics": stage_metrics, "timings": stored.get("timings_s", {}),
            "seed": stored.get("seed", settings.get("seed")), "description": settings.get("description", "")}
    if recompute and run["samples"]:
        from mlegpipe.rootio import read_events

        samples = {name: EventBatch.concat(read_events(path)) for name, path in run["samples"].items()}
        setup = _setup_from_config(run["run_dir"] / "config.toml")
        params = run["config"].get(section, {}) if isinstance(run["config"].get(section), Mapping) else {}
        analysis = analyse_run(samples, setup["plan"], histories=run["histories"], observables=setup["observables"],
                               truths=setup["truths"], conditions=setup["conditions"], bins=int(params.get("bins", 50)),
                               classifier=classifier and bool(params.get("classifier", True)),
                               seed=int(page["seed"] or 0), dpi=dpi, lower_panel=params.get("lower_panel", "pull"),
                               pdf=bool(params.get("pdf", True)))
        analysis.metrics["truth_cross_section"] = truth_cross_section(samples, setup["plan"], stage_metrics,
                                                                      run["run_dir"])
        return write_report(run["run_dir"], analysis, output, write_plots=output is None, **page)[-1]
    analysis = RunAnalysis(metrics={k: v for k, v in report_metrics.items() if k != "files"})
    if analysis.metrics.get("truth_cross_section") is None:
        analysis.metrics["truth_cross_section"] = truth_cross_section({}, None, stage_metrics, run["run_dir"])
    plot_dir = run["run_dir"] / "plots"
    names = sorted(p.stem for p in plot_dir.glob("*.png")) if plot_dir.is_dir() else []
    analysis.figures = {n: (plot_dir / f"{n}.png").read_bytes() for n in names}
    analysis.add_section("Plots", names)
    return write_report(run["run_dir"], analysis, output, write_plots=False, **page)[-1]


def _setup_from_config(config_path: Path) -> dict[str, Any]:
    """The report plan, observables, truth set-ups and generator conditions of a run, from its config."""
    from mlegpipe.plan import ReportPlan

    empty: dict[str, Any] = {"plan": ReportPlan(), "observables": None, "truths": {}, "conditions": {}}
    if not config_path.is_file():
        return empty
    try:
        from mlegpipe.config import load_config
        from mlegpipe.pipeline import build_stages, generator_conditions

        config = load_config(config_path)
        stages = build_stages(config)
        return {"plan": config.report_plan, "observables": config.observables, "truths": truth_setups(stages),
                "conditions": generator_conditions(config, stages)}
    except MlegpipeError as err:
        raise DataError(f"cannot rebuild the run's report plan from its configuration ({err}); rebuild the page "
                        "from the stored metrics with --no-recompute", path=str(config_path)) from None
