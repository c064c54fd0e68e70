"""The documentation site: the generated plugin reference covers every plugin and parameter, the results pages
render the committed benchmark JSON, and the site builds with warnings as errors (when MkDocs is installed).

The reference and results pages are generated at build time by ``docs/hooks.py`` from
``docs/gen_reference.py`` and ``docs/gen_results.py``; these tests call the generators directly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re
import subprocess
import sys
import typing
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, get_args, get_origin

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DATA = DOCS / "results" / "data"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def registry() -> Any:
    from mlegpipe.registry import load_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_plugins()


@pytest.fixture(scope="module")
def reference(registry: Any) -> dict[str, str]:
    return _module("gen_reference").generate(registry)


@pytest.fixture(scope="module")
def results() -> dict[str, str]:
    return _module("gen_results").generate()


def _section(page: str, name: str) -> str:
    """The part of a reference page under ``## name``."""
    match = re.search(rf"^## {re.escape(name)}\n(.*?)(?=^## |\Z)", page, flags=re.M | re.S)
    assert match, f"no section '## {name}'"
    return match.group(1)


def _nested(tp: Any) -> tuple[type | None, bool]:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp, False
    args = [a for a in get_args(tp) if a is not Ellipsis]
    if get_origin(tp) in (list, tuple) and len(args) == 1 and dataclasses.is_dataclass(args[0]):
        return args[0], True
    for arg in args:
        found = _nested(arg)
        if found[0] is not None:
            return found
    return None, False


def _parameter_names(params: type, prefix: str = "") -> list[str]:
    """Every parameter of a Params dataclass, nested tables as ``table.key`` / ``table[].key``."""
    hints = typing.get_type_hints(params)
    names = []
    for field in dataclasses.fields(params):
        names.append(prefix + field.name)
        inner, many = _nested(hints[field.name])
        if inner is not None:
            names += _parameter_names(inner, f"{prefix}{field.name}{'[]' if many else ''}.")
    return names


def test_one_reference_page_per_stage_kind(registry: Any, reference: dict[str, str]) -> None:
    for kind in registry.kinds():
        assert f"reference/plugins/{kind}.md" in reference, kind
    assert "reference/plugins/extensions.md" in reference and "reference/pipeline.md" in reference


def test_reference_lists_every_plugin_and_every_parameter(registry: Any, reference: dict[str, str]) -> None:
    infos = registry.all()
    assert len(infos) >= 20
    for info in infos:
        section = _section(reference[f"reference/plugins/{info.kind}.md"], info.name)
        assert f'plugin = "{info.name}"' in section
        for name in _parameter_names(info.cls.Params):
            assert f"| `{name}` |" in section, f"{info.kind} plugin {info.name}: parameter {name} missing"


def test_reference_shows_defaults_ranges_choices_and_docs(registry: Any, reference: dict[str, str]) -> None:
    flow = _section(reference["reference/plugins/generator.md"], "flow")
    row = next(line for line in flow.splitlines() if line.startswith("| `steps` |"))
    assert "`2500`" in row and "≥ 1" in row and "optimizer steps" in row
    row = next(line for line in flow.splitlines() if line.startswith("| `hidden` |"))
    assert "`[64, 64]`" in row and "list[int]" in row
    smear = _section(reference["reference/plugins/detector.md"], "smear")
    assert "| `devices[].variable` |" in smear  # a list of tables, flattened
    for info in registry.all():
        for field in dataclasses.fields(info.cls.Params):
            doc = field.metadata.get("doc", "")
            if doc:
                text = doc.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()
                assert text in reference[f"reference/plugins/{info.kind}.md"], (info.name, field.name)


def test_extension_page_lists_everything_the_hooks_registered(registry: Any, reference: dict[str, str]) -> None:
    from mlegpipe.registry import EXTENSIONS

    page = reference["reference/plugins/extensions.md"]
    for attribute in EXTENSIONS:
        entries = registry.extension(attribute)
        assert len(entries) > 0, attribute
        for name in entries.names():
            assert f"| `{name}` |" in page, f"{attribute}: {name} missing"


def test_pipeline_page_lists_the_pipeline_table_and_the_runner_keys(reference: dict[str, str]) -> None:
    from mlegpipe.config import RESERVED_KEYS, PipelineSettings

    page = reference["reference/pipeline.md"]
    for field in dataclasses.fields(PipelineSettings):
        assert f"| `{field.name}` |" in page
    for key in RESERVED_KEYS:
        assert f"| `{key}` |" in page


