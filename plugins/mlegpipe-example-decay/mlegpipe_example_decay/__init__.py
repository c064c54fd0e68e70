"""Example mlegpipe domain plugin: the B-VAE slides' toy, a 1 → 2 decay without exact momentum conservation.

A physics domain is nothing but a plugin implementing some of the hooks of
:mod:`mlegpipe.hookspecs`; this one implements three, written only against
mlegpipe's public API (no import of ``mlegpipe_builtins``):

==================================  ==========================================================
hook                                contributes
==================================  ==========================================================
``mlegpipe_register_stages``        the truth source ``decay-toy`` (:mod:`.truth`)
``mlegpipe_register_observables``   ``decay_mass``, ``decay_opening``, ``decay_cos_theta``,
                                    ``decay_imbalance`` and the (mass, opening) pair (:mod:`.observables`)
``mlegpipe_register_physicality``   the check ``decay``: E ≥ |p|, two daughters, the p_T cut (:mod:`.physicality`)
==================================  ==========================================================

The generators learn the daughters through the core's collection feature map
(``features = ["d"]``); see ``pipelines/decay_flow.toml`` and
``pipelines/decay_bvae.toml`` beside this package.

Example:
    >>> from mlegpipe.registry import load_plugins
    >>> import mlegpipe_example_decay as plugin
    >>> reg = load_plugins(extra=[plugin])  # doctest: +SKIP
    >>> reg.get("truth", "decay-toy").cls.__name__, "decay_mass" in reg.observables  # doctest: +SKIP
    ('DecayToy', True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlegpipe import hookimpl
from mlegpipe_example_decay.observables import MASS_OPENING_PAIR, OBSERVABLES
from mlegpipe_example_decay.physicality import DECAY_CHECK
from mlegpipe_example_decay.truth import DecayToy

if TYPE_CHECKING:
    from mlegpipe.registry import NamedRegistry, Registry

__all__ = [
    "DECAY_CHECK",
    "MASS_OPENING_PAIR",
    "OBSERVABLES",
    "DecayToy",
    "mlegpipe_register_observables",
    "mlegpipe_register_physicality",
    "mlegpipe_register_stages",
]


@hookimpl
def mlegpipe_register_stages(registry: Registry) -> None:
    """The truth source ``decay-toy``."""
    registry.add(DecayToy)


@hookimpl
def mlegpipe_register_observables(registry: NamedRegistry) -> None:
    """The decay observables and the (decay_mass, decay_opening) pair."""
    for name, observable in OBSERVABLES.items():
        registry.add(name, observable)
    registry.add(MASS_OPENING_PAIR.name, MASS_OPENING_PAIR)


@hookimpl
def mlegpipe_register_physicality(registry: NamedRegistry) -> None:
    """The check ``decay``."""
    registry.add(DECAY_CHECK.name, DECAY_CHECK)
