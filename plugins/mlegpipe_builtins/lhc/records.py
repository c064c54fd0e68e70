"""The LHE record of tt̄ → 6 quarks: tops and Ws as decayed resonances, a colour flow Pythia 8 can shower.

For events of process ``ttbar-allhad`` (the six ``quarks`` in decay-chain
order :data:`~mlegpipe_builtins.lhc.QUARK_ORDER`), every LHE event holds 12
particles, as a matrix-element generator writes them::

    1 g (−1)   2 g (−1)                     incoming, momentum fractions balancing the final state
    3 t (2) ← 1 2     4 t̄ (2) ← 1 2         decayed resonances, masses = invariant masses of their daughters
    5 W⁺ (2) ← 3      6 b (1) ← 3
    7 W⁻ (2) ← 4      8 b̄ (1) ← 4
    9 q (1) ← 5      10 q̄' (1) ← 5        the W⁺ pair
   11 q (1) ← 7      12 q̄' (1) ← 7        the W⁻ pair

The colour flow is one of gg → tt̄'s: g₁ (501, 502), g₂ (503, 501), t and b
carry colour 503, t̄ and b̄ anticolour 502, each W's quark and antiquark share
a colour singlet line (504, 505). Because the resonances are in the record, a
parton shower preserves the top and W masses when it recoils.

The quarks' flavours come from their ``pid`` when the events have one (truth
samples). A generator learns momenta, not flavours: generated events get
b and b̄, and W⁺ → u d̄, u s̄, c d̄, c s̄ (W⁻ the conjugates) drawn with the
CKM weights |V_ud|², |V_us|², |V_cd|², |V_cs|² (equal up and charm shares),
from a stream of the generation seed and the batch's first event number, so
the same events give the same file.

Example:
    >>> from mlegpipe.registry import load_plugins
    >>> "ttbar-allhad" in load_plugins().parton_records
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe.formats.particles import beam_momenta
from mlegpipe.formats.records import INCOMING_STATUS, PartonRecord, incoming_energies
from mlegpipe_builtins.lhc import QUARKS

__all__ = ["CKM_PAIRS", "PROCESS", "ttbar_record"]

#: The process name this record serves (the ``process`` of the top-pair samples).
PROCESS = "ttbar-allhad"
#: (up-type quark, down-type antiquark, weight) of W⁺ → q q̄'; |V|² from the PDG CKM fit (unitarity-constrained).
CKM_PAIRS: tuple[tuple[int, int, float], ...] = ((2, -1, 0.9485), (2, -3, 0.0504), (4, -1, 0.0504), (4, -3, 0.9474))

# particle slots in the event: parent slot (1-based, 0: none) and status; quarks 0..5 go to slots 6, 9, 10, 8, 11, 12
_SLOTS = 12
_QUARK_SLOT = (5, 8, 9, 7, 10, 11)  # 0-based slots of b1 q1 qbar1 b2 q2 qbar2
_MOTHERS = ((0, 0), (0, 0), (1, 2), (1, 2), (3, 3), (3, 3), (4, 4), (4, 4), (5, 5), (5, 5), (7, 7), (7, 7))
_STATUS = (INCOMING_STATUS, INCOMING_STATUS, 2, 2, 2, 1, 2, 1, 1, 1, 1, 1)


def _flavours(n: int, seed: int, first_event: int) -> np.ndarray:
    """``(n, 6)`` PDG ids for events without flavours: b, W⁺ pair, b̄, W⁻ pair."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(first_event,)))
    weights = np.array([w for _, _, w in CKM_PAIRS])
    plus = rng.choice(len(CKM_PAIRS), size=n, p=weights / weights.sum())
    minus = rng.choice(len(CKM_PAIRS), size=n, p=weights / weights.sum())
    up = np.array([u for u, _, _ in CKM_PAIRS])
    down = np.array([d for _, d, _ in CKM_PAIRS])
    # W⁺ → u d̄ (quark first); W⁻ → d ū: the conjugate pair, quark (−down) first
    return np.stack([np.full(n, 5), up[plus], down[plus], np.full(n, -5), -down[minus], -up[minus]], axis=1)


def _color(pid: np.ndarray, line: int) -> tuple[np.ndarray, np.ndarray]:
    """A quark (pid > 0) carries colour ``line``, an antiquark the anticolour."""
    return np.where(pid > 0, line, 0), np.where(pid < 0, line, 0)


