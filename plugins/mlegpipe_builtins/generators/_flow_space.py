"""The model space of the ``flow`` generator: events to standardized features and conditions, and back.

:class:`FlowSpace` chains, for the features a flow learns:

1. the feature map (:mod:`mlegpipe.features`; a domain's, or ``columns`` / ``collection``);
2. features the map declares exactly uniform (an azimuth) are drawn, not learned;
3. features ``ln u`` of a quantity ``u ≤ 1`` (the map's ``logit_features``) become ``ln(u / (1 - u))``
   (:func:`~mlegpipe.features.edges.logit_from_ln`);
4. hard edges mapped to infinity (:class:`~mlegpipe.features.EdgeLog`);
5. asinh on heavy-tailed features (:class:`~mlegpipe.features.AsinhScale`), or with ``preprocess =
   "quantile"`` every feature's training quantiles mapped to N(0, 1)
   (:class:`~mlegpipe.features.QuantileGaussianize`: the flow then learns the dependence only, and a
   cheap affine flow suffices);
6. standardization (:class:`~mlegpipe.features.Standardize`).

Features of particles an event does not have (slots beyond a variable
multiplicity) are filled with the training median before the preprocessing
is fitted and replaced by standard-normal noise in the standardized space,
so the flow learns them as independent noise given the multiplicity, which
is then one of its conditions; when sampling they are ignored. The
multiplicity itself is a condition the user fixes or, when not, drawn from
the categorical distribution of the training sample.

The conditions are any event-level fields (``beam_energy``, ``sqrt_s``,
``n_jets``), standardized together; with ``log_conditions`` their logarithms
are (:class:`~mlegpipe.features.LogStandardize`), so a scan in energy is
learned, and extrapolated, in ln E.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> rng = np.random.default_rng(0)
    >>> events = EventBatch.from_columns({"a": rng.normal(size=500), "b": rng.exponential(size=500)})
    >>> space = FlowSpace("columns", ["a", "b"], conditions=[]).fit(events)
    >>> z = space.encode(events)
    >>> [round(float(v), 6) + 0.0 for v in z.mean(0)], space.noise_dim
    ([0.0, 0.0], 2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError
from mlegpipe.features import (
    AsinhScale,
    CollectionMap,
    EdgeLog,
    FeatureMap,
    LogStandardize,
    QuantileGaussianize,
    Scaler,
    Standardize,
    decode_events,
    make_feature_map,
)
from mlegpipe.features.edges import ln_from_logit, logit_from_ln
from mlegpipe.stages import checked_conditions

__all__ = ["SPLINE_REACH", "FlowSpace", "beyond_spline_reach"]

SPLINE_REACH = 4.5  # standardized reach beyond which preprocess = "auto" compresses a feature (splines: [-5, 5])


def beyond_spline_reach(x: torch.Tensor) -> list[bool]:
    """Columns whose standardized values reach beyond ±:data:`SPLINE_REACH` (zuko's splines act on [-5, 5]).

    Example:
        >>> x = torch.tensor([[0.0, 0.0]] * 99 + [[1.0, 100.0]], dtype=torch.float64)
        >>> beyond_spline_reach(x)
        [True, True]
        >>> beyond_spline_reach(torch.randn(1000, 2, generator=torch.Generator().manual_seed(0)))
        [False, False]
    """
    z = (x - x.mean(dim=0)) / x.std(dim=0).clamp_min(1e-12)
    return [bool(v > SPLINE_REACH) for v in z.abs().max(dim=0).values]


class FlowSpace:
    """Events ⇄ the standardized features and conditions a flow models (see the module docstring).

    Arguments:
        map_name: the feature map (``columns``, ``collection``, or a registered domain map).
        features: event fields and collections for ``columns`` / ``collection``.
        conditions: event-level fields the model is conditioned on (what users fix when sampling).
        preprocess: ``auto`` (asinh on the map's heavy-tailed features and, with ``splines``, on features
            beyond the splines' reach), ``asinh`` (every feature) or ``none``.
        y_transform: ``logit`` or ``log`` for the map's ``logit_features``.
        edges: ``auto`` (map hard edges away where they do not move with the conditions) or ``none``.
        azimuth: ``uniform`` (draw the map's uniform features) or ``learned``.
        splines: the flow is a spline flow (its splines act on [-5, 5]).
        registry: where the feature map is looked up.
    """

    def __init__(
        self,
        map_name: str,
        features: Sequence[str],
        conditions: Sequence[str],
        *,
        preprocess: str = "auto",
        y_transform: str = "logit",
        edges: str = "auto",
        azimuth: str = "uniform",
        splines: bool = True,
        log_conditions: bool = False,
        registry: Any = None,
        where: str = "generator",
    ) -> None:
        self.map_name = map_name
        self.user_features = list(features)
        self.conditions = list(conditions)
        self.preprocess = preprocess
        self.y_transform = y_transform
        self.edges_mode = edges
        self.splines = splines
        self.registry = registry
        self.where = where
        self.map_class = self._map_class()
        self.fmap: FeatureMap | None = None
        self.beams: Beams | None = None
        self.set_azimuth(azimuth)
        self.edge = EdgeLog(self._edges_enabled())
        self.pre = self._make_pre()
        self.scaler = Standardize()
        self.log_conditions = log_conditions
        self.cond_scaler = self._new_cond_scaler()
        self.fill: torch.Tensor | None = None  # training medians standing in for absent particles
        self.multiplicity: tuple[list[float], list[float]] | None = None  # (values, probabilities)
        self.ranges: dict[str, tuple[float, float]] = {}

    # -- layout ---------------------------------------------------------------------------
    def _new_cond_scaler(self) -> Standardize:
        return LogStandardize() if self.log_conditions else Standardize()

    def _map_class(self) -> type[FeatureMap]:
        registry = self.registry
        if registry is None:
            from mlegpipe.registry import default_registry

            registry = default_registry()
        if self.map_name not in registry.feature_maps:
            make_feature_map(self.map_name, registry=registry, path=f"{self.where}.feature_map")  # raises, naming it
        return registry.feature_maps.get(self.map_name)

    @property
    def names(self) -> list[str]:
        """The feature map's feature names: known before fitting for fixed maps, else the requested fields."""
        if self.fmap is not None:
            return list(self.fmap.names)
        return list(self.map_class.names) or list(self.user_features)

    def set_azimuth(self, azimuth: str) -> None:
        """Which features are learned: all, or all but the map's uniform ones (``azimuth = "uniform"``)."""
        self.azimuth = azimuth
        names = self.names
        uniform = [f for f in self.map_class.uniform_features if f in names] if azimuth == "uniform" else []
        self._uniform_cols = [names.index(f) for f in uniform]
        self.learned = [f for f in names if f not in uniform]

    @property
    def noise_dim(self) -> int:
        """Dimensions of the flow's base noise: the learned features."""
        return len(self.learned)

    @property
    def model_conditions(self) -> list[str]:
        """The flow's conditions: the user's, plus the multiplicity of a variable collection unless fixed by them."""
        field = self.multiplicity_field()
        return self.conditions + ([field] if field is not None and field not in self.conditions else [])

    def multiplicity_field(self) -> str | None:
        """``n_c`` of the map's variable-multiplicity collection, if any."""
        fmap = self.fmap
        return fmap.multiplicity_field() if isinstance(fmap, CollectionMap) else None

    def _logit_column(self) -> int | None:
        """The learned column of a ``logit_features`` feature when learned as a logit (``y_transform = "logit"``)."""
        if self.y_transform != "logit":
            return None
        found = [self.learned.index(f) for f in self.map_class.logit_features if f in self.learned]
        return found[0] if found else None

    def _edges_enabled(self) -> bool:
        """Edge maps where the edges stay put: unconditional models, or maps whose edges do not move."""
        return self.edges_mode == "auto" and (not self.conditions or self.map_class.edges_fixed_under_context)

    def _make_pre(self) -> Scaler:
        """The per-feature preprocessing: quantiles to N(0, 1) (``preprocess = "quantile"``), else asinh where asked."""
        return QuantileGaussianize() if self.preprocess == "quantile" else AsinhScale(self._asinh_columns())

    def _asinh_columns(self) -> list[bool]:
        if self.preprocess == "none":
            return [False] * len(self.learned)
        if self.preprocess == "asinh":
            return [True] * len(self.learned)
        return [f in self.map_class.heavy_tailed for f in self.learned]

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, train: EventBatch, range_cut: bool = False) -> FlowSpace:
        """Fit the map and every preprocessing step to the training events; returns self."""
        self.beams = train.beams
        self.fmap = make_feature_map(self.map_name, self.beams, features=self.user_features,
                                     path=f"{self.where}.feature_map", registry=self.registry)
        if self.fmap.needs_context and self.map_class is not CollectionMap and self.beams is None:
            raise DataError(f"feature map {self.map_name!r} needs the beam set-up, but the training events carry "
                            "none", path=f"{self.where}.feature_map")
        self.fmap.fit(train)
        self.set_azimuth(self.azimuth)
        self.edge = EdgeLog(self._edges_enabled())
        self.pre = self._make_pre()
        self.fill = None
        x = self.features(train)
        self.scaler.fit(x, train.weights)
        field = self.multiplicity_field()
        if field is not None:
            values, counts = np.unique(train.multiplicity(self.fmap.variable), return_counts=True)
            self.multiplicity = (values.astype(float).tolist(), (counts / counts.sum()).tolist())
        self.ranges = self._training_ranges(train) if range_cut else {}
        return self

    def fit_conditions(self, values: np.ndarray, log: Any) -> None:
        """Standardize the condition values ``(n, c)`` of the training events (a constant one is left at unit width)."""
        self.cond_scaler = self._new_cond_scaler()
        if not self.model_conditions:
            return
        self._check_positive(values, self.model_conditions)
        self.cond_scaler.fit(values)
        flat = self.cond_scaler.std < 1e-9
        if flat.any():
            log.warning("conditional flow trained at a single value of %s (%s)",
                        ", ".join(c for c, f in zip(self.model_conditions, flat.tolist(), strict=True) if f),
                        ", ".join(f"{v:.4g}" for v in values[0][flat.numpy()]))
            self.cond_scaler.std = torch.where(flat, torch.ones_like(self.cond_scaler.std), self.cond_scaler.std)

    def _training_ranges(self, train: EventBatch) -> dict[str, tuple[float, float]]:
        """The range of the map's ``range_fields`` in the training sample (enforced with ``reject = "training_range"``)."""
        if not self.fmap.range_fields or self.beams is None:
            return {}
        context = self.context_of(train)
        cols = self.fmap.decode(self.fmap.encode(train), context)
        cols, _ = self.fmap.complete(cols, context, self.beams, np.ones(len(train), dtype=bool))
        return {k: (float(np.min(cols[k])), float(np.max(cols[k]))) for k in self.fmap.range_fields if k in cols}

    # -- events -> model space ------------------------------------------------------------------
    def context_of(self, events: EventBatch) -> np.ndarray:
        """The feature map's per-event context (zeros when it needs none)."""
        if self.fmap.needs_context:
            return self.fmap.context_of(events)
        return np.zeros(len(events))

    def features(self, events: EventBatch) -> torch.Tensor:
        """Preprocessed (not yet standardized) learned features; the first call fits the preprocessing."""
        x = self.fmap.encode(events)
        if self._uniform_cols:
            x = np.delete(x, self._uniform_cols, axis=1)
        absent = np.isnan(x)
        x = torch.from_numpy(np.ascontiguousarray(x))
        if absent.any() or self.fill is not None:
            if self.fill is None:
                self.fill = torch.from_numpy(np.nan_to_num(np.nanmedian(x.numpy(), axis=0)))
            x = torch.where(torch.from_numpy(absent), self.fill.expand_as(x), x)
        if (j := self._logit_column()) is not None:
            x[:, j] = logit_from_ln(x[:, j])
        if self.edge.lo is None:
            self.edge.fit(x)
        x = self.edge.transform(x)
        if isinstance(self.pre, QuantileGaussianize):
            if self.pre.knots is None:
                self.pre.fit(x)
        elif self.pre.mask is None:
            if self.preprocess == "auto" and self.splines:
                self.pre.columns = [a or b for a, b in zip(self.pre.columns or [False] * x.shape[1],
                                                            beyond_spline_reach(x), strict=True)]
            self.pre.fit(x)
        return self.pre.transform(x)

    def absent(self, events: EventBatch) -> np.ndarray | None:
        """``(n, learned)`` mask of features of absent particles (None when the map has none)."""
        if self.multiplicity_field() is None:
            return None
        mask = self.fmap.absent(self.fmap.context_of(events))
        return np.delete(mask, self._uniform_cols, axis=1) if self._uniform_cols else mask

    def encode(self, events: EventBatch, noise: torch.Generator | None = None) -> torch.Tensor:
        """Standardized learned features (float32); features of absent particles are standard-normal noise."""
        z = self.scaler.transform(self.features(events)).float()
        absent = self.absent(events)
        if absent is not None and absent.any():
            mask = torch.from_numpy(absent)
            z = torch.where(mask, torch.randn(z.shape, generator=noise), z)
        return z

    def condition_values(self, events: EventBatch, observables: Any = None) -> np.ndarray:
        """``(n, c)`` raw values of the model conditions for ``events`` (fields or automatic observables)."""
        from mlegpipe.observables import ObservableSet

        observables = observables or ObservableSet()
        if not self.model_conditions:
            return np.zeros((len(events), 0))
        return np.stack([observables.values(events, c) for c in self.model_conditions], axis=1)

    def _check_positive(self, values: np.ndarray, names: Sequence[str]) -> None:
        """With ``log_conditions``, every condition value must be > 0 (DataError naming the condition)."""
        if not self.log_conditions:
            return
        bad = ~(np.asarray(values, dtype=np.float64) > 0)
        if bad.any():
            column = int(np.argwhere(bad)[0][1])
            raise DataError(f"log_conditions needs positive condition values; {names[column]!r} has "
                            f"{int(bad[:, column].sum())} values <= 0", path=f"{self.where}.conditions",
                            value=float(np.asarray(values)[bad][0]))

    def condition_tensor(self, values: np.ndarray) -> torch.Tensor | None:
        """Standardized condition tensor (float32) for raw values ``(n, c)`` (None without conditions)."""
        if not self.model_conditions:
            return None
        self._check_positive(values, self.model_conditions)
        return self.cond_scaler.transform(torch.from_numpy(np.asarray(values, dtype=np.float64))).float()

    # -- sampling side -------------------------------------------------------------------------------
    def conditions_for(self, n: int, conditions: Mapping[str, Any] | None, rng: np.random.Generator | None,
                       where: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-event values of every model condition (the user's, and a drawn multiplicity) and the map context.

        Raises:
            ConfigError: an unknown condition, a missing one, or a non-finite value.
        """
        given = checked_conditions(conditions, self.conditions, f"{where}.conditions")
        values: dict[str, np.ndarray] = {}
        for name in self.conditions:
            if name not in given:
                raise ConfigError(f"this conditional flow needs a value of {name!r} for sampling",
                                  path=f"{where}.conditions", value=None,
                                  hint=f"e.g. mlegpipe generate ... --condition {name}=VALUE")
            v = np.broadcast_to(np.asarray(given[name], dtype=np.float64), (n,)).copy()
            if not np.isfinite(v).all():
                raise ConfigError(f"condition {name!r} must be a finite number", path=f"{where}.conditions",
                                  value=float(v[~np.isfinite(v)][0]))
            values[name] = v
        field = self.multiplicity_field()
        if field is not None and field not in values:
            choices, probs = self.multiplicity
            values[field] = rng.choice(np.asarray(choices), size=n, p=np.asarray(probs))
        context = self.fmap.context_from(values, n, self.beams) if self.fmap.needs_context else np.zeros(n)
        return values, context

    def unprocess(self, z: torch.Tensor) -> np.ndarray:
        """The learned features in the map's units from standardized ones ``z`` (float64)."""
        learned = self.edge.inverse(self.pre.inverse(self.scaler.inverse(z.double())))
        if (j := self._logit_column()) is not None:
            learned[:, j] = ln_from_logit(learned[:, j])
        return learned.numpy()

    def decode(self, features: np.ndarray, context: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Event columns and the physical mask from all map features (:meth:`full`)."""
        return decode_events(self.fmap, features, context, self.beams, self.ranges)

    def full(self, learned: np.ndarray, uniform: np.ndarray | None) -> np.ndarray:
        """All map features from the learned ones and the drawn uniform ones."""
        if not self._uniform_cols:
            return learned
        out = np.empty((len(learned), len(self.names)))
        keep = [j for j in range(len(self.names)) if j not in self._uniform_cols]
        out[:, keep] = learned
        out[:, self._uniform_cols] = uniform
        return out

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the space needs to rebuild itself (JSON-able values and tensors)."""
        return {
            "feature_map": self.fmap.config(),
            "beams": self.beams.to_dict() if self.beams is not None else {},
            "azimuth": self.azimuth,
            "edges": self.edge.state_dict(),
            "y_transform": self.y_transform,
            "preprocess": self.pre.state_dict(),
            "scaler": self.scaler.state_dict(),
            "cond_scaler": self.cond_scaler.state_dict() if self.model_conditions else {},
            "log_conditions": self.log_conditions,
            "ranges": {k: [lo, hi] for k, (lo, hi) in self.ranges.items()},
            "fill": self.fill.clone() if self.fill is not None else None,
            "multiplicity": [list(v) for v in self.multiplicity] if self.multiplicity is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any], where: str) -> None:
        """Restore from :meth:`state_dict` (states of earlier versions are migrated by the generator)."""
        self.beams = Beams.from_dict(dict(state["beams"])) if state.get("beams") else None
        self.fmap = make_feature_map(dict(state["feature_map"]), registry=self.registry, path=f"{where}.feature_map")
        self.set_azimuth(str(state.get("azimuth", "learned")))
        try:
            self.edge = EdgeLog().load_state_dict(state["edges"])
        except (DataError, KeyError, TypeError) as err:
            raise CheckpointError(f"no edge map state: {err}" if not isinstance(err, DataError) else str(err),
                                  path=f"{where}.edges") from None
        if len(self.edge.edged()) != len(self.learned):
            raise CheckpointError(f"the edge map holds {len(self.edge.edged())} bounds for {len(self.learned)} "
                                  "features", path=f"{where}.edges")
        self.y_transform = str(state.get("y_transform", "log"))
        if self.y_transform not in ("logit", "log"):
            raise CheckpointError("unknown y_transform in the checkpoint", path=f"{where}.y_transform",
                                  value=self.y_transform)
        pre: Scaler = QuantileGaussianize() if "knots" in state["preprocess"] else AsinhScale()
        self.pre = pre.load_state_dict(state["preprocess"])
        self.scaler = Standardize().load_state_dict(state["scaler"])
        self.log_conditions = bool(state.get("log_conditions", False))
        if self.model_conditions:
            self.cond_scaler = self._new_cond_scaler().load_state_dict(state["cond_scaler"])
        self.ranges = {k: (float(v[0]), float(v[1])) for k, v in dict(state.get("ranges", {})).items()}
        fill = state.get("fill")
        self.fill = None if fill is None else torch.as_tensor(fill, dtype=torch.float64)
        mult = state.get("multiplicity")
        self.multiplicity = None if mult is None else ([float(v) for v in mult[0]], [float(p) for p in mult[1]])

    def draw_uniform(self, n: int, gen: torch.Generator) -> np.ndarray | None:
        """The uniform features of ``n`` events on [-π, π) (None when none is drawn)."""
        if not self._uniform_cols:
            return None
        u = torch.rand((n, len(self._uniform_cols)), generator=gen, dtype=torch.float64).numpy()
        return (2.0 * u - 1.0) * math.pi

    @property
    def uniform_columns(self) -> list[int]:
        """Columns of the map's features drawn uniformly."""
        return list(self._uniform_cols)
