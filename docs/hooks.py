"""MkDocs hooks (``hooks:`` in mkdocs.yml): add the generated reference and results pages to every build.

The pages exist only in the build: :mod:`gen_reference` writes one page per
stage kind from the installed plugins' ``Params`` and one of the extension
hooks' registries; :mod:`gen_results` renders ``docs/results/data/*.json``.
The results pages are also added to the navigation, under "Results".
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import gen_reference  # noqa: E402
import gen_results  # noqa: E402

_PAGES: dict[str, str] = {}


def _pages() -> dict[str, str]:
    if not _PAGES:
        _PAGES.update(gen_reference.generate())
        _PAGES.update(gen_results.generate())
    return _PAGES


def on_config(config: Any) -> Any:
    """Generate the pages afresh (every build, ``mkdocs serve`` rebuilds too) and list every benchmark's
    results page under "Results", after the overview."""
    _PAGES.clear()
    pages = sorted(p for p in _pages() if p.startswith("results/") and p != "results/index.md")
    for section in config["nav"] or []:
        if isinstance(section, dict) and "Results" in section:
            items = section["Results"]
            at = next((i + 1 for i, item in enumerate(items) if item == "results/index.md" or
                       (isinstance(item, dict) and "results/index.md" in item.values())), 0)
            titles = [{Path(p).stem: p} for p in pages if p not in str(items)]
            section["Results"] = items[:at] + titles + items[at:]
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages (never written into docs/)."""
    for path, text in _pages().items():
        if files.get_file_from_path(path) is not None:
            raise RuntimeError(f"docs/{path} is generated at build time: remove the committed copy")
        files.append(File.generated(config, path, content=text))
    return files
