"""Checkpoints of the ``flow`` generator written by earlier versions, brought to the current layout.

A state is a flat dict of tensors and JSON-able values (``torch.load(weights_only=True)``).
Earlier versions wrote:

* no ``azimuth`` (every feature was learned: ``"learned"``);
* no ``y_transform`` (ln y was learned as it is: ``"log"``);
* no ``edges`` (no edge maps: an :meth:`mlegpipe.features.EdgeLog.identity` state on the standardized features);
* ``hadron_follows = true`` for symmetric energy scans instead of beams that declare their per-event energy
  fields (both beams follow ``beam_energy``);
* beams by role (``lepton_energy``, ``hadron_energy``, ...), read by :meth:`mlegpipe.beams.Beams.from_dict`.

Example:
    >>> old = {"beams": {"lepton_energy": 50.0, "hadron_energy": 50.0, "lepton_pdg": 11, "lepton_direction": 1,
    ...                  "hadron_mass": 0.938272}, "hadron_follows": True}
    >>> new = migrate_state(old)
    >>> new["beams"]["fields"], new["azimuth"], new["y_transform"]
    (['beam_energy', 'beam_energy'], 'learned', 'log')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlegpipe.beams import Beams
from mlegpipe.features import EdgeLog

__all__ = ["migrate_state"]

_FOLLOWED_FIELD = "beam_energy"  # the per-event energy field of the symmetric scans written before generic beams


def migrate_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The current layout of a flow state of any earlier version (a new dict; the input is not changed)."""
    out = dict(state)
    out.setdefault("azimuth", "learned")
    out.setdefault("y_transform", "log")
    if out.get("edges") is None and "scaler" in out:
        out["edges"] = EdgeLog.identity(len(out["scaler"]["mean"])).state_dict()
    beams = out.get("beams")
    if beams:
        parsed = Beams.from_dict(dict(beams))
        if out.pop("hadron_follows", False) and not any(parsed.fields):
            parsed = parsed.overridden({"lepton_energy": _FOLLOWED_FIELD, "hadron_energy": _FOLLOWED_FIELD})
        out["beams"] = parsed.to_dict()
    else:
        out.pop("hadron_follows", None)
    return out
