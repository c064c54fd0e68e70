"""The ``pythia8`` truth source: Pythia 8 events at any beams: DIS, top pairs, or any process from settings.

``process`` picks what Pythia runs and what is stored (each kind is an object
the source composes, :class:`PythiaProcess`):

* ``"dis"`` (default): neutral-current DIS as in Pythia's DIS example
  (``WeakBosonExchange:ff2ff(t:gmZ)``, no lepton PDF, dipole recoil for the
  space-like shower, ``SpaceShower:pTmaxMatch = 2``, ``PhaseSpace:Q2Min =
  q2_min``) at lepton-hadron beams (default ``hera``); stores the scattered
  lepton (the outgoing hard-process lepton of the beam lepton's flavour,
  followed through its radiation to its final copy) and its DIS variables.
* ``"custom"``: any process from ``settings`` at any beams (``beams =
  "lhc13"``: pp at 13 TeV).
* ``"ttbar-allhad"``: pp → tt̄ → b q q̄' b̄ q q̄' at 13 TeV (beams default
  ``lhc13``), the hard process only: the six quarks in decay-chain order as
  the collection ``quarks`` (:mod:`mlegpipe_builtins.lhc.ttbar`).
* ``"ttbar-semilep"``: tt̄ with exactly one W → eν/μν, full events: anti-kT
  jets (``jet_radius``, ``jet_pt_min``, ``jet_eta_max``) with a truth
  ``flavour``, the prompt ``lepton`` and ``met``, ``met_phi``.

Pythia's beam A travels along +z, as mlegpipe's beam ``a`` does (HERA: the
proton). For ``dis`` and ``custom``, ``level = "hard"`` stops after the hard
process and (with ``particles = true``) stores its outgoing particles;
``"full"`` adds showers, remnants and hadronization and stores the final state.
An option of one process given with another (``q2_min`` with a tt̄ preset) is
an error. σ is Pythia's ``info.sigmaGen()`` (forced decays and vetoes
included), in the run's metadata.

Events are made in independent blocks of ``block_events``; block ``i`` runs a
fresh Pythia seeded from ``ctx.seed_sequence("pythia", i)``, so a given seed
always gives the same events and blocks could run in parallel
(:meth:`PythiaSource.block_batches`).

Example (TOML):
    [truth]
    plugin = "pythia8"
    beams = "hera"
    q2_min = 1.0
    level = "full"
    events = 20000

    [truth]                     # or: top pairs at 13 TeV, jets of pT > 20 GeV
    plugin = "pythia8"
    process = "ttbar-semilep"
    events = 5000
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Protocol

import awkward as ak
import numpy as np
from tqdm import tqdm

from mlegpipe import hookimpl
from mlegpipe.beams import Beams
from mlegpipe.events import WEIGHT, EventBatch
from mlegpipe.exceptions import ConfigError, PhysicsError, PluginError
from mlegpipe.provenance import CROSS_SECTION, CROSS_SECTION_ERROR
from mlegpipe.schema import fill_none, param
from mlegpipe.stages import StageContext, TruthSource
from mlegpipe_builtins.dis import BEAM_ENERGY, DIS_LABELS, LEPTON_FIELDS
from mlegpipe_builtins.dis.kinematics import dis_from_lepton
from mlegpipe_builtins.lhc.ttbar import AllHadronic, Semileptonic
from mlegpipe_builtins.truth.rootfile import beams_from_param

__all__ = [
    "MB_TO_PB",
    "PROCESSES",
    "ProcessKind",
    "PythiaProcess",
    "PythiaRun",
    "PythiaSource",
    "RecordProcess",
    "beam_settings",
    "combine_sigma",
    "dis_settings",
    "import_pythia",
    "pythia_seed",
    "scattered_lepton_index",
]

#: Pythia quotes cross sections in mb.
MB_TO_PB = 1e9
#: Events per yielded batch inside a block, for processes of cheap events (does not change the events).
CHUNK_EVENTS = 10_000
#: Largest seed Pythia accepts.
MAX_SEED = 900_000_000
#: Give up after this many consecutive failed events.
MAX_FAILURES = 100
#: Default Q² cut of DIS (GeV²).
DIS_Q2_MIN = 1.0
#: Jet parameters of ``ttbar-semilep``: anti-kT radius, pT threshold (GeV), |η| limit.
JET_DEFAULTS: dict[str, float] = {"jet_radius": 0.4, "jet_pt_min": 20.0, "jet_eta_max": 4.5}
#: Beams a top pair is made at: protons or antiprotons.
HADRON_BEAMS = (2212, -2212)


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


def combine_sigma(blocks: Sequence[dict[str, float]]) -> tuple[float, float]:
    """σ and its error (pb) over independent blocks (inverse-variance combination); NaN without blocks.

    Example:
        >>> sigma, error = combine_sigma([{"sigma_pb": 100.0, "sigma_err_pb": 2.0},
        ...                               {"sigma_pb": 104.0, "sigma_err_pb": 2.0}])
        >>> sigma, round(error, 4)
        (102.0, 1.4142)
    """
    if not blocks:
        return math.nan, math.nan
    sig = np.array([b["sigma_pb"] for b in blocks])
    err = np.array([b["sigma_err_pb"] for b in blocks])
    if np.all(err > 0):
        w = 1 / err**2
        return float((w * sig).sum() / w.sum()), float(1 / math.sqrt(w.sum()))
    return float(sig.mean()), float(math.sqrt((err**2).sum()) / len(err))


class PythiaRun:
    """One initialized Pythia (one block): events one at a time or in batches, failures counted.

    Arguments:
        pythia: an initialized ``Pythia``.
        where: the TOML path errors name.
        hint: what to suggest when events keep failing.

    Example:
        >>> pythia = import_pythia().Pythia("", False)
        >>> for s in ("Beams:eCM = 1000", "HardQCD:all = on", "PhaseSpace:pTHatMin = 50", "PartonLevel:all = off",
        ...           "HadronLevel:all = off", "Print:quiet = on"):
        ...     _ = pythia.readString(s)
        >>> _ = pythia.init()
        >>> run = PythiaRun(pythia, "truth")
        >>> run.next()
        >>> pythia.process.size() > 4, run.weight(), run.failed
        (True, 1.0, 0)
    """

    def __init__(self, pythia: Any, where: str, hint: str | None = None) -> None:
        self.pythia = pythia
        self.where = where
        self.hint = hint
        self.failed = 0
        self._info = pythia.infoPython()

    def _failures(self, count: int, in_a_row: int) -> None:
        self.failed += count
        if in_a_row > MAX_FAILURES:
            raise PhysicsError(f"Pythia failed {in_a_row} events in a row (see its messages above)",
                               path=self.where, hint=self.hint)

    def next(self) -> None:
        """Advance to the next successful event (``pythia.process`` / ``pythia.event`` hold it)."""
        in_a_row = 0
        while not self.pythia.next():
            in_a_row += 1
            self._failures(1, in_a_row)

    def weight(self) -> float:
        """The current event's weight."""
        return float(self._info.weight())

    def batch(self, n: int) -> ak.Array:
        """The next ``n`` successful full events from ``pythia.nextBatch`` (fields ``prt``, ``info``)."""
        parts, have, in_a_row = [], 0, 0
        while have < n:
            events = self.pythia.nextBatch(n - have, "skip")  # failed events are left out
            lost = n - have - len(events)
            in_a_row = in_a_row + lost if len(events) == 0 else lost
            self._failures(lost, in_a_row)
            if len(events):
                parts.append(events)
                have += len(events)
        return parts[0] if len(parts) == 1 else ak.concatenate(parts)


