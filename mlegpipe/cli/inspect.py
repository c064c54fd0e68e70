"""``mlegpipe inspect FILE``: summarise an event file (ROOT, HepMC3, LHE, Parquet)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "inspect_events", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("inspect", help="summarise an event file (ROOT, HepMC3, LHE, Parquet)",
                       description="Summarise an event file: for ROOT the trees, branches (with types) and entry "
                       "counts; for HepMC3, LHE and Parquet the events, fields and collections; and the mlegpipe "
                       "metadata (cross section, version, seeds, checkpoint hash).")
    p.add_argument("file", help="event file")
    p.add_argument("--format", choices=["root", "hepmc3", "lhe", "parquet"], help="default: from the extension")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def inspect_events(path: str | Path, fmt: str | None = None) -> dict[str, Any]:
    """Events, fields with their types, collections and metadata of a non-ROOT event file (read in full)."""
    import awkward as ak

    from mlegpipe.formats import format_for, read_file, read_file_meta

    name = format_for(path, fmt).name
    events, fields, collections = 0, {}, []
    for batch in read_file(path, format=name):
        if not fields:
            fields = {f: str(ak.type(batch.arrays[f]).content) for f in batch.fields}
            collections = batch.collections
        events += len(batch)
    return {"file": str(path), "format": name, "size_bytes": Path(path).stat().st_size, "events": events,
            "fields": fields, "collections": collections, "meta": read_file_meta(path, format=name)}


def _text(summary: dict[str, Any]) -> str:
    lines = [f"{summary['file']} ({summary['format']}, {summary['size_bytes']} bytes): {summary['events']} events"]
    width = max((len(f) for f in summary["fields"]), default=0)
    lines += [f"    {field:<{width}}  {kind}" for field, kind in summary["fields"].items()]
    if summary["collections"]:
        lines.append("    collections: " + ", ".join(summary["collections"]))
    meta = summary.get("meta") or {}
    if meta:
        lines.append("  metadata:")
        lines += [f"    {key}: {json.dumps(meta[key], default=str)}" for key in sorted(meta)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the summary."""
    from mlegpipe.formats import format_for
    from mlegpipe.rootio import format_inspection, inspect_file

    if format_for(args.file, args.format, where="--format").name == "root":
        summary = inspect_file(args.file)
        text = format_inspection(summary)
    else:
        summary = inspect_events(args.file, args.format)
        text = _text(summary)
    print(json.dumps(summary, indent=2, default=str) if args.json else text)
    return 0
