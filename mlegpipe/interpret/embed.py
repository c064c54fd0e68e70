"""2D maps of hidden-layer activations: PCA, t-SNE, UMAP; labels, DBSCAN clusters and a separability score.

The thesis (ch. 5 Figs. 21-22, ch. 8 Figs. 41-42) projects 512-wide hidden
layers to 2D with t-SNE or PCA and colours the map by a label (beam energy,
resonance region, truth vs generated). :func:`separability` turns "the labels
form separate islands" into a number: the cross-validated accuracy of a
k-nearest-neighbour classifier on the 2D coordinates, to be compared with
:func:`chance_level` (the fraction of the most common label).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat([0, 1], 200)
    >>> x = rng.normal(size=(400, 16)) + 3.0 * labels[:, None]
    >>> emb = embed(x, "pca", seed=0)
    >>> emb.coords.shape, separability(emb.coords, labels) > 0.95, chance_level(labels)
    ((400, 2), True, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlegpipe.exceptions import ConfigError, DataError

__all__ = [
    "EMBED_METHODS",
    "Embedding",
    "chance_level",
    "cluster",
    "embed",
    "ordering",
    "region_labels",
    "separability",
]

#: Dimensionality reductions :func:`embed` knows (``umap`` needs the ``umap-learn`` package).
EMBED_METHODS: tuple[str, ...] = ("pca", "tsne", "umap")


@dataclass
class Embedding:
    """A 2D map of some high-dimensional points.

    Attributes:
        coords: ``(n, 2)`` map coordinates.
        method: ``pca``, ``tsne`` or ``umap``.
        explained_variance: for PCA, the variance fraction of each of the two components.
        model: the fitted reducer (PCA: use ``model.transform`` to place further points).
        info: settings used (perplexity, seed, ...).
    """

    coords: np.ndarray
    method: str
    explained_variance: tuple[float, float] | None = None
    model: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Place new points on a PCA map (t-SNE and UMAP maps cannot place new points).

        Raises:
            ConfigError: the map is not a PCA map.
        """
        if self.method != "pca":
            raise ConfigError(f"only PCA maps can place new points; this map was made with {self.method}",
                              path="method", value=self.method, hint="use method = 'pca'")
        if self.model is None:  # fitted on identical points: no plane, everything at its one spot
            return np.zeros((len(x), 2))
        return self.model.transform(np.asarray(x, dtype=np.float64))


