"""Shared plotting set-up: mplhep's CMS-like style, Agg canvases, PNG and PDF output, the beam/process label.

Figures are built with ``matplotlib.figure.Figure`` (never ``pyplot``), so no
GUI backend or global figure registry is involved and figures are freed when
dropped. :func:`run_label` writes what collided (``ep  √s = 318.7 GeV``,
``pp → tt̄  √s = 13 TeV``) and :func:`label_figure` puts it above a figure
where mplhep puts its energy label.

Example:
    >>> fig, ax = new_figure()
    >>> png_bytes(fig)[:4] == b"\\x89PNG", pdf_bytes(fig)[:4] == b"%PDF"
    (True, True)
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import mplhep
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from mlegpipe.beams import Beams

__all__ = ["MODEL_COLOR", "PROCESS_LABELS", "REFERENCE_COLOR", "STYLE", "label_figure", "new_figure", "pdf_bytes",
           "png_bytes", "process_label", "run_label", "save_figure", "save_png", "styled"]

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


def pdf_bytes(fig: Figure) -> bytes:
    """The figure rendered as PDF (vector graphics, no creation date: the same drawing gives the same bytes).

    Example:
        >>> fig, ax = new_figure()
        >>> pdf_bytes(fig)[:5]
        b'%PDF-'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf", metadata={"CreationDate": None, "Creator": "mlegpipe"})
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path, dpi: int = 90) -> Path:
    """Write the figure as PNG (creating the folder); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(fig, dpi))
    return path


def save_figure(fig: Figure, path: str | Path, dpi: int = 90, pdf: bool = True) -> list[Path]:
    """Write the figure as ``path`` (PNG) and, with ``pdf``, as PDF beside it; return the files.

    Example:
        >>> import tempfile
        >>> fig, ax = new_figure()
        >>> [p.name for p in save_figure(fig, Path(tempfile.mkdtemp()) / "f.png")]
        ['f.png', 'f.pdf']
    """
    files = [save_png(fig, path, dpi)]
    if pdf:
        files.append(files[0].with_suffix(".pdf"))
        files[1].write_bytes(pdf_bytes(fig))
    return files


#: How a truth's ``process`` metadata is written on plots (matplotlib mathtext); others are shown as they are.
PROCESS_LABELS: dict[str, str] = {
    "dis": "DIS", "ttbar": r"$t\bar{t}$", "ttbar-allhad": r"$t\bar{t}$ (all-hadronic)",
    "ttbar-semilep": r"$t\bar{t}$ ($\ell$+jets)", "ttbar-dilep": r"$t\bar{t}$ (dileptonic)",
    "custom": "",
}


def process_label(process: str | None) -> str:
    r"""A process name for plots: ``ttbar-semilep`` → ``$t\bar{t}$ ($\ell$+jets)``; unknown names unchanged.

    Example:
        >>> process_label("ttbar"), process_label("Z+jets"), process_label(None)
        ('$t\\bar{t}$', 'Z+jets', '')
    """
    if not process:
        return ""
    return PROCESS_LABELS.get(str(process).lower(), str(process))


def _energy(sqrt_s: float) -> str:
    return f"{sqrt_s / 1000:.4g} TeV" if sqrt_s >= 1000 else f"{sqrt_s:.4g} GeV"


def run_label(beams: Beams | None, process: str | None = None, meta: Mapping[str, Any] | None = None) -> str:
    r"""What collided, for a plot: beam kind, process and √s (``ep  √s = 318.7 GeV``, ``pp → tt̄  √s = 13 TeV``).

    ``process`` defaults to ``meta["process"]`` (a truth source's metadata). Beams with per-event energies
    (an energy scan) say so instead of one √s. Empty when neither beams nor a process are known.

    Example:
        >>> from mlegpipe.beams import Beams
        >>> run_label(Beams.preset("hera")), run_label(Beams.preset("lhc13"), "ttbar")
        ('ep  √s = 318.7 GeV', 'pp → $t\\bar{t}$  √s = 13 TeV')
        >>> run_label(None, meta={"process": "dis"}), run_label(None)
        ('DIS', '')
    """
    what = process_label(process if process is not None else (meta or {}).get("process"))
    if beams is None:
        return what
    kind = beams.kind if beams.kind != "other" else f"{beams.a.name} {beams.b.name}"
    head = f"{kind} → {what}" if what else kind
    energy = "√s per event" if any(beams.fields) else f"√s = {_energy(beams.sqrt_s)}"
    return f"{head}  {energy}"


def label_figure(fig: Figure, text: str, fontsize: float = 11.0) -> None:
    """Write ``text`` above the figure's top-right, where mplhep puts its energy label (nothing if empty).

    On the first axes when it has no title; above the whole figure otherwise (maps side by side, a grid
    of panels, titled panels), so the label never covers a title.

    Example:
        >>> fig, ax = new_figure()
        >>> label_figure(fig, "ep  √s = 318.7 GeV")
        >>> [t.get_text() for t in ax.texts]
        ['ep  √s = 318.7 GeV']
    """
    if not text or not fig.axes:
        return
    ax = fig.axes[0]
    if ax.get_title() or ax.get_title(loc="right") or (len(fig.axes) > 1 and _side_by_side(fig)):
        fig.suptitle(text, x=0.99, ha="right", fontsize=fontsize)
    else:
        ax.text(1.0, 1.01, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=fontsize)


def _side_by_side(fig: Figure) -> bool:
    """True when some visible axes sit beside the first one (a row of maps, a grid) rather than below it."""
    first = fig.axes[0].get_position()
    return any(a.get_visible() and a.get_position().x0 >= first.x1 - 1e-9 and a.get_label() != "<colorbar>"
               for a in fig.axes[1:])
