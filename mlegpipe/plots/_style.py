"""Shared plotting set-up: mplhep's CMS-like style, Agg canvases, PNG output.

Figures are built with ``matplotlib.figure.Figure`` (never ``pyplot``), so no
GUI backend or global figure registry is involved and figures are freed when
dropped.

Example:
    >>> fig, ax = new_figure()
    >>> png_bytes(fig)[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import mplhep
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["MODEL_COLOR", "REFERENCE_COLOR", "STYLE", "new_figure", "png_bytes", "save_png", "styled"]

#: mplhep's CMS style with smaller fonts and no minor ticks, for report-sized figures drawn fast.
STYLE: dict[str, Any] = {**mplhep.style.CMS, "font.size": 13, "axes.labelsize": 14, "xtick.labelsize": 11,
                         "ytick.labelsize": 11, "legend.fontsize": 11, "figure.figsize": (6.4, 5.2),
                         "mathtext.fontset": "dejavusans",
                         # minor ticks double the drawing time of a figure (constrained layout measures them)
                         "xtick.minor.visible": False, "ytick.minor.visible": False}
REFERENCE_COLOR = "black"
MODEL_COLOR = "#e76300"


@contextmanager
def styled() -> Iterator[None]:
    """Apply :data:`STYLE` to everything created inside the block."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    figsize: tuple[float, float] | None = None,
    **subplot_kw: Any,
) -> tuple[Figure, Any]:
    """A figure with an Agg canvas and its axes (``Figure.subplots`` arguments pass through).

    Call inside :func:`styled` for the house style.
    """
    fig = Figure(figsize=figsize or STYLE["figure.figsize"], layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplot_kw)


def png_bytes(fig: Figure, dpi: int = 90) -> bytes:
    """The figure rendered as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path, dpi: int = 90) -> Path:
    """Write the figure as PNG (creating the folder); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(fig, dpi))
    return path
