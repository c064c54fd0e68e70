"""Parton-level event records for LHE files: who is incoming, which resonances decay into what, colour lines.

An LHE event is a list of particles with a status (−1 incoming, 2 decayed
resonance, 1 outgoing), two mothers, two colour tags and a four-momentum. A
generator's events hold only the outgoing particles; :func:`generic_record`
adds the two incoming partons that balance them and nothing else (no
resonances, colour 0). A physics domain that knows more (for tt̄ → 6 quarks:
the tops and Ws of the decay chain and a colour flow a parton shower can
use) registers a record builder through the
``mlegpipe_register_parton_records`` hook, under the name of the process its
events carry in their metadata (``process``); :class:`~mlegpipe.formats.lhe.LHEWriter`
uses it for those events.

A builder is called as ``builder(batch, numbers, meta, generic)`` and returns
a :class:`PartonRecord` (``generic`` is :func:`generic_record` with the
writer's options bound, for builders that start from it).

Example:
    >>> import awkward as ak
    >>> from mlegpipe.beams import Beams
    >>> from mlegpipe.events import EventBatch
    >>> q = ak.Array([[{"px": 50.0, "py": 0.0, "pz": 20.0, "E": 60.0, "pid": 5},
    ...                {"px": -50.0, "py": 0.0, "pz": -80.0, "E": 100.0, "pid": -5}]])
    >>> r = generic_record(EventBatch.from_columns({"quarks": q}, Beams.preset("lhc13")), np.arange(1))
    >>> r.status.tolist(), r.mother1.tolist(), r.e.tolist()
    ([-1, -1, 1, 1], [0, 0, 1, 1], [50.0, 110.0, 60.0, 100.0])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from mlegpipe.beams import Beam
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError

__all__ = ["INCOMING_STATUS", "PartonRecord", "RecordBuilder", "generic_record", "incoming_energies", "incoming_pid",
           "unphysical_message"]

#: LHE status of incoming partons.
INCOMING_STATUS = -1

#: ``builder(batch, numbers, meta, generic) -> PartonRecord``.
RecordBuilder = Callable[[EventBatch, np.ndarray, Mapping[str, Any], Callable[[EventBatch, np.ndarray], "PartonRecord"]],
                         "PartonRecord"]


@dataclass
class PartonRecord:
    """The LHE particles of a batch, flat: event ``i`` holds ``[offsets[i], offsets[i + 1])``.

    Mothers are 1-based indices within the event (0: none), as in the file;
    ``valid`` says, per event, whether two incoming partons can make it (a
    generated event may need a momentum fraction above 1).
    """

    offsets: np.ndarray
    valid: np.ndarray
    pid: np.ndarray
    status: np.ndarray
    mother1: np.ndarray
    mother2: np.ndarray
    color1: np.ndarray
    color2: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    mass: np.ndarray

    def __post_init__(self) -> None:
        size = int(self.offsets[-1])
        for f in fields(self):
            if f.name not in ("offsets", "valid") and len(getattr(self, f.name)) != size:
                raise DataError(f"parton record column {f.name} has {len(getattr(self, f.name))} entries, "
                                f"the offsets say {size}")

    @property
    def sizes(self) -> np.ndarray:
        """Particles per event."""
        return np.diff(self.offsets)

    def event_index(self) -> np.ndarray:
        """The event of every particle."""
        return np.repeat(np.arange(len(self.offsets) - 1), self.sizes)

    def take(self, keep: np.ndarray) -> PartonRecord:
        """The record of the events where ``keep`` is true.

        Example:
            >>> r = PartonRecord(np.array([0, 1, 3]), np.array([True, True]), *[np.arange(3)] * 11)
            >>> r.take(np.array([False, True])).pid.tolist()
            [1, 2]
        """
        particles = np.repeat(keep, self.sizes)
        offsets = np.concatenate([[0], np.cumsum(self.sizes[keep])]).astype(np.int64)
        columns = {f.name: getattr(self, f.name)[particles] for f in fields(self) if f.name not in ("offsets", "valid")}
        return PartonRecord(offsets, self.valid[keep], **columns)


def incoming_energies(total_e: np.ndarray, total_pz: np.ndarray,
                      beam_e: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energies of the two massless incoming partons along ±z that balance an outgoing ``(E, pz)``, and which
    events can have them (both momentum fractions in (0, 1]).

    Example:
        >>> incoming_energies(np.array([200.0, 9e3]), np.array([50.0, 9e3]), (np.array([6500.0] * 2),) * 2)
        (array([ 125., 9000.]), array([75.,  0.]), array([ True, False]))
    """
    e1, e2 = (total_e + total_pz) / 2, (total_e - total_pz) / 2
    ea, eb = beam_e
    with np.errstate(invalid="ignore"):
        valid = (e1 > 0) & (e2 > 0) & (e1 <= ea * (1 + 1e-12)) & (e2 <= eb * (1 + 1e-12))
    return e1, e2, valid


