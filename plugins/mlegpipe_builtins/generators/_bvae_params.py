"""Parameters of the ``bvae`` generator and its size presets.

A field left ``None`` takes the value of the chosen preset (``cpu``: small and
fast on two cores; ``published``: the B-VAE paper's sizes; ``jets``: events
with many particles, such as semileptonic tt̄ with up to ~13 jets).

Example:
    >>> from mlegpipe.schema import fill_none
    >>> fill_none(BVAEParams(preset="jets"), PRESETS["jets"])["latent"]
    40
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlegpipe.nets import ACTIVATIONS
from mlegpipe.schema import param
from mlegpipe_builtins.generators._bvae_multiplicity import ENCODINGS

__all__ = ["PRESETS", "BVAEParams"]

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"latent": 8, "layers": 3, "width": 128, "steps": 3000, "batch_size": 512, "lr": 1e-3, "beta": 1e-4},
    "published": {"latent": 20, "layers": 6, "width": 128, "steps": 100_000, "batch_size": 1024, "lr": 1e-3,
                  "beta": 1e-6},
    # semileptonic tt̄ with up to ~13 jets (benchmarks/bench_bvae_ttbar.py): a latent as wide as an event of
    # 8 jets has numbers, so the buffer's events decode sharply
    "jets": {"latent": 40, "layers": 3, "width": 256, "steps": 12_000, "batch_size": 512, "lr": 1e-3, "beta": 1e-6},
}


@dataclass
class BVAEParams:
    """Parameters of the ``bvae`` generator; ``None`` takes the value of ``preset``."""

    preset: str = param("cpu", choices=tuple(PRESETS),
                        doc="'cpu' (small, fast), 'published' (6 × 128, latent 20) or 'jets' (3 × 256, latent 40, "
                            "12000 steps: events with many particles)")
    feature_map: str = param("auto", doc="how events become features: a registered map (DIS: lepton_t, nu, "
                                         "nu_scaled, lepton_cartesian), columns or collection (the fields and "
                                         "particle collections in `features`); auto: "
                                         "collection when `features` are given, else lepton_t")
    features: list[str] = param([], doc="event fields and particle collections to learn (columns / collection); "
                                         "one collection may have a variable multiplicity; integer particle "
                                         "fields (flavour, pid) are not learned")
    conditions: list[str] = param([], doc="the multiplicity of the variable collection (n_jets) to give at "
                                          "sampling, a value per event (default: drawn from the training "
                                          "frequencies); no other field")
    multiplicity_encoding: str = param("onehot", choices=ENCODINGS,
                                       doc="how the multiplicity of a variable collection enters encoder and "
                                           "decoder: one input per training multiplicity, or one standardized "
                                           "count")
    draws: str = param(
        "iid", choices=("iid", "stratified"),
        doc="'iid': every generated event draws its buffer event (and the multiplicity of a variable "
            "collection, when not given) independently; 'stratified': the buffer events are drawn without "
            "replacement, in passes over the buffer (per multiplicity when it is given; with the prior: the "
            "multiplicity counts are their expected shares), so the generated sample carries no resampling "
            "noise of its own beyond the training sample's")
    latent: int | None = param(None, min=1, max=512, doc="latent dimension (None: from the preset)")
    layers: int | None = param(None, min=1, max=32, doc="hidden layers of encoder and decoder")
    width: int | None = param(None, min=1, max=4096, doc="neurons per hidden layer")
    activation: str = param("elu", choices=ACTIVATIONS, doc="hidden activation (published: ELU)")
    beta: float | None = param(None, min=0.0, max=1.0, doc="β: weight of the KL term")
    steps: int | None = param(None, min=0, doc="optimizer steps")
    batch_size: int | None = param(None, min=2, doc="events per step")
    lr: float | None = param(None, min=0.0, exclusive_min=True, doc="Adam learning rate")
    lr_schedule: str = param("cosine", choices=("cosine", "constant"), doc="learning-rate schedule")
    sampling: str = param("buffer", choices=("buffer", "prior"),
                          doc="latent density to sample: the information buffer or N(0, 1)")
    buffer_sigma_scale: float = param(1.0, min=0.0, doc="α: buffer Gaussians N(μᵢ, α σᵢ)")
    buffer_smearing: str = param(
        "posterior", choices=("posterior", "neighbours"),
        doc="'posterior': N(μᵢ, α σᵢ); 'neighbours': also a Gaussian step λ·g·(μⱼ - μᵢ) toward a random one "
            "of the buffer_neighbours nearest buffer means (smears along the data, not across it)")
    buffer_neighbours: int = param(10, min=1, max=100, doc="nearest buffer means used by 'neighbours'")
    neighbour_scale: float = param(0.0, min=0.0, doc="λ of buffer_smearing = 'neighbours'")
    buffer_calibration: str = param(
        "none", choices=("none", "memorization"),
        doc="'memorization': after training, widen the buffer (α ≥ buffer_sigma_scale, or λ with "
            "'neighbours') until generated events lie as far from the training events as the validation "
            "events do")
    memorization_target: float = param(0.95, min=0.1, max=2.0,
                                       doc="nearest-training-event distance ratio the calibration aims at")
    buffer_events: int = param(200_000, min=1, doc="at most this many training events in the buffer")
    frame: str = param(
        "features", choices=("features", "lnx"),
        doc="'features': learn the map's features; 'lnx' (feature_map = 'nu_scaled' only): learn (ln Q² - ln y, "
            "ln Q², φ) = (ln x + ln s, ln Q², φ), so the sample's sharp low-x edge lies along one axis")
    azimuth: str = param(
        "learned", choices=("learned", "rotated"),
        doc="'learned': azimuth features as they are; 'rotated': every azimuth (features named *_phi) learned "
            "as (cos, sin) of its difference to the first azimuth every event has, which is drawn uniformly "
            "when sampling (events invariant under rotations about the beam axis; no edge at ±π)")
    preprocess: str = param(
        "standardize", choices=("standardize", "gaussianize"),
        doc="'standardize' the learned features, or first 'gaussianize' each one through its training "
            "quantiles (a monotone map to N(0, 1)): smearing the buffer then keeps sharp edges and steep "
            "falls of the marginals in place")
    redraw: str = param(
        "smearing", choices=("event", "smearing"),
        doc="a rejected event is replaced by a new buffer event ('event') or by a new smearing of the same "
            "buffer event ('smearing': every training event keeps its weight, so the density next to the "
            "sample's edges is not depleted by rejected smearings; after 16 rejected smearings of one buffer "
            "event, one the decoder cannot place inside the limits, a new buffer event of the same "
            "multiplicity is drawn)")
    reject_unphysical: bool = param(True, doc="redraw events outside the kinematic limits (counted)")
    reject_outside_training: bool = param(
        False, doc="also redraw events whose x, Q², W², y lie outside the training events' range (the sample's "
                   "selection, e.g. Q² > 1 GeV², which a smeared buffer would otherwise cross)")
    validate_every: int = param(250, min=0, doc="validate every this many steps (0: never)")
    valid_events: int = param(20_000, min=2, doc="validation events used")
