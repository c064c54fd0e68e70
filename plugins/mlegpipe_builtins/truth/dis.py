"""The ``dis`` truth source: unweighted inclusive DIS events from the ALLM97 Born cross section.

Events (x, Q², φ) are drawn from d²σ/dx dQ² (one-photon exchange, F₂ from
ALLM97, F_L from a fixed R) inside the cuts, with an adaptive importance grid
in (ln x, ln Q²) and accept-reject (:mod:`mlegpipe.sampling`), then
turned into the scattered lepton in the lab frame (:mod:`mlegpipe_builtins.dis.kinematics`).

Closure tests (not physics): ``x_power`` = a and ``q2_power`` = b multiply the
sampled density by the smooth factor (x/x_ref)^a (Q²/Q²_ref)^b *before* the
unweighting, so the events stay unweighted but follow a deliberately distorted
spectrum (e.g. pseudo-data whose truth differs from a simulation's, to check that
an unfolding does not just return its prior). With both powers 0 (the default)
the events are the physics ones, bit for bit; otherwise ``cross_section_pb`` is
the integral of the reweighted density and ``info()["reweighted"]`` is True.

Reproducibility: events come in fixed blocks of :data:`BLOCK_SIZE`; block k
draws from ``ctx.seed_sequence("events", k)``, so the same seed gives the same
events whatever ``chunk_size`` (which only sets how many events each yielded
batch holds), and a smaller ``events`` gives the first events of a larger run.

Example:
    >>> from mlegpipe.stages import StageContext
    >>> src = DISTruth(DISTruth.Params(events=500, beams="eic10x100"), StageContext("truth", seed=1))
    >>> batch = src.read()
    >>> len(batch), bool((batch.column("Q2") > 1.0).all())
    (500, True)
    >>> src.info()["cross_section_pb"] > 0
    True
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from mlegpipe import hookimpl
from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, MlegpipeError, PhysicsError
from mlegpipe.sampling import GridSettings, SamplerStats, UnweightedSampler
from mlegpipe.schema import param
from mlegpipe.stages import TruthSource
from mlegpipe_builtins.dis import BEAM_ENERGY
from mlegpipe_builtins.dis.allm97 import ALLM97_VALIDITY
from mlegpipe_builtins.dis.cross_section import BornCrossSection, DISRegion
from mlegpipe_builtins.dis.kinematics import lepton_from_dis

__all__ = ["BLOCK_SIZE", "DISTruth", "mlegpipe_register_stages"]

#: Events per random-stream block (fixed: changing it changes the events of a seed).
BLOCK_SIZE = 16384


class DISTruth(TruthSource):
    """Inclusive DIS events (scattered lepton) from the ALLM97 Born cross section."""

    plugin_name: ClassVar[str] = "dis"

    @dataclass
    class Params:
        """Parameters of the ``dis`` truth source."""

        beams: str = param("hera", doc="lepton-hadron beam preset (hera, eic18x275, eic10x100, jlab, clas, sym50, "
                                       "or any registered one)")
        lepton_energy: float | None = param(None, doc="override the preset's lepton beam energy (GeV)")
        hadron_energy: float | None = param(None, doc="override the preset's proton beam energy (GeV)")
        lepton_direction: int | None = param(None, choices=(-1, 1), doc="override: +1 lepton along +z, -1 along -z")
        lepton_pdg: int | None = param(None, choices=(11, -11, 13, -13), doc="override the lepton PDG id")
        events: int = param(100_000, min=1, doc="number of unweighted events")
        q2_min: float = param(1.0, doc="Q² cut in GeV² (> 0)")
        q2_max: float | None = param(None, doc="optional upper Q² cut in GeV²")
        w2_min: float = param(ALLM97_VALIDITY[2], doc="W² cut in GeV² (3: where ALLM97 holds)")
        y_min: float = param(0.0, doc="lower inelasticity cut")
        y_max: float = param(1.0, doc="upper inelasticity cut")
        x_min: float = param(ALLM97_VALIDITY[0], doc="lower x cut (ALLM97 holds above 3e-6)")
        x_max: float = param(ALLM97_VALIDITY[1], doc="upper x cut (ALLM97 holds below 0.85)")
        r_longitudinal: float = param(0.0, min=0.0, max=1.0, doc="R = σ_L/σ_T for F_L (0: F_L = 0)")
        chunk_size: int = param(100_000, min=1, doc="events per yielded batch (does not change the events)")
        grid_bins: int = param(128, min=4, max=1024, doc="importance-grid bins per axis in (ln x, ln Q²)")
        grid_iterations: int = param(6, min=0, doc="VEGAS refinement iterations")
        grid_points: int = param(20_000, min=100, doc="density evaluations per refinement iteration")
        grid_safety: float = param(1.1, min=1.0, doc="safety factor on the cell maxima")
        x_power: float = param(0.0, min=-3.0, max=3.0,
                               doc="closure tests only: weight the spectrum by (x/x_ref)^x_power (0: physics)")
        q2_power: float = param(0.0, min=-3.0, max=3.0,
                                doc="closure tests only: weight the spectrum by (Q²/q2_ref)^q2_power (0: physics)")
        x_ref: float = param(0.01, min=0.0, exclusive_min=True, doc="reference x of the x_power weight")
        q2_ref: float = param(10.0, min=0.0, exclusive_min=True, doc="reference Q² (GeV²) of the q2_power weight")

    def __init__(self, params: Any, ctx: Any) -> None:
        super().__init__(params, ctx)
        self._beams = self._make_beams()
        p = params
        self.region = DISRegion(self._beams, q2_min=p.q2_min, q2_max=p.q2_max, w2_min=p.w2_min, y_min=p.y_min,
                                y_max=p.y_max, x_min=p.x_min, x_max=p.x_max, path=ctx.name)
        self.cross_section = BornCrossSection(self.region, p.r_longitudinal)
        self._sampler: UnweightedSampler | None = None
        self._seconds = 0.0
        self._generated = 0

    def _make_beams(self) -> Beams:
        """The preset with overrides; impossible energies name the TOML key."""
        p, sec = self.params, self.ctx.name
        presets = self.ctx.lookup().beam_presets
        try:
            preset = presets.get(p.beams, path=f"{sec}.beams")
        except MlegpipeError as err:
            raise ConfigError(err.message, path=f"{sec}.beams", value=p.beams, hint=err.hint) from None
        if not preset.is_lepton_hadron:
            raise ConfigError(f"inclusive DIS needs a lepton-hadron set-up; {p.beams!r} is {preset.label}",
                               path=f"{sec}.beams", value=p.beams,
                               hint="choose hera, eic18x275, eic10x100, jlab, clas or sym50")
        lepton_energy = preset.lepton_energy if p.lepton_energy is None else p.lepton_energy
        hadron_energy = preset.hadron_energy if p.hadron_energy is None else p.hadron_energy
        if not (math.isfinite(lepton_energy) and lepton_energy > 0):
            raise PhysicsError("lepton beam energy must be a positive number of GeV", path=f"{sec}.lepton_energy",
                               value=lepton_energy)
        overrides: dict[str, Any] = {"lepton_energy": lepton_energy, "hadron_energy": hadron_energy}
        if p.lepton_direction is not None:
            overrides["lepton_direction"] = p.lepton_direction
        if p.lepton_pdg is not None:
            overrides["lepton_pdg"] = p.lepton_pdg
        try:
            return preset.overridden(overrides)
        except PhysicsError as err:
            key = (err.path or "beams").split(".")[-1]
            raise PhysicsError(err.message, path=f"{sec}.{key}", value=err.value, hint=err.hint) from None

    @property
    def beams(self) -> Beams:
        """The beam set-up of the events."""
        return self._beams

    def cuts(self) -> dict[str, float]:
        """The Q² and W² generation cuts (the physicality checks enforce them on generated events)."""
        return {"q2_min": self.params.q2_min, "w2_min": self.params.w2_min}

    @property
    def reweighted(self) -> bool:
        """True when ``x_power`` or ``q2_power`` distorts the spectrum (closure tests, not physics)."""
        return self.params.x_power != 0.0 or self.params.q2_power != 0.0

    def spectrum_weight(self, x: np.ndarray, q2: np.ndarray) -> np.ndarray:
        """The closure-test weight (x/x_ref)^x_power (Q²/q2_ref)^q2_power (1 for the physics spectrum).

        Example:
            >>> from mlegpipe.stages import StageContext
            >>> src = DISTruth(DISTruth.Params(q2_power=-1.0, q2_ref=10.0), StageContext("truth", seed=1))
            >>> src.spectrum_weight(np.array([0.01]), np.array([20.0])).tolist()
            [0.5]
        """
        p = self.params
        x, q2 = np.asarray(x, dtype=np.float64), np.asarray(q2, dtype=np.float64)
        return np.exp(p.x_power * np.log(x / p.x_ref) + p.q2_power * np.log(q2 / p.q2_ref))

    def density_log(self, z: np.ndarray) -> np.ndarray:
        """The sampled density in (ln x, ln Q²): the Born one times :meth:`spectrum_weight` (if reweighted)."""
        density = self.cross_section.density_log(z)
        if not self.reweighted:
            return density
        z = np.asarray(z, dtype=np.float64)
        return density * self.spectrum_weight(np.exp(z[:, 0]), np.exp(z[:, 1]))

    def sampler(self) -> UnweightedSampler:
        """The importance-grid sampler (built on first use from ``ctx.seed_sequence("grid")``)."""
        if self._sampler is None:
            p = self.params
            lo, hi = self.region.box()
            settings = GridSettings(bins=p.grid_bins, adapt_iterations=p.grid_iterations,
                                    adapt_points=p.grid_points, safety=p.grid_safety)
            try:
                self._sampler = UnweightedSampler(self.density_log, lo, hi, settings,
                                                  self.ctx.seed_sequence("grid"))
            except ValueError as err:  # zero or negative cross section everywhere the grid looked
                sec = self.ctx.name
                path = f"{sec}.r_longitudinal" if "must be finite and >= 0" in str(err) and p.r_longitudinal else sec
                raise PhysicsError(f"cannot sample these settings: {err}", path=path,
                                   hint="check the cuts against the beam energies") from None
        return self._sampler

    def _block(self, index: int, need: int) -> dict[str, np.ndarray]:
        """Events ``[index·BLOCK_SIZE, index·BLOCK_SIZE + need)`` as columns."""
        trials_seed, phi_seed = self.ctx.seed_sequence("events", index).spawn(2)
        z = self.sampler().unweighted(need, np.random.default_rng(trials_seed), batch_for=BLOCK_SIZE)
        phi = 2.0 * math.pi * np.random.default_rng(phi_seed).random(BLOCK_SIZE)[:need]
        x, q2 = np.exp(z[:, 0]), np.exp(z[:, 1])
        beams = self._beams
        energy, px, py, pz = lepton_from_dis(x, q2, phi, beams)
        mass = beams.hadron_mass
        return {
            "lepton_E": energy, "lepton_px": px, "lepton_py": py, "lepton_pz": pz,
            "x": x, "Q2": q2, "y": q2 / (x * self.region.s_minus_m2),
            "W2": mass * mass + q2 * (1.0 - x) / x, "nu": q2 / (2.0 * mass * x),
            BEAM_ENERGY: np.full(need, beams.lepton_energy),
        }

    def iter_batches(self) -> Iterator[EventBatch]:
        """Yield ``events`` events in batches of ``chunk_size`` (the last may be shorter)."""
        p = self.params
        sampler = self.sampler()
        sampler.stats = SamplerStats()
        name = "mlegpipe dis (ALLM97 Born" + (", spectrum reweighted for closure tests)" if self.reweighted else ")")
        meta = {"generator": name, "seed": self.ctx.seed, "settings": self.settings()}
        pending: list[dict[str, np.ndarray]] = []
        pending_n = 0
        self._generated = 0
        start = time.perf_counter()
        n_blocks = -(-p.events // BLOCK_SIZE)
        with tqdm(total=p.events, disable=not self.ctx.progress, file=sys.stderr, unit="ev",
                  desc=f"{self.ctx.name}: dis") as bar:
            for index in range(n_blocks):
                need = min(BLOCK_SIZE, p.events - index * BLOCK_SIZE)
                pending.append(self._block(index, need))
                pending_n += need
                bar.update(need)
                last = index == n_blocks - 1
                while pending_n >= p.chunk_size or (last and pending_n > 0):
                    columns = {k: np.concatenate([c[k] for c in pending]) for k in pending[0]}
                    size = min(p.chunk_size, pending_n)
                    head = {k: v[:size] for k, v in columns.items()}
                    rest = {k: v[size:] for k, v in columns.items()}
                    pending, pending_n = ([rest] if pending_n > size else []), pending_n - size
                    self._seconds = time.perf_counter() - start
                    self._generated += size
                    yield EventBatch.from_columns(head, self._beams, meta)
        self._seconds = time.perf_counter() - start
        report = sampler.report()
        if report["overweight_bias"] > 1e-3:
            self.ctx.log.warning("dis: %.2g of the cross section lies above the sampling envelope "
                                 "(unweighted events slightly biased); raise grid_safety or grid_bins",
                                 report["overweight_bias"])

    def settings(self) -> dict[str, Any]:
        """The physics settings, JSON-able."""
        p = self.params
        return {"beams": self._beams.to_table(), "preset": p.beams, **self.region.settings(),
                "r_longitudinal": p.r_longitudinal, "structure_function": "ALLM97",
                **({"reweight": {"x_power": p.x_power, "q2_power": p.q2_power, "x_ref": p.x_ref,
                                 "q2_ref": p.q2_ref}} if self.reweighted else {}),
                "grid": {"bins": p.grid_bins, "iterations": p.grid_iterations, "points": p.grid_points,
                         "safety": p.grid_safety}}

    def info(self) -> dict[str, Any]:
        """Cross section (pb) inside the cuts with its MC error, unweighting efficiency, settings."""
        out: dict[str, Any] = {"n_events": self._generated, "settings": self.settings(), "reweighted": self.reweighted}
        if self._sampler is not None and self._sampler.stats.trials:
            r = self._sampler.report()
            out.update({
                "cross_section_pb": r["integral"],
                "cross_section_error_pb": r["integral_error"],
                "unweighting_efficiency": r["unweighting_efficiency"],
                "trials": r["trials"],
                "overweight_fraction": r["overweight_fraction"],
                "overweight_bias": r["overweight_bias"],
                "events_per_second": self._generated / self._seconds if self._seconds > 0 else math.nan,
            })
        return out


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the ``dis`` truth source."""
    registry.add(DISTruth)