def unphysical_message(e1: np.ndarray, e2: np.ndarray, beam_e: tuple[np.ndarray, np.ndarray], valid: np.ndarray,
                       numbers: np.ndarray) -> str:
    """Why the first event that no two incoming partons can make is impossible."""
    i = int(np.argmax(~valid))
    return (f"event {int(numbers[i])} cannot come from two incoming partons: its outgoing particles need momentum "
            f"fractions x1 = {e1[i] / beam_e[0][i]:.6g}, x2 = {e2[i] / beam_e[1][i]:.6g} (each must be in (0, 1])")


def incoming_pid(beam: Beam) -> int:
    """The incoming parton of a beam: the lepton (or photon) itself, else a gluon."""
    return beam.pdg if beam.is_lepton or beam.pdg == 22 else 21


def generic_record(batch: EventBatch, numbers: np.ndarray, pids: Mapping[str, int] | None = None,
                   incoming: Sequence[int] | None = None, where: str = "events") -> PartonRecord:
    """Two incoming partons (status −1) balancing E and pz, then every particle of every collection (status 1,
    mothers 1 and 2, no colour)."""
    from mlegpipe.formats.particles import beam_momenta, event_particles

    beams = batch.beams
    if beams is None:
        raise DataError("LHE files need beams and these events have none; give the events beams (the truth "
                        "source's beams parameter)", path=where)
    n = len(batch)
    offsets, (px, py, pz, e, pid) = event_particles(batch, pids, where, lead=2)
    first = offsets[:-1]
    index = np.repeat(np.arange(n), np.diff(offsets))
    outgoing = np.ones(len(px), dtype=bool)
    outgoing[first], outgoing[first + 1] = False, False
    total_e = np.bincount(index[outgoing], weights=e[outgoing], minlength=n)
    total_pz = np.bincount(index[outgoing], weights=pz[outgoing], minlength=n)
    energies = beam_momenta(batch)
    e1, e2, valid = incoming_energies(total_e, total_pz, (energies[0][:, 0], energies[1][:, 0]))
    pin = tuple(incoming) if incoming is not None else (incoming_pid(beams.a), incoming_pid(beams.b))
    px[first], py[first], pz[first], e[first], pid[first] = 0.0, 0.0, e1, e1, pin[0]
    px[first + 1], py[first + 1], pz[first + 1], e[first + 1], pid[first + 1] = 0.0, 0.0, -e2, e2, pin[1]
    with np.errstate(invalid="ignore"):
        mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    mass[first], mass[first + 1] = 0.0, 0.0
    status = np.where(outgoing, 1, INCOMING_STATUS).astype(np.int64)
    mother1 = np.where(outgoing, 1, 0).astype(np.int64)
    mother2 = np.where(outgoing, 2, 0).astype(np.int64)
    zeros = np.zeros(len(px), dtype=np.int64)
    return PartonRecord(offsets, valid, pid.astype(np.int64), status, mother1, mother2, zeros, zeros.copy(), px, py, pz, e,
                        mass)
