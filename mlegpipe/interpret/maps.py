"""Hidden-layer maps of trained models: generator layers per beam energy, discriminator truth vs generated.

:func:`generator_layer_maps` reproduces thesis Fig. 21 (the generator fed the
same number of noise vectors at each trained energy plus an extrapolated one,
chosen hidden layers mapped to 2D and coloured by energy);
:func:`discriminator_maps` reproduces Fig. 22 (the discriminator's last
hidden layer fed truth and generated events at one energy, PCA fitted on the
truth activations, both projected with it). Each map carries a k-NN
separability score of its labels (:func:`mlegpipe.interpret.embed.separability`).

Views of a conditional generator (``view``):

- ``independent``: fresh noise at each energy; the map of what the layer
  holds over the generated sample. The noise dominates it: in a cFAT-GAN the
  beam energy accounts for only 3-6 % of the hidden-layer variance, because
  its outputs ``(p_x, p_y, T = ln(E_b - p_∥))`` hardly depend on the energy
  (a k-NN classifier tells the five training energies apart on the truth
  events in those features at 0.23, chance 0.20), so the energies overlap on
  such maps (k-NN 0.17-0.30 for 6 energies, chance 0.17;
  benchmarks/bench_interpret.py).
- ``shared``: the same noise vectors at every energy, raw activations.
- ``response`` (default for maps coloured by beam energy): the same noise
  vectors at every energy, and each noise vector's mean activation over the
  energies subtracted: what is left is how the layer responds to the beam
  energy, with the noise-driven part removed exactly. This isolates the
  conditional direction (thesis Fig. 21 shows the ordered energy bands);
  the map needs no labels to be fitted (k-NN 0.97 / 0.82 / 0.68 on PCA maps
  of cFAT-GAN layers 2 / 5 / 8). It shows how the layers carry the
  conditioning input, which an untrained network does too (0.97 / 0.85 /
  0.66): compare the ``energy_fraction`` (share of the activation variance
  due to the energy) and a fresh network's map before reading it as
  something learned.

Example:
    >>> import torch
    >>> from mlegpipe.nets import mlp
    >>> class Toy:  # a stand-in conditional generator: noise (4) + standardized energy (1)
    ...     conditions = ["beam_energy"]
    ...     network = mlp(5, 2, [16, 16])
    ...     class cond_scaler:
    ...         @staticmethod
    ...         def transform(eb):
    ...             return (eb - 30.0) / 15.0
    ...     def noise(self, n, generator=None):
    ...         return torch.randn(n, 4, generator=generator)
    >>> maps = generator_layer_maps(Toy(), [1], energies=[10.0, 50.0], events_per_energy=50, method="pca")
    >>> maps[0].labels.shape, maps[0].chance
    ((100,), 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.interpret.activations import hidden_layer_names, record_activations, resolve_layers
from mlegpipe.interpret.embed import chance_level, cluster, embed, ordering, region_labels, separability
from mlegpipe.interpret.probes import discriminator_inputs, generator_probe

__all__ = ["COLOR_BY", "VIEWS", "DiscriminatorMap", "LayerMap", "discriminator_maps", "generator_layer_maps"]

#: What generator maps can be coloured by: the beam energy (conditional models) or DIS regions of the output.
COLOR_BY: tuple[str, ...] = ("beam_energy", "W2", "x", "Q2", "y")
_LOG_VARS = {"x", "Q2"}
#: How a conditional generator is fed and its activations taken (see the module doc); ``auto`` picks.
VIEWS: tuple[str, ...] = ("auto", "response", "shared", "independent")


@dataclass
class LayerMap:
    """One hidden layer mapped to 2D, with a label per point.

    Attributes:
        layer: the module name; title: what to print over the panel.
        coords: ``(n, 2)`` map; labels: per point (energies, region indices).
        label_name: what the labels are; label_names: names of region indices (None: labels are values).
        highlight: label values drawn apart (extrapolated energies).
        method: pca/tsne/umap; separability, chance: k-NN accuracy and chance level.
        clusters: DBSCAN labels (None unless asked).
        separability_full: k-NN accuracy on the full activations (before the 2D
            map): how much of the label the layer holds, against what the map shows.
        view: ``independent``, ``shared`` or ``response`` (see the module doc).
        ordering: PCA maps: ``|Spearman ρ|`` of the first component with the
            labels (1: ordered bands along it); None for t-SNE/UMAP maps.
        energy_fraction: maps coloured by beam energy: the share of the
            layer's activation variance carried by the per-energy means (before
            any centring): how strongly the layer depends on the energy.
    """

    layer: str
    title: str
    coords: np.ndarray
    labels: np.ndarray
    label_name: str
    method: str
    separability: float
    chance: float
    label_names: list[str] | None = None
    highlight: list[float] = field(default_factory=list)
    clusters: np.ndarray | None = None
    separability_full: float | None = None
    view: str = "independent"
    ordering: float | None = None
    energy_fraction: float | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-able figures of the map."""
        out = {"layer": self.layer, "title": self.title, "method": self.method, "view": self.view,
               "points": int(len(self.coords)), "color_by": self.label_name, "separability": self.separability,
               "chance": self.chance, "separability_full": self.separability_full, "ordering": self.ordering,
               "energy_fraction": self.energy_fraction}
        if self.clusters is not None:
            out["clusters"] = int(len(set(self.clusters.tolist()) - {-1}))
            out["noise_fraction"] = float(np.mean(self.clusters == -1))
        return out


