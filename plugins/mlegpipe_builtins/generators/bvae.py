"""The B-VAE generator: a variational autoencoder sampled from a density information buffer (seed 001).

A VAE encodes each event to a Gaussian N(μ_i, σ_i) in a latent space and
decodes latent points back to events; it trains on

    L = (1 - β) · MSE(x, x̂) + β · KL(N(μ, σ) ‖ N(0, 1)).

With the small β of the B-VAE (10⁻⁶ as published) the encoded Gaussians are
narrow and their union is far from N(0, 1), so sampling the prior gives poor
events. The B-VAE instead samples the *buffer*

    p(z) = (1/n) Σᵢ N(μᵢ, α σᵢ)

of the encoded training events (α = ``buffer_sigma_scale`` smears the buffer;
α = 1 is the published choice) and decodes. ``sampling = "prior"`` is there for
comparison. The buffer sits on the training events: on 30 000 HERA Pythia
events (benchmarks/bench_gans.py) α = 1 gives classifier AUC 0.54 but a
nearest-neighbour memorization ratio of 0.57 (generated events lie closer to
training events than independent ones do); α = 3 gives 0.97 and AUC 0.59;
the prior gives AUC 0.81. ``buffer_calibration = "memorization"`` sets α
from the data after training: it widens the buffer on a ×2^¼ ladder from
``buffer_sigma_scale`` until generated events lie as far from their
nearest training event as the *validation* events do (median ratio ≥
``memorization_target``); the chosen α is kept in the checkpoint. Isotropic
widening blurs the sharp Q² edge and p_T (α for ratio 0.95: Q² χ²/ndf 23× its
floor). ``buffer_smearing = "neighbours"`` instead steps from μᵢ toward a random
one of its nearest buffer means, z = μᵢ + σᵢ ε + λ g (μⱼ - μᵢ), which moves along
the data; with the (ln Q², ln y, φ) map, calibration to 0.9 and
``reject_outside_training`` (the sample's selection edges) the 30 000-event
benchmark gave ratio 0.91, AUC 0.51, joint Q²–x 1.19× its floor, but Q²
1.73× and p_T 2.0× their floors when a rejected event was replaced by a new
buffer event: events next to the Q² edge lose the part of their smearing
beyond it, so the edge is depleted. ``redraw = "smearing"`` (the default)
smears the *same* buffer event anew instead (each training event keeps its
weight), and the calibration measures the ratio on sampled events (rejections
and redraws included) on a ×2^¼ ladder: ratio 0.911, AUC 0.513, joint 1.28×,
Q² 0.90×, p_T 1.19×, but x 4.55× and p_z 1.54× (row ``bvae-calibrated`` of
benchmarks/bench_gans.py). x fails because the sample's low-x edge
(x ≈ 1.2·10⁻⁴ at HERA) runs diagonally through (ln Q², ln y) and the
smearing needed for ratio 0.9 blurs it. ``frame = "lnx"`` (learn
ln Q² - ln y = ln x + ln s, ln Q², φ) with ``preprocess = "gaussianize"``
(each learned feature through its training quantiles to N(0, 1)) gives x
2.72×, joint 1.18×, ratio 0.92, but E′ 1.84×, Q² 1.67×, θ 1.60× (row
``bvae-calibrated-lnx``). Check the ratio on independent events before trusting the B-VAE's
statistics beyond its training sample. Events are learned through a feature map (default FAT-GAN's
(p_x, p_y, ln(E_b - p∥)), so p∥ < E_b), decoded with
:func:`mlegpipe.features.decode_events`, and unphysical ones are redrawn and
counted (:meth:`BVAEGenerator.info`).

Under torchrun (:mod:`mlegpipe.distributed`) every rank draws the global
minibatch and its reparametrization noise as one process does and trains on its
shard; the gradients are averaged over the ranks, weighted by events, before each
step, and with a variable multiplicity the MSE of a shard is normalized by its
share of the global batch's present features (:meth:`BVAEGenerator._present_share`),
so N ranks reproduce the one-process training to floating-point reduction
order. The weights are then the same on every rank, and so are the buffer and
its calibration, which every rank computes from the whole training sample.

Particle collections (``features = ["jets", "lepton", "met", "met_phi"]``)
are learned through :class:`~mlegpipe.features.CollectionMap` (per particle
ln p_T, η, φ and mass). One collection may have a variable multiplicity (jets
above a threshold): its multiplicity ``n_c`` is then a condition of encoder
and decoder (``multiplicity_encoding``: one-hot or standardized), the
features of absent slots are standardized to 0 and left out of the
reconstruction error, and the buffer keeps each event's multiplicity
(:mod:`~mlegpipe_builtins.generators._bvae_buffer`): an event of k jets is
decoded from the latent point of a training event of k jets, smeared as
above. The multiplicity is drawn from the training frequencies unless the
user fixes it (``conditions = ["n_jets"]``, a value per event); a value no
training event has is a :class:`~mlegpipe.exceptions.ConfigError`, since the
buffer holds no latent point for it. Integer fields of particles (a jet's
truth ``flavour``, a lepton's ``pid``) are not learned: generated particles
carry only four-momenta (a lepton's mass is learned as a continuous ln m, so
the electron and muon masses come out smeared between the two values).
``azimuth = "rotated"`` learns every azimuth as (cos, sin) of its difference
to a reference azimuth every event has and draws the reference uniformly
(:mod:`~mlegpipe_builtins.generators._bvae_azimuth`); ``draws = "stratified"``
draws the buffer events without replacement, so a generated sample carries
no resampling noise of its own (with independent draws a sample of n events
from a buffer of N adds about n/(2N) to every χ²/ndf against independent
truth). On semileptonic tt̄ (Pythia, 90 000 training events, judged on
100 000 independent ones; benchmarks/bench_bvae_ttbar.py), preset ``jets``
(latent 40, 3 × 256, β = 10⁻⁶, 12 000 steps, 280 s on one core) with both
options gave χ²/ndf within 1.03×, 1.14×, 1.49×, 0.90×, 1.35× the
truth-vs-truth floor for n_jets, leading-jet p_T, lepton p_T, MET and the
best three-jet top mass, classifier AUC 0.505; β = 10⁻⁵ gave m_jjj 1.71×,
absolute azimuths and independent draws up to 3×.

Example (TOML):
    [generator]
    plugin = "bvae"
    steps = 3000
    beta = 1e-4
    feature_map = "nu_scaled"
    buffer_smearing = "neighbours"
    buffer_calibration = "memorization"
    memorization_target = 0.9
    reject_outside_training = true

Example (TOML, semileptonic tt̄ with a variable number of jets):
    [generator]
    plugin = "bvae"
    preset = "jets"
    features = ["jets", "lepton", "met", "met_phi"]
    azimuth = "rotated"
    draws = "stratified"
    # conditions = ["n_jets"]   # optional: the number of jets of each event is then given, not drawn
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from mlegpipe import distributed as ddp
from mlegpipe import hookimpl
from mlegpipe.beams import Beams
from mlegpipe.data_parallel import MinibatchShard, check_batch_size
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError
from mlegpipe.features import (
    CollectionMap,
    FeatureMap,
    QuantileGaussianize,
    Standardize,
    decode_events,
    make_feature_map,
    sample_with_rejection,
)
from mlegpipe.nets import count_parameters
from mlegpipe.schema import fill_none
from mlegpipe.stages import Discriminator, Generator, NetworkInputs, NetworkProbe, StageContext, checked_conditions
from mlegpipe.training import MinibatchSampler, TrainLoop, cosine_schedule
from mlegpipe_builtins.generators._bvae_azimuth import RotatedAzimuths
from mlegpipe_builtins.generators._bvae_buffer import LatentBuffer, SlotDraws
from mlegpipe_builtins.generators._bvae_calibration import calibrate, memorization_at
from mlegpipe_builtins.generators._bvae_model import VAE, gaussian_kl
from mlegpipe_builtins.generators._bvae_multiplicity import (
    MultiplicityCondition,
    model_matrix,
    present_scaler,
)
from mlegpipe_builtins.generators._bvae_params import PRESETS, BVAEParams
from mlegpipe_builtins.generators._listed_features import listed_feature_map

__all__ = ["PRESETS", "BVAEGenerator", "VAE", "gaussian_kl"]

_SAMPLE_BLOCK = 65_536
_SMEARINGS_PER_EVENT = 16  # redraw = "smearing": rejected smearings of one buffer event before a new one is drawn


class BVAEGenerator(Generator):
    """B-VAE: VAE trained with (1 - β)·MSE + β·KL, sampled from the latent buffer of the training events.

    Attributes after training: :attr:`buffer` (the encoded training events;
    ``buffer_mu``, ``buffer_log_var`` are its float32 tensors), :attr:`vae`, the
    feature map and scaler, and :attr:`multiplicity` (the condition of a
    variable-multiplicity collection, else None).

    Example:
        >>> from mlegpipe.context import StageContext
        >>> g = BVAEGenerator(BVAEGenerator.Params(preset="published"), StageContext("generator"))
        >>> g.settings["latent"], g.settings["layers"], g.settings["beta"]
        (20, 6, 1e-06)
    """

    plugin_name: ClassVar[str] = "bvae"

    @dataclass
    class Params(BVAEParams):
        pass

    def __init__(self, params: Any, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        self.settings = fill_none(params, PRESETS[params.preset])
        self.features: list[str] = []
        self.conditions: list[str] = list(params.conditions)
        #: the multiplicity of a variable collection as the VAE's condition (None without one)
        self.multiplicity: MultiplicityCondition | None = None
        self.feature_map: FeatureMap | None = None
        self.beams: Beams | None = None
        self.scaler = Standardize()
        #: the learned frame ('features' or 'lnx') and the gaussianization of the learned features (or None)
        self.frame = str(params.frame)
        self.gauss: QuantileGaussianize | None = None
        #: azimuths learned relative to a reference one (``azimuth = "rotated"``), else None
        self.azimuth: RotatedAzimuths | None = None
        self.vae: VAE | None = None
        #: the density information buffer (None before training)
        self.buffer: LatentBuffer | None = None
        self._training: dict[str, Any] = {}
        self._counts = {"drawn": 0, "rejected": 0, "sampled": 0}
        #: the buffer width factor α in use (buffer_sigma_scale, or the calibrated value)
        self.alpha = float(params.buffer_sigma_scale)
        #: λ of the neighbour smearing in use
        self.lam = float(params.neighbour_scale)
        #: {field: (low, high)} of the training events, enforced with reject_outside_training
        self.ranges: dict[str, tuple[float, float]] = {}

    # -- helpers --------------------------------------------------------------------------------------
    @property
    def buffer_mu(self) -> torch.Tensor | None:
        """Posterior means of the buffer events (float32 ``(n, latent)``)."""
        return None if self.buffer is None else self.buffer.mu

    @property
    def buffer_log_var(self) -> torch.Tensor | None:
        """Posterior log-variances of the buffer events."""
        return None if self.buffer is None else self.buffer.log_var

    @property
    def buffer_neighbours(self) -> torch.Tensor | None:
        """The neighbour table of ``buffer_smearing = "neighbours"`` (buffer index → k nearest buffer indices)."""
        return None if self.buffer is None else self.buffer.neighbours

    @property
    def map_name(self) -> str:
        """The feature map: ``feature_map``, or for ``auto`` collection (with ``features``) or lepton_t."""
        name = self.params.feature_map
        if name == "auto":
            return "collection" if self.params.features else "lepton_t"
        return name

    def _make_map(self, events: EventBatch) -> FeatureMap:
        name, where = self.map_name, self.ctx.name
        if name in ("columns", "collection"):
            if not self.params.features:
                raise ConfigError(f"feature_map = {name!r} needs the list of fields in `features`",
                                  path=f"{where}.features", value=[])
            fmap = listed_feature_map(name, events, self.params.features, registry=self.ctx.lookup(), where=where)
            return fmap.fit(events)
        fmap = make_feature_map(name, events.beams, path=f"{where}.feature_map", registry=self.ctx.lookup())
        if fmap.needs_context and events.beams is None:
            raise DataError(f"feature map {name!r} needs the beam set-up; the training events carry no beams",
                            path=f"{where}.feature_map", value=name)
        return fmap.fit(events)

    def _energies(self, events: EventBatch) -> np.ndarray:
        return self.feature_map.context_of(events) if self.feature_map.needs_context else np.zeros(len(events))

    def _to_model(self, raw: np.ndarray) -> np.ndarray:
        """Feature-map features → the learned features (``frame``, ``azimuth``, then ``preprocess``), before
        standardizing."""
        out = np.asarray(raw, dtype=np.float64)
        if self.frame == "lnx":
            out = np.stack([out[:, 0] - out[:, 1], out[:, 0], out[:, 2]], axis=1)
        if self.azimuth is not None:
            out = self.azimuth.forward(out)
        return out if self.gauss is None else self.gauss.transform_numpy(out)

    def _from_model(self, learned: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Inverse of :meth:`_to_model` (``rng`` draws the reference azimuth with ``azimuth = "rotated"``)."""
        out = learned if self.gauss is None else self.gauss.inverse_numpy(learned)
        if self.azimuth is not None:
            if rng is None:
                raise DataError("decoding rotated azimuths draws the rotation: it needs a random generator",
                                path=f"{self.ctx.name}.azimuth")
            out = self.azimuth.inverse(out, rng)
        if self.frame == "lnx":
            out = np.stack([out[:, 1], out[:, 1] - out[:, 0], out[:, 2]], axis=1)
        return out

    def _learned_absent(self, absent: np.ndarray) -> np.ndarray:
        """The absent-particle mask of the map's features carried over to the learned features."""
        return absent if self.azimuth is None else absent[:, self.azimuth.columns]

    @property
    def variable(self) -> str | None:
        """The feature map's variable-multiplicity collection (None when every collection is fixed)."""
        fmap = self.feature_map
        return fmap.variable if isinstance(fmap, CollectionMap) else None

    def _inputs(self, events: EventBatch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(x, c, present)``: standardized learned features, the multiplicity condition, the present mask.

        Without a variable collection ``c`` and ``present`` are None. With one, features of absent
        particles are 0 in ``x`` and 0 in ``present`` (left out of the reconstruction error).
        """
        raw = self.feature_map.encode(events)
        if self.multiplicity is None:
            return self.scaler.transform(torch.from_numpy(self._to_model(raw))).float(), None, None
        mult = self.feature_map.context_of(events)
        absent = self.feature_map.absent(mult)
        x = self.scaler.transform(torch.from_numpy(self._to_model(model_matrix(raw, absent)))).float()
        absent = self._learned_absent(absent)
        x[torch.from_numpy(absent)] = 0.0
        return x, self.multiplicity.tensor(mult), torch.from_numpy(~absent).float()

    def _build(self, n_features: int) -> VAE:
        s = self.settings
        width = 0 if self.multiplicity is None else self.multiplicity.width
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.torch_seed("init"))
            return VAE(n_features, s["latent"], [s["width"]] * s["layers"], s["activation"], conditions=width)

    def _require_trained(self) -> None:
        if self.vae is None or self.buffer is None:
            raise ConfigError("the bvae generator is used before it was trained or loaded", path=self.ctx.name)

    def loss(self, x: torch.Tensor, noise: torch.Tensor, c: torch.Tensor | None = None,
             present: torch.Tensor | None = None, present_total: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(total, mse, kl)``: (1 - β)·MSE + β·KL, MSE averaged over features, KL summed over latents.

        ``c`` is the multiplicity condition, ``present`` (1/0 per feature) restricts the MSE to the
        features of particles an event has; the MSE's denominator is then the number of present features,
        ``present.sum()``, unless ``present_total`` gives it (a shard of a data-parallel batch divides by its
        share of the global batch's count, see :meth:`fit`).

        Example:
            >>> # total, mse, kl = gen.loss(x_standardized, torch.randn(len(x), latent))
        """
        beta = self.settings["beta"]
        recon, mu, log_var = self.vae(x, noise, c)
        if present is None:
            mse = (recon - x).pow(2).mean()
        else:
            total = present.sum().clamp_min(1.0) if present_total is None else present_total
            mse = ((recon - x).pow(2) * present).sum() / total
        kl = gaussian_kl(mu, log_var).mean()
        return (1.0 - beta) * mse + beta * kl, mse, kl

    # -- training -------------------------------------------------------------------------------------
    def fit(self, train: EventBatch, valid: EventBatch, discriminator: Discriminator | None = None) -> dict[str, Any]:
        """Train the VAE on ``train``, then encode it into the latent buffer.

        ``discriminator`` is not used (the B-VAE is not adversarial).

        Returns:
            ``{"history", "best_step", "best_metric", "seconds", ...}``; the
            metric is the validation loss (1 - β)·MSE + β·KL.
        """
        if discriminator is not None:
            self.ctx.log.warning("bvae is not adversarial: the [discriminator] stage is ignored")
        if len(train) < 2:
            raise DataError("the B-VAE needs at least two training events", path=self.ctx.name, value=len(train))
        s = self.settings
        start = time.perf_counter()
        self.beams = train.beams
        self.feature_map = self._make_map(train)
        self.features = list(self.feature_map.fields)
        if self.params.frame == "lnx" and self.map_name != "nu_scaled":
            raise ConfigError("frame = 'lnx' needs feature_map = 'nu_scaled'", path=f"{self.ctx.name}.frame",
                              value=self.params.feature_map)
        raw = self.feature_map.encode(train)
        self.frame = self.params.frame
        self.azimuth = None
        if self.params.azimuth == "rotated":
            if self.frame == "lnx":
                raise ConfigError("azimuth = 'rotated' does not combine with frame = 'lnx'",
                                  path=f"{self.ctx.name}.azimuth", value="rotated")
            self.azimuth = RotatedAzimuths(self.feature_map.names, where=f"{self.ctx.name}.azimuth").fit(raw)
        self.ranges = {}
        if self.params.reject_outside_training and self.beams is not None:
            with np.errstate(all="ignore"):
                cols, _ = decode_events(self.feature_map, raw, self._energies(train), self.beams)
            self.ranges = {k: (float(np.nanmin(cols[k])), float(np.nanmax(cols[k])))
                           for k in ("x", "Q2", "W2", "y") if k in cols}
        self.multiplicity = self._multiplicity_condition(train)
        mult = None if self.multiplicity is None else self.feature_map.context_of(train).astype(np.int64)
        absent = None if mult is None else self.feature_map.absent(mult)
        filled = raw if absent is None else model_matrix(raw, absent)
        self.gauss = None
        if self.params.preprocess == "gaussianize":
            self.gauss = QuantileGaussianize().fit(self._to_model(filled))
        learned = self._to_model(filled)
        if absent is not None:
            absent = self._learned_absent(absent)
        if absent is None:
            self.scaler.fit(learned, train.weights)
        else:
            self.scaler = present_scaler(learned, absent, train.weights)
        x = self.scaler.transform(torch.from_numpy(learned)).float()
        tensors = [x]
        if absent is not None:
            x[torch.from_numpy(absent)] = 0.0
            tensors += [self.multiplicity.tensor(mult), torch.from_numpy(~absent).float()]
        self.vae = self._build(x.shape[1])
        opt = torch.optim.Adam(self.vae.parameters(), lr=s["lr"])
        batch_gen = self.ctx.torch_generator("batches")
        noise_gen = self.ctx.torch_generator("noise")
        weights = torch.from_numpy(train.weights) if train.has("weight") else None
        sampler = MinibatchSampler(*tensors, batch_size=s["batch_size"], generator=batch_gen, weights=weights)
        check_batch_size(sampler.batch_size, self.ctx.name)

        def step(i: int) -> dict[str, float]:
            self.vae.train()
            batch = sampler()
            # under torchrun: the global batch and its noise as one process draws them, this rank's share of both
            shard = MinibatchShard.of(len(batch[0]))
            xb, *rest = shard.take_all(batch)
            noise = shard.take(torch.randn(shard.events, s["latent"], generator=noise_gen))
            opt.zero_grad(set_to_none=True)
            total, mse, kl = self.loss(xb, noise, *rest, present_total=self._present_share(batch, shard))
            total.backward()
            ddp.sync_gradients(self.vae.parameters(), shard.local_events)
            opt.step()
            return {"loss": shard.mean(float(total.detach())), "mse": shard.mean(float(mse.detach())),
                    "kl": shard.mean(float(kl.detach()))}

        validate = None
        if valid is not None and len(valid) >= 2 and s["validate_every"]:
            xv, cv, pv = self._inputs(valid.take(slice(0, s["valid_events"])))
            v_seed = self.ctx.torch_seed("validate")

            def validate(i: int) -> dict[str, float]:
                self.vae.eval()
                with torch.no_grad():
                    noise = torch.randn(len(xv), s["latent"], generator=torch.Generator().manual_seed(v_seed))
                    total, mse, kl = self.loss(xv, noise, cv, pv)
                return {"metric": float(total), "valid_mse": float(mse), "valid_kl": float(kl)}

        loop = TrainLoop(self.ctx, step, s["steps"], modules={"vae": self.vae}, optimizers={"vae": opt},
                         validate_fn=validate, validate_every=s["validate_every"] if validate else 0,
                         lr_schedule=cosine_schedule(s["steps"]) if s["lr_schedule"] == "cosine" else None,
                         generators={"batches": batch_gen, "noise": noise_gen}, desc=f"{self.ctx.name} (bvae)",
                         checkpoint_every=500 if self.ctx.run_dir is not None else 0)
        history = loop.run(resume=True if getattr(self.ctx, "resume", False) else None)
        self.vae.eval()
        self._fill_buffer(x, None if mult is None else tensors[1], mult)
        self.alpha, self.lam = float(self.params.buffer_sigma_scale), float(self.params.neighbour_scale)
        calibration = None
        if self.params.buffer_calibration == "memorization" and s["sampling"] == "buffer":
            if valid is None or len(valid) < 2:
                raise DataError("buffer_calibration = 'memorization' needs validation events",
                                path=f"{self.ctx.name}.buffer_calibration", value="memorization")
            calibration = self._calibrate(raw, self.feature_map.encode(valid.take(slice(0, s["valid_events"]))))
        self._training = {"best_step": loop.best_step, "best_metric": loop.best_metric,
                          "seconds": time.perf_counter() - start, "steps": s["steps"],
                          "parameters": count_parameters(self.vae), "buffer_events": int(len(self.buffer)),
                          "buffer_sigma_scale": self.alpha, "neighbour_scale": self.lam, "calibration": calibration}
        return {"history": history, **self._training}

    @staticmethod
    def _present_share(batch: Sequence[torch.Tensor], shard: MinibatchShard) -> torch.Tensor | None:
        """The MSE denominator of a shard with a variable multiplicity (None otherwise, and in one process).

        The MSE over a batch is Σ (x̂ - x)² · present / P with P the batch's count of present features: not a
        mean over events, so a shard dividing by its own count would weight its events wrongly. A shard divides
        its sum by P · n_local / N (P of the global batch, which every rank holds): the event-weighted
        average that :func:`mlegpipe.distributed.sync_gradients` takes (weights n_local / N) then sums the
        shards' parts to the one-process MSE and its gradient.
        """
        if not shard.distributed or len(batch) < 3:
            return None
        return batch[2].sum().clamp_min(1.0) * (shard.local_events / shard.events)

    def _check_conditions(self, field: str | None) -> None:
        """``conditions`` may name the multiplicity ``field`` of the variable collection only.

        Raises:
            ConfigError: another condition (the buffer is kept per multiplicity; other fields would need
                their own), naming ``<section>.conditions``.
        """
        other = [c for c in self.conditions if c != field]
        if other:
            takes = f"only the multiplicity {field!r} of collection {self.variable!r}" if field else \
                "none here: no collection among the features has a variable multiplicity"
            raise ConfigError(f"the bvae generator conditions on the multiplicity of a variable-multiplicity "
                              f"collection only; it takes {takes}", path=f"{self.ctx.name}.conditions",
                              value=other[0])

    def _multiplicity_condition(self, train: EventBatch) -> MultiplicityCondition | None:
        """The multiplicity of a variable collection as the VAE's condition (after checking ``conditions``)."""
        field = self.feature_map.multiplicity_field() if self.variable is not None else None
        self._check_conditions(field)
        if field is None:
            return None
        return MultiplicityCondition(field, self.params.multiplicity_encoding).fit(
            self.feature_map.context_of(train))

    def _fill_buffer(self, x: torch.Tensor, c: torch.Tensor | None = None, groups: np.ndarray | None = None) -> None:
        """Encode (up to ``buffer_events``) training events into the buffer p(z) = (1/n) Σ N(μᵢ, σᵢ).

        With a multiplicity condition ``c`` the buffer keeps each event's multiplicity ``groups`` (sampling
        an event of k particles draws from the buffer events of k).
        """
        self.buffer = LatentBuffer.encode(
            self.vae.encode, x, limit=self.settings["buffer_events"],
            permutation=lambda: self.ctx.torch_generator("buffer"), condition=c, groups=groups,
            neighbours=self.params.buffer_neighbours if self.params.buffer_smearing == "neighbours" else None)

    def memorization_at(self, alpha: float, lam: float, raw_train: np.ndarray, raw_valid: np.ndarray,
                        seed: np.random.SeedSequence) -> float:
        """Nearest-training-event distance ratio of generated events (buffer width α, λ) over validation events
        (:func:`~mlegpipe_builtins.generators._bvae_calibration.memorization_at`)."""
        return memorization_at(self, alpha, lam, raw_train, raw_valid, seed)

    def _calibrate(self, raw_train: np.ndarray, raw_valid: np.ndarray) -> dict[str, Any]:
        """Widen the buffer until the memorization ratio reaches the target
        (:func:`~mlegpipe_builtins.generators._bvae_calibration.calibrate`)."""
        return calibrate(self, raw_train, raw_valid)

    # -- sampling -------------------------------------------------------------------------------------
    def sample_latent(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """``n`` latent points from the buffer (or the prior, with ``sampling = "prior"``)."""
        self._require_trained()
        return self._sample_latent(n, rng)[0]

    def _sample_latent(self, n: int, rng: np.random.Generator, which: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.settings["sampling"] == "prior":
            return torch.from_numpy(rng.standard_normal((n, self.settings["latent"]), dtype=np.float32)), None
        return self.buffer.latent(n, rng, self.alpha, self.lam, which)

    def _multiplicities(self, n: int, given: Mapping[str, Any], rng: np.random.Generator
                        ) -> tuple[np.ndarray | None, torch.Tensor | None]:
        """``(multiplicities, buffer events)`` of ``n`` events to generate.

        The multiplicities are the user's, else drawn from the training frequencies (None without a
        variable collection); with ``draws = "stratified"`` and buffer sampling they are those of buffer
        events drawn without replacement, which are returned too (else None).
        """
        cond = self.multiplicity
        if cond is None:
            return None, None
        if cond.field in given:
            return cond.check(given[cond.field], n, f"{self.ctx.name}.conditions"), None
        stratified = self.params.draws == "stratified"
        if stratified and self.settings["sampling"] == "buffer":
            which = self.buffer.draw(n, rng, stratified=True)
            return self.buffer.groups[which.numpy()], which
        return cond.draw(n, rng, stratified=stratified), None

    def _context(self) -> float:
        """The feature map's context of generated events (the beams' lepton energy of DIS maps; else 0)."""
        return self.feature_map.context_from({}, 1, self.beams)[0] if self.feature_map.needs_context else 0.0

    def _map_features(self, decoded: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
        """Feature-map features (float64) of the decoder's standardized output."""
        return self._from_model(self.scaler.inverse(decoded.double()).numpy(), rng)

    def interpretation_inputs(self, events: EventBatch) -> NetworkInputs:
        """What the VAE sees for ``events``: its standardized learned features, the multiplicity condition (None
        without a variable collection) and the map context."""
        self._require_trained()
        x, c, _ = self._inputs(events)
        return NetworkInputs(x, c, self._energies(events))

    def network_probe(self) -> NetworkProbe:
        """The VAE's decoder fed latent points drawn as :meth:`sample` draws them (:class:`~mlegpipe.stages.NetworkProbe`).

        The latent points come from the buffer (or the prior, with ``sampling =
        "prior"``) through a NumPy generator seeded from the torch generator.
        With a variable collection the decoder's input is ``[z, c]`` (c the
        encoded multiplicity: the condition's value, else drawn from the
        training frequencies, the latent from buffer events of that multiplicity).
        The landscape loss ``vae`` is the training loss (1 - β)·MSE + β·KL of
        the events with fixed reparametrization noise, over the decoder's
        weights (the encoder held fixed, so the KL term is a constant).
        """
        self._require_trained()
        decoder = self.vae.decoder

        def inputs(n: int, values: Mapping[str, float] | None, gen: torch.Generator) -> list[torch.Tensor]:
            given = checked_conditions(values, self.conditions, f"{self.ctx.name}.conditions")
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
            mult, which = self._multiplicities(n, given, rng)
            if mult is None:
                return [self._sample_latent(n, rng)[0]]
            if which is None and self.settings["sampling"] == "buffer":
                which = self.buffer.draw_in(mult, rng)
            return [torch.cat([self._sample_latent(n, rng, which)[0], self.multiplicity.tensor(mult)], dim=1)]

        def decode(tensors: Sequence[torch.Tensor], seed: np.random.SeedSequence) -> EventBatch:
            with torch.no_grad():
                features = self._map_features(decoder(tensors[0]), np.random.default_rng(seed))
            context = np.full(len(features), self._context()) if self.multiplicity is None else \
                self.multiplicity.from_tensor(tensors[0][:, self.settings["latent"]:]).astype(np.float64)
            with np.errstate(all="ignore"):
                cols, _ = decode_events(self.feature_map, features, context, self.beams)
            return EventBatch.from_columns(self.feature_map.assemble(cols, context), self.beams,
                                           {"generator": "bvae"})

        def vae_loss(events: EventBatch, seed: int) -> tuple[Callable[[], torch.Tensor], str]:
            x, c, present = self._inputs(events)
            noise = torch.randn(len(x), self.settings["latent"], generator=torch.Generator().manual_seed(seed))
            return (lambda: self.loss(x, noise, c, present)[0]), "(1 - β)·MSE + β·KL"

        return NetworkProbe(decoder, "vae.decoder", inputs, decoder, decode, list(self.conditions), vae_loss, "vae")

    def encode(self, events: EventBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(μ, log σ²)`` of ``events`` (for latent-space studies)."""
        self._require_trained()
        x, c, _ = self._inputs(events)
        with torch.no_grad():
            return self.vae.encode(x, c)

    def sample(self, n: int, seed: np.random.SeedSequence,
               conditions: Mapping[str, np.ndarray | float] | None = None) -> EventBatch:
        """``n`` events decoded from buffer latents, reproducibly from ``seed``; unphysical ones redrawn.

        With a variable collection each event's multiplicity is ``conditions[n_c]`` (one value or one per
        event; only multiplicities seen in training) when the generator takes it, else drawn from the
        training frequencies; the latent point comes from a buffer event of that multiplicity, and a
        rejected event is redrawn at the same multiplicity.
        """
        self._require_trained()
        given = checked_conditions(conditions, self.conditions, f"{self.ctx.name}.conditions")
        if n < 0:
            raise ConfigError("the number of events must be >= 0", path=f"{self.ctx.name}.sample", value=n)
        rng = np.random.default_rng(seed)
        mult, first = self._multiplicities(n, given, rng)
        energy = self._context() if mult is None else 0.0
        reject = self.params.reject_unphysical
        stratified = self.params.draws == "stratified"
        # redraw = "smearing": each slot keeps its buffer event through the redraws of rejected smearings
        keep = _SMEARINGS_PER_EVENT if self.params.redraw == "smearing" else (1 if stratified else None)
        slot_draws = SlotDraws(self.buffer, n, rng, groups=mult, stratified=stratified, keep=keep, first=first) \
            if self.settings["sampling"] == "buffer" else None

        def draw(slots: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
            which_all = None if slot_draws is None else slot_draws(slots)
            out = np.empty((len(slots), len(self.feature_map.names)))
            with torch.no_grad():
                for lo in range(0, len(slots), _SAMPLE_BLOCK):
                    hi = min(lo + _SAMPLE_BLOCK, len(slots))
                    part = slots[lo:hi]
                    which = None if which_all is None else which_all[lo:hi]
                    z, _ = self._sample_latent(hi - lo, rng, which)
                    c = None if mult is None else self.multiplicity.tensor(mult[part])
                    out[lo:hi] = self._map_features(self.vae.decode(z, c), rng)
            context = np.full(len(slots), energy) if mult is None else mult[slots].astype(np.float64)
            with np.errstate(all="ignore"):
                cols, ok = decode_events(self.feature_map, out, context, self.beams, self.ranges or None)
            return cols, ok if reject else np.ones(len(slots), dtype=bool)

        cols, drawn, rejected = sample_with_rejection(draw, n)
        self._counts["drawn"] += drawn
        self._counts["rejected"] += rejected
        self._counts["sampled"] += n
        return EventBatch.from_columns(self.feature_map.assemble(cols, mult), self.beams,
                                       {"generator": "bvae", "sampling": self.settings["sampling"],
                                                          "rejected_fraction": rejected / drawn if drawn else 0.0})

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Weights, scaler, feature map, beams and the latent buffer."""
        self._require_trained()
        return {
            "vae": {k: v.detach().clone() for k, v in self.vae.state_dict().items()},
            "scaler": self.scaler.state_dict(),
            "feature_map": self.feature_map.config(),
            "beams": self.beams.to_dict() if self.beams is not None else None,
            **self.buffer.state_dict(),
            **({} if self.multiplicity is None else {"multiplicity": self.multiplicity.state_dict()}),
            **({} if self.azimuth is None else {"azimuth": self.azimuth.state_dict()}),
            **({} if self.gauss is None else {"gaussianize": self.gauss.state_dict()}),
            "frame": self.frame,
            "ranges": {k: [lo, hi] for k, (lo, hi) in self.ranges.items()},
            "training": {k: v for k, v in self._training.items() if v is not None},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        try:
            self.beams = Beams.from_dict(dict(state["beams"])) if state.get("beams") else None
            self.feature_map = make_feature_map(dict(state["feature_map"]), self.beams, registry=self.ctx.lookup())
            self.features = list(self.feature_map.fields)
            self.scaler.load_state_dict(state["scaler"])
            mult = state.get("multiplicity")
            self.multiplicity = None if mult is None else MultiplicityCondition.from_state(mult, self.ctx.name)
            self.vae = self._build(len(self.scaler.mean))
            self.vae.load_state_dict(dict(state["vae"]))
            self.buffer = LatentBuffer.from_state(state)
            training = dict(state.get("training", {}))
            self.alpha = float(training.get("buffer_sigma_scale", self.params.buffer_sigma_scale))
            self.lam = float(training.get("neighbour_scale", self.params.neighbour_scale))
            self.frame = str(state.get("frame", "features"))
            azimuth = state.get("azimuth")
            self.azimuth = None if azimuth is None else RotatedAzimuths.from_state(azimuth, f"{self.ctx.name}.azimuth")
            gauss = state.get("gaussianize")
            self.gauss = None if gauss is None else QuantileGaussianize().load_state_dict(gauss)
            self.ranges = {k: (float(v[0]), float(v[1])) for k, v in dict(state.get("ranges", {})).items()}
        except (KeyError, RuntimeError, TypeError) as err:
            raise CheckpointError(f"state does not fit the bvae generator with these parameters: "
                                  f"{type(err).__name__}: {str(err).splitlines()[0]}", path=self.ctx.name) from None
        self._check_conditions(None if self.multiplicity is None else self.multiplicity.field)
        self._training = dict(state.get("training", {}))
        self.vae.eval()

    def info(self) -> dict[str, Any]:
        """Training figures, buffer size and the rejected fraction of everything sampled."""
        out = dict(self._training)
        drawn = self._counts["drawn"]
        if drawn:
            out["rejected_fraction"] = self._counts["rejected"] / drawn
            out["sampled_events"] = self._counts["sampled"]
        out["sampling"] = self.settings["sampling"]
        return out


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the ``bvae`` generator."""
    registry.add(BVAEGenerator)