def _check_points(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise DataError(f"need a (points, dimensions) array with at least 3 points, got shape {x.shape}", path=where)
    if not np.isfinite(x).all():
        raise DataError("the activations hold NaN or infinite values (a diverged model?)", path=where)
    return x


def embed(
    x: np.ndarray,
    method: str = "pca",
    seed: int = 0,
    perplexity: float = 30.0,
    fit_on: np.ndarray | None = None,
    max_iter: int = 1000,
    n_neighbors: int = 15,
) -> Embedding:
    """Map the rows of ``x`` to 2D.

    Arguments:
        x: ``(n, d)`` points (hidden-layer activations).
        method: ``pca`` (deterministic), ``tsne`` (scikit-learn, PCA
            initialization, seeded) or ``umap`` (needs ``umap-learn``).
        seed: random state of t-SNE / UMAP.
        perplexity: t-SNE perplexity (capped below n/3 for small samples;
            the thesis used 5-100).
        fit_on: PCA only: fit the components on these points (the thesis fits
            on the truth sample) and project ``x`` with them.
        max_iter: t-SNE iterations.
        n_neighbors: UMAP neighbourhood size.

    Raises:
        ConfigError: unknown method, ``fit_on`` with a non-PCA method, or UMAP
            requested without ``umap-learn`` installed.
        DataError: fewer than 3 points or non-finite values.
    """
    x = _check_points(x, "activations")
    if method not in EMBED_METHODS:
        raise ConfigError("unknown embedding method; known: " + ", ".join(EMBED_METHODS), path="method", value=method)
    if fit_on is not None and method != "pca":
        raise ConfigError("fit_on works only with PCA (t-SNE and UMAP cannot project new points)", path="method",
                          value=method)
    if fit_on is None and np.ptp(x, axis=0).max() == 0.0:
        # all points identical (e.g. the energy response of a layer blind to the energy): one spot
        return Embedding(np.zeros((len(x), 2)), method, (0.0, 0.0) if method == "pca" else None, None,
                         {"seed": seed, "identical_points": True})
    if method == "pca":
        from sklearn.decomposition import PCA

        reference = x if fit_on is None else _check_points(fit_on, "fit_on")
        pca = PCA(n_components=2, random_state=seed).fit(reference)
        ratio = pca.explained_variance_ratio_
        return Embedding(pca.transform(x), "pca", (float(ratio[0]), float(ratio[1])), pca, {"seed": seed})
    if method == "tsne":
        from sklearn.manifold import TSNE

        used = float(min(perplexity, max(2.0, (len(x) - 1) / 3.0 - 1.0)))
        tsne = TSNE(n_components=2, perplexity=used, init="pca", random_state=seed, max_iter=max_iter,
                    learning_rate="auto")
        coords = tsne.fit_transform(x)
        return Embedding(coords, "tsne", None, tsne, {"seed": seed, "perplexity": used,
                                                       "kl_divergence": float(tsne.kl_divergence_)})
    try:
        import warnings

        with warnings.catch_warnings():  # umap-learn warns that its optional TensorFlow part is missing
            warnings.simplefilter("ignore", ImportWarning)
            import umap
    except ImportError:
        raise ConfigError("UMAP needs the optional package umap-learn, which is not installed", path="method",
                          value="umap", hint="pip install umap-learn (the extra: pip install mlegpipe[umap]), "
                          "or use method = 'tsne' or 'pca'") from None
    # seeded UMAP runs on one thread anyway; saying so silences umap-learn's warning about it
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(x) - 1), random_state=seed, n_jobs=1)
    return Embedding(reducer.fit_transform(x), "umap", None, reducer, {"seed": seed, "n_neighbors": n_neighbors})


def chance_level(labels: Sequence[Any] | np.ndarray) -> float:
    """Accuracy of always guessing the most common label.

    Example:
        >>> chance_level([1, 1, 1, 2])
        0.75
    """
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(counts.max() / counts.sum())


