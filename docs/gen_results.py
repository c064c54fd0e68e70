"""The results pages, generated at every documentation build from the benchmarks' JSON in ``docs/results/data/``.

Each file there holds a ``figures`` list of :class:`benchmarks.Figure` dicts,
the schema every benchmark writes into ``benchmarks/results/`` (``python -m
benchmarks`` collects the same lists), plus a few keys for the page:

- ``benchmark``: the script (``bench_ttbar``); files of one benchmark share a page;
- ``title``, ``command`` (how to regenerate it), ``source`` (where the figures come from);
- ``notes``: the measurement-notes page with the full context (optional);
- ``groups``: a description per figure group (optional);
- ``pivot``: render each group as a table of rows × columns from names ``"ROW: COLUMN"`` (optional);
- ``machine``, ``timestamp``, ``args``: as the benchmarks write them (optional).

:func:`generate` returns ``{path: markdown}`` for ``results/index.md`` and one
``results/<benchmark>.md`` per benchmark; ``docs/hooks.py`` adds them to the
build, so the pages are never committed.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["DATA", "fmt", "generate", "load"]

DOCS = Path(__file__).resolve().parent
DATA = DOCS / "results" / "data"
ROOT = DOCS.parent
_UNITS_IN_CELL = {"%", "s", "GeV", "bins"}


def _figure_class() -> type:
    """:class:`benchmarks.Figure`, the benchmarks' own schema (the repository root put on sys.path if needed)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import Figure

    return Figure


def load(path: Path) -> dict[str, Any]:
    """One results file, its figures checked against :class:`benchmarks.Figure` (a wrong key is an error)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    figure = _figure_class()
    if not isinstance(data.get("figures"), list):
        raise ValueError(f"{path}: no 'figures' list")
    data["figures"] = [figure(**item) for item in data["figures"]]
    data.setdefault("benchmark", path.stem)
    data["file"] = path.name
    return data


def fmt(x: Any) -> str:
    """A figure's number as the notes write it: short values as they are, others to three digits, k and M."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.3g}k"
    if x.is_integer():
        return str(int(x))
    if abs(x) < 1e-3:
        return f"{x:.2g}"
    short = repr(x)
    if len(short.lstrip("-0.").replace(".", "")) <= 4:
        return short
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:#.3g}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _decimals(x: Any) -> int | None:
    """Decimals of a short number below 10 as written (0.81: 2); None for long ones (measured, not transcribed)."""
    if x is None or isinstance(x, bool) or not math.isfinite(float(x)) or abs(float(x)) >= 10 or \
            (x and abs(float(x)) < 1e-3):
        return None
    short = repr(float(x))
    if "e" in short or len(short.lstrip("-0.").replace(".", "")) > 4:
        return None
    return 0 if float(x).is_integer() else len(short.partition(".")[2])


def _value(f: Any, decimals: int | None = None) -> str:
    text = fmt(f.value) if decimals is None or _decimals(f.value) is None else f"{float(f.value):.{decimals}f}"
    if f.unit in _UNITS_IN_CELL:
        text += f" {f.unit}"
    return f"**{text}**" if f.meets is False else text


def _flat_table(figures: list[Any]) -> list[str]:
    out = ["| figure | value | reference | ratio | target | note |", "|---|---|---|---|---|---|"]
    for f in figures:
        ref = _cell(f.reference)
        if f.reference_value is not None and not (isinstance(f.reference_value, float) and
                                                  math.isnan(f.reference_value)):
            ref += f": {fmt(f.reference_value)} {_cell(f.unit)}".rstrip()
        verdict = "" if f.meets is None else (" ✓" if f.meets else " ✗")
        value = f"{fmt(f.value)} {_cell(f.unit)}".strip()
        out.append(f"| {_cell(f.name)} | {'**' + value + '**' if f.meets is False else value} | {ref} | "
                   f"{fmt(f.ratio)} | {_cell(f.target)}{verdict} | {_cell(f.note)} |")
    return out