@dataclass
class DiscriminatorMap:
    """Discriminator activations of truth and generated events at one energy, on the truth's PCA plane.

    Attributes:
        energy: the beam energy (None for unconditional models); regime: trained/interpolated/extrapolated.
        truth, generated: ``(n, 2)`` projections; explained_variance: of the truth PCA.
        separability: k-NN accuracy of truth vs generated on the plane (0.5: indistinguishable).
    """

    energy: float | None
    regime: str
    layer: str
    truth: np.ndarray
    generated: np.ndarray
    explained_variance: tuple[float, float]
    separability: float
    chance: float

    def summary(self) -> dict[str, Any]:
        """JSON-able figures of the map."""
        return {"energy": self.energy, "regime": self.regime, "layer": self.layer,
                "truth_events": int(len(self.truth)), "generated_events": int(len(self.generated)),
                "explained_variance": list(self.explained_variance), "separability": self.separability,
                "chance": self.chance}


def _layer_title(net: torch.nn.Module, name: str) -> str:
    hidden = hidden_layer_names(net)
    if name in hidden:
        number = hidden.index(name) + 1
        return f"hidden layer {number}" + (" (last)" if number == len(hidden) else "")
    return f"module {name}"


def _output_labels(stage: Any, probe: Any, inputs: list[torch.Tensor], energy: float | None, color_by: str
                   ) -> np.ndarray:
    """DIS variable ``color_by`` of the events the generator makes from ``inputs`` (GAN lepton models)."""
    if probe.attribute != "network" or not getattr(stage, "is_lepton_model", False):
        raise ConfigError(f"colouring by {color_by} needs a GAN generator of the scattered lepton (its output "
                          "decodes to x, Q², W², y); colour by beam_energy instead", path="color_by", value=color_by)
    with torch.no_grad():
        z = probe.forward(*inputs)
    events = stage.decode(z, energy, seed=np.random.SeedSequence(0))
    return events.column(color_by)


def _energy_fraction(per_energy: np.ndarray) -> float:
    """Share of the total variance of ``(energies, n, d)`` activations carried by the per-energy means."""
    flat = per_energy.reshape(-1, per_energy.shape[-1])
    total = float(flat.var(axis=0).sum())
    return float(per_energy.mean(axis=1).var(axis=0).sum() / total) if total > 0 else 0.0