def separability(coords: np.ndarray, labels: Sequence[Any] | np.ndarray, k: int = 10, folds: int = 5,
                 seed: int = 0) -> float:
    """Cross-validated accuracy of a k-NN classifier predicting ``labels`` from the 2D map.

    1 means the labels form separate regions of the map, :func:`chance_level`
    means the map carries no information about them. Folds are stratified and
    shuffled with ``seed``; coordinates are standardized first (t-SNE and PCA
    axes have arbitrary scales).

    Raises:
        DataError: mismatched lengths, a single label, or a label with fewer
            members than ``folds``.

    Example:
        >>> import numpy as np
        >>> coords = np.r_[np.zeros((20, 2)), np.ones((20, 2))] + np.random.default_rng(1).normal(0, .1, (40, 2))
        >>> separability(coords, [0] * 20 + [1] * 20)
        1.0
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    coords = np.asarray(coords, dtype=np.float64)
    y = np.asarray(labels)
    if len(coords) != len(y):
        raise DataError(f"{len(coords)} map points but {len(y)} labels", path="labels")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataError("separability needs at least two different labels", path="labels",
                        value=classes.tolist())
    if np.ptp(coords, axis=0).max(initial=0.0) == 0.0:
        return chance_level(y)  # all points in one place: the map carries no information
    n_folds = int(min(folds, counts.min()))
    if n_folds < 2:
        raise DataError(f"label {classes[counts.argmin()]!r} has only {counts.min()} point(s); need at least 2",
                        path="labels")
    n_train_min = len(y) - int(np.ceil(len(y) / n_folds))
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=max(1, min(k, n_train_min))))
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(model, coords, y, cv=cv)))


def ordering(values: np.ndarray, labels: Sequence[Any] | np.ndarray) -> float:
    """How well one map axis orders the (numeric) labels: ``|Spearman ρ|`` between ``values`` and ``labels``.

    1: the axis sorts the points by label (the energies form ordered bands
    along it), 0: no monotonic relation; 0 also for a constant axis.

    Raises:
        DataError: mismatched lengths.

    Example:
        >>> round(ordering([0.1, 0.5, 0.4, 0.9], [10, 20, 20, 30]), 3)
        0.949
    """
    from scipy.stats import spearmanr

    v = np.asarray(values, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if len(v) != len(y):
        raise DataError(f"{len(v)} values but {len(y)} labels", path="labels")
    if len(v) < 3 or np.ptp(v) == 0.0 or np.ptp(y) == 0.0:
        return 0.0
    return float(abs(spearmanr(v, y)[0]))


def cluster(coords: np.ndarray, eps: float = 0.5, min_samples: int = 25, standardize: bool = True) -> np.ndarray:
    """DBSCAN clusters of the map points (label -1: noise), as in thesis Fig. 42 (ε = 0.5, 25 samples).

    With ``standardize`` the coordinates are scaled to unit variance first, so
    ``eps`` is in units of the map's spread rather than of t-SNE's arbitrary axes.

    Example:
        >>> import numpy as np
        >>> pts = np.r_[np.zeros((30, 2)), np.full((30, 2), 5.0)] + np.random.default_rng(0).normal(0, .05, (60, 2))
        >>> sorted(set(cluster(pts, eps=0.3, min_samples=5).tolist()))
        [0, 1]
    """
    from sklearn.cluster import DBSCAN

    coords = np.asarray(coords, dtype=np.float64)
    if standardize:
        coords = (coords - coords.mean(axis=0)) / np.where(coords.std(axis=0) > 0, coords.std(axis=0), 1.0)
    return DBSCAN(eps=eps, min_samples=min_samples).fit_predict(coords)


def region_labels(values: np.ndarray, edges: Sequence[float] | int = 4, name: str = "value",
                  log: bool = False) -> tuple[np.ndarray, list[str]]:
    """Integer region labels of a continuous variable (W², x, Q², ...) and their names.

    Arguments:
        values: the per-point variable.
        edges: region boundaries, or a number of equally populated regions (quantiles).
        name: the variable's name for the region names.
        log: format boundaries for a logarithmic variable (x, Q²).

    Returns:
        ``(labels, names)``: ``labels[i]`` indexes ``names``; points outside
        explicit ``edges`` go to the first or last region; points where the
        variable is undefined (NaN, infinite) go to a region of their own,
        ``"<name> undefined"``, after the others.

    Example:
        >>> labels, names = region_labels([1.0, 2.0, 3.0, 4.0], edges=[2.5], name="W2")
        >>> labels.tolist(), names
        ([0, 0, 1, 1], ['W2 < 2.5', 'W2 ≥ 2.5'])
        >>> region_labels([1.0, np.nan, 3.0], edges=[2.0], name="x")[0].tolist()
        [0, 2, 1]
    """
    v = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(v)
    if isinstance(edges, int):
        if edges < 2:
            raise ConfigError("need at least two regions", path="regions", value=edges)
        if not defined.any():
            raise DataError(f"{name} is undefined for every point", path=name)
        cuts = np.unique(np.quantile(v[defined], np.linspace(0, 1, edges + 1)[1:-1]))
    else:
        cuts = np.asarray(sorted(edges), dtype=np.float64)
    labels = np.where(defined, np.searchsorted(cuts, np.where(defined, v, 0.0), side="right"), len(cuts) + 1)
    fmt = (lambda c: f"{c:.3g}") if not log else (lambda c: f"{c:.2e}" if c < 1e-2 else f"{c:.3g}")
    names = []
    for i in range(len(cuts) + 1):
        if i == 0:
            names.append(f"{name} < {fmt(cuts[0])}")
        elif i == len(cuts):
            names.append(f"{name} ≥ {fmt(cuts[-1])}")
        else:
            names.append(f"{fmt(cuts[i - 1])} ≤ {name} < {fmt(cuts[i])}")
    if not defined.all():
        names.append(f"{name} undefined")
    return labels, names