class PythiaProcess(Protocol):
    """What one kind of Pythia run contributes to the ``pythia8`` source.

    ``settings()`` lists its Pythia settings with the TOML path each comes from;
    ``attach(pythia)`` installs its user hooks before ``init`` (keeping
    references to them); ``generate(run, n)`` returns the columns of ``n``
    events of a :class:`PythiaRun`; ``fields()`` names its flat output fields
    (those a ``cut`` may use); ``level`` is ``"hard"`` or ``"full"``; ``chunk_events``
    is how many events the source asks for at a time (progress and memory; the
    events do not depend on it).
    """

    level: str
    chunk_events: int

    def settings(self) -> list[tuple[str, str]]: ...

    def attach(self, pythia: Any) -> None: ...

    def generate(self, run: PythiaRun, n: int) -> dict[str, Any]: ...

    def fields(self) -> list[str]: ...


class RecordProcess:
    """A process read from Pythia's record: the scattered lepton (DIS) and/or the outgoing particles.

    Arguments:
        settings: the process's own Pythia settings as ``(setting, TOML path)``.
        level: ``"hard"`` (record ``pythia.process``, status-23 particles) or ``"full"`` (``pythia.event``, final state).
        beams: the beams (a lepton beam gives ``beam_energy`` to every event).
        lepton_id: PDG id of the scattered lepton to store with its DIS variables (0: none).
        particles: store the particles.
        where: the TOML path of the source.

    Example:
        >>> hard = RecordProcess([], level="hard", beams=Beams.preset("lhc13"), lepton_id=0, particles=True,
        ...                      where="truth")
        >>> hard.settings(), hard.fields()
        ([('PartonLevel:all = off', 'truth.level'), ('HadronLevel:all = off', 'truth.level')], [])
    """

    chunk_events: ClassVar[int] = CHUNK_EVENTS

    def __init__(self, settings: list[tuple[str, str]], *, level: str, beams: Beams, lepton_id: int,
                 particles: bool, where: str) -> None:
        self._settings = settings
        self.level, self.beams, self.lepton_id, self.particles, self.where = level, beams, lepton_id, particles, where

    def settings(self) -> list[tuple[str, str]]:
        """Pythia settings as ``(setting, TOML path)``."""
        hard = [("PartonLevel:all = off", f"{self.where}.level"), ("HadronLevel:all = off", f"{self.where}.level")]
        return self._settings + (hard if self.level == "hard" else [])

    def attach(self, pythia: Any) -> None:
        """No user hooks."""

    def fields(self) -> list[str]:
        """The flat fields of the events (a cut may use them)."""
        fields = [*LEPTON_FIELDS, *DIS_LABELS] if self.lepton_id else []
        return [*fields, BEAM_ENERGY] if self.beams.is_lepton_hadron else fields

    def generate(self, run: PythiaRun, n: int) -> dict[str, Any]:
        """``n`` events: lepton and DIS variables, beam energy, weights (when not all 1), particles."""
        full = self.level == "full"
        lepton = np.empty((n, 4))
        weights = np.empty(n)
        counts = np.zeros(n, dtype=np.int64)
        parts: list[list[tuple[float, float, float, float, int, float]]] = []
        for i in range(n):
            run.next()
            record = run.pythia.event if full else run.pythia.process
            if self.lepton_id:
                j = scattered_lepton_index(record, self.lepton_id)
                if j < 0:
                    raise PhysicsError(f"no scattered lepton (id {self.lepton_id}) in the event; for processes "
                                       "without one set lepton = false", path=f"{self.where}.lepton")
                p = record[j]
                lepton[i] = (p.e(), p.px(), p.py(), p.pz())
            weights[i] = run.weight()
            if self.particles:  # the final state, or the hard process's outgoing particles (status 23)
                final = [(q.px(), q.py(), q.pz(), q.e(), q.id(), q.charge()) for q in record if q.isFinal()] if full \
                    else [(q.px(), q.py(), q.pz(), q.e(), q.id(), q.charge()) for q in record if q.status() == 23]
                counts[i] = len(final)
                parts.append(final)
        columns: dict[str, Any] = {}
        if self.lepton_id:
            columns.update({name: lepton[:, k] for k, name in enumerate(LEPTON_FIELDS)})
            columns.update(dis_from_lepton(lepton[:, 0], lepton[:, 1], lepton[:, 2], lepton[:, 3], self.beams))
        if self.beams.is_lepton_hadron:
            columns[BEAM_ENERGY] = np.full(n, self.beams.lepton_energy)
        if not np.all(weights == 1.0):
            columns[WEIGHT] = weights
        if self.particles:
            flat = np.array([row for event in parts for row in event], dtype=np.float64).reshape(-1, 6)
            record_fields = {"px": flat[:, 0], "py": flat[:, 1], "pz": flat[:, 2], "E": flat[:, 3],
                             "pid": flat[:, 4].astype(np.int32), "charge": flat[:, 5]}
            columns["particles"] = ak.unflatten(ak.zip(record_fields), counts)
        return columns


