"""Hidden-layer maps of trained models: generator layers per condition value, discriminator truth vs generated.

:func:`generator_layer_maps` reproduces thesis Fig. 21 for any generator with
a :class:`~mlegpipe.stages.NetworkProbe`: the network fed the same number of
draws (noise, latent points) at each value of its first condition (the beam
energies a cFAT-GAN was trained at, plus an extrapolated one), chosen hidden
layers mapped to 2D and coloured by the condition value, or by equally
populated regions of any observable of the events the generator makes from
those draws (W², x, Q², y of DIS events; a user's column; ``jets1_pt``);
:func:`discriminator_maps` reproduces Fig. 22 (a GAN discriminator's last
hidden layer fed truth and generated events at one condition value, PCA
fitted on the truth activations, both projected with it). Each map carries a
k-NN separability score of its labels (:func:`mlegpipe.interpret.embed.separability`).

Views of a conditional generator (``view``):

- ``independent``: fresh noise at each value; the map of what the layer
  holds over the generated sample. The noise dominates it: in a cFAT-GAN the
  beam energy accounts for only 3-6 % of the hidden-layer variance, because
  its outputs ``(p_x, p_y, T = ln(E_b - p_∥))`` hardly depend on the energy
  (a k-NN classifier tells the five training energies apart on the truth
  events in those features at 0.23, chance 0.20), so the energies overlap on
  such maps (k-NN 0.17-0.30 for 6 energies, chance 0.17;
  benchmarks/bench_interpret.py).
- ``shared``: the same noise vectors at every value, raw activations.
- ``response`` (default for maps coloured by the condition): the same noise
  vectors at every value, and each noise vector's mean activation over the
  values subtracted: what is left is how the layer responds to the
  condition, with the noise-driven part removed exactly. This isolates the
  conditional direction (thesis Fig. 21 shows the ordered energy bands);
  the map needs no labels to be fitted (k-NN 0.97 / 0.82 / 0.68 on PCA maps
  of cFAT-GAN layers 2 / 5 / 8). It shows how the layers carry the
  conditioning input, which an untrained network does too (0.97 / 0.85 /
  0.66): compare the ``condition_fraction`` (share of the activation variance
  due to the condition) and a fresh network's map before reading it as
  something learned.

Example:
    >>> import torch
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe.nets import mlp
    >>> from mlegpipe.stages import Generator, NetworkProbe
    >>> class Toy(Generator):  # a stand-in conditional generator: noise (4) + standardized energy (1)
    ...     conditions = ["beam_energy"]
    ...     network = mlp(5, 2, [16, 16])
    ...     def network_probe(self):
    ...         def inputs(n, values, gen):
    ...             return [torch.randn(n, 4, generator=gen), torch.full((n, 1), (values["beam_energy"] - 30) / 15)]
    ...         def decode(tensors, seed):
    ...             out = self.network(torch.cat(tensors, 1)).detach().double().numpy()
    ...             return EventBatch.from_columns({"a": out[:, 0], "b": out[:, 1]})
    ...         return NetworkProbe(self.network, "network", inputs, lambda *t: self.network(torch.cat(t, 1)),
    ...                             decode, self.conditions)
    >>> maps = generator_layer_maps(Toy(None, None), [1], values=[10.0, 50.0], events_per_value=50, method="pca")
    >>> maps[0].labels.shape, maps[0].chance, maps[0].color_by
    ((100,), 0.5, 'beam_energy')
    >>> generator_layer_maps(Toy(None, None), [1], [10.0, 50.0], events_per_value=50, method="pca",
    ...                      color_by="a")[0].label_names[0].startswith("a <")
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.interpret.activations import hidden_layer_names, record_activations, resolve_layers
from mlegpipe.interpret.embed import chance_level, cluster, embed, ordering, region_labels, separability
from mlegpipe.interpret.probes import discriminator_inputs, generator_probe
from mlegpipe.observables import ObservableSet, is_log, resolve, values_of
from mlegpipe.stages import Generator, NetworkProbe

__all__ = ["CONDITION", "VIEWS", "DiscriminatorMap", "LayerMap", "colourings", "discriminator_maps",
           "generator_layer_maps"]

#: ``color_by`` value naming the generator's first condition (whatever its name).
CONDITION = "condition"
#: How a conditional generator is fed and its activations taken (see the module doc); ``auto`` picks.
VIEWS: tuple[str, ...] = ("auto", "response", "shared", "independent")


@dataclass
class LayerMap:
    """One hidden layer mapped to 2D, with a label per point.

    Attributes:
        layer: the module name; title: what to print over the panel.
        coords: ``(n, 2)`` map; labels: per point (condition values, region indices).
        label_name: what the labels are (an axis label); label_names: names of region indices (None: labels
            are values).
        highlight: label values drawn apart (extrapolated condition values).
        method: pca/tsne/umap; separability, chance: k-NN accuracy and chance level.
        clusters: DBSCAN labels (None unless asked).
        separability_full: k-NN accuracy on the full activations (before the 2D
            map): how much of the label the layer holds, against what the map shows.
        view: ``independent``, ``shared`` or ``response`` (see the module doc).
        ordering: PCA maps: ``|Spearman ρ|`` of the first component with the
            labels (1: ordered bands along it); None for t-SNE/UMAP maps.
        condition_fraction: maps coloured by the condition: the share of the
            layer's activation variance carried by the per-value means (before
            any centring): how strongly the layer depends on the condition.
        color_by: the name of what the points are coloured by (a condition or an observable).
        unit: the unit of label values (shown beside them).
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
    condition_fraction: float | None = None
    color_by: str = ""
    unit: str = ""

    def summary(self) -> dict[str, Any]:
        """JSON-able figures of the map."""
        out = {"layer": self.layer, "title": self.title, "method": self.method, "view": self.view,
               "points": int(len(self.coords)), "color_by": self.color_by or self.label_name,
               "separability": self.separability, "chance": self.chance, "separability_full": self.separability_full,
               "ordering": self.ordering, "condition_fraction": self.condition_fraction}
        if self.clusters is not None:
            out["clusters"] = int(len(set(self.clusters.tolist()) - {-1}))
            out["noise_fraction"] = float(np.mean(self.clusters == -1))
        return out


