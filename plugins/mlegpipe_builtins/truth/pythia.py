"""The ``pythia8`` truth source: Pythia 8 events at any beams (DIS by default, any process by settings).

DIS is set up as in Pythia's DIS example: neutral-current γ*/Z t-channel
exchange (``WeakBosonExchange:ff2ff(t:gmZ)``), no lepton PDF, dipole recoil
for the space-like shower, ``SpaceShower:pTmaxMatch = 2`` and a Q² cut.
Pythia's beam A travels along +z, as mlegpipe's beam ``a`` does (HERA: the
proton). ``process = "custom"`` runs any process from ``settings`` at any beams
(``beams = "lhc13"``: pp at 13 TeV). ``level = "hard"`` stops after the hard
process and (with ``particles = true``) stores its outgoing particles; ``"full"``
adds showers, remnants and hadronization and stores the final state.

The scattered lepton is the outgoing hard-process lepton of the beam lepton's
flavour, followed through its radiation to its final copy.

Events are made in independent blocks of ``block_events``; block ``i`` runs a
fresh Pythia seeded from ``ctx.seed_sequence("pythia", i)``, so a given seed
always gives the same events and blocks could run in parallel.

Example (TOML):
    [truth]
    plugin = "pythia8"
    beams = "hera"
    q2_min = 1.0
    level = "full"
    events = 20000
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import awkward as ak
import numpy as np
from tqdm import tqdm

from mlegpipe import hookimpl
from mlegpipe.beams import Beams
from mlegpipe.events import WEIGHT, EventBatch
from mlegpipe.exceptions import ConfigError, PhysicsError, PluginError
from mlegpipe.schema import param
from mlegpipe.stages import StageContext, TruthSource
from mlegpipe_builtins.dis import BEAM_ENERGY, DIS_LABELS, LEPTON_FIELDS
from mlegpipe_builtins.dis.kinematics import dis_from_lepton
from mlegpipe_builtins.truth.rootfile import beams_from_param

__all__ = [
    "MB_TO_PB",
    "PythiaSource",
    "beam_settings",
    "dis_settings",
    "import_pythia",
    "pythia_seed",
    "scattered_lepton_index",
]

#: Pythia quotes cross sections in mb.
MB_TO_PB = 1e9
#: Events per yielded batch inside a block (does not change the events).
CHUNK_EVENTS = 10_000
#: Largest seed Pythia accepts.
MAX_SEED = 900_000_000
#: Give up after this many consecutive failed events.
MAX_FAILURES = 100


def import_pythia() -> ModuleType:
    """The Pythia 8 Python module (``pythia8mc`` from PyPI, or ``pythia8`` from a Pythia build)."""
    for name in ("pythia8mc", "pythia8"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise PluginError("Pythia 8 is not installed", path="pythia8",
                      hint="pip install 'mlegpipe[pythia]' (the pythia8mc wheel)")


def pythia_version() -> str:
    """Version of the installed Pythia module."""
    for dist in ("pythia8mc", "pythia8"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def pythia_seed(seed_sequence: np.random.SeedSequence) -> int:
    """A Pythia seed in [1, 900 000 000] from a SeedSequence.

    Example:
        >>> 1 <= pythia_seed(np.random.SeedSequence(0)) <= 900_000_000
        True
    """
    return int(seed_sequence.generate_state(1, dtype=np.uint64)[0] % MAX_SEED) + 1


def beam_settings(beams: Beams) -> list[str]:
    """Pythia beam settings for ``beams``: beam A is mlegpipe's beam ``a`` (along +z), beam B is ``b``.

    Example:
        >>> beam_settings(Beams.preset("hera"))[:2]
        ['Beams:idA = 2212', 'Beams:idB = -11']
        >>> beam_settings(Beams.preset("lhc13"))
        ['Beams:idA = 2212', 'Beams:idB = 2212', 'Beams:frameType = 2', 'Beams:eA = 6500.0', 'Beams:eB = 6500.0']
    """
    a, b = beams.a, beams.b
    out = [f"Beams:idA = {a.pdg}", f"Beams:idB = {b.pdg}"]
    if beams.is_fixed_target:
        # momenta (frameType 3) so a target at rest is exact; beam leptons are taken massless
        pa, pb = (beam.energy if beam.is_lepton else beam.momentum for beam in (a, b))
        out += ["Beams:frameType = 3", f"Beams:pzA = {pa!r}", f"Beams:pzB = {-pb!r}"]
    else:
        out += ["Beams:frameType = 2", f"Beams:eA = {a.energy!r}", f"Beams:eB = {b.energy!r}"]
    return out


def dis_settings(q2_min: float) -> list[str]:
    """Neutral-current DIS settings (Pythia's DIS example, main36/main340).

    Example:
        >>> dis_settings(4.0)[-1]
        'PhaseSpace:Q2Min = 4.0'
    """
    return [
        "WeakBosonExchange:ff2ff(t:gmZ) = on",
        "PDF:lepton = off",
        "SpaceShower:dipoleRecoil = on",
        "SpaceShower:pTmaxMatch = 2",
        f"PhaseSpace:Q2Min = {q2_min!r}",
    ]


def scattered_lepton_index(event: Any, lepton_id: int) -> int:
    """Index of the final scattered lepton in a Pythia event (or process) record; -1 if there is none.

    Starts from the outgoing hard-process particle (|status| = 23) with the
    beam lepton's id and follows its daughters of the same id (QED radiation,
    recoil copies) to the final-state copy, taking the most energetic one.
    """
    start = -1
    for i in range(3, event.size()):
        particle = event[i]
        if abs(particle.status()) == 23 and particle.id() == lepton_id:
            start = i
            break
    i = start
    while i >= 0 and not event[i].isFinal():
        best, best_e = -1, -1.0
        for d in event[i].daughterList():
            if event[d].id() == lepton_id and event[d].e() > best_e:
                best, best_e = d, event[d].e()
        i = best
    return i


class PythiaSource(TruthSource):
    """Pythia 8 events: DIS (neutral current) at any beams, or any process from Pythia settings."""

    plugin_name: ClassVar[str] = "pythia8"

    @dataclass
    class Params:
        events: int = param(10_000, min=1, doc="number of events")
        beams: str | dict[str, Any] = param("hera", doc="beam preset name (hera, lhc13, ...) or table")
        process: str = param("dis", choices=("dis", "custom"),
                             doc="'dis': neutral-current DIS (lepton-hadron beams); 'custom': only beams + settings")
        q2_min: float = param(1.0, min=0.0, exclusive_min=True, doc="PhaseSpace:Q2Min in GeV² (process = 'dis')")
        level: str = param("full", choices=("hard", "full"),
                           doc="'hard': hard process only; 'full': showers, remnants, hadronization")
        particles: bool = param(True, doc="store the particles: the final state (level = 'full') or the hard "
                                          "process's outgoing particles (level = 'hard')")
        lepton: bool | None = param(None, doc="find and store the scattered lepton and its DIS variables (default: "
                                              "for process = 'dis')")
        settings: list[str] = param([], doc="extra Pythia settings, e.g. 'HardQCD:all = on' (applied last)")
        cut: str = param("", doc="selection on the output fields, e.g. 'Q2 > 1 and y < 0.95' (safe formula); "
                                 "events counts the selected events")
        block_events: int = param(100_000, min=1, doc="events per independently seeded Pythia run")

    def __init__(self, params: Params, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        self._beams = beams_from_param(params.beams, f"{ctx.name}.beams")
        self.lepton = params.process == "dis" if params.lepton is None else params.lepton
        if (params.process == "dis" or self.lepton) and not self._beams.is_lepton_hadron:
            key = "process" if params.process == "dis" else "lepton"
            raise ConfigError(f"{'process = dis' if key == 'process' else 'the scattered lepton'} needs a "
                              f"lepton-hadron set-up; the beams are {self._beams.label}", path=f"{ctx.name}.{key}",
                              value=getattr(params, key), hint="set process = 'custom' with Pythia settings "
                              "(e.g. 'Top:gg2ttbar = on') and lepton = false")
        self.pythia = import_pythia()
        self._blocks: list[dict[str, float]] = []
        self._failed = 0
        self._generated = self._selected = 0
        self._check_settings()
        self._cut = None
        if params.cut:
            from mlegpipe.formula import compile_formula

            self._cut = compile_formula(params.cut, self._output_fields(), where=f"{ctx.name}.cut")

    def _output_fields(self) -> list[str]:
        fields = [*LEPTON_FIELDS, *DIS_LABELS] if self.lepton else []
        return [*fields, BEAM_ENERGY, WEIGHT] if self._beams.is_lepton_hadron else [*fields, WEIGHT]

    @property
    def beams(self) -> Beams:
        return self._beams

    def cuts(self) -> dict[str, float]:
        """The Q² cut of DIS (enforced by the DIS physicality check on generated events)."""
        return {"q2_min": self.params.q2_min} if self.params.process == "dis" else {}

    # -- configuration -----------------------------------------------------------------------
    def settings(self, seed: int) -> list[tuple[str, str]]:
        """All settings of one run as ``(setting, where)`` pairs, ``where`` naming their TOML origin."""
        where = self.ctx.name
        out = [(s, f"{where}.beams") for s in beam_settings(self._beams)]
        if self.params.process == "dis":
            out += [(s, f"{where}.q2_min") for s in dis_settings(self.params.q2_min)]
        if self.params.level == "hard":
            out += [(s, f"{where}.level") for s in ("PartonLevel:all = off", "HadronLevel:all = off")]
        out += [(s, f"{where}.settings[{i}]") for i, s in enumerate(self.params.settings)]
        out += [(s, "seed") for s in ("Random:setSeed = on", f"Random:seed = {seed}")]
        out += [(s, "quiet") for s in ("Print:quiet = on", "Next:numberCount = 0", "Next:numberShowEvent = 0")]
        return out

    def _new_pythia(self, seed: int) -> Any:
        pythia = self.pythia.Pythia("", False)
        for setting, where in self.settings(seed):
            if not pythia.readString(setting):
                raise ConfigError("Pythia rejected this setting (unknown name or meaningless value)",
                                  path=where, value=setting)
        return pythia

    def _check_settings(self) -> None:
        for i, setting in enumerate(self.params.settings):
            if "=" not in setting:
                raise ConfigError("a Pythia setting reads 'Name = value'", path=f"{self.ctx.name}.settings[{i}]",
                                  value=setting)
        self._new_pythia(1)  # validates every setting before anything runs

    # -- generation ----------------------------------------------------------------------------
    def iter_batches(self) -> Iterator[EventBatch]:
        n_total = self.params.events
        n_blocks = -(-n_total // self.params.block_events)
        self._blocks, self._failed = [], 0
        self._generated = self._selected = 0
        bar = tqdm(total=n_total, desc=f"{self.ctx.name}: pythia8", unit="ev", disable=not self.ctx.progress)
        try:
            for block in range(n_blocks):
                n_block = min(self.params.block_events, n_total - block * self.params.block_events)
                yield from self._run_block(block, n_block, bar)
        finally:
            bar.close()

    def _run_block(self, block: int, n_block: int, bar: Any) -> Iterator[EventBatch]:
        seed = pythia_seed(self.ctx.seed_sequence("pythia", block))
        pythia = self._new_pythia(seed)
        if not pythia.init():
            raise PhysicsError("Pythia failed to initialize with these settings (see Pythia's messages above)",
                               path=self.ctx.name, value=[s for s, _ in self.settings(seed)])
        meta = self._meta()
        done = 0
        while done < n_block:
            n = min(CHUNK_EVENTS, n_block - done)
            batch = EventBatch.from_columns(self._generate(pythia, n), self._beams, meta)
            self._generated += n
            if self._cut is not None:
                env = {f: batch.column(f) for f in self._cut.variables if f != WEIGHT or batch.has(WEIGHT)}
                env.setdefault(WEIGHT, np.ones(n))
                mask = np.broadcast_to(np.asarray(self._cut(env), dtype=bool), (n,))
                batch = batch.take(np.flatnonzero(mask)[: n_block - done])
            self._selected += len(batch)
            done += len(batch)
            bar.update(len(batch))
            if len(batch):
                yield batch
            elif self._generated > 1000 and self._selected == 0:
                raise PhysicsError("the cut rejects every event", path=f"{self.ctx.name}.cut", value=self.params.cut)
        info = pythia.infoPython()
        self._blocks.append({"seed": seed, "sigma_pb": info.sigmaGen() * MB_TO_PB,
                             "sigma_err_pb": info.sigmaErr() * MB_TO_PB, "tried": info.nTried(),
                             "selected": info.nSelected(), "accepted": info.nAccepted()})

    def _generate(self, pythia: Any, n: int) -> dict[str, Any]:
        full = self.params.level == "full"
        want_lepton = self.lepton
        want_particles = self.params.particles
        lepton_id = self._beams.lepton_pdg if want_lepton else 0
        lepton = np.empty((n, 4))
        weights = np.empty(n)
        counts = np.zeros(n, dtype=np.int64)
        parts: list[list[tuple[float, float, float, float, int, float]]] = []
        i, failures = 0, 0
        while i < n:
            if not pythia.next():
                failures += 1
                self._failed += 1
                if failures > MAX_FAILURES:
                    raise PhysicsError(
                        f"Pythia failed {failures} events in a row (see its messages above)", path=self.ctx.name,
                        hint=f"at sqrt(s) = {self._beams.sqrt_s:.1f} GeV Pythia's parton and hadron levels may "
                             "not apply; try level = 'hard'" if full else None)
                continue
            failures = 0
            record = pythia.event if full else pythia.process
            if want_lepton:
                j = scattered_lepton_index(record, lepton_id)
                if j < 0:
                    raise PhysicsError(f"no scattered lepton (id {lepton_id}) in the event; for processes "
                                       "without one set lepton = false", path=f"{self.ctx.name}.lepton")
                p = record[j]
                lepton[i] = (p.e(), p.px(), p.py(), p.pz())
            weights[i] = pythia.infoPython().weight()
            if want_particles:  # the final state, or the hard process's outgoing particles (status 23)
                final = [(q.px(), q.py(), q.pz(), q.e(), q.id(), q.charge()) for q in record if q.isFinal()] if full \
                    else [(q.px(), q.py(), q.pz(), q.e(), q.id(), q.charge()) for q in record if q.status() == 23]
                counts[i] = len(final)
                parts.append(final)
            i += 1
        columns: dict[str, Any] = {}
        if want_lepton:
            columns.update({name: lepton[:, k] for k, name in enumerate(LEPTON_FIELDS)})
            columns.update(dis_from_lepton(lepton[:, 0], lepton[:, 1], lepton[:, 2], lepton[:, 3], self._beams))
        if self._beams.is_lepton_hadron:
            columns[BEAM_ENERGY] = np.full(n, self._beams.lepton_energy)
        if not np.all(weights == 1.0):
            columns[WEIGHT] = weights
        if want_particles:
            flat = np.array([row for event in parts for row in event], dtype=np.float64).reshape(-1, 6)
            record_fields = {"px": flat[:, 0], "py": flat[:, 1], "pz": flat[:, 2], "E": flat[:, 3],
                             "pid": flat[:, 4].astype(np.int32), "charge": flat[:, 5]}
            columns["particles"] = ak.unflatten(ak.zip(record_fields), counts)
        return columns

    # -- reporting ------------------------------------------------------------------------------
    def cross_section(self) -> tuple[float, float]:
        """Pythia's σ (pb) and its error over the blocks run so far (inverse-variance combination)."""
        if not self._blocks:
            return math.nan, math.nan
        sig = np.array([b["sigma_pb"] for b in self._blocks])
        err = np.array([b["sigma_err_pb"] for b in self._blocks])
        if np.all(err > 0):
            w = 1 / err**2
            return float((w * sig).sum() / w.sum()), float(1 / math.sqrt(w.sum()))
        return float(sig.mean()), float(math.sqrt((err**2).sum()) / len(err))

    def info(self) -> dict[str, Any]:
        sigma, error = self.cross_section()
        efficiency = self._selected / self._generated if self._generated else math.nan
        return {"generator": f"Pythia {pythia_version()}", "sigma_pb": sigma, "sigma_err_pb": error,
                "cut": self.params.cut, "cut_efficiency": efficiency, "sigma_selected_pb": sigma * efficiency,
                "events_tried": int(sum(b["tried"] for b in self._blocks)),
                "events_accepted": int(sum(b["accepted"] for b in self._blocks)),
                "events_failed": self._failed, "blocks": list(self._blocks), "level": self.params.level,
                "beams": self._beams.label, "sqrt_s": self._beams.sqrt_s,
                **({"beam_energy": self._beams.lepton_energy} if self._beams.is_lepton_hadron else {}),
                "settings": [s for s, w in self.settings(0) if w != "seed"]}

    def _meta(self) -> dict[str, Any]:
        return {"generator": f"Pythia {pythia_version()}", "seed": self.ctx.seed, "level": self.params.level,
                "process": self.params.process, "q2_min": self.params.q2_min, "cut": self.params.cut,
                "settings": [s for s, w in self.settings(0) if w != "seed"]}


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the ``pythia8`` truth source."""
    registry.add(PythiaSource)