# -- the process kinds ----------------------------------------------------------------------------
#: Options that belong to one process kind only (given with another, they are an error).
PROCESS_OPTIONS: dict[str, tuple[str, ...]] = {"q2_min": ("dis",), "jet_radius": ("ttbar-semilep",),
                                               "jet_pt_min": ("ttbar-semilep",), "jet_eta_max": ("ttbar-semilep",),
                                               "particles": ("dis", "custom")}


@dataclass(frozen=True)
class ProcessKind:
    """A value of ``process``: its default beams, the levels it runs at, and how to build it from the parameters.

    Example:
        >>> PROCESSES["ttbar-semilep"].default_beams, PROCESSES["ttbar-allhad"].levels
        ('lhc13', ('hard',))
    """

    default_beams: str
    levels: tuple[str, ...]
    build: Callable[[Any, Beams, str], PythiaProcess]


def _record(params: Any, beams: Beams, where: str) -> PythiaProcess:
    lepton = params.process == "dis" if params.lepton is None else params.lepton
    if lepton and not beams.is_lepton_hadron:
        key = "process" if params.process == "dis" else "lepton"
        raise ConfigError(f"{'process = dis' if key == 'process' else 'the scattered lepton'} needs a "
                          f"lepton-hadron set-up; the beams are {beams.label}", path=f"{where}.{key}",
                          value=getattr(params, key), hint="set process = 'custom' with Pythia settings "
                          "(e.g. 'HardQCD:all = on') and lepton = false, or a 'ttbar-*' preset at pp beams")
    own = [(s, f"{where}.q2_min") for s in dis_settings(_q2_min(params))] if params.process == "dis" else []
    return RecordProcess(own, level=params.level or "full", beams=beams, lepton_id=beams.lepton_pdg if lepton else 0,
                         particles=True if params.particles is None else params.particles, where=where)