def generator_layer_maps(
    stage: Any,
    layers: Sequence[int | str] = (2, 5, -1),
    energies: Sequence[float] | None = None,
    extrapolated: Sequence[float] = (),
    events_per_energy: int = 1000,
    method: str = "tsne",
    color_by: str = "beam_energy",
    seed: int = 0,
    perplexity: float = 30.0,
    cluster_eps: float | None = None,
    cluster_min_samples: int = 25,
    regions: int = 4,
    view: str = "auto",
) -> list[LayerMap]:
    """2D maps of the generator's hidden layers (thesis Fig. 21).

    Arguments:
        stage: a trained generator (see :mod:`mlegpipe.interpret.probes`).
        layers: hidden-layer numbers (1-based, -1 the last) or module names;
            layers beyond the network's depth are dropped, duplicates merged.
        energies: beam energies fed to a conditional model (trained ones).
        extrapolated: further energies, drawn apart on the plots (60 GeV in the thesis).
        events_per_energy: noise vectors per energy (or in all, for unconditional models).
        method: ``pca``, ``tsne`` or ``umap``.
        color_by: ``beam_energy`` (conditional models), or ``W2``, ``x``,
            ``Q2``, ``y``: equally populated regions of that variable of the
            generated events (GAN lepton models).
        seed: noise and embedding seed.
        cluster_eps: if given, DBSCAN clusters of each map (ε in map standard deviations).
        regions: number of regions for DIS-variable colouring.
        view: ``response``, ``shared`` or ``independent`` (see the module
            doc); ``auto``: ``response`` for conditional models coloured by
            beam energy, else ``independent``.

    Raises:
        ConfigError: bad layers, colouring, view or energies for this model.
    """
    if color_by not in COLOR_BY:
        raise ConfigError("unknown colouring; known: " + ", ".join(COLOR_BY), path="color_by", value=color_by)
    if view not in VIEWS:
        raise ConfigError("unknown view; known: " + ", ".join(VIEWS), path="view", value=view)
    probe = generator_probe(stage)
    hidden = hidden_layer_names(probe.network)
    kept: list[int | str] = [item for item in layers
                             if not (isinstance(item, int | str) and str(item).lstrip("-").isdigit()
                                     and abs(int(item)) > len(hidden))]
    if not kept:
        raise ConfigError(f"none of the layers exist: the network has {len(hidden)} hidden layers", path="layers",
                          value=list(layers))
    names = list(dict.fromkeys(resolve_layers(probe.network, kept)))
    if probe.conditional:
        if not energies:
            raise ConfigError("the model is conditional on the beam energy: give the energies to feed it",
                              path="energies", value=energies)
        feed: list[float | None] = [float(e) for e in [*energies, *extrapolated]]
    else:
        if color_by == "beam_energy":
            raise ConfigError("the model is not conditional: colour its map by a DIS variable (W2, x, Q2, y)",
                              path="color_by", value=color_by)
        if extrapolated:
            raise ConfigError("extrapolated energies need a conditional model", path="extrapolate",
                              value=list(extrapolated))
        feed = [None]
    if view == "auto":
        view = "response" if probe.conditional and color_by == "beam_energy" else "independent"
    if view != "independent" and len(set(feed)) < 2:
        raise ConfigError(f"the {view} view feeds the same noise at several beam energies: it needs a conditional "
                          "model and at least two energies", path="view", value=view,
                          hint="use view = 'independent'")
    gen = torch.Generator().manual_seed(int(seed))
    acts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    labels: list[np.ndarray] = []
    for energy in feed:
        if view != "independent":
            gen.manual_seed(int(seed))  # the same noise vectors at every energy
        inputs = probe.inputs(events_per_energy, energy, gen)
        recorded = record_activations(probe.network, inputs, names, forward=probe.forward)
        for name in names:
            acts[name].append(recorded[name])
        if color_by == "beam_energy":
            labels.append(np.full(events_per_energy, energy))
        else:
            labels.append(_output_labels(stage, probe, inputs, energy, color_by))
    values = np.concatenate(labels)
    label_names = None
    if color_by != "beam_energy":
        values, label_names = region_labels(values, regions, color_by, log=color_by in _LOG_VARS)
    out = []
    for name in names:
        per_energy = np.stack(acts[name])  # (energies, events, width)
        fraction = _energy_fraction(per_energy) if color_by == "beam_energy" and len(feed) > 1 else None
        if view == "response":
            response = per_energy - per_energy.mean(axis=0, keepdims=True)
            # a layer blind to the energy leaves float rounding only: call it no response at all
            blind = float(response.var()) <= 1e-12 * max(float(per_energy.var()), 1e-30)
            per_energy = np.zeros_like(response) if blind else response
        layer_acts = per_energy.reshape(-1, per_energy.shape[-1])
        emb = embed(layer_acts, method, seed=seed, perplexity=perplexity)
        sep = separability(emb.coords, values, seed=seed)
        clusters = cluster(emb.coords, cluster_eps, cluster_min_samples) if cluster_eps is not None else None
        order = ordering(emb.coords[:, 0], values) if method == "pca" else None
        out.append(LayerMap(name, _layer_title(probe.network, name), emb.coords, values,
                            "beam energy [GeV]" if color_by == "beam_energy" else color_by, method, sep,
                            chance_level(values), label_names, [float(e) for e in extrapolated], clusters,
                            separability(layer_acts, values, seed=seed), view, order, fraction))
    return out