def ttbar_record(batch: EventBatch, numbers: np.ndarray, meta: Mapping[str, Any],
                 generic: Callable[[EventBatch, np.ndarray], PartonRecord]) -> PartonRecord:
    """The 12-particle LHE record of tt̄ → 6 quarks (see the module documentation)."""
    where = "events"
    if not batch.has_collection(QUARKS):
        raise DataError(f"the {PROCESS} record needs the collection {QUARKS!r}; the events have "
                        + (", ".join(batch.collections) or "none"), path=where)
    counts = batch.multiplicity(QUARKS)
    if (counts != 6).any():
        i = int(np.argmax(counts != 6))
        raise DataError(f"event {int(numbers[i])} has {int(counts[i])} quarks; the {PROCESS} record needs the six "
                        "of tt̄ → b q q̄' b̄ q q̄'", path=where)
    n = len(batch)
    q = batch.particles(QUARKS, 6)
    px, py, pz, e = (np.asarray(q[c], dtype=np.float64) for c in ("px", "py", "pz", "E"))
    if "pid" in q and np.isfinite(q["pid"]).all():
        pid = np.asarray(q["pid"], dtype=np.int64)
    else:
        pid = _flavours(n, int(meta.get("generation_seed", meta.get("seed", 0)) or 0), int(numbers[0]))
    energies = beam_momenta(batch)
    e1, e2, valid = incoming_energies(e.sum(1), pz.sum(1), (energies[0][:, 0], energies[1][:, 0]))

    shape = (n, _SLOTS)
    mom = {c: np.zeros(shape) for c in ("px", "py", "pz", "e")}
    ids = np.zeros(shape, dtype=np.int64)
    col1, col2 = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    for k, slot in enumerate(_QUARK_SLOT):
        for c, v in zip(("px", "py", "pz", "e"), (px, py, pz, e), strict=True):
            mom[c][:, slot] = v[:, k]
        ids[:, slot] = pid[:, k]
    top_sign = np.where(pid[:, 0] > 0, 1, -1)  # the first triplet is the top when its b is a quark
    for slot, parts in ((2, (5, 8, 9)), (3, (7, 10, 11)), (4, (8, 9)), (6, (10, 11))):  # t, t̄, W⁺, W⁻
        for c in mom:
            mom[c][:, slot] = sum(mom[c][:, p] for p in parts)
    ids[:, 0], ids[:, 1] = 21, 21
    ids[:, 2], ids[:, 3] = 6 * top_sign, -6 * top_sign
    ids[:, 4], ids[:, 6] = 24 * top_sign, -24 * top_sign
    mom["pz"][:, 0], mom["e"][:, 0] = e1, e1
    mom["pz"][:, 1], mom["e"][:, 1] = -e2, e2
    # colour: g1 (501, 502), g2 (503, 501); the top line 503 (t, b) and the antitop line 502 (t̄, b̄)
    col1[:, 0], col2[:, 0], col1[:, 1], col2[:, 1] = 501, 502, 503, 501
    for slot in (2, 5):  # the top and its b: colour 503 (or anticolour 502 when the first triplet is the antitop)
        col1[:, slot], col2[:, slot] = np.where(top_sign > 0, 503, 0), np.where(top_sign > 0, 0, 502)
    for slot in (3, 7):
        col1[:, slot], col2[:, slot] = np.where(top_sign > 0, 0, 503), np.where(top_sign > 0, 502, 0)
    for line, pair in ((504, (8, 9)), (505, (10, 11))):
        for slot in pair:
            col1[:, slot], col2[:, slot] = _color(ids[:, slot], line)
    mass = np.sqrt(np.maximum(mom["e"] ** 2 - mom["px"] ** 2 - mom["py"] ** 2 - mom["pz"] ** 2, 0.0))
    mass[:, :2] = 0.0
    offsets = np.arange(0, _SLOTS * n + 1, _SLOTS, dtype=np.int64)
    mothers = np.broadcast_to(np.array(_MOTHERS, dtype=np.int64), (n, _SLOTS, 2))
    status = np.broadcast_to(np.array(_STATUS, dtype=np.int64), shape)
    return PartonRecord(offsets, valid, ids.ravel(), status.ravel().copy(), mothers[..., 0].ravel().copy(),
                        mothers[..., 1].ravel().copy(), col1.ravel(), col2.ravel(), mom["px"].ravel(),
                        mom["py"].ravel(), mom["pz"].ravel(), mom["e"].ravel(), mass.ravel())
