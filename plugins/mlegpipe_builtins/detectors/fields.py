"""The ``smear-fields`` detector: Gaussian smearing of declared flat event fields, with an efficiency.

A detector for any flat observable, not only particles or the DIS lepton
(``smear``): each field declared under ``fields`` is replaced by its value plus
Gaussian noise of width σ, where σ is

- ``sigma`` (absolute) and/or ``relative`` (× |value|), added in quadrature
  (``combine = "quadrature"``, the default) or linearly; or
- ``resolution``: a formula (:mod:`mlegpipe.formula`: parsed safely, never
  ``eval``) of the true values of the declared fields, e.g. ``"0.2 + 0.1 * abs(v1)"``.

``efficiency`` is the probability that an event is measured: a number, or a
formula of the true values of the declared fields (clipped to [0, 1]). Each event
then gets the pass flag ``measured`` (the flag unfoldings and learned surrogates
read); smeared values are kept for events that fail it. Without an efficiency
every event passes and no flag is written.

Every random number comes from the seed given to :meth:`FieldSmearing.fold`: one
stream per field (keyed by its name) and one for the efficiency, so the same
seed gives the same events, declaring another field leaves the others' noise
unchanged, and more events only append.

In TOML::

    [detector]
    plugin = "smear-fields"
    efficiency = "0.9 - 0.1 * abs(v1)"     # or a number, e.g. 0.9; empty: every event measured
    [detector.fields.v1]
    sigma = 0.4                             # absolute
    [detector.fields.v2]
    sigma = 0.1
    relative = 0.05                         # (+) 5 % of |v2|, in quadrature
    [detector.fields.v3]
    resolution = "0.2 + 0.1 * abs(v3)"      # a formula of the true fields

Example:
    >>> from mlegpipe.context import StageContext
    >>> from mlegpipe.events import EventBatch
    >>> params = FieldSmearing.Params(fields={"a": {"sigma": 0.5}}, efficiency=0.8)
    >>> det = FieldSmearing(params, StageContext("detector"))
    >>> ev = EventBatch.from_columns({"a": np.zeros(20000), "b": np.ones(20000)})
    >>> out = det.fold(ev, np.random.SeedSequence(1))
    >>> round(float(out.column("a").std()), 1), round(float(out.column("measured").mean()), 1), float(out.column("b")[0])
    (0.5, 0.8, 1.0)
    >>> bool((det.fold(ev, np.random.SeedSequence(1)).column("a") == out.column("a")).all())  # reproducible
    True
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mlegpipe import hookimpl
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.formula import Formula, compile_formula
from mlegpipe.schema import build_params, param, suggest
from mlegpipe.stages import Detector, StageContext

__all__ = ["FieldResolution", "FieldSmearing", "mlegpipe_register_stages"]

#: The per-event pass flag written (the first of the flags unfoldings and learned surrogates look for).
PASS_FLAG = "measured"
_EFFICIENCY_STREAM, _FIELD_STREAM = 0, 1


@dataclass
class FieldResolution:
    """Gaussian resolution of one field (``[detector.fields.NAME]``).

    Example:
        >>> FieldResolution(sigma=0.3, relative=0.4).width(np.array([0.0, 1.0]), {}).round(2).tolist()
        [0.3, 0.5]
    """

    sigma: float = param(0.0, min=0.0, doc="absolute resolution σ (the field's units)")
    relative: float = param(0.0, min=0.0, doc="relative resolution: σ = relative × |value| (beside sigma)")
    combine: str = param("quadrature", choices=("quadrature", "linear"),
                         doc="how sigma and relative add: in quadrature or linearly")
    resolution: str = param("", doc="σ as a formula of the true declared fields, e.g. '0.2 + 0.1 * abs(v1)' "
                            "(instead of sigma and relative)")

    def width(self, values: np.ndarray, env: dict[str, np.ndarray], formula: Formula | None = None) -> np.ndarray:
        """σ per event for the true ``values`` (``formula``: the compiled ``resolution``, evaluated on ``env``)."""
        if formula is not None:
            return np.broadcast_to(np.asarray(formula(env), dtype=np.float64), values.shape)
        rel = self.relative * np.abs(values)
        if self.combine == "linear":
            return self.sigma + rel
        return np.sqrt(self.sigma**2 + rel**2)


class FieldSmearing(Detector):
    """Gaussian smearing of declared flat fields, with an optional efficiency writing the flag ``measured``."""

    plugin_name: ClassVar[str] = "smear-fields"

    @dataclass
    class Params:
        """Parameters of ``smear-fields``."""

        fields: dict[str, Any] = param({}, doc="the fields to smear, each a table of its resolution "
                                       "([detector.fields.v1]): sigma (absolute), relative (× |value|), combine "
                                       "('quadrature' or 'linear'), or resolution (a formula of the true fields)")
        efficiency: float | str = param("", doc="probability that an event is measured: a number in [0, 1] or a "
                                        "formula of the true declared fields (clipped to [0, 1]); empty: all")

    def __init__(self, params: Any, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        where = ctx.name
        if not params.fields:
            raise ConfigError("declare at least one field to smear, e.g. [detector.fields.v1] sigma = 0.4",
                              path=f"{where}.fields")
        names = list(params.fields)
        #: the resolution of every declared field
        self.resolutions: dict[str, FieldResolution] = {}
        self._formulas: dict[str, Formula] = {}
        for name, table in params.fields.items():
            path = f"{where}.fields.{name}"
            res = table if isinstance(table, FieldResolution) else build_params(FieldResolution, table, path)
            self.resolutions[name] = res
            if res.resolution.strip():
                if res.sigma or res.relative:
                    raise ConfigError("give either a resolution formula or sigma/relative, not both",
                                      path=f"{path}.resolution", value=res.resolution)
                self._formulas[name] = compile_formula(res.resolution, names, f"{path}.resolution")
            elif not (res.sigma or res.relative):
                raise ConfigError("no resolution: give sigma, relative or a resolution formula", path=path)
        self._efficiency: float | Formula | None = None
        eff = params.efficiency
        if isinstance(eff, int | float):
            if not 0.0 <= eff <= 1.0:
                raise ConfigError("an efficiency must lie in [0, 1]", path=f"{where}.efficiency", value=eff)
            self._efficiency = float(eff)
        elif eff.strip():
            self._efficiency = compile_formula(eff, names, f"{where}.efficiency")

    def fold(self, events: EventBatch, seed: np.random.SeedSequence) -> EventBatch:
        """The events with the declared fields smeared (and the flag ``measured``), index-aligned.

        Raises:
            ConfigError: a declared field is not a flat numeric field of the events (``<section>.fields.<name>``).
            DataError: a resolution formula gives a negative or non-finite σ, or the efficiency formula a
                non-finite value.
        """
        where = self.ctx.name
        truth = {name: self._field(events, name) for name in self.resolutions}
        columns: dict[str, np.ndarray] = {}
        for name, res in self.resolutions.items():
            values = truth[name]
            sigma = res.width(values, truth, self._formulas.get(name))
            bad = ~(np.isfinite(sigma) & (sigma >= 0)) & np.isfinite(values)
            if bad.any():
                first = int(np.argmax(bad))
                raise DataError(f"the resolution gives a negative or non-finite sigma for {int(bad.sum())} events "
                                f"(first: event {first}, {name} = {values[first]:.6g}, sigma = {sigma[first]:.6g})",
                                path=f"{where}.fields.{name}")
            noise = np.random.default_rng(_child(seed, _FIELD_STREAM, _key(name))).standard_normal(len(values))
            columns[name] = values + sigma * noise
        if self._efficiency is not None:
            columns[PASS_FLAG] = self._passed(self._efficiency, truth, len(events), seed)
        out = events.with_columns(**columns)
        out.meta["detector"] = {"plugin": self.plugin_name, "fields": list(self.params.fields)}
        return out

    def _field(self, events: EventBatch, name: str) -> np.ndarray:
        path = f"{self.ctx.name}.fields.{name}"
        if not events.has(name):
            raise ConfigError("no such field in the events to smear; fields: " + ", ".join(events.fields),
                              path=path, value=name, hint=suggest(name, events.fields))
        try:
            return events.column(name)
        except DataError as err:
            raise ConfigError(f"not a flat numeric field: {err.message}", path=path, value=name) from None

    def _passed(self, eff: float | Formula, truth: dict[str, np.ndarray], n: int,
                seed: np.random.SeedSequence) -> np.ndarray:
        if isinstance(eff, Formula):
            prob = np.broadcast_to(np.asarray(eff(truth), dtype=np.float64), (n,))
            if not np.isfinite(prob).all():
                raise DataError(f"the efficiency formula {eff.text!r} is not finite for "
                                f"{int((~np.isfinite(prob)).sum())} events", path=f"{self.ctx.name}.efficiency")
            prob = np.clip(prob, 0.0, 1.0)
        else:
            prob = np.full(n, eff)
        return np.random.default_rng(_child(seed, _EFFICIENCY_STREAM)).random(n) < prob

    def info(self) -> dict[str, Any]:
        """The smeared fields and the efficiency as declared."""
        eff = self.params.efficiency
        return {"fields": list(self.params.fields), "efficiency": 1.0 if eff == "" else eff}


def _key(name: str) -> int:
    """A stable stream key of a field name (independent of the declaration order)."""
    return zlib.crc32(name.encode("utf-8"))


def _child(seed: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """A SeedSequence keyed below ``seed`` without spawning (folding twice gives the same events)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *key))


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the ``smear-fields`` detector."""
    registry.add(FieldSmearing)
