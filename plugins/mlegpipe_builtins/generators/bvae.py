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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mlegpipe import hookimpl
from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError
from mlegpipe.features import (
    FeatureMap,
    QuantileGaussianize,
    Standardize,
    decode_events,
    make_feature_map,
    sample_with_rejection,
)
from mlegpipe.nets import ACTIVATIONS, count_parameters, mlp
from mlegpipe.schema import fill_none, param
from mlegpipe.stages import Discriminator, Generator, NetworkInputs, NetworkProbe, StageContext, checked_conditions
from mlegpipe.training import MinibatchSampler, TrainLoop, cosine_schedule
from mlegpipe_builtins.generators._listed_features import fixed_multiplicity, listed_feature_map

__all__ = ["BVAEGenerator", "VAE", "gaussian_kl"]

_SAMPLE_BLOCK = 65_536


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per event, summed over latent dimensions.

    Example:
        >>> float(gaussian_kl(torch.zeros(1, 3), torch.zeros(1, 3))[0])
        0.0
        >>> round(float(gaussian_kl(torch.ones(1, 1), torch.zeros(1, 1))[0]), 6)   # μ = 1: μ²/2
        0.5
    """
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1)


class VAE(nn.Module):
    """Encoder x → (μ, log σ²) and decoder z → x̂, both :func:`~mlegpipe.nets.mlp`.

    Example:
        >>> vae = VAE(3, 2, [16, 16])
        >>> mu, log_var = vae.encode(torch.zeros(5, 3))
        >>> vae.decode(mu).shape
        torch.Size([5, 3])
    """

    def __init__(self, n_features: int, latent: int, widths: list[int], activation: str = "elu") -> None:
        super().__init__()
        self.latent = latent
        self.encoder = mlp(n_features, 2 * latent, widths, activation)
        self.decoder = mlp(latent, n_features, widths, activation)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance ``(n, latent)`` each."""
        out = self.encoder(x)
        return out[:, : self.latent], out[:, self.latent:].clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructed (standardized) features."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x̂, μ, log σ²)`` with the reparametrized latent z = μ + σ · noise."""
        mu, log_var = self.encode(x)
        z = mu + torch.exp(0.5 * log_var) * noise
        return self.decode(z), mu, log_var


PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"latent": 8, "layers": 3, "width": 128, "steps": 3000, "batch_size": 512, "lr": 1e-3, "beta": 1e-4},
    "published": {"latent": 20, "layers": 6, "width": 128, "steps": 100_000, "batch_size": 1024, "lr": 1e-3,
                  "beta": 1e-6},
}