@dataclass
class DiscriminatorMap:
    """Discriminator activations of truth and generated events at one condition value, on the truth's PCA plane.

    Attributes:
        value: the value of the generator's first condition (None for unconditional models);
            regime: trained/interpolated/extrapolated.
        truth, generated: ``(n, 2)`` projections; explained_variance: of the truth PCA.
        separability: k-NN accuracy of truth vs generated on the plane (0.5: indistinguishable).
        condition: the name of that condition (None for unconditional models); unit: its unit.
    """

    value: float | None
    regime: str
    layer: str
    truth: np.ndarray
    generated: np.ndarray
    explained_variance: tuple[float, float]
    separability: float
    chance: float
    condition: str | None = None
    unit: str = ""

    def summary(self) -> dict[str, Any]:
        """JSON-able figures of the map."""
        return {"condition": self.condition, "value": self.value, "regime": self.regime, "layer": self.layer,
                "truth_events": int(len(self.truth)), "generated_events": int(len(self.generated)),
                "explained_variance": list(self.explained_variance), "separability": self.separability,
                "chance": self.chance}


def _layer_title(net: torch.nn.Module, name: str) -> str:
    hidden = hidden_layer_names(net)
    if name in hidden:
        number = hidden.index(name) + 1
        return f"hidden layer {number}" + (" (last)" if number == len(hidden) else "")
    return f"module {name}"


def colourings(probe: NetworkProbe, events: EventBatch) -> list[str]:
    """What maps of ``probe``'s network can be coloured by, given events it generated.

    ``condition`` and the condition names (conditional models), then the
    observables a report would compare on these events
    (:meth:`mlegpipe.observables.ObservableSet.default_names`), then their other fields.

    Example:
        >>> from mlegpipe.stages import NetworkProbe
        >>> probe = NetworkProbe(None, "network", None, None, None, ["sqrt_s"])
        >>> colourings(probe, EventBatch.from_columns({"a": [1.0, 2.0], "weight": [1.0, 1.0]}))
        ['condition', 'sqrt_s', 'a', 'weight']
    """
    names = [CONDITION, *probe.conditions] if probe.conditional else []
    with np.errstate(all="ignore"):  # the events of a poorly trained generator may overflow
        names += ObservableSet().default_names(events, events)
    return list(dict.fromkeys([*names, *events.fields]))


