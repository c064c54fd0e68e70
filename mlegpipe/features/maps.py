"""Feature maps: exactly invertible maps between event fields and the features a model learns.

A :class:`FeatureMap` turns event columns into model features and back. It
works on torch tensors (differentiable, any dtype) through
:meth:`FeatureMap.forward` / :meth:`FeatureMap.inverse` and on event batches
through :meth:`FeatureMap.encode` / :meth:`FeatureMap.decode`. A map may need a
per-event *context* besides the features (a domain's lepton maps need the
lepton beam energy); :meth:`FeatureMap.context_of` reads it from events and
:meth:`FeatureMap.context_from` from a generator's conditions.

The core holds the generic maps: :class:`Columns` (flat fields as they are)
and :class:`~mlegpipe.features.collections.CollectionMap` (particle
collections). Domains register their own through the
``mlegpipe_register_feature_maps`` hook; :func:`make_feature_map` builds any of
them by name. :func:`decode_events` turns generated features into event
columns and says which events are physical.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> b = EventBatch.from_columns({"x": np.array([0.1]), "Q2": np.array([4.0])})
    >>> m = make_feature_map({"name": "columns", "features": ["Q2", "x"]})
    >>> m.encode(b).tolist(), sorted(m.decode(np.array([[4.0, 0.1]]), 0.0))
    ([[4.0, 0.1]], ['Q2', 'x'])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError, PhysicsError

__all__ = [
    "Columns",
    "FeatureMap",
    "TensorLike",
    "as_context",
    "decode_events",
    "inside_ranges",
    "make_feature_map",
    "sample_with_rejection",
]

TensorLike = torch.Tensor | np.ndarray | float


def as_context(values: TensorLike, like: torch.Tensor) -> torch.Tensor:
    """A per-event context (or one value for all) as a ``(n,)`` tensor of ``like``'s dtype and device.

    Example:
        >>> as_context(2.0, torch.zeros(3, 1)).tolist()
        [2.0, 2.0, 2.0]
    """
    t = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return t.expand(like.shape[0]) if t.ndim == 0 else t


class FeatureMap:
    """An exactly invertible map between event fields and model features.

    Attributes:
        name: the name used in configurations (``feature_map = "columns"``).
        fields: event fields :meth:`decode` produces.
        inputs: event fields :meth:`encode` reads (the columns of :meth:`forward`'s input).
        names: model feature names (the columns of :meth:`forward`'s output).
        needs_context: :meth:`forward` and :meth:`inverse` use the per-event context.

    Hints to the generators that learn the features (class attributes, all optional):
        uniform_features: features that are exactly uniform on [-π, π) (an azimuth of
            unpolarized beams): drawn, not learned.
        logit_features: features ``ln u`` of a quantity ``u ≤ 1`` (DIS y): learned as ``ln(u / (1 - u))``.
        heavy_tailed: features with power-law tails: compressed (asinh) before standardizing.
        edges_fixed_under_context: hard edges of the features stay put when the context varies.
        range_fields: decoded fields whose training range a generator may enforce when sampling.
        sampler_hint: the flow sampler measured best for this map (``fast`` or ``distilled``).

    Subclasses implement :meth:`forward` and :meth:`inverse`; maps with a
    context override :meth:`context_of` and :meth:`context_from`; maps whose
    decoded events gain derived fields or have physical limits override :meth:`complete`.
    """

    name: ClassVar[str] = ""
    fields: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    needs_context: ClassVar[bool] = False
    uniform_features: ClassVar[tuple[str, ...]] = ()
    logit_features: ClassVar[tuple[str, ...]] = ()
    heavy_tailed: ClassVar[tuple[str, ...]] = ()
    edges_fixed_under_context: ClassVar[bool] = False
    range_fields: ClassVar[tuple[str, ...]] = ()
    sampler_hint: ClassVar[str] = "fast"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], beams: Beams | None = None,
                    features: Sequence[str] | None = None) -> FeatureMap:
        """Build the map from its :meth:`config` (without ``name``); ``beams`` and ``features`` fill gaps."""
        return cls(**config)

    def forward(self, x: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        """Event columns ``(n, len(inputs))`` → features ``(n, len(names))``."""
        raise NotImplementedError

    def inverse(self, z: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        """Features ``(n, len(names))`` → event columns ``(n, len(fields))``."""
        raise NotImplementedError

    def valid(self, z: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        """Boolean mask: where :meth:`inverse` gives a real, finite event."""
        out = self.inverse(z, context)
        return torch.isfinite(out).all(dim=1)

    def inverse_and_valid(self, z: torch.Tensor, context: TensorLike = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`inverse` and :meth:`valid` of the same features, as event decoding needs both.

        This default calls both; a map whose validity is the finiteness of its
        inverse (the default :meth:`valid`) and whose inverse is costly overrides
        it to compute the inverse once.

        Example:
            >>> m = Columns(["x"])
            >>> out, ok = m.inverse_and_valid(torch.tensor([[1.0], [float("nan")]], dtype=torch.float64))
            >>> ok.tolist()
            [True, False]
        """
        return self.inverse(z, context), self.valid(z, context)

    def config(self) -> dict[str, Any]:
        """JSON-able description; :func:`make_feature_map` rebuilds the map from it."""
        return {"name": self.name}

    def fit(self, events: EventBatch) -> FeatureMap:
        """Learn data-dependent settings from training events (most maps have none); returns self."""
        return self

    # -- context ---------------------------------------------------------------------
    def context_of(self, events: EventBatch) -> np.ndarray:
        """The per-event context of ``events`` (zeros for maps without one)."""
        return np.zeros(len(events))

    def context_from(self, conditions: Mapping[str, Any], n: int, beams: Beams | None) -> np.ndarray:
        """The per-event context of ``n`` events to generate, from a generator's conditions (zeros by default)."""
        return np.zeros(n)

    # -- event batches --------------------------------------------------------------
    def encode(self, events: EventBatch) -> np.ndarray:
        """Features of ``events`` as a float64 ``(n, len(names))`` array."""
        x = torch.from_numpy(self.input_matrix(events))
        ctx = torch.from_numpy(self.context_of(events)) if self.needs_context else torch.zeros(len(events),
                                                                                               dtype=x.dtype)
        z = self.forward(x, ctx).numpy()
        bad = ~np.isfinite(z).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{int(bad.sum())} events lie outside the domain of feature map {self.name!r} "
                            f"(first: entry {i}, {dict(zip(self.inputs, x[i].tolist(), strict=True))})",
                            path=", ".join(self.inputs))
        return z

    def input_matrix(self, events: EventBatch) -> np.ndarray:
        """The ``(n, len(inputs))`` float64 columns :meth:`forward` reads."""
        return events.matrix(self.inputs)

    def decode(self, z: np.ndarray, context: np.ndarray | float = 0.0) -> dict[str, np.ndarray]:
        """Event columns (by field name) from features ``z``."""
        zt = torch.as_tensor(np.asarray(z, dtype=np.float64))
        out = self.inverse(zt, torch.as_tensor(np.broadcast_to(context, (len(zt),)).copy())).numpy()
        return {f: out[:, i] for i, f in enumerate(self.fields)}

    def finite(self, decoded: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Where the decoded columns ``(n, len(fields))`` are all finite (maps with absent particles ignore
        the NaN of absent slots)."""
        return np.isfinite(decoded).all(axis=1)

    def complete(self, columns: dict[str, np.ndarray], context: np.ndarray, beams: Beams | None,
                 ok: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        """Decoded columns with what the domain derives from them, and ``ok`` narrowed to physical events.

        Called by :func:`decode_events` after the inverse; the default adds nothing.
        """
        return columns, ok

    def assemble(self, columns: Mapping[str, np.ndarray], context: np.ndarray | None = None) -> dict[str, Any]:
        """Event columns for :class:`~mlegpipe.events.EventBatch` from decoded (and completed) columns.

        The default passes them through; maps of particle collections gather their per-slot columns
        into collections here.
        """
        return dict(columns)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Columns(FeatureMap):
    """Any flat event fields, learned as they are (toys, labels, detector features).

    Example:
        >>> from mlegpipe.events import EventBatch
        >>> b = EventBatch.from_columns({"x": np.array([0.1]), "Q2": np.array([4.0])})
        >>> Columns(["Q2", "x"]).encode(b).tolist()
        [[4.0, 0.1]]
    """

    name = "columns"

    def __init__(self, features: Sequence[str]) -> None:
        if not features:
            raise ConfigError("the columns feature map needs at least one feature", path="features", value=[])
        self.fields = self.inputs = self.names = tuple(features)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], beams: Beams | None = None,
                    features: Sequence[str] | None = None) -> Columns:
        return cls(config.get("features", features or ()))

    def forward(self, x: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        return x.clone()

    def inverse(self, z: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        return z.clone()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "features": list(self.names)}


def make_feature_map(
    config: str | Mapping[str, Any],
    beams: Beams | None = None,
    features: Sequence[str] | None = None,
    path: str = "feature_map",
    registry: Any = None,
) -> FeatureMap:
    """Build a registered feature map from its name or :meth:`FeatureMap.config` dict.

    Maps that depend on the beams take them from ``beams`` unless the config
    gives the settings; ``columns`` and ``collection`` take ``features``.

    Example:
        >>> make_feature_map({"name": "columns", "features": ["x", "Q2"]}).names
        ('x', 'Q2')
    """
    if registry is None:
        from mlegpipe.registry import default_registry

        registry = default_registry()
    cfg = {"name": config} if isinstance(config, str) else dict(config)
    name = cfg.pop("name", None)
    if name not in registry.feature_maps:
        from mlegpipe.schema import suggest

        known = registry.feature_maps.names()
        raise ConfigError("unknown feature map; known: " + ", ".join(known), path=path, value=name,
                          hint=suggest(str(name), known))
    return registry.feature_maps.get(name).from_config(cfg, beams=beams, features=features)


def decode_events(
    fmap: FeatureMap,
    z: np.ndarray,
    context: np.ndarray,
    beams: Beams | None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Event columns from features ``z`` and the mask of physical events.

    Arguments:
        fmap: the feature map the model learned.
        z: ``(n, len(fmap.names))`` features.
        context: per-event context of the map (:meth:`FeatureMap.context_from`).
        beams: the beam set-up, handed to :meth:`FeatureMap.complete` (derived fields, kinematic limits).
        ranges: optional ``{field: (low, high)}`` cuts, checked on any produced column.

    Returns:
        ``(columns, physical)``: the columns by name and a boolean mask (finite,
        inside the map's domain and the limits its :meth:`~FeatureMap.complete` checks, inside ``ranges``).
    """
    z = np.asarray(z, dtype=np.float64)
    context = np.asarray(context, dtype=np.float64)
    zt, ct = torch.from_numpy(z), torch.from_numpy(context)
    with torch.no_grad():
        out_t, valid = fmap.inverse_and_valid(zt, ct)
        ok = valid.numpy() & np.isfinite(z).all(axis=1)
        out = out_t.numpy()
    columns = {f: out[:, i] for i, f in enumerate(fmap.fields)}
    ok &= fmap.finite(out, context)
    columns, ok = fmap.complete(columns, context, beams, ok)
    if ranges:
        ok &= inside_ranges(columns, ranges)
    return columns, ok


def inside_ranges(columns: Mapping[str, np.ndarray], ranges: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """True for events whose columns lie inside ``ranges`` ``{field: (low, high)}`` (edges included; a field
    the columns lack is not checked, NaN is outside).

    Example:
        >>> inside_ranges({"Q2": np.array([0.5, 2.0, np.nan])}, {"Q2": (1.0, np.inf), "W2": (0.0, 1.0)}).tolist()
        [False, True, False]
    """
    n = len(next(iter(columns.values()))) if columns else 0
    ok = np.ones(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        for name, (low, high) in ranges.items():
            if name in columns:
                ok &= (columns[name] >= low) & (columns[name] <= high)
    return ok


def sample_with_rejection(
    draw: Callable[[np.ndarray], tuple[dict[str, np.ndarray], np.ndarray]],
    n: int,
    max_rounds: int = 200,
) -> tuple[dict[str, np.ndarray], int, int]:
    """Draw ``n`` physical events, redrawing the rejected ones; count what was drawn.

    Arguments:
        draw: ``draw(indices)`` returns ``(columns, physical)`` for new events in
            the slots ``indices`` (so per-event conditions stay with their slot).
        n: number of events wanted.
        max_rounds: give up after this many redraws.

    Returns:
        ``(columns, drawn, rejected)``.

    Raises:
        PhysicsError: events are still unphysical after ``max_rounds`` redraws.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> def draw(idx):
        ...     v = rng.normal(size=len(idx))
        ...     return {"v": v}, v > 0
        >>> cols, drawn, rejected = sample_with_rejection(draw, 1000)
        >>> bool((cols["v"] > 0).all()), 0.4 < rejected / drawn < 0.6
        (True, True)
    """
    pending = np.arange(n)
    if n == 0:  # no events, but the same columns (empty) as any other call
        cols, _ = draw(pending)
        return {name: np.asarray(values)[:0] for name, values in cols.items()}, 0, 0
    result: dict[str, np.ndarray] = {}
    drawn = rejected = 0
    for _ in range(max_rounds):
        if len(pending) == 0:
            return result, drawn, rejected
        cols, ok = draw(pending)
        first = not result
        for name, values in cols.items():
            if first:  # the first round fills every slot (a copy unless the array is the draw's own); the
                # rejected ones are redrawn below
                result[name] = values if isinstance(values, np.ndarray) and values.flags.owndata \
                    and values.flags.writeable else np.array(values)
            else:
                result[name][pending[ok]] = values[ok]
        drawn += len(pending)
        rejected += int((~ok).sum())
        pending = pending[~ok]
    if len(pending) == 0:
        return result, drawn, rejected
    raise PhysicsError(f"{len(pending)} of {n} events are still unphysical after {max_rounds} redraws "
                       f"({rejected} of {drawn} drawn were rejected): the model puts almost all its events "
                       "outside the kinematic limits", path="generator.sample")
