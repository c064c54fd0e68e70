"""``mlegpipe plugins``: list installed plugins, their kinds, distributions and versions."""

from __future__ import annotations

import argparse
from typing import Any

from mlegpipe.schema import describe_params

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("plugins", help="list installed plugins",
                       description="List every installed stage plugin (kind, name, distribution, version) and what "
                       "plugins registered through the extension hooks (feature maps, observables, beam presets, "
                       "physicality checks, augmentations), each with the module that registered it.")
    p.add_argument("name", nargs="?", help="show the module, file and parameters of this plugin")
    p.add_argument("--kind", help="only plugins of this kind (a stage kind, or feature_maps, observables, "
                   "beam_presets, physicality, augmentations)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table (or one plugin's parameters)."""
    from mlegpipe.exceptions import PluginError
    from mlegpipe.registry import EXTENSIONS, load_plugins
    from mlegpipe.schema import suggest

    registry = load_plugins()
    if args.kind in EXTENSIONS:
        return _extensions(registry, [args.kind])
    infos = [i for i in registry.all() if args.kind in (None, i.kind)]
    if args.name:
        chosen = [i for i in infos if i.name == args.name]
        if not chosen:
            names = sorted({i.name for i in infos})
            raise PluginError("no such plugin; installed: " + ", ".join(names), path="plugins", value=args.name,
                              hint=suggest(args.name, names))
        for info in chosen:
            print(f"{info.kind} plugin {info.name!r} ({info.distribution} {info.version}, {info.module})")
            print(f"  file: {info.file}")
            print(f"  {info.summary}")
            for name, typ, default, doc in describe_params(info.cls.Params):
                print(f"  {name:<22} {typ:<18} default {default!r:<14} {doc}")
        return 0
    rows = [("KIND", "NAME", "DISTRIBUTION", "VERSION", "DESCRIPTION")]
    rows += [(i.kind, i.name, i.distribution, i.version, i.summary) for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4])
    for name, message in registry.failed.items():
        print(f"FAILED  {name}: {message}")
    if args.kind is None:
        print()
        _extensions(registry, list(EXTENSIONS))
    return 0


def _extensions(registry: Any, attributes: list[str]) -> int:
    """Print what the extension hooks registered, with the registering module."""
    for attribute in attributes:
        entries = registry.extension(attribute)
        print(f"{attribute.replace('_', ' ')} ({len(entries)}):")
        for name in entries.names():
            item = entries.get(name)
            doc = getattr(item, "doc", "") or getattr(item, "label", "") or \
                ((item.__doc__ or "").strip().splitlines() or [""])[0]
            if hasattr(item, "sqrt_s"):
                doc = item.label
            elif hasattr(item, "overlay"):
                doc = f"2D pair: {item.x} and {item.y}"
            print(f"  {name:<22} {entries.origin(name):<40} {doc}")
    return 0
