"""Figures of model interpretation: hidden-layer maps (thesis Figs. 21-22, 41-42) and loss landscapes (Fig. 45).

All figures are ``matplotlib.figure.Figure`` objects on Agg canvases in the
house style (:mod:`mlegpipe.plots._style`); write them with
:func:`mlegpipe.plots._style.save_png`.

Example:
    >>> import numpy as np
    >>> from mlegpipe.interpret.maps import LayerMap
    >>> rng = np.random.default_rng(0)
    >>> m = LayerMap("1", "hidden layer 1", rng.normal(size=(40, 2)), np.repeat([10.0, 60.0], 20),
    ...              "beam energy [GeV]", "pca", 0.9, 0.5, highlight=[60.0], unit="GeV")
    >>> fig = plot_layer_maps([m])
    >>> len(fig.axes) >= 1
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mlegpipe.interpret.landscape import Landscape
from mlegpipe.interpret.maps import DiscriminatorMap, LayerMap
from mlegpipe.plots._style import MODEL_COLOR, REFERENCE_COLOR, new_figure, styled

__all__ = ["plot_discriminator_maps", "plot_landscapes", "plot_layer_maps"]

_METHOD_AXES = {"pca": ("PC 1", "PC 2"), "tsne": ("t-SNE 1", "t-SNE 2"), "umap": ("UMAP 1", "UMAP 2")}


def _label_colors(values: np.ndarray, names: list[str] | None) -> dict[float, tuple[float, ...]]:
    uniq = np.unique(values)
    cmap = colormaps["viridis" if names is None else "tab10"]
    if names is None:
        norm = Normalize(float(uniq.min()), float(uniq.max()) if uniq.max() > uniq.min() else float(uniq.min()) + 1)
        return {float(u): cmap(0.9 * norm(float(u))) for u in uniq}
    return {float(u): cmap(i % 10) for i, u in enumerate(uniq)}


def _label_text(value: float, names: list[str] | None, unit: str = "") -> str:
    if names is not None:
        return names[int(value)]
    return f"{value:g} {unit}" if unit else f"{value:g}"


def plot_layer_maps(maps: Sequence[LayerMap], title: str | None = None, point_size: float = 4.0) -> Figure:
    """One panel per hidden-layer map, points coloured by label; a second row of DBSCAN clusters if present.

    Extrapolated labels (``map.highlight``) are drawn last in red-edged
    markers. Each panel states the k-NN separability against chance.
    """
    n = max(len(maps), 1)
    with_clusters = any(m.clusters is not None for m in maps)
    rows = 2 if with_clusters else 1
    with styled():
        fig, axes = new_figure(rows, n, figsize=(4.4 * n, 4.2 * rows), squeeze=False)
        for col, m in enumerate(maps):
            ax = axes[0, col]
            colors = _label_colors(m.labels, m.label_names)
            order = sorted(colors, key=lambda v: (v in m.highlight, v))
            for value in order:
                sel = m.labels == value
                extra = value in m.highlight
                ax.scatter(m.coords[sel, 0], m.coords[sel, 1], s=point_size * (2.5 if extra else 1.0),
                           color="#c0392b" if extra else colors[value], alpha=0.85 if extra else 0.55,
                           marker="^" if extra else "o", linewidths=0,
                           label=_label_text(value, m.label_names, m.unit) + (" (extrap.)" if extra else ""))
            xl, yl = _METHOD_AXES.get(m.method, ("1", "2"))
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.set_title(m.title, fontsize=12)
            full = "" if m.separability_full is None else f", layer {m.separability_full:.2f}"
            notes = [f"k-NN separability: map {m.separability:.2f}{full}", f"(chance {m.chance:.2f})"]
            if m.ordering is not None:
                notes[-1] = f"(chance {m.chance:.2f}); PC1 ordering |ρ| {m.ordering:.2f}"
            if m.view != "independent":
                notes.append(f"{m.view} view" + ("" if m.condition_fraction is None
                                                 else f"; {m.color_by or 'condition'} share of variance "
                                                      f"{m.condition_fraction:.2f}"))
            ax.text(0.02, 0.98, "\n".join(notes),
                    transform=ax.transAxes, va="top", fontsize=9,
                    bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
            if col == n - 1 or len(colors) <= 6:
                ax.legend(fontsize=8, markerscale=2.0, loc="lower right", title=m.label_name, title_fontsize=8)
            if with_clusters:
                cax = axes[1, col]
                if m.clusters is None:
                    cax.set_visible(False)
                    continue
                noise = m.clusters == -1
                cax.scatter(m.coords[noise, 0], m.coords[noise, 1], s=point_size, color="lightgrey", linewidths=0)
                cax.scatter(m.coords[~noise, 0], m.coords[~noise, 1], s=point_size, c=m.clusters[~noise] % 20,
                            cmap="tab20", vmin=0, vmax=19, linewidths=0)
                k = len(set(m.clusters.tolist()) - {-1})
                cax.set_title(f"DBSCAN: {k} clusters, {noise.mean():.0%} noise", fontsize=11)
                cax.set_xlabel(xl)
                cax.set_ylabel(yl)
        if title:
            fig.suptitle(title)
    return fig


def _density(points: np.ndarray, xedges: np.ndarray, yedges: np.ndarray) -> np.ndarray:
    h, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=[xedges, yedges])
    return h.T / max(len(points), 1)


def plot_discriminator_maps(maps: Sequence[DiscriminatorMap], bins: int | None = None,
                            title: str | None = None) -> Figure:
    """Thesis Fig. 22: per condition value, generated events as a heat map, truth as contours, on the truth's PCA plane.

    ``bins`` per axis defaults to √n / 2 (15 to 50) for n truth events per panel.
    """
    n = max(len(maps), 1)
    with styled():
        fig, axes = new_figure(1, n, figsize=(4.4 * n, 4.4), squeeze=False)
        for ax, m in zip(axes[0], maps, strict=False):
            nb = bins or int(np.clip(np.sqrt(len(m.truth)) / 2, 15, 50))
            both = np.concatenate([m.truth, m.generated])
            lo, hi = np.percentile(both, [0.5, 99.5], axis=0)
            pad = 0.05 * (hi - lo + 1e-9)
            xedges = np.linspace(lo[0] - pad[0], hi[0] + pad[0], nb + 1)
            yedges = np.linspace(lo[1] - pad[1], hi[1] + pad[1], nb + 1)
            gen = _density(m.generated, xedges, yedges)
            truth = _density(m.truth, xedges, yedges)
            positive = gen[gen > 0]
            norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
            ax.pcolormesh(xedges, yedges, np.where(gen > 0, gen, np.nan), cmap="Blues", norm=norm)
            centers_x, centers_y = 0.5 * (xedges[1:] + xedges[:-1]), 0.5 * (yedges[1:] + yedges[:-1])
            if truth.max() > 0:
                levels = truth.max() * np.array([0.02, 0.1, 0.3, 0.6])
                ax.contour(centers_x, centers_y, truth, levels=levels, colors=REFERENCE_COLOR, linewidths=1.0)
            where = "" if m.value is None else f"{m.condition} = {m.value:g}" + (f" {m.unit}" if m.unit else "")
            regime = f" ({m.regime})" if m.regime else ""
            ax.set_title(where + regime, fontsize=12)
            ax.set_xlabel(f"PC 1 of truth ({m.explained_variance[0]:.0%})")
            ax.set_ylabel(f"PC 2 of truth ({m.explained_variance[1]:.0%})")
            ax.text(0.02, 0.98, f"truth vs generated\nk-NN accuracy {m.separability:.2f}", transform=ax.transAxes,
                    va="top", fontsize=9, bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
        handles = [Line2D([], [], color=REFERENCE_COLOR, label="truth (contours)"),
                   Line2D([], [], color="#3b7dbf", lw=6, label="generated (heat map)")]
        axes[0, -1].legend(handles=handles, fontsize=8, loc="lower right")
        fig.suptitle(title or f"discriminator {maps[0].layer if maps else ''}: truth PCA plane", fontsize=13)
    return fig


def plot_landscapes(landscapes: Mapping[str, Landscape], title: str | None = None, log: bool = True) -> Figure:
    """Side by side per model: the contour map of f(α, β) (top) and the slice f(α, 0) (bottom).

    Contours of all models share levels, so equal colours mean equal losses;
    each panel states the roughness and sharpness (:meth:`Landscape.roughness`,
    :meth:`Landscape.sharpness`); white areas are non-finite losses.
    """
    items = list(landscapes.items())
    n = max(len(items), 1)
    values = np.concatenate([land.values.ravel() for _, land in items]) if items else np.ones(1)
    finite = values[np.isfinite(values)]
    use_log = log and finite.size and finite.min() > 0
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        levels = np.geomspace(lo, hi, 25) if use_log and hi > lo else np.linspace(lo, hi + 1e-12, 25)
    else:
        levels = 25
    with styled():
        fig, axes = new_figure(2, n, figsize=(4.8 * n, 8.4), squeeze=False)
        for col, (name, land) in enumerate(items):
            ax = axes[0, col]
            grid = np.where(np.isfinite(land.values), land.values, np.nan)
            cs = ax.contourf(land.alphas, land.betas, grid, levels=levels, cmap="viridis",
                             norm=LogNorm(levels[0], levels[-1]) if use_log and not isinstance(levels, int) else None)
            ax.contour(land.alphas, land.betas, grid, levels=cs.levels[::3], colors="white", linewidths=0.5)
            ax.plot([0], [0], marker="*", color=MODEL_COLOR, markersize=12)
            ax.set_xlabel(r"$\alpha$")
            ax.set_ylabel(r"$\beta$")
            ax.set_title(f"{name}\nroughness {land.roughness():.3f}, sharpness {land.sharpness():.3g}", fontsize=11)
            sax = axes[1, col]
            sax.plot(land.alphas, land.slice_alpha, color=MODEL_COLOR, marker="o", markersize=3)
            sax.axvline(0.0, color="grey", lw=0.8, ls=":")
            sax.set_xlabel(r"$\alpha$ ($\beta$ = 0)")
            sax.set_ylabel(land.label)
            if use_log:
                sax.set_yscale("log")
        if items:
            fig.colorbar(cs, ax=axes[0, :].tolist(), shrink=0.85, label=items[0][1].label)
        if title:
            fig.suptitle(title)
    return fig
