"""Top pairs from Pythia 8 at the LHC: the two tt̄ processes of the ``pythia8`` truth source.

pp → tt̄ at leading order (``Top:gg2ttbar``, ``Top:qqbar2ttbar``) with
m_t = 172.5 GeV and t → W b only. The ``pythia8`` source builds one of these
process objects for ``process = "ttbar-allhad"`` or ``"ttbar-semilep"`` and
asks it for its settings, its user hooks and the columns of its events:

* :class:`AllHadronic`: both W → q q̄', the hard process only (no showers, no
  hadronization). The six quarks are found through the decay chain of
  ``pythia.process`` (t → W⁺ b, W⁺ → q q̄', and the same for t̄) and stored as
  the collection ``quarks`` (px, py, pz, E, pid) in the order of
  :data:`~mlegpipe_builtins.lhc.QUARK_ORDER`: b, the W⁺'s quark and antiquark,
  b̄, the W⁻'s quark and antiquark. Without initial-state radiation they
  balance in p_T to rounding (|Σp_T| ≈ 1e-10 GeV).
* :class:`Semileptonic`: exactly one W → eν or μν (a process-level veto,
  :func:`one_leptonic_w_veto`), the full event with showers, multiparton
  interactions and hadronization, read with ``pythia.nextBatch``. It stores
  the anti-kT jets (:mod:`~mlegpipe_builtins.lhc.jets`) of all final-state
  particles but the prompt lepton and the neutrinos, with their truth
  ``flavour``; the prompt lepton (the W's e or μ followed to its final copy)
  as the flat group ``lepton_E, lepton_px, lepton_py, lepton_pz, lepton_pid``;
  and the missing transverse momentum ``met``, ``met_phi``, the vector sum of
  the p_T of all final-state neutrinos (those of heavy-flavour decays included).

Pythia's σ (``info.sigmaGen()``) counts the forced decay channels and the veto.

Example:
    >>> [s for s in AllHadronic("truth").settings()][-2:]
    [('PartonLevel:all = off', 'truth.process'), ('HadronLevel:all = off', 'truth.process')]
    >>> Semileptonic("truth").jet_radius, QUARK_ORDER[3]
    (0.4, 'b2')
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import awkward as ak
import numpy as np

from mlegpipe.events import WEIGHT, particle_lists
from mlegpipe.exceptions import PhysicsError
from mlegpipe_builtins.lhc import JETS, LEPTON, MET, MET_PHI, QUARK_ORDER, QUARKS, TOP_MASS
from mlegpipe_builtins.lhc.jets import cluster_jets, flavour_labels

if TYPE_CHECKING:
    from mlegpipe_builtins.truth.pythia import PythiaRun

__all__ = [
    "LEPTON_COLUMNS",
    "PROMPT_LEPTONS",
    "TOP_SETTINGS",
    "AllHadronic",
    "Semileptonic",
    "decay_chain",
    "one_leptonic_w_veto",
    "prompt_lepton_index",
    "semileptonic_columns",
]

#: pp → tt̄ at LO, m_t = 172.5 GeV, t → W b only, W decays switched off (each process opens its own).
TOP_SETTINGS: tuple[str, ...] = (
    "Top:gg2ttbar = on",
    "Top:qqbar2ttbar = on",
    f"6:m0 = {TOP_MASS}",
    "6:onMode = off",
    "6:onIfMatch = 24 5",
    "24:onMode = off",
)
#: Charged leptons a W of the semileptonic sample decays to (e, μ).
PROMPT_LEPTONS: tuple[int, ...] = (11, 13)
NEUTRINOS: tuple[int, ...] = (12, 14, 16)
#: The prompt lepton's flat fields, DIS order plus the PDG id.
LEPTON_COLUMNS: tuple[str, ...] = tuple(f"{LEPTON}_{c}" for c in ("E", "px", "py", "pz", "pid"))
#: Events per ``nextBatch`` call of the full event (a full event holds ~1000 particle entries).
BATCH_EVENTS = 500
TOP, W_BOSON = 6, 24


def _last_copy(record: Any, i: int) -> int:
    """Follow a particle down its copies (a single daughter of the same id) to the last one."""
    while True:
        daughters = record[i].daughterList()
        if len(daughters) != 1 or record[daughters[0]].id() != record[i].id():
            return i
        i = daughters[0]


def _pair(record: Any, daughters: list[int], where: str) -> tuple[int, int]:
    """The two decay products of a W, the quark (positive id) first."""
    if len(daughters) != 2:
        raise PhysicsError(f"a W decayed to {len(daughters)} particles, expected 2", path=where)
    a, b = daughters
    return (a, b) if record[a].id() > 0 else (b, a)


def decay_chain(record: Any, where: str = "process") -> list[int]:
    """Record indices of the six quarks of tt̄ → b q q̄' b̄ q q̄', in :data:`QUARK_ORDER`.

    ``record`` is a Pythia event record (``pythia.process``): t and t̄ are
    followed to their last copies, their daughters split into W and b, each
    W followed to its last copy and its daughters ordered quark, antiquark.

    Raises:
        PhysicsError: the record has no t t̄ pair, or a top or W decayed otherwise.
    """
    tops = {}
    for i in range(record.size()):
        pid = record[i].id()
        if abs(pid) == TOP and pid not in tops:
            tops[pid] = _last_copy(record, i)
    if set(tops) != {TOP, -TOP}:
        raise PhysicsError("no top-antitop pair in the hard process", path=where,
                           hint="the ttbar presets set Top:gg2ttbar and Top:qqbar2ttbar; do not switch them off")
    out: list[int] = []
    for sign in (1, -1):
        daughters = list(record[tops[sign * TOP]].daughterList())
        w = [d for d in daughters if record[d].id() == sign * W_BOSON]
        b = [d for d in daughters if record[d].id() == sign * 5]
        if len(w) != 1 or len(b) != 1:
            raise PhysicsError("a top did not decay to W b", path=where, value=[record[d].id() for d in daughters])
        w_last = _last_copy(record, w[0])
        out += [b[0], *_pair(record, list(record[w_last].daughterList()), where)]
    return out


class AllHadronic:
    """tt̄ → b q q̄' b̄ q q̄' at the hard process: the collection ``quarks`` in decay-chain order."""

    name: ClassVar[str] = "ttbar-allhad"
    level: ClassVar[str] = "hard"
    chunk_events: ClassVar[int] = 10_000

    def __init__(self, where: str) -> None:
        self.where = where

    def settings(self) -> list[tuple[str, str]]:
        """Pythia settings as ``(setting, TOML path)``."""
        at = f"{self.where}.process"
        return [(s, at) for s in (*TOP_SETTINGS, "24:onIfAny = 1 2 3 4 5", "PartonLevel:all = off",
                                  "HadronLevel:all = off")]

    def attach(self, pythia: Any) -> None:
        """No user hooks."""

    def fields(self) -> list[str]:
        """The flat fields of the events (a cut may use them)."""
        return []

    def generate(self, run: PythiaRun, n: int) -> dict[str, Any]:
        """``n`` events: the six quarks (px, py, pz, E, pid) of each, and weights when not all 1."""
        quarks = np.empty((n, len(QUARK_ORDER), 5))
        weights = np.empty(n)
        for i in range(n):
            run.next()
            record = run.pythia.process
            for k, j in enumerate(decay_chain(record, f"{self.where}.process")):
                q = record[j]
                quarks[i, k] = (q.px(), q.py(), q.pz(), q.e(), q.id())
            weights[i] = run.weight()
        columns: dict[str, Any] = {QUARKS: particle_lists({c: quarks[:, :, k] for k, c in
                                                          enumerate(("px", "py", "pz", "E"))}
                                                         | {"pid": quarks[:, :, 4].astype(np.int32)})}
        if not np.all(weights == 1.0):
            columns[WEIGHT] = weights
        return columns


def one_leptonic_w_veto(pythia_module: ModuleType) -> Any:
    """A Pythia ``UserHooks`` that vetoes, at process level, events without exactly one W → e ν or μ ν.

    Keep a reference to the returned object as long as its Pythia runs: Pythia
    holds only a pointer, and a collected hook silently stops vetoing.
    """

    class OneLeptonicW(pythia_module.UserHooks):
        def canVetoProcessLevel(self) -> bool:  # noqa: N802 - Pythia's name
            return True

        def doVetoProcessLevel(self, process: Any) -> bool:  # noqa: N802 - Pythia's name
            leptonic = 0
            for i in range(process.size()):
                particle = process[i]
                if abs(particle.id()) in PROMPT_LEPTONS and abs(process[particle.mother1()].id()) == W_BOSON:
                    leptonic += 1
            return leptonic != 1

    return OneLeptonicW()


def prompt_lepton_index(records: ak.Array) -> np.ndarray:
    """Per event, the index (in its record) of the final copy of the W's e or μ; -1 where there is none.

    ``records`` are full-event records as ``pythia.nextBatch`` gives them
    (fields ``id``, ``status``, ``mother1``, ``daughter1``, ``daughter2``).
    The hard-process lepton (|status| = 23, mother a W) is followed through
    its radiation (daughters of the same id, the most energetic) to the
    final-state copy.

    Example:
        >>> rec = ak.Array([{"id": [2212, 24, -13, 14, -13, 22], "status": [-12, -22, -23, 23, 51, 51],
        ...                  "mother1": [0, 0, 1, 1, 2, 2], "daughter1": [0, 2, 4, 0, 0, 0],
        ...                  "daughter2": [0, 3, 5, 0, 0, 0], "p": {"e": [1, 1, 1, 1, 1, 1]}}])
        >>> prompt_lepton_index(rec).tolist()
        [4]
    """
    ids = records.id
    status = records.status
    mother_id = ids[records.mother1]
    is_lepton = (abs(ids) == PROMPT_LEPTONS[0]) | (abs(ids) == PROMPT_LEPTONS[1])
    start = is_lepton & (abs(status) == 23) & (abs(mother_id) == W_BOSON)
    local = ak.local_index(ids)
    first = ak.to_numpy(ak.fill_none(ak.firsts(local[start]), -1)).astype(np.int64)
    offsets = np.asarray(ak.to_numpy(ak.num(ids)), dtype=np.int64).cumsum() - ak.to_numpy(ak.num(ids))
    flat_id, flat_status = ak.to_numpy(ak.flatten(ids)), ak.to_numpy(ak.flatten(status))
    flat_d1, flat_d2 = ak.to_numpy(ak.flatten(records.daughter1)), ak.to_numpy(ak.flatten(records.daughter2))
    flat_e = ak.to_numpy(ak.flatten(records.p.e))
    current = first.copy()
    for _ in range(200):  # a lepton radiates a handful of photons at most
        moving = np.flatnonzero((current >= 0) & (flat_status[np.where(current >= 0, offsets + current, 0)] <= 0))
        if not len(moving):
            return current
        for e in moving:  # few events per step
            g = offsets[e] + current[e]
            d1, d2 = flat_d1[g], max(flat_d2[g], flat_d1[g])
            same = [d for d in range(d1, d2 + 1) if d > 0 and flat_id[offsets[e] + d] == flat_id[g]]
            current[e] = max(same, key=lambda d, o=offsets[e]: flat_e[o + d]) if same else -1
    raise PhysicsError("the prompt lepton's chain of copies does not end", path=LEPTON)


def semileptonic_columns(records: ak.Array, *, jet_radius: float = 0.4, jet_pt_min: float = 20.0,
                         jet_eta_max: float = 4.5) -> dict[str, Any]:
    """Jets with flavour, the prompt lepton and the missing p_T of full events (``nextBatch`` records).

    Returns:
        ``jets`` (jagged ``Momentum4D`` with ``flavour``), the ``lepton_*`` columns
        (:data:`LEPTON_COLUMNS`), ``met`` and ``met_phi``.

    Raises:
        PhysicsError: an event without a prompt e or μ.
    """
    lepton = prompt_lepton_index(records)
    if (lepton < 0).any():
        raise PhysicsError(f"{int((lepton < 0).sum())} events without a prompt e or mu from a W", path=LEPTON,
                           hint="the one-leptonic-W veto must stay attached to Pythia")
    local = ak.local_index(records.id)
    p = records.p
    particles = ak.zip({"px": p.px, "py": p.py, "pz": p.pz, "E": p.e, "pid": records.id})
    final = records.status > 0
    neutrino = final & ((abs(records.id) == NEUTRINOS[0]) | (abs(records.id) == NEUTRINOS[1])
                        | (abs(records.id) == NEUTRINOS[2]))
    visible = final & ~neutrino & (local != lepton)
    jets = cluster_jets(particles[visible], radius=jet_radius, pt_min=jet_pt_min, eta_max=jet_eta_max)
    flavour = flavour_labels(jets, particles, radius=jet_radius)
    jets = ak.zip({c: jets[c] for c in ("px", "py", "pz", "E")} | {"flavour": flavour}, with_name="Momentum4D")
    met_x = ak.to_numpy(ak.sum(p.px[neutrino], axis=1))
    met_y = ak.to_numpy(ak.sum(p.py[neutrino], axis=1))
    chosen = particles[ak.from_regular(ak.unflatten(lepton, 1), axis=1)]
    columns: dict[str, Any] = {JETS: jets}
    for name, field in zip(LEPTON_COLUMNS, ("E", "px", "py", "pz", "pid"), strict=True):
        columns[name] = ak.to_numpy(ak.flatten(chosen[field]))
    columns[MET] = np.hypot(met_x, met_y)
    columns[MET_PHI] = np.arctan2(met_y, met_x)
    return columns


class Semileptonic:
    """tt̄ with exactly one W → e ν / μ ν, full events: jets (with flavour), the prompt lepton, the missing p_T.

    Example:
        >>> semilep = Semileptonic("truth", jet_pt_min=25.0)
        >>> semilep.settings()[-1], semilep.fields()[-2:]
        (('24:onIfAny = 1 2 3 4 5 11 13', 'truth.process'), ['met', 'met_phi'])
    """

    name: ClassVar[str] = "ttbar-semilep"
    level: ClassVar[str] = "full"
    chunk_events: ClassVar[int] = 2 * BATCH_EVENTS  # a progress update every few seconds

    def __init__(self, where: str, *, jet_radius: float = 0.4, jet_pt_min: float = 20.0,
                 jet_eta_max: float = 4.5) -> None:
        self.where = where
        self.jet_radius, self.jet_pt_min, self.jet_eta_max = jet_radius, jet_pt_min, jet_eta_max
        self._hooks: list[Any] = []  # Pythia holds only pointers: the hooks must outlive their runs

    def settings(self) -> list[tuple[str, str]]:
        """Pythia settings as ``(setting, TOML path)``."""
        at = f"{self.where}.process"
        return [(s, at) for s in (*TOP_SETTINGS, "24:onIfAny = 1 2 3 4 5 11 13")]

    def attach(self, pythia: Any) -> None:
        """Install the one-leptonic-W veto on ``pythia`` (before ``init``)."""
        hook = one_leptonic_w_veto(sys.modules[type(pythia).__module__])  # the Pythia module this one comes from
        if not pythia.setUserHooksPtr(hook):
            raise PhysicsError("Pythia refused the one-leptonic-W user hook", path=f"{self.where}.process")
        self._hooks = [hook]  # one Pythia at a time: the previous block's hook may go

    def fields(self) -> list[str]:
        """The flat fields of the events (a cut may use them)."""
        return [*LEPTON_COLUMNS, MET, MET_PHI]

    def generate(self, run: PythiaRun, n: int) -> dict[str, Any]:
        """``n`` full events, read in batches of :data:`BATCH_EVENTS` and reduced to jets, lepton and MET."""
        parts: list[dict[str, Any]] = []
        done = 0
        while done < n:
            events = run.batch(min(BATCH_EVENTS, n - done))
            part = semileptonic_columns(events.prt, jet_radius=self.jet_radius, jet_pt_min=self.jet_pt_min,
                                        jet_eta_max=self.jet_eta_max)
            part[WEIGHT] = ak.to_numpy(ak.fill_none(ak.firsts(events.info.weights), 1.0))
            parts.append(part)
            done += len(events)
        columns = {k: ak.concatenate([p[k] for p in parts]) if k == JETS else np.concatenate([p[k] for p in parts])
                   for k in parts[0]}
        if np.all(columns[WEIGHT] == 1.0):
            del columns[WEIGHT]
        return columns