def _check_ttbar(params: Any, beams: Beams, where: str) -> None:
    if params.lepton:
        raise ConfigError("the scattered lepton is a DIS option; the tt̄ presets store their prompt lepton "
                          "themselves", path=f"{where}.lepton", value=params.lepton, hint="remove lepton")
    if beams.a.pdg not in HADRON_BEAMS or beams.b.pdg not in HADRON_BEAMS:
        raise ConfigError(f"process = {params.process!r} needs proton or antiproton beams; the beams are "
                          f"{beams.label}", path=f"{where}.beams", value=params.beams,
                          hint="leave beams out (lhc13: pp at 13 TeV) or name a pp preset such as 'lhc13.6'")


def _all_hadronic(params: Any, beams: Beams, where: str) -> PythiaProcess:
    _check_ttbar(params, beams, where)
    return AllHadronic(where)


def _semileptonic(params: Any, beams: Beams, where: str) -> PythiaProcess:
    _check_ttbar(params, beams, where)
    values = fill_none(params, JET_DEFAULTS)
    return Semileptonic(where, **{k: values[k] for k in JET_DEFAULTS})


#: ``process`` → its kind.
PROCESSES: dict[str, ProcessKind] = {
    "dis": ProcessKind("hera", ("full", "hard"), _record),
    "custom": ProcessKind("hera", ("full", "hard"), _record),
    "ttbar-allhad": ProcessKind("lhc13", ("hard",), _all_hadronic),
    "ttbar-semilep": ProcessKind("lhc13", ("full",), _semileptonic),
}


def _q2_min(params: Any) -> float:
    return DIS_Q2_MIN if params.q2_min is None else params.q2_min


def _check_options(params: Any, where: str) -> None:
    """Options of another process kind, and a level the kind does not run at, are errors."""
    for name, kinds in PROCESS_OPTIONS.items():
        value = getattr(params, name)
        if value is not None and params.process not in kinds:
            raise ConfigError(f"{name} is an option of process = {' or '.join(repr(k) for k in kinds)}, not of "
                              f"{params.process!r}", path=f"{where}.{name}", value=value,
                              hint=f"remove {name}, or choose a process it belongs to")
    levels = PROCESSES[params.process].levels
    if params.level is not None and params.level not in levels:
        raise ConfigError(f"process = {params.process!r} runs at level {levels[0]!r} only", path=f"{where}.level",
                          value=params.level, hint="remove level")