def _default_colouring(stage: Generator, probe: NetworkProbe, events: EventBatch) -> str:
    """The first observable the report would compare that varies over ``events``, else the first learned feature."""
    with np.errstate(all="ignore"):  # the events of a poorly trained generator may overflow
        names = ObservableSet().default_names(events, events)
    for name in names:
        try:
            v = values_of(events, name, "color_by")
        except DataError:
            continue
        finite = v[np.isfinite(v)]
        if finite.size and finite.min() < finite.max():
            return name
    if stage.features and (events.has(stage.features[0])):
        return stage.features[0]
    raise ConfigError("no observable of the generated events varies: name one to colour the map by",
                      path="color_by", value=None, hint="available: " + ", ".join(colourings(probe, events)))


def _observable_labels(probe: NetworkProbe, events: EventBatch, name: str) -> np.ndarray:
    """Values of the observable ``name`` on the decoded events (a ConfigError naming it if there is none)."""
    observable = resolve(name)
    if not events.has(name) and not observable.available(events):
        jagged = [c for c in events.collections if c in events.fields]
        hint = f"and any particle's observables of a collection, e.g. {jagged[0]}1_pt, n_{jagged[0]}" if jagged \
            else None
        raise ConfigError("unknown colouring: no such condition or observable of the generated events; "
                          "available: " + ", ".join(colourings(probe, events)), path="color_by", value=name,
                          hint=hint)
    return values_of(events, name, "color_by")


def _condition_fraction(per_value: np.ndarray) -> float:
    """Share of the total variance of ``(values, n, d)`` activations carried by the per-value means."""
    flat = per_value.reshape(-1, per_value.shape[-1])
    total = float(flat.var(axis=0).sum())
    return float(per_value.mean(axis=1).var(axis=0).sum() / total) if total > 0 else 0.0


def _feed(probe: NetworkProbe, values: Sequence[float] | None, extrapolated: Sequence[float],
          conditions: Mapping[str, float] | None) -> tuple[list[dict[str, float] | None], dict[str, float]]:
    """The condition values fed at each step (None: unconditional) and the other conditions held fixed."""
    fixed = {k: float(v) for k, v in (conditions or {}).items()}
    if not probe.conditional:
        if fixed:
            raise ConfigError("the model takes no conditions", path="conditions", value=next(iter(fixed)))
        if values:
            raise ConfigError("condition values need a conditional model", path="values", value=list(values))
        if extrapolated:
            raise ConfigError("extrapolated values need a conditional model", path="extrapolate",
                              value=list(extrapolated))
        return [None], fixed
    first, others = probe.conditions[0], probe.conditions[1:]
    if not values:
        raise ConfigError(f"the model is conditional on {first!r}: give the values of it to feed the model",
                          path="values", value=values)
    unknown = [k for k in fixed if k not in others]
    if unknown:
        raise ConfigError(f"not a condition held fixed; the model's conditions beyond {first!r}: "
                          + (", ".join(others) or "none"), path="conditions", value=unknown[0])
    missing = [k for k in others if k not in fixed]
    if missing:
        raise ConfigError(f"the model is also conditional on {missing[0]!r}: give a value to hold it at",
                          path=f"conditions.{missing[0]}", value=None)
    return [{first: float(v), **fixed} for v in [*values, *extrapolated]], fixed