def discriminator_maps(
    stage: Any,
    net: torch.nn.Module,
    truth: EventBatch,
    generated: EventBatch | None = None,
    energies: Sequence[float] | None = None,
    trained: Sequence[float] = (),
    layer: int | str = -1,
    events: int = 5000,
    seed: int = 0,
) -> list[DiscriminatorMap]:
    """Discriminator activations of truth and generated events on the truth's PCA plane (thesis Fig. 22).

    Arguments:
        stage: the trained GAN generator (makes the discriminator features).
        net: its discriminator network (see :func:`~mlegpipe.interpret.probes.load_discriminator_net`).
        truth: truth events (with ``beam_energy`` for conditional models).
        generated: generated events; None: sampled from ``stage`` at each energy
            (as many as the truth events there, at most ``events``).
        energies: energies to show (default: those of ``truth``); conditional models only.
        trained: the training energies (to name each energy trained, interpolated or extrapolated).
        layer: the hidden layer (default: the last).
        events: at most this many events per sample and energy.
        seed: subsampling and generation seed.
    """
    from mlegpipe.plots.conditional import energy_regime

    name = resolve_layers(net, [layer])[0]
    conditional = bool(getattr(stage, "conditions", []))
    rng = np.random.default_rng(seed)

    def subset(batch: EventBatch, energy: float | None) -> EventBatch:
        if energy is not None:
            batch = batch.take(batch.column("beam_energy") == energy)
        if len(batch) > events:
            batch = batch.take(np.sort(rng.choice(len(batch), events, replace=False)))
        return batch

    if conditional:
        if not truth.has("beam_energy"):
            raise DataError("a conditional model's truth events need a beam_energy field", path="truth")
        available = np.unique(truth.column("beam_energy"))
        chosen = [float(e) for e in (energies if energies else available)]
        missing = [e for e in chosen if e not in available]
        if missing:
            raise DataError(f"no truth events at beam energy {missing[0]} GeV; the truth sample has "
                            f"{available.tolist()}", path="energies", value=missing[0])
    else:
        chosen = [None]
    out = []
    for i, energy in enumerate(chosen):
        real = subset(truth, energy)
        if generated is not None:
            fake = subset(generated, energy)
        else:
            conditions = {"beam_energy": energy} if energy is not None else None
            fake = stage.sample(len(real), np.random.SeedSequence([seed, i]), conditions)
        if len(real) < 10 or len(fake) < 10:
            raise DataError(f"too few events at {energy} GeV for a map ({len(real)} truth, {len(fake)} generated)",
                            path="truth")
        acts_real = record_activations(net, discriminator_inputs(stage, real), [name])[name]
        acts_fake = record_activations(net, discriminator_inputs(stage, fake), [name])[name]
        emb = embed(acts_real, "pca", seed=seed)
        proj_fake = emb.transform(acts_fake)
        both = np.concatenate([emb.coords, proj_fake])
        labels = np.r_[np.zeros(len(real)), np.ones(len(fake))]
        regime = energy_regime(energy, trained) if energy is not None and trained else ""
        out.append(DiscriminatorMap(energy, regime, name, emb.coords, proj_fake, emb.explained_variance,
                                    separability(both, labels, seed=seed), chance_level(labels)))
    return out
