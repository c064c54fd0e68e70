"""The LHC domain's registrations: observables and their φ maps, the decay-chain feature map, physicality, the
LHE record of tt̄ → 6 quarks.

This module is the LHC domain's entry point (``lhc-domain`` in the ``mlegpipe``
group): it reaches the core only through the hooks of :mod:`mlegpipe.hookspecs`.
The pp beam presets (``lhc13``, ...) come from :mod:`mlegpipe_builtins.colliders`.

Example:
    >>> from mlegpipe.registry import load_plugins
    >>> reg = load_plugins()
    >>> "ttbar_chain" in reg.feature_maps, "m_W1" in reg.observables, "ttbar" in reg.physicality
    (True, True, True)
"""

from __future__ import annotations

from typing import Any

from mlegpipe import hookimpl
from mlegpipe_builtins.lhc.chain import TtbarChain
from mlegpipe_builtins.lhc.observables import OBSERVABLES, PAIRS
from mlegpipe_builtins.lhc.physicality import TTBAR_CHECK
from mlegpipe_builtins.lhc.records import PROCESS, ttbar_record

__all__ = ["mlegpipe_register_feature_maps", "mlegpipe_register_observables", "mlegpipe_register_parton_records",
           "mlegpipe_register_physicality"]


@hookimpl
def mlegpipe_register_feature_maps(registry: Any) -> None:
    """``ttbar_chain``: tt̄ → 6 quarks in decay-chain coordinates."""
    registry.add(TtbarChain.name, TtbarChain)


@hookimpl
def mlegpipe_register_observables(registry: Any) -> None:
    """W, top and tt̄ observables of the quarks; the jets' top candidate and MET; the fine φ maps."""
    for name, observable in OBSERVABLES.items():
        registry.add(name, observable)
    for pair in PAIRS:
        registry.add(pair.name, pair)


@hookimpl
def mlegpipe_register_physicality(registry: Any) -> None:
    """Quarks with real masses inside √s."""
    registry.add(TTBAR_CHECK.name, TTBAR_CHECK)


@hookimpl
def mlegpipe_register_parton_records(registry: Any) -> None:
    """The LHE record of tt̄ → 6 quarks: tops and Ws as resonances, a gg → tt̄ colour flow."""
    registry.add(PROCESS, ttbar_record)