def test_generated_pages_are_not_committed(reference: dict[str, str], results: dict[str, str]) -> None:
    for path in [*reference, *results]:
        assert not (DOCS / path).exists(), f"docs/{path} is generated at build time; do not commit it"


def test_results_data_follow_the_benchmark_schema() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import Figure
    finally:
        sys.path.remove(str(ROOT))
    files = sorted(DATA.glob("*.json"))
    assert len(files) >= 5
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("benchmark", "title", "command", "source", "figures"):
            assert data.get(key), f"{path.name}: no {key!r}"
        assert (ROOT / "benchmarks" / f"{data['benchmark']}.py").is_file(), f"{path.name}: no such benchmark"
        assert data["figures"], path.name
        for item in data["figures"]:
            figure = Figure(**item)  # the benchmarks' own schema: an unknown or missing key fails here
            assert isinstance(figure.value, int | float) and math.isfinite(figure.value), (path.name, item)
        if data.get("notes"):
            assert (DOCS / data["notes"]).is_file(), f"{path.name}: notes page {data['notes']} missing"


def test_results_pages_render_every_figure(results: dict[str, str]) -> None:
    assert "results/index.md" in results
    for path in sorted(DATA.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        page = results[f"results/{data['benchmark']}.md"]
        assert data["command"] in page, f"{path.name}: the regenerate command is not on the page"
        assert f"[{data['benchmark']}]({data['benchmark']}.md)" in results["results/index.md"]
        for item in data["figures"]:
            row, _, column = item["name"].rpartition(": ")
            names = (row, column) if data.get("pivot") else (item["name"],)
            for name in names:
                assert name.replace("|", "\\|") in page, f"{path.name}: {item['name']!r} not rendered"


def _spellings(value: float) -> list[str]:
    """How the notes may have written a number: 0.81, 1.90, 1.98M, 655k, 7 × 10⁴, 6.2e-13, +0.0040."""
    out = {f"{value:g}", f"{value:.1f}", f"{value:.2f}", f"{value:.3f}", f"{value:.4f}", f"{value:+.4f}"}
    if value.is_integer():
        out.add(str(int(value)))
    if abs(value) >= 1e3:
        out |= {f"{value / 1e3:g}k", f"{value / 1e6:g}M"}
        exponent = int(math.floor(math.log10(abs(value))))
        mantissa = value / 10**exponent
        out.add(f"{mantissa:g} × 10" + str(exponent).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")))
    if 0 < abs(value) < 1e-3:
        out.add(f"{value:.1e}".replace("e-", "e-").replace("e-0", "e-"))
    return sorted(out)


def test_transcribed_figures_are_the_notes_figures() -> None:
    """Figures copied from the measurement notes (not written by a benchmark run) are numbers the notes state."""
    notes = "\n".join(p.read_text(encoding="utf-8") for p in sorted((DOCS / "notes").glob("*.md"))).replace("**", "")
    checked = 0
    for path in sorted(DATA.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "transcribed" not in data["source"]:
            continue
        for item in data["figures"]:
            value = float(item["value"])
            found = any(re.search(rf"(?<![\d.]){re.escape(s)}(?![\d])", notes) for s in _spellings(value))
            assert found, f"{path.name}: {item['name']} = {value} is not a figure of the measurement notes"
            checked += 1
    assert checked > 100


def test_nav_names_only_existing_or_generated_pages(reference: dict[str, str], results: dict[str, str]) -> None:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:"):]
    pages = re.findall(r"([\w./-]+\.md)\s*$", nav, flags=re.M)
    assert len(pages) > 20
    for page in pages:
        assert (DOCS / page).is_file() or page in reference or page in results, f"nav names a missing page {page}"


def test_readme_links_into_the_docs_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert len(links) > 10
    for link in links:
        assert (ROOT / link).exists(), f"README links to a missing {link}"


@pytest.mark.slow
def test_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    site = tmp_path / "site"
    assert (site / "reference" / "plugins" / "generator" / "index.html").is_file()
    assert (site / "results" / "bench_generators" / "index.html").is_file()
    assert "load_generator" in (site / "reference" / "python-api" / "index.html").read_text(encoding="utf-8")