def generator_layer_maps(
    stage: Generator,
    layers: Sequence[int | str] = (2, 5, -1),
    values: Sequence[float] | None = None,
    extrapolated: Sequence[float] = (),
    events_per_value: int = 1000,
    method: str = "tsne",
    color_by: str | None = None,
    seed: int = 0,
    perplexity: float = 30.0,
    cluster_eps: float | None = None,
    cluster_min_samples: int = 25,
    regions: int = 4,
    view: str = "auto",
    conditions: Mapping[str, float] | None = None,
) -> list[LayerMap]:
    """2D maps of the generator's hidden layers (thesis Fig. 21).

    Arguments:
        stage: a trained generator with a network probe (see :mod:`mlegpipe.interpret.probes`).
        layers: hidden-layer numbers (1-based, -1 the last) or module names;
            layers beyond the network's depth are dropped, duplicates merged.
        values: values of the generator's first condition to feed (trained ones;
            conditional models only), e.g. beam energies.
        extrapolated: further values, drawn apart on the plots (60 GeV in the thesis).
        events_per_value: draws per value (or in all, for unconditional models).
        method: ``pca``, ``tsne`` or ``umap``.
        color_by: ``condition`` (or the first condition's name): the fed
            values (conditional models); or any observable computable on the
            events the generator makes from the draws
            (:func:`mlegpipe.observables.values_of`: ``W2``, ``x`` of DIS
            events, a field, ``jets1_pt``), in ``regions`` equally populated
            regions (events where it is undefined in a region of their own;
            an observable with at most ``regions`` values keeps its values).
            None: the first condition for conditional models, else the first
            observable a report would compare that varies, else the first
            learned feature.
        seed: noise and embedding seed.
        cluster_eps: if given, DBSCAN clusters of each map (ε in map standard deviations).
        regions: number of regions for observable colouring.
        view: ``response``, ``shared`` or ``independent`` (see the module
            doc); ``auto``: ``response`` for conditional models coloured by
            the condition, else ``independent``.
        conditions: values of the conditions beyond the first, held fixed (models with several conditions).

    Raises:
        ConfigError: bad layers, colouring (the message lists what is available), view, values or conditions
            for this model.
    """
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
    first = probe.conditions[0] if probe.conditional else None
    if color_by == CONDITION and first is None:
        raise ConfigError("the model is not conditional: colour its map by an observable of the generated events",
                          path="color_by", value=color_by)
    if color_by is not None and color_by in probe.conditions[1:]:
        raise ConfigError(f"{color_by!r} is held fixed: colour by the first condition ({first!r}) or an observable",
                          path="color_by", value=color_by)
    by_condition = first is not None and color_by in (None, CONDITION, first)
    feed, _ = _feed(probe, values, extrapolated, conditions)
    if view == "auto":
        view = "response" if by_condition else "independent"
    if view != "independent" and len({None if f is None else f[first] for f in feed}) < 2:
        raise ConfigError(f"the {view} view feeds the same noise at several condition values: it needs a "
                          "conditional model and at least two values", path="view", value=view,
                          hint="use view = 'independent'")
    gen = torch.Generator().manual_seed(int(seed))
    acts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    labels: list[np.ndarray] = []
    colour = first if by_condition else color_by
    for fed in feed:
        if view != "independent":
            gen.manual_seed(int(seed))  # the same noise vectors at every value
        inputs = probe.inputs(events_per_value, fed, gen)
        if not by_condition:  # decode first: a bad colouring fails before any layer is recorded
            events = probe.decode(inputs, np.random.SeedSequence(0))
            if colour is None:
                colour = _default_colouring(stage, probe, events)
            labels.append(_observable_labels(probe, events, colour))
        recorded = record_activations(probe.network, inputs, names, forward=probe.forward)
        for name in names:
            acts[name].append(recorded[name])
        if by_condition:
            labels.append(np.full(events_per_value, fed[first]))
    observable = resolve(colour)
    label_values = np.concatenate(labels)
    label_names = None
    distinct = np.unique(label_values[np.isfinite(label_values)])
    if not by_condition and len(distinct) < 2:
        raise ConfigError(f"{colour} takes {'one value' if len(distinct) else 'no finite value'} on the generated "
                          "events: nothing to colour the map by", path="color_by", value=colour)
    discrete = by_condition or (np.isfinite(label_values).all() and len(distinct) <= regions)
    if not discrete:  # equally populated regions; an observable with few values (a multiplicity) keeps them
        label_values, label_names = region_labels(label_values, regions, colour, log=is_log(observable, label_values))
    highlight = [float(e) for e in extrapolated]
    out = []
    for name in names:
        per_value = np.stack(acts[name])  # (values, events, width)
        fraction = _condition_fraction(per_value) if by_condition and len(feed) > 1 else None
        if view == "response":
            response = per_value - per_value.mean(axis=0, keepdims=True)
            # a layer blind to the condition leaves float rounding only: call it no response at all
            blind = float(response.var()) <= 1e-12 * max(float(per_value.var()), 1e-30)
            per_value = np.zeros_like(response) if blind else response
        layer_acts = per_value.reshape(-1, per_value.shape[-1])
        emb = embed(layer_acts, method, seed=seed, perplexity=perplexity)
        sep = separability(emb.coords, label_values, seed=seed)
        clusters = cluster(emb.coords, cluster_eps, cluster_min_samples) if cluster_eps is not None else None
        order = ordering(emb.coords[:, 0], label_values) if method == "pca" else None
        out.append(LayerMap(name, _layer_title(probe.network, name), emb.coords, label_values,
                            observable.axis_label, method, sep, chance_level(label_values), label_names, highlight,
                            clusters, separability(layer_acts, label_values, seed=seed), view, order, fraction,
                            colour, observable.unit if discrete else ""))
    return out