class PythiaSource(TruthSource):
    """Pythia 8 events: DIS (neutral current), top pairs at the LHC, or any process from Pythia settings."""

    plugin_name: ClassVar[str] = "pythia8"

    @dataclass
    class Params:
        events: int = param(10_000, min=1, doc="number of events")
        beams: str | dict[str, Any] | None = param(None, doc="beam preset name (hera, lhc13, ...) or table; "
                                                             "default: hera, lhc13 for the ttbar presets")
        process: str = param("dis", choices=tuple(PROCESSES),
                             doc="'dis': neutral-current DIS (lepton-hadron beams); 'custom': only beams + settings; "
                                 "'ttbar-allhad': tt̄ -> 6 quarks (hard process); 'ttbar-semilep': tt̄ with one "
                                 "W -> e/mu nu (full event, jets)")
        q2_min: float | None = param(None, min=0.0, exclusive_min=True,
                                     doc=f"PhaseSpace:Q2Min in GeV² (process = 'dis'; default {DIS_Q2_MIN})")
        level: str | None = param(None, choices=("hard", "full"),
                                  doc="'hard': hard process only; 'full': showers, remnants, hadronization "
                                      "(default: full; ttbar-allhad is hard, ttbar-semilep full)")
        particles: bool | None = param(None, doc="dis, custom: store the particles: the final state (level = 'full') "
                                                 "or the hard process's outgoing particles (level = 'hard'); default "
                                                 "true")
        lepton: bool | None = param(None, doc="find and store the scattered lepton and its DIS variables (default: "
                                              "for process = 'dis')")
        jet_radius: float | None = param(None, min=0.0, exclusive_min=True,
                                         doc="ttbar-semilep: anti-kT radius R (default 0.4)")
        jet_pt_min: float | None = param(None, min=0.0, doc="ttbar-semilep: jet pT threshold in GeV (default 20)")
        jet_eta_max: float | None = param(None, min=0.0, exclusive_min=True,
                                          doc="ttbar-semilep: jet |eta| limit (default 4.5)")
        settings: list[str] = param([], doc="extra Pythia settings, e.g. 'HardQCD:all = on' (applied last)")
        cut: str = param("", doc="selection on the output fields, e.g. 'Q2 > 1 and y < 0.95' (safe formula); "
                                 "events counts the selected events")
        block_events: int = param(100_000, min=1, doc="events per independently seeded Pythia run")

    def __init__(self, params: Params, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        _check_options(params, ctx.name)
        kind = PROCESSES[params.process]
        self._beams = beams_from_param(kind.default_beams if params.beams is None else params.beams,
                                       f"{ctx.name}.beams")
        self.process: PythiaProcess = kind.build(params, self._beams, ctx.name)
        self.pythia = import_pythia()
        self._blocks: list[dict[str, float]] = []
        self._failed = 0
        self._generated = self._selected = 0
        self._check_settings()
        self._cut = None
        if params.cut:
            from mlegpipe.formula import compile_formula

            self._cut = compile_formula(params.cut, [*self.process.fields(), WEIGHT], where=f"{ctx.name}.cut")

    @property
    def beams(self) -> Beams:
        return self._beams

    def cuts(self) -> dict[str, float]:
        """The Q² cut of DIS (enforced by the DIS physicality check on generated events)."""
        return {"q2_min": _q2_min(self.params)} if self.params.process == "dis" else {}

    # -- configuration -----------------------------------------------------------------------
    def settings(self, seed: int) -> list[tuple[str, str]]:
        """All settings of one run as ``(setting, where)`` pairs, ``where`` naming their TOML origin."""
        where = self.ctx.name
        out = [(s, f"{where}.beams") for s in beam_settings(self._beams)]
        out += self.process.settings()
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
    def n_blocks(self) -> int:
        """Number of independently seeded blocks the configured events take."""
        return -(-self.params.events // self.params.block_events)

    def block_size(self, block: int) -> int:
        """Events of block ``block`` (the last one may be short)."""
        return min(self.params.block_events, self.params.events - block * self.params.block_events)

    def iter_batches(self) -> Iterator[EventBatch]:
        self._blocks, self._failed = [], 0
        self._generated = self._selected = 0
        bar = tqdm(total=self.params.events, desc=f"{self.ctx.name}: pythia8", unit="ev",
                   disable=not self.ctx.progress)
        try:
            for block in range(self.n_blocks()):
                yield from self.block_batches(block, bar)
        finally:
            bar.close()

    def block_batches(self, block: int, bar: Any = None) -> Iterator[EventBatch]:
        """The events of one block (seeded from the block's number alone), in chunks; its σ goes to :meth:`info`."""
        n_block = self.block_size(block)
        seed = pythia_seed(self.ctx.seed_sequence("pythia", block))
        pythia = self._new_pythia(seed)
        self.process.attach(pythia)
        if not pythia.init():
            raise PhysicsError("Pythia failed to initialize with these settings (see Pythia's messages above)",
                               path=self.ctx.name, value=[s for s, _ in self.settings(seed)])
        hint = f"at sqrt(s) = {self._beams.sqrt_s:.1f} GeV Pythia's parton and hadron levels may not apply; " \
               "try level = 'hard'" if self.process.level == "full" else None
        run = PythiaRun(pythia, self.ctx.name, hint)
        meta = self._meta()
        done = 0
        while done < n_block:
            n = min(self.process.chunk_events, n_block - done)
            batch = EventBatch.from_columns(self.process.generate(run, n), self._beams, meta)
            self._generated += n
            if self._cut is not None:
                env = {f: batch.column(f) for f in self._cut.variables if f != WEIGHT or batch.has(WEIGHT)}
                env.setdefault(WEIGHT, np.ones(n))
                mask = np.broadcast_to(np.asarray(self._cut(env), dtype=bool), (n,))
                batch = batch.take(np.flatnonzero(mask)[: n_block - done])
            self._selected += len(batch)
            done += len(batch)
            if bar is not None:
                bar.update(len(batch))
            if len(batch):
                yield batch
            elif self._generated > 1000 and self._selected == 0:
                raise PhysicsError("the cut rejects every event", path=f"{self.ctx.name}.cut", value=self.params.cut)
        self._failed += run.failed
        info = pythia.infoPython()
        self._blocks.append({"block": block, "seed": seed, "sigma_pb": info.sigmaGen() * MB_TO_PB,
                             "sigma_err_pb": info.sigmaErr() * MB_TO_PB, "tried": info.nTried(),
                             "selected": info.nSelected(), "accepted": info.nAccepted()})

    # -- reporting ------------------------------------------------------------------------------
    def cross_section(self) -> tuple[float, float]:
        """Pythia's σ (pb) and its error over the blocks run so far (inverse-variance combination)."""
        return combine_sigma(self._blocks)

    def info(self) -> dict[str, Any]:
        sigma, error = self.cross_section()
        efficiency = self._selected / self._generated if self._generated else math.nan
        # the sample's σ is the process σ times the cut efficiency (binomial error added in quadrature)
        eff_error = math.sqrt(efficiency * (1 - efficiency) / self._generated) if self._generated else math.nan
        return {"generator": f"Pythia {pythia_version()}", "process": self.params.process,
                CROSS_SECTION: sigma * efficiency, CROSS_SECTION_ERROR: math.hypot(error * efficiency, sigma * eff_error),
                "sigma_process_pb": sigma, "sigma_process_error_pb": error,
                "cut": self.params.cut, "cut_efficiency": efficiency,
                "events_tried": int(sum(b["tried"] for b in self._blocks)),
                "events_accepted": int(sum(b["accepted"] for b in self._blocks)),
                "events_failed": self._failed, "blocks": list(self._blocks), "level": self.process.level,
                "beams": self._beams.label, "sqrt_s": self._beams.sqrt_s,
                **({"beam_energy": self._beams.lepton_energy} if self._beams.is_lepton_hadron else {}),
                "settings": [s for s, w in self.settings(0) if w != "seed"]}

    def _meta(self) -> dict[str, Any]:
        return {"generator": f"Pythia {pythia_version()}", "seed": self.ctx.seed, "level": self.process.level,
                "process": self.params.process, "q2_min": _q2_min(self.params) if self.params.process == "dis" else None,
                "cut": self.params.cut,
                "settings": [s for s, w in self.settings(0) if w != "seed"]}


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the ``pythia8`` truth source."""
    registry.add(PythiaSource)