class BVAEGenerator(Generator):
    """B-VAE: VAE trained with (1 - β)·MSE + β·KL, sampled from the latent buffer of the training events.

    Attributes after training: ``buffer_mu``, ``buffer_log_var`` (the encoded
    training events, float32 tensors), :attr:`vae`, the feature map and scaler.

    Example:
        >>> from mlegpipe.context import StageContext
        >>> g = BVAEGenerator(BVAEGenerator.Params(preset="published"), StageContext("generator"))
        >>> g.settings["latent"], g.settings["layers"], g.settings["beta"]
        (20, 6, 1e-06)
    """

    plugin_name: ClassVar[str] = "bvae"

    @dataclass
    class Params:
        preset: str = param("cpu", choices=tuple(PRESETS), doc="'cpu' (small, fast) or 'published' (6 × 128, latent 20)")
        feature_map: str = param("auto", doc="how events become features: a registered map (DIS: lepton_t, nu, "
                                             "nu_scaled, lepton_cartesian), columns or collection (the fields and "
                                             "fixed-multiplicity particle collections in `features`); auto: "
                                             "collection when `features` are given, else lepton_t")
        features: list[str] = param([], doc="event fields and particle collections to learn (columns / collection)")
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
        preprocess: str = param(
            "standardize", choices=("standardize", "gaussianize"),
            doc="'standardize' the learned features, or first 'gaussianize' each one through its training "
                "quantiles (a monotone map to N(0, 1)): smearing the buffer then keeps sharp edges and steep "
                "falls of the marginals in place")
        redraw: str = param(
            "smearing", choices=("event", "smearing"),
            doc="a rejected event is replaced by a new buffer event ('event') or by a new smearing of the same "
                "buffer event ('smearing': every training event keeps its weight, so the density next to the "
                "sample's edges is not depleted by rejected smearings)")
        reject_unphysical: bool = param(True, doc="redraw events outside the kinematic limits (counted)")
        reject_outside_training: bool = param(
            False, doc="also redraw events whose x, Q², W², y lie outside the training events' range (the sample's "
                       "selection, e.g. Q² > 1 GeV², which a smeared buffer would otherwise cross)")
        validate_every: int = param(250, min=0, doc="validate every this many steps (0: never)")
        valid_events: int = param(20_000, min=2, doc="validation events used")

    def __init__(self, params: Any, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        self.settings = fill_none(params, PRESETS[params.preset])
        self.features: list[str] = []
        self.conditions: list[str] = []
        self.feature_map: FeatureMap | None = None
        self.beams: Beams | None = None
        self.scaler = Standardize()
        #: the learned frame ('features' or 'lnx') and the gaussianization of the learned features (or None)
        self.frame = str(params.frame)
        self.gauss: QuantileGaussianize | None = None
        self.vae: VAE | None = None
        self.buffer_mu: torch.Tensor | None = None
        self.buffer_log_var: torch.Tensor | None = None
        self._training: dict[str, Any] = {}
        self._counts = {"drawn": 0, "rejected": 0, "sampled": 0}
        #: the buffer width factor α in use (buffer_sigma_scale, or the calibrated value)
        self.alpha = float(params.buffer_sigma_scale)
        #: λ of the neighbour smearing in use, and the neighbour table (buffer index → k nearest buffer indices)
        self.lam = float(params.neighbour_scale)
        self.buffer_neighbours: torch.Tensor | None = None
        #: {field: (low, high)} of the training events, enforced with reject_outside_training
        self.ranges: dict[str, tuple[float, float]] = {}

    # -- helpers --------------------------------------------------------------------------------------
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
            return fixed_multiplicity(fmap.fit(events), where)
        fmap = make_feature_map(name, events.beams, path=f"{where}.feature_map", registry=self.ctx.lookup())
        if fmap.needs_context and events.beams is None:
            raise DataError(f"feature map {name!r} needs the beam set-up; the training events carry no beams",
                            path=f"{where}.feature_map", value=name)
        return fmap.fit(events)

    def _energies(self, events: EventBatch) -> np.ndarray:
        return self.feature_map.context_of(events) if self.feature_map.needs_context else np.zeros(len(events))

    def _to_model(self, raw: np.ndarray) -> np.ndarray:
        """Feature-map features → the learned features (``frame``, then ``preprocess``), before standardizing."""
        out = np.asarray(raw, dtype=np.float64)
        if self.frame == "lnx":
            out = np.stack([out[:, 0] - out[:, 1], out[:, 0], out[:, 2]], axis=1)
        return out if self.gauss is None else self.gauss.transform_numpy(out)

    def _from_model(self, learned: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_to_model`."""
        out = learned if self.gauss is None else self.gauss.inverse_numpy(learned)
        if self.frame == "lnx":
            out = np.stack([out[:, 1], out[:, 1] - out[:, 0], out[:, 2]], axis=1)
        return out

    def _standardized(self, events: EventBatch) -> torch.Tensor:
        return self.scaler.transform(torch.from_numpy(self._to_model(self.feature_map.encode(events)))).float()

    def _build(self, n_features: int) -> VAE:
        s = self.settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.torch_seed("init"))
            return VAE(n_features, s["latent"], [s["width"]] * s["layers"], s["activation"])

    def _require_trained(self) -> None:
        if self.vae is None or self.buffer_mu is None:
            raise ConfigError("the bvae generator is used before it was trained or loaded", path=self.ctx.name)

    def loss(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(total, mse, kl)``: (1 - β)·MSE + β·KL, MSE averaged over features, KL summed over latents.

        Example:
            >>> # total, mse, kl = gen.loss(x_standardized, torch.randn(len(x), latent))
        """
        beta = self.settings["beta"]
        recon, mu, log_var = self.vae(x, noise)
        mse = (recon - x).pow(2).mean()
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
        self.ranges = {}
        if self.params.reject_outside_training and self.beams is not None:
            with np.errstate(all="ignore"):
                cols, _ = decode_events(self.feature_map, raw, self._energies(train), self.beams)
            self.ranges = {k: (float(np.nanmin(cols[k])), float(np.nanmax(cols[k])))
                           for k in ("x", "Q2", "W2", "y") if k in cols}
        self.gauss = None
        if self.params.preprocess == "gaussianize":
            self.gauss = QuantileGaussianize().fit(self._to_model(raw))
        learned = self._to_model(raw)
        self.scaler.fit(learned, train.weights)
        x = self.scaler.transform(torch.from_numpy(learned)).float()
        self.vae = self._build(x.shape[1])
        opt = torch.optim.Adam(self.vae.parameters(), lr=s["lr"])
        batch_gen = self.ctx.torch_generator("batches")
        noise_gen = self.ctx.torch_generator("noise")
        weights = torch.from_numpy(train.weights) if train.has("weight") else None
        sampler = MinibatchSampler(x, batch_size=s["batch_size"], generator=batch_gen, weights=weights)

        def step(i: int) -> dict[str, float]:
            self.vae.train()
            (xb,) = sampler()
            opt.zero_grad(set_to_none=True)
            total, mse, kl = self.loss(xb, torch.randn(len(xb), s["latent"], generator=noise_gen))
            total.backward()
            opt.step()
            return {"loss": float(total.detach()), "mse": float(mse.detach()), "kl": float(kl.detach())}

        validate = None
        if valid is not None and len(valid) >= 2 and s["validate_every"]:
            xv = self._standardized(valid.take(slice(0, s["valid_events"])))
            v_seed = self.ctx.torch_seed("validate")

            def validate(i: int) -> dict[str, float]:
                self.vae.eval()
                with torch.no_grad():
                    noise = torch.randn(len(xv), s["latent"], generator=torch.Generator().manual_seed(v_seed))
                    total, mse, kl = self.loss(xv, noise)
                return {"metric": float(total), "valid_mse": float(mse), "valid_kl": float(kl)}

        loop = TrainLoop(self.ctx, step, s["steps"], modules={"vae": self.vae}, optimizers={"vae": opt},
                         validate_fn=validate, validate_every=s["validate_every"] if validate else 0,
                         lr_schedule=cosine_schedule(s["steps"]) if s["lr_schedule"] == "cosine" else None,
                         generators={"batches": batch_gen, "noise": noise_gen}, desc=f"{self.ctx.name} (bvae)",
                         checkpoint_every=500 if self.ctx.run_dir is not None else 0)
        history = loop.run(resume=True if getattr(self.ctx, "resume", False) else None)
        self.vae.eval()
        self._fill_buffer(x)
        self.alpha, self.lam = float(self.params.buffer_sigma_scale), float(self.params.neighbour_scale)
        calibration = None
        if self.params.buffer_calibration == "memorization" and s["sampling"] == "buffer":
            if valid is None or len(valid) < 2:
                raise DataError("buffer_calibration = 'memorization' needs validation events",
                                path=f"{self.ctx.name}.buffer_calibration", value="memorization")
            calibration = self._calibrate(raw, self.feature_map.encode(valid.take(slice(0, s["valid_events"]))))
        self._training = {"best_step": loop.best_step, "best_metric": loop.best_metric,
                          "seconds": time.perf_counter() - start, "steps": s["steps"],
                          "parameters": count_parameters(self.vae), "buffer_events": int(len(self.buffer_mu)),
                          "buffer_sigma_scale": self.alpha, "neighbour_scale": self.lam, "calibration": calibration}
        return {"history": history, **self._training}

    def _fill_buffer(self, x: torch.Tensor) -> None:
        """Encode (up to ``buffer_events``) training events into the buffer p(z) = (1/n) Σ N(μᵢ, σᵢ)."""
        n = min(len(x), self.settings["buffer_events"])
        if n < len(x):
            idx = torch.randperm(len(x), generator=self.ctx.torch_generator("buffer"))[:n]
            x = x[idx]
        mus, log_vars = [], []
        with torch.no_grad():
            for part in torch.split(x, _SAMPLE_BLOCK):
                mu, log_var = self.vae.encode(part)
                mus.append(mu)
                log_vars.append(log_var)
        self.buffer_mu = torch.cat(mus)
        self.buffer_log_var = torch.cat(log_vars)
        self.buffer_neighbours = None
        if self.params.buffer_smearing == "neighbours":
            from scipy.spatial import cKDTree

            k = min(self.params.buffer_neighbours, len(self.buffer_mu) - 1)
            mu = self.buffer_mu.double().numpy()
            _, idx = cKDTree(mu).query(mu, k=k + 1)
            self.buffer_neighbours = torch.from_numpy(np.asarray(idx, dtype=np.int64).reshape(len(mu), -1)[:, 1:])

    def memorization_at(self, alpha: float, lam: float, raw_train: np.ndarray, raw_valid: np.ndarray,
                        seed: np.random.SeedSequence) -> float:
        """Nearest-training-event distance ratio of generated events (buffer width α, λ) over validation events.

        The events are what :meth:`sample` gives at that width (rejected events redrawn as configured),
        compared on the feature map's features standardized on the training events
        (:func:`mlegpipe.metrics.memorization.memorization_ratio`); ≈ 1: new events, ≪ 1: copies of
        training events. The generator's counters and widths are left as they were.
        """
        from mlegpipe.metrics.memorization import memorization_ratio

        kept = self.alpha, self.lam, dict(self._counts)
        self.alpha, self.lam = alpha, lam
        try:
            generated = self.feature_map.encode(self.sample(len(raw_valid), seed))
        finally:
            self.alpha, self.lam, self._counts = kept
        mean, std = raw_train.mean(0), raw_train.std(0)
        std = np.where(std > 0, std, 1.0)
        return float(memorization_ratio((generated - mean) / std, (raw_valid - mean) / std, (raw_train - mean) / std,
                                        max_events=20_000, standardize=False)["ratio"])

    def _calibrate(self, raw_train: np.ndarray, raw_valid: np.ndarray) -> dict[str, Any]:
        """Widen the buffer on a ×2^¼ ladder until the memorization ratio reaches the target; set α or λ.

        The ladder widens α from ``buffer_sigma_scale`` (posterior smearing) or
        λ from ``neighbour_scale`` (first 0, then from 1/8; neighbour
        smearing) up to 64, and stops at the first value whose ratio reaches
        ``memorization_target``. Only training and validation events are used;
        the ratio is that of generated events (:meth:`memorization_at`), on the
        feature map's features, whatever ``frame`` and ``preprocess`` the VAE learns.
        """
        target = self.params.memorization_target
        seeds = iter(self.ctx.seed_sequence("calibration").spawn(64))
        neighbours = self.params.buffer_smearing == "neighbours"
        value = self.lam if neighbours else max(self.alpha, 1e-3)
        ladder: list[list[float]] = []
        while True:
            ratio = self.memorization_at(self.alpha, value, raw_train, raw_valid, next(seeds)) if neighbours \
                else self.memorization_at(value, self.lam, raw_train, raw_valid, next(seeds))
            ladder.append([value, ratio])
            if ratio >= target or value >= 64.0:
                break
            value = max(value * 2.0**0.25, 0.125)
        if ladder[-1][1] < target:
            self.ctx.log.warning("bvae buffer calibration: ratio %.3f < %.3f even at %.3g", ladder[-1][1], target,
                                 value)
        if neighbours:
            self.lam = float(value)
        else:
            self.alpha = float(value)
        return {"parameter": "neighbour_scale" if neighbours else "buffer_sigma_scale", "value": float(value),
                "ratio": float(ladder[-1][1]), "target": target, "ladder": ladder}

    # -- sampling -------------------------------------------------------------------------------------
    def _buffer_latent(self, n: int, rng: np.random.Generator, alpha: float, lam: float,
                       which: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, i)``: z = μᵢ + α σᵢ ε (+ λ g (μⱼ - μᵢ), j a random neighbour of i, with neighbour smearing).

        The buffer events i are drawn uniformly unless given (``which``).
        """
        eps = torch.from_numpy(rng.standard_normal((n, self.settings["latent"]), dtype=np.float32))
        if which is None:
            which = torch.from_numpy(rng.integers(0, len(self.buffer_mu), n))
        z = self.buffer_mu[which] + torch.exp(0.5 * self.buffer_log_var[which]) * alpha * eps
        if self.buffer_neighbours is not None and lam > 0:
            k = self.buffer_neighbours.shape[1]
            j = self.buffer_neighbours[which, torch.from_numpy(rng.integers(0, k, n))]
            g = torch.from_numpy(rng.standard_normal(n, dtype=np.float32))[:, None]
            z = z + lam * g * (self.buffer_mu[j] - self.buffer_mu[which])
        return z, which

    def sample_latent(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """``n`` latent points from the buffer (or the prior, with ``sampling = "prior"``)."""
        self._require_trained()
        return self._sample_latent(n, rng)[0]

    def _sample_latent(self, n: int, rng: np.random.Generator, which: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.settings["sampling"] == "prior":
            return torch.from_numpy(rng.standard_normal((n, self.settings["latent"]), dtype=np.float32)), None
        return self._buffer_latent(n, rng, self.alpha, self.lam, which)

    def _context(self) -> float:
        """The feature map's context of generated events (the beams' lepton energy of DIS maps; else 0)."""
        return self.feature_map.context_from({}, 1, self.beams)[0] if self.feature_map.needs_context else 0.0

    def _map_features(self, decoded: torch.Tensor) -> np.ndarray:
        """Feature-map features (float64) of the decoder's standardized output."""
        return self._from_model(self.scaler.inverse(decoded.double()).numpy())

    def interpretation_inputs(self, events: EventBatch) -> NetworkInputs:
        """What the VAE sees for ``events``: its standardized learned features (no condition) and the map context."""
        self._require_trained()
        return NetworkInputs(self._standardized(events), None, self._energies(events))

    def network_probe(self) -> NetworkProbe:
        """The VAE's decoder fed latent points drawn as :meth:`sample` draws them (:class:`~mlegpipe.stages.NetworkProbe`).

        The latent points come from the buffer (or the prior, with ``sampling =
        "prior"``) through a NumPy generator seeded from the torch generator.
        The landscape loss ``vae`` is the training loss (1 - β)·MSE + β·KL of
        the events with fixed reparametrization noise, over the decoder's
        weights (the encoder held fixed, so the KL term is a constant).
        """
        self._require_trained()
        decoder = self.vae.decoder

        def inputs(n: int, values: Mapping[str, float] | None, gen: torch.Generator) -> list[torch.Tensor]:
            checked_conditions(values, self.conditions, f"{self.ctx.name}.conditions")
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
            return [self._sample_latent(n, rng)[0]]

        def decode(tensors: Sequence[torch.Tensor], seed: np.random.SeedSequence) -> EventBatch:
            with torch.no_grad():
                features = self._map_features(decoder(tensors[0]))
            with np.errstate(all="ignore"):
                cols, _ = decode_events(self.feature_map, features, np.full(len(features), self._context()),
                                        self.beams)
            return EventBatch.from_columns(self.feature_map.assemble(cols), self.beams, {"generator": "bvae"})

        def vae_loss(events: EventBatch, seed: int) -> tuple[Callable[[], torch.Tensor], str]:
            x = self._standardized(events)
            noise = torch.randn(len(x), self.settings["latent"], generator=torch.Generator().manual_seed(seed))
            return (lambda: self.loss(x, noise)[0]), "(1 - β)·MSE + β·KL"

        return NetworkProbe(decoder, "vae.decoder", inputs, decoder, decode, [], vae_loss, "vae")

    def encode(self, events: EventBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(μ, log σ²)`` of ``events`` (for latent-space studies)."""
        self._require_trained()
        with torch.no_grad():
            return self.vae.encode(self._standardized(events))

    def sample(self, n: int, seed: np.random.SeedSequence,
               conditions: Mapping[str, np.ndarray | float] | None = None) -> EventBatch:
        """``n`` events decoded from buffer latents, reproducibly from ``seed``; unphysical ones redrawn."""
        self._require_trained()
        checked_conditions(conditions, self.conditions, f"{self.ctx.name}.conditions")
        if n < 0:
            raise ConfigError("the number of events must be >= 0", path=f"{self.ctx.name}.sample", value=n)
        rng = np.random.default_rng(seed)
        energy = self._context()
        reject = self.params.reject_unphysical
        # redraw = "smearing": each slot keeps its buffer event through the redraws of rejected smearings
        fixed = torch.from_numpy(rng.integers(0, len(self.buffer_mu), n)) \
            if self.params.redraw == "smearing" and self.settings["sampling"] == "buffer" else None

        def draw(slots: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
            out = np.empty((len(slots), len(self.feature_map.names)))
            with torch.no_grad():
                for lo in range(0, len(slots), _SAMPLE_BLOCK):
                    hi = min(lo + _SAMPLE_BLOCK, len(slots))
                    which = None if fixed is None else fixed[torch.from_numpy(slots[lo:hi])]
                    z, _ = self._sample_latent(hi - lo, rng, which)
                    out[lo:hi] = self._map_features(self.vae.decode(z))
            with np.errstate(all="ignore"):
                cols, ok = decode_events(self.feature_map, out, np.full(len(slots), energy), self.beams,
                                         self.ranges or None)
            return cols, ok if reject else np.ones(len(slots), dtype=bool)

        cols, drawn, rejected = sample_with_rejection(draw, n)
        self._counts["drawn"] += drawn
        self._counts["rejected"] += rejected
        self._counts["sampled"] += n
        return EventBatch.from_columns(self.feature_map.assemble(cols), self.beams,
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
            "buffer_mu": self.buffer_mu.clone(),
            "buffer_log_var": self.buffer_log_var.clone(),
            **({} if self.buffer_neighbours is None else {"buffer_neighbours": self.buffer_neighbours.clone()}),
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
            self.vae = self._build(len(self.scaler.mean))
            self.vae.load_state_dict(dict(state["vae"]))
            self.buffer_mu = torch.as_tensor(state["buffer_mu"]).float()
            self.buffer_log_var = torch.as_tensor(state["buffer_log_var"]).float()
            training = dict(state.get("training", {}))
            self.alpha = float(training.get("buffer_sigma_scale", self.params.buffer_sigma_scale))
            self.lam = float(training.get("neighbour_scale", self.params.neighbour_scale))
            nbrs = state.get("buffer_neighbours")
            self.buffer_neighbours = None if nbrs is None else torch.as_tensor(nbrs).long()
            self.frame = str(state.get("frame", "features"))
            gauss = state.get("gaussianize")
            self.gauss = None if gauss is None else QuantileGaussianize().load_state_dict(gauss)
            self.ranges = {k: (float(v[0]), float(v[1])) for k, v in dict(state.get("ranges", {})).items()}
        except (KeyError, RuntimeError, TypeError) as err:
            raise CheckpointError(f"state does not fit the bvae generator with these parameters: "
                                  f"{type(err).__name__}: {str(err).splitlines()[0]}", path=self.ctx.name) from None
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