def discriminator_maps(
    stage: Generator,
    net: torch.nn.Module,
    truth: EventBatch,
    generated: EventBatch | None = None,
    values: Sequence[float] | None = None,
    trained: Sequence[float] = (),
    layer: int | str = -1,
    events: int = 5000,
    seed: int = 0,
) -> list[DiscriminatorMap]:
    """Discriminator activations of truth and generated events on the truth's PCA plane (thesis Fig. 22).

    Arguments:
        stage: the trained GAN generator (an :class:`~mlegpipe.stages.AdversarialModel`: it makes the
            discriminator features).
        net: its discriminator network (see :func:`~mlegpipe.interpret.probes.load_discriminator_net`).
        truth: truth events (with the conditions of conditional models, e.g. ``beam_energy``).
        generated: generated events; None: sampled from ``stage`` at each value
            (as many as the truth events there, at most ``events``).
        values: values of the generator's first condition to show (default: those of ``truth``); conditional
            models only.
        trained: the training values (to name each value trained, interpolated or extrapolated).
        layer: the hidden layer (default: the last).
        events: at most this many events per sample and value.
        seed: subsampling and generation seed.
    """
    from mlegpipe.plots.conditional import energy_regime

    name = resolve_layers(net, [layer])[0]
    condition = stage.conditions[0] if stage.conditions else None
    rng = np.random.default_rng(seed)

    def subset(batch: EventBatch, value: float | None) -> EventBatch:
        if value is not None:
            batch = batch.take(values_of(batch, condition, "truth") == value)
        if len(batch) > events:
            batch = batch.take(np.sort(rng.choice(len(batch), events, replace=False)))
        return batch

    if condition is not None:
        available = np.unique(values_of(truth, condition, "truth"))
        chosen: list[float | None] = [float(e) for e in (values if values else available)]
        missing = [e for e in chosen if e not in available]
        if missing:
            raise DataError(f"no truth events at {condition} = {missing[0]:g}; the truth sample has "
                            f"{available.tolist()}", path="values", value=missing[0])
    else:
        chosen = [None]
    unit = resolve(condition).unit if condition is not None else ""
    out = []
    for i, value in enumerate(chosen):
        real = subset(truth, value)
        if generated is not None:
            fake = subset(generated, value)
        else:  # at the truth events' values of any further condition
            fixed = {c: values_of(real, c, "truth") for c in stage.conditions[1:]}
            fake = stage.sample(len(real), np.random.SeedSequence([seed, i]),
                                {condition: value, **fixed} if value is not None else None)
        if len(real) < 10 or len(fake) < 10:
            where = "" if value is None else f" at {condition} = {value:g}"
            raise DataError(f"too few events{where} for a map ({len(real)} truth, {len(fake)} generated)",
                            path="truth")
        acts_real = record_activations(net, discriminator_inputs(stage, real), [name])[name]
        acts_fake = record_activations(net, discriminator_inputs(stage, fake), [name])[name]
        emb = embed(acts_real, "pca", seed=seed)
        proj_fake = emb.transform(acts_fake)
        both = np.concatenate([emb.coords, proj_fake])
        labels = np.r_[np.zeros(len(real)), np.ones(len(fake))]
        regime = energy_regime(value, trained) if value is not None and trained else ""
        out.append(DiscriminatorMap(value, regime, name, emb.coords, proj_fake, emb.explained_variance,
                                    separability(both, labels, seed=seed), chance_level(labels), condition, unit))
    return out
