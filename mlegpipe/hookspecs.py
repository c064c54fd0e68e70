"""All hook specifications of mlegpipe, in one place.

Plugins implement these with the marker :data:`mlegpipe.hookimpl`::

    from mlegpipe import hookimpl

    @hookimpl
    def mlegpipe_register_stages(registry):
        registry.add(MyDetector)

Each hook hands the plugin one registry, for one extension point; the core
never imports a domain, so a physics domain (DIS, LHC, a user's own) is
nothing but a plugin implementing some of these hooks. The pipeline's order
comes from the TOML file, never from the order in which hooks are called:
hooks only contribute objects, by name.

=================================  =============================================  ==========================
hook                               contributes                                    used by
=================================  =============================================  ==========================
``mlegpipe_register_stages``       stage classes (truth, generator, detector, …)  TOML ``plugin = "..."``
``mlegpipe_register_feature_maps`` :class:`~mlegpipe.features.FeatureMap` classes generators' ``feature_map``
``mlegpipe_register_observables``  :class:`~mlegpipe.observables.Observable` s    report, metrics, unfolding
                                   and 2D pairs
``mlegpipe_register_beam_presets`` named :class:`~mlegpipe.beams.Beams`           ``beams = "NAME"``
``mlegpipe_register_physicality``  :class:`~mlegpipe.physicality.PhysicalityCheck` report's unphysical fraction
``mlegpipe_register_augmentations`` differentiable functions of decoded fields     GAN discriminators
=================================  =============================================  ==========================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from mlegpipe.registry import NamedRegistry, StageRegistry

__all__ = [
    "hookimpl",
    "hookspec",
    "mlegpipe_register_augmentations",
    "mlegpipe_register_beam_presets",
    "mlegpipe_register_feature_maps",
    "mlegpipe_register_observables",
    "mlegpipe_register_physicality",
    "mlegpipe_register_stages",
]

hookspec = pluggy.HookspecMarker("mlegpipe")
hookimpl = pluggy.HookimplMarker("mlegpipe")


@hookspec
def mlegpipe_register_stages(registry: StageRegistry) -> None:
    """Contribute stage classes.

    Called once when the plugin manager loads the plugins, before any pipeline
    is validated. Call ``registry.add(cls)`` for every stage class the plugin
    provides: ``cls.kind`` says which kind of stage it is and ``cls.plugin_name``
    is what users write after ``plugin =`` in TOML (declared once, on the class).
    Returns nothing.
    """


@hookspec
def mlegpipe_register_feature_maps(registry: NamedRegistry) -> None:
    """Contribute feature maps: invertible maps between event fields and the features a generator learns.

    Called once at plugin loading. Call ``registry.add(cls.name, cls)`` for each
    :class:`~mlegpipe.features.FeatureMap` subclass; users choose it with
    ``feature_map = "NAME"``. Returns nothing.
    """


@hookspec
def mlegpipe_register_observables(registry: NamedRegistry) -> None:
    """Contribute observables (and 2D pairs) computed from events.

    Called once at plugin loading. Call ``registry.add(obs.name, obs)`` for each
    :class:`~mlegpipe.observables.Observable` and ``registry.add(pair.name, pair)``
    for each :class:`~mlegpipe.observables.Pair`. An observable is used wherever
    its inputs exist (the report compares every available one); a pipeline's
    ``[observables]`` table can add expressions and choose. Returns nothing.
    """


@hookspec
def mlegpipe_register_beam_presets(registry: NamedRegistry) -> None:
    """Contribute named beam set-ups.

    Called once at plugin loading. Call ``registry.add(name, beams)`` with a
    :class:`~mlegpipe.beams.Beams` for each preset; users write ``beams = "NAME"``.
    Returns nothing.
    """


@hookspec
def mlegpipe_register_physicality(registry: NamedRegistry) -> None:
    """Contribute physicality checks: which events break a kinematic limit of a domain.

    Called once at plugin loading. Call ``registry.add(check.name, check)`` for
    each :class:`~mlegpipe.physicality.PhysicalityCheck`; a check applies to
    events that have what it needs. Returns nothing.
    """


@hookspec
def mlegpipe_register_augmentations(registry: NamedRegistry) -> None:
    """Contribute augmented features: differentiable functions of decoded event fields shown to critics.

    Called once at plugin loading. Call ``registry.add(aug.name, aug)`` for each
    :class:`~mlegpipe.features.Augmentation`; GANs name them in ``augment = [...]``.
    Returns nothing.
    """


@hookspec
def mlegpipe_register_parton_records(registry: NamedRegistry) -> None:
    """Contribute parton-level event records for LHE output: resonances, mothers and colour lines of a process.

    Called once at plugin loading. Call ``registry.add(process, builder)`` with
    the name of the process the events carry in their ``process`` metadata and a
    :data:`~mlegpipe.formats.records.RecordBuilder`; the LHE writer then writes
    those events through it. Returns nothing.
    """