def _pivot_table(figures: list[Any]) -> list[str]:
    rows: dict[str, dict[str, Any]] = {}
    columns: list[str] = []
    for f in figures:
        row, _, column = f.name.rpartition(": ")
        rows.setdefault(row, {})[column] = f
        if column not in columns:
            columns.append(column)
    out = ["| | " + " | ".join(_cell(c) for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    decimals = {}
    for column in columns:  # a column of transcribed figures keeps the notes' decimals: 0.90 beside 1.28
        values = [cells[column].value for cells in rows.values() if column in cells]
        found = [_decimals(v) for v in values if v is not None and abs(float(v)) < 10]
        decimals[column] = max(found) if found and None not in found else None
    for row, cells in rows.items():
        texts = []
        for column in columns:
            f = cells.get(column)
            if f is None:
                texts.append("")
                continue
            text = _value(f, decimals[column])
            if f.note:
                note = _cell(f.note)
                text += f" {note}" if note[0] in "(±" else f" ({note})"
            texts.append(text)
        out.append(f"| {_cell(row)} | " + " | ".join(texts) + " |")
    units = sorted({f.unit for f in figures if f.unit and f.unit not in _UNITS_IN_CELL})
    targets = sorted({f.target for f in figures if f.target})
    legend = []
    if units:
        legend.append("units: " + ", ".join(units))
    if targets:
        legend.append("targets (on the ratio to the reference): " + ", ".join(targets) + "; **bold** misses its "
                      "target")
    if legend:
        out += ["", "<small>" + "; ".join(legend) + ".</small>"]
    return out


def _machine(data: dict[str, Any]) -> str:
    m = data.get("machine") or {}
    if not m:
        return ""
    parts = [f"{k} {m[k]}" for k in ("python", "torch", "mlegpipe") if m.get(k)]
    if m.get("cpu_count"):
        parts.append(f"{m['cpu_count']} CPUs")
    if m.get("load_average"):
        parts.append("load " + " / ".join(f"{x:.2f}" for x in m["load_average"]))
    when = f" ({data['timestamp']})" if data.get("timestamp") else ""
    return "Machine: " + ", ".join(parts) + when + "."


def _section(data: dict[str, Any], level: str) -> list[str]:
    out = [f"{level} {data.get('title') or data['file']}", ""]
    out += [f"Data: [`docs/results/data/{data['file']}`](data/{data['file']}). "
            f"Source: {data.get('source', 'benchmark output')}.", ""]
    if data.get("notes"):
        out += [f"Context and discussion: [measurement notes](../{data['notes']}).", ""]
    machine = _machine(data)
    if machine:
        out += [machine, ""]
    if data.get("command"):
        out += ["Regenerate:", "", "```bash", data["command"], "```", ""]
    groups: dict[str, list[Any]] = defaultdict(list)
    for f in data["figures"]:
        groups[f.group or data["benchmark"]].append(f)
    described = data.get("groups") or {}
    for group, figures in groups.items():
        out += [f"{level}# {group}", ""]
        if described.get(group):
            out += [described[group], ""]
        out += _pivot_table(figures) if data.get("pivot") else _flat_table(figures)
        out.append("")
    return out


def generate(data_dir: Path = DATA) -> dict[str, str]:
    """The results pages by path relative to ``docs/``: ``results/index.md`` and one page per benchmark."""
    by_benchmark: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(data_dir.glob("*.json")):
        data = load(path)
        by_benchmark[data["benchmark"]].append(data)
    pages: dict[str, str] = {}
    index = ["# Results", "",
             "Figures measured by the benchmarks under `benchmarks/`, rendered at every documentation build from "
             "the JSON committed in `docs/results/data/` (the `figures` schema every benchmark writes into "
             "`benchmarks/results/`). Each figure is measured beside its reference in the same run. The "
             "measurement notes keep the context, the discussion and the figures that are prose rather than "
             "tables.", "",
             "To refresh a page: run the command it names (cheap ones in seconds, the trainings for minutes to an "
             "hour on 2 cores), copy the JSON it writes from `benchmarks/results/` into `docs/results/data/`, keep "
             "or add the keys `benchmark`, `title`, `command`, `source` (see `docs/gen_results.py`), and rebuild "
             "the documentation (`make docs`). `python -m benchmarks` (`make bench`) runs the quick suite and "
             "writes `benchmarks/results/summary.json` in the same schema.", "",
             "| benchmark | pages' data | figures | regenerate |", "|---|---|---|---|"]
    for benchmark, files in sorted(by_benchmark.items()):
        title = "; ".join(_cell(d.get("title") or d["file"]) for d in files)
        count = sum(len(d["figures"]) for d in files)
        commands = "<br>".join(f"`{_cell(d['command'].split('  #')[0].strip())}`" for d in files if d.get("command"))
        index.append(f"| [{benchmark}]({benchmark}.md) | {title} | {count} | {commands} |")
        if len(files) == 1:
            body = [f"# {files[0].get('title') or benchmark}", "", f"Benchmark `benchmarks/{benchmark}.py`.", "",
                    *_section(files[0], "#")[2:]]
        else:
            body = [f"# {benchmark}", "", f"Benchmark `benchmarks/{benchmark}.py`, {len(files)} result files.", ""]
            for data in files:
                body += _section(data, "##")
        pages[f"results/{benchmark}.md"] = "\n".join(body)
    index += ["", "Measurement notes (moved from the README, with every figure it quoted):", "",
              "- [Generators](../notes/generators.md)", "- [LHC top pairs](../notes/lhc-top-pairs.md)",
              "- [Detector surrogates](../notes/detector-surrogates.md)", "- [Unfolding](../notes/unfolding.md)",
              "- [Interpretation](../notes/interpretation.md)", "- [Performance](../notes/performance.md)", ""]
    pages["results/index.md"] = "\n".join(index)
    return pages


if __name__ == "__main__":
    for path, text in generate().items():
        print(f"<!-- {path} -->\n{text}\n")
