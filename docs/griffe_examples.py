"""A griffe extension for the Python API page: mlegpipe's docstrings head their doctests ``Example:``.

Google style, as griffe parses it, knows ``Examples:`` (a section of code and
output); ``Example:`` would become an admonition whose ``>>>`` lines render as
nested quotes. This renames the one into the other before the docstrings are
parsed (``extensions`` of the mkdocstrings handler in mkdocs.yml).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rewrite ``Example:`` section headings to ``Examples:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called for every loaded object."""
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
