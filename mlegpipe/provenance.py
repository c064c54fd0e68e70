"""What every event file says about itself: cross section, units, versions, seeds, checkpoint hash.

One convention for all writers and readers (ROOT, HepMC3, LHE, Parquet):

- :data:`CROSS_SECTION` and :data:`CROSS_SECTION_ERROR`: σ and its error in pb;
- :data:`SUM_WEIGHTS`: the sum of the event weights in the file (the number of
  events for unweighted samples);
- :data:`EVENT_NUMBER`: a per-event index (a branch, a column or the record's
  event number), so that analyses can address events;
- ``mlegpipe_version``, ``units``, and for generated events the checkpoint's
  file name, sha256 and training seed, and the generation seed.

A generator's events carry the σ of the sample it was trained on, with
``cross_section_origin`` saying so: a generator learns the shape of the
distribution, not its normalization.

Example:
    >>> cross_section({"sigma_pb": 2.0, "sigma_err_pb": 0.1})
    (2.0, 0.1)
    >>> cross_section({"cross_section_pb": 5.0})
    (5.0, 0.0)
    >>> cross_section({}) is None
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CROSS_SECTION",
    "CROSS_SECTION_ERROR",
    "EVENT_NUMBER",
    "SUM_WEIGHTS",
    "UNITS",
    "base_provenance",
    "cross_section",
    "cross_section_meta",
    "parse_meta",
    "sha256_file",
]

#: σ in pb.
CROSS_SECTION = "cross_section_pb"
#: The error of σ in pb.
CROSS_SECTION_ERROR = "cross_section_error_pb"
#: The sum of the event weights in the file.
SUM_WEIGHTS = "sum_weights"
#: Per-event index branch/column.
EVENT_NUMBER = "event_number"
#: Units of every mlegpipe file.
UNITS: dict[str, str] = {"energy": "GeV", "momentum": "GeV", "length": "mm", "cross_section": "pb"}

# Keys written before the convention (read, never written).
_LEGACY = (("sigma_pb", "sigma_err_pb"), ("cross_section_pb", "cross_section_err_pb"))


def cross_section(meta: Mapping[str, Any]) -> tuple[float, float] | None:
    """σ and its error in pb from a file's metadata (older key spellings too), or None.

    Example:
        >>> cross_section({"cross_section_pb": 3.0, "cross_section_error_pb": 0.5})
        (3.0, 0.5)
    """
    pairs = ((CROSS_SECTION, CROSS_SECTION_ERROR), *_LEGACY)
    for value_key, error_key in pairs:
        value = meta.get(value_key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            error = meta.get(error_key)
            if not isinstance(error, int | float) or isinstance(error, bool):
                error = next((meta[e] for v, e in pairs if v == value_key and isinstance(meta.get(e), int | float)),
                             0.0)
            return float(value), float(error)
    return None


def cross_section_meta(meta: Mapping[str, Any], origin: str | None = None) -> dict[str, Any]:
    """The convention's keys for the σ found in ``meta`` (empty if there is none).

    Arguments:
        meta: metadata in any spelling :func:`cross_section` reads.
        origin: where σ comes from when it is not the file's own (e.g. "the
            truth sample the generator was trained on").

    Example:
        >>> cross_section_meta({"sigma_pb": 1.5, "sigma_err_pb": 0.2})
        {'cross_section_pb': 1.5, 'cross_section_error_pb': 0.2}
    """
    found = cross_section(meta)
    if found is None:
        return {}
    out: dict[str, Any] = {CROSS_SECTION: found[0], CROSS_SECTION_ERROR: found[1]}
    origin = origin or meta.get("cross_section_origin")
    if origin:
        out["cross_section_origin"] = origin
    return out


def parse_meta(text: str | bytes | None) -> dict[str, Any]:
    """The provenance JSON a file stores (a TObjString, a Parquet key, a HepMC attribute, an LHE element) as a
    dict; empty when there is none or it is not a JSON object.

    Example:
        >>> parse_meta('{"seed": 1}'), parse_meta("not json"), parse_meta("[1]"), parse_meta(None)
        ({'seed': 1}, {}, {}, {})
    """
    if not text:
        return {}
    try:
        meta = json.loads(text)
    except (ValueError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB pieces.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"abc")
        >>> sha256_file(f.name)[:16]
        'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for piece in iter(lambda: handle.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def base_provenance() -> dict[str, Any]:
    """The keys every mlegpipe file carries: the mlegpipe version and the units.

    Example:
        >>> sorted(base_provenance())
        ['mlegpipe_version', 'units']
    """
    from mlegpipe import __version__

    return {"mlegpipe_version": __version__, "units": dict(UNITS)}
