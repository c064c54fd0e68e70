"""Model interpretation: hidden-layer activations, 2D maps (PCA / t-SNE / UMAP) and loss landscapes (thesis ch. 8).

Modules: :mod:`~mlegpipe.interpret.activations` (forward hooks),
:mod:`~mlegpipe.interpret.embed` (2D maps, separability, DBSCAN),
:mod:`~mlegpipe.interpret.landscape` (filter-normalized loss landscapes),
:mod:`~mlegpipe.interpret.probes` (the networks inside stages),
:mod:`~mlegpipe.interpret.maps` (generator and discriminator layer maps),
:mod:`~mlegpipe.interpret.plots` (figures), :mod:`~mlegpipe.interpret.runs`
(run folders).

Example:
    >>> from mlegpipe.interpret import embed, loss_landscape, record_activations
    >>> callable(embed) and callable(loss_landscape) and callable(record_activations)
    True
"""

from __future__ import annotations

from mlegpipe.interpret.activations import hidden_layer_names, record_activations, resolve_layers
from mlegpipe.interpret.embed import Embedding, chance_level, cluster, embed, ordering, region_labels, separability
from mlegpipe.interpret.landscape import Landscape, filter_normalized_direction, loss_landscape, loss_slice
from mlegpipe.interpret.maps import DiscriminatorMap, LayerMap, discriminator_maps, generator_layer_maps

__all__ = [
    "DiscriminatorMap",
    "Embedding",
    "Landscape",
    "LayerMap",
    "chance_level",
    "cluster",
    "discriminator_maps",
    "embed",
    "filter_normalized_direction",
    "generator_layer_maps",
    "hidden_layer_names",
    "loss_landscape",
    "loss_slice",
    "ordering",
    "record_activations",
    "region_labels",
    "resolve_layers",
    "separability",
]
