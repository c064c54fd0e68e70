"""Adversaries for GAN training: WGAN-GP critic, least-squares (LSGAN), Jensen–Shannon and DeepSets discriminators.

Each plugin builds its network (:func:`mlegpipe.nets.mlp`, with a
``preset = "published"`` reproducing the papers' sizes) and defines the two
adversarial losses the generator's training loop minimizes:

- ``wgan-gp``: L_D = E[D(fake)] - E[D(real)] + λ E[(‖∇D(x̂)‖₂ - 1)²] on
  straight-line interpolates x̂ (thesis eq. 13); L_G = -E[D(fake)].
- ``lsgan``: L_D = ½⟨(D(real) - b)²⟩ + ½⟨(D(fake) - a)²⟩, L_G = ½⟨(D(fake) - c)²⟩
  (thesis eqs. 25-26; b - a = 2, b - c = 1 minimizes the Pearson χ² divergence).
- ``jsgan``: the standard (Jensen–Shannon) GAN of How to GAN LHC Events:
  L_D = BCE(l(real), 1) + BCE(l(fake), 0) + γ/2 · Ω (Roth et al. regularizer,
  :func:`roth_penalty`), L_G = BCE(l(fake), 1), with l the logit of a plain MLP.
- ``deepsets``: the GANplifying discriminator that sees each event together
  with statistics of its whole batch (std over the batch of an embedding of
  B - x), trained with the ``jsgan`` losses.

Conditional models pass ``cond`` (e.g. the standardized beam energy); the
network sees ``[features, cond]`` and penalties differentiate with respect to
the features only.

Example:
    >>> import torch
    >>> from mlegpipe.context import StageContext
    >>> critic = WGANGP(WGANGP.Params(), StageContext("discriminator"))
    >>> net = critic.build(3)
    >>> loss = critic.discriminator_loss(net, torch.randn(8, 3), torch.randn(8, 3))
    >>> loss.ndim
    0
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mlegpipe import hookimpl
from mlegpipe.data_parallel import global_rows
from mlegpipe.nets import ACTIVATIONS, NORMS, count_parameters, mlp
from mlegpipe.schema import fill_none, param
from mlegpipe.stages import Discriminator

__all__ = [
    "DeepSetsDiscriminator",
    "JSGAN",
    "LSGAN",
    "SetStatisticsNet",
    "WGANGP",
    "gradient_penalty",
    "roth_penalty",
]



@dataclass
class _NetworkParams:
    """Network and optimizer settings shared by every adversary (None: take the preset's value)."""

    preset: str = param("cpu", choices=("cpu", "published"),
                        doc="'cpu': small network for a 2-core CPU; 'published': the paper's sizes")
    layers: int | None = param(None, min=1, max=64, doc="hidden layers (None: from the preset)")
    width: int | None = param(None, min=1, max=8192, doc="neurons per hidden layer (None: from the preset)")
    activation: str | None = param(None, choices=(*ACTIVATIONS, None), doc="hidden activation")
    leaky_slope: float | None = param(None, min=0.0, max=1.0, doc="negative slope of leaky_relu")
    dropout: float | None = param(None, min=0.0, max=0.95, doc="dropout after each hidden layer")
    residual: bool | None = param(None, doc="skip connections between equal-width hidden layers (thesis Fig. 48)")
    norm: str | None = param(None, choices=(*NORMS, None), doc="weight normalization of the layers")
    lr: float | None = param(None, min=0.0, exclusive_min=True, doc="Adam learning rate")
    beta1: float | None = param(None, min=0.0, max=1.0, doc="Adam β₁")
    beta2: float | None = param(None, min=0.0, max=1.0, doc="Adam β₂")


class _Adversary(Discriminator):
    """Shared machinery: presets, the network builder and the optimizer.

    Subclasses set ``PRESETS`` (``{"cpu": {...}, "published": {...}}``) giving
    every ``None``-default parameter of their ``Params``.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, params: Any, ctx: Any) -> None:
        super().__init__(params, ctx)
        self.settings = fill_none(self.params, self.PRESETS[self.params.preset])  # the preset fills every None
        self._noise_generator: torch.Generator | None = None


    @property
    def widths(self) -> list[int]:
        """Hidden-layer widths of the main network."""
        return [self.settings["width"]] * self.settings["layers"]

    def _head(self, n_in: int) -> nn.Module:
        s = self.settings
        return mlp(n_in, 1, self.widths, s["activation"], s["dropout"], s["residual"], s["norm"], s["leaky_slope"])

    def build(self, n_features: int, n_conditions: int = 0) -> nn.Module:
        """A network mapping ``(batch, n_features + n_conditions)`` to scores ``(batch, 1)``.

        Example:
            >>> from mlegpipe.context import StageContext
            >>> LSGAN(LSGAN.Params(), StageContext("d")).build(2, 1)(torch.zeros(4, 3)).shape
            torch.Size([4, 1])
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.torch_seed("init", n_features, n_conditions))
            return self._build(n_features + n_conditions)

    def _build(self, n_in: int) -> nn.Module:
        return self._head(n_in)

    def make_optimizer(self, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        """The Adam optimizer of the discriminator, with this plugin's lr and β.

        Example:
            >>> from mlegpipe.context import StageContext
            >>> d = WGANGP(WGANGP.Params(lr=1e-3), StageContext("d"))
            >>> d.make_optimizer(d.build(2).parameters()).param_groups[0]["lr"]
            0.001
        """
        s = self.settings
        return torch.optim.Adam(parameters, lr=s["lr"], betas=(s["beta1"], s["beta2"]))

    def random_generator(self) -> torch.Generator:
        """The torch generator for interpolates and instance noise (seeded from ``ctx``)."""
        if self._noise_generator is None:
            self._noise_generator = self.ctx.torch_generator("penalty")
        return self._noise_generator

    def info(self) -> dict[str, Any]:
        """The resolved settings (preset plus overrides)."""
        return {k: v for k, v in self.settings.items() if not isinstance(v, tuple | list) or len(v) < 16}

    @staticmethod
    def score(net: nn.Module, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``net([x, cond])`` as a ``(batch,)`` tensor."""
        inputs = x if cond is None or cond.shape[1] == 0 else torch.cat([x, cond], dim=1)
        return net(inputs).reshape(-1)

    def describe(self, net: nn.Module) -> str:
        """One line for logs: the plugin, the widths and the parameter count."""
        return f"{self.plugin_name or type(self).__name__}: {self.widths} ({count_parameters(net)} parameters)"


def gradient_penalty(
    net: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    one_sided: bool = False,
    rows: tuple[int, slice] | None = None,
) -> torch.Tensor:
    """The WGAN-GP penalty E[(‖∇ₓD(x̂)‖₂ - 1)²] on interpolates x̂ = ε real + (1 - ε) fake.

    ``rows`` = (N, this rank's slice) when ``real`` and ``fake`` are one rank's
    rows of a global batch of N events (data-parallel training): ε is drawn for
    all N events, as one process draws it, and cut to the rows.

    ε is uniform per event; the gradient is taken with respect to the features
    (not the conditions) and kept in the graph so the penalty trains the critic.
    ``one_sided`` penalizes only norms above 1, E[max(0, ‖∇D‖ - 1)²] (Petzka et
    al. 2018): a critic may then pass through a flat slope, which a 1D critic
    stuck with the wrong sign of slope needs (the two-sided penalty puts a
    barrier of height λ there).

    Example:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[0.6, 0.8]]))
        >>> round(float(gradient_penalty(lin, torch.randn(5, 2), torch.randn(5, 2)).detach()), 12)
        0.0
    """
    eps = global_rows(lambda shape: torch.rand(shape, generator=generator, dtype=real.dtype), (real.shape[0], 1),
                      rows).to(real.device)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = _Adversary.score(net, mixed, cond)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    excess = grad.norm(2, dim=1) - 1.0
    if one_sided:
        excess = excess.clamp_min(0.0)
    return (excess**2).mean()


def roth_penalty(
    net: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """Roth et al. (2017) regularizer of a logit discriminator D = σ(l).

    Ω = E_real[(1 - σ(l))² ‖∇ₓl‖²] + E_fake[σ(l)² ‖∇ₓl‖²]; the loss adds γ/2 · Ω.

    Example:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.zero_()
        >>> float(roth_penalty(lin, torch.randn(3, 2), torch.randn(3, 2)).detach())
        0.0
    """
    terms = []
    for x, target in ((real, 1.0), (fake, 0.0)):
        x = x.detach().requires_grad_(True)
        logits = _Adversary.score(net, x, cond)
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        weight = (target - torch.sigmoid(logits)) ** 2
        terms.append((weight * grad.pow(2).sum(dim=1)).mean())
    return terms[0] + terms[1]


class WGANGP(_Adversary):
    """Wasserstein critic with gradient penalty (thesis eq. 13; FAT-GAN, cFAT-GAN).

    L_D = E[D(fake)] - E[D(real)] + λ E[(‖∇D(x̂)‖ - 1)²], L_G = -E[D(fake)].
    The ``cpu`` preset penalizes only gradient norms above 1 (``gp_mode =
    "one-sided"``): with the two-sided penalty a critic whose slope points the
    wrong way must cross ‖∇D‖ = 0, a barrier of height λ, and in 1D and 2D toy
    trainings it stays there while the generator runs away (see
    :func:`gradient_penalty`); ``preset = "published"`` keeps eq. 13.
    The MMD² term of the FAT-GAN generator loss (thesis eq. 14) is a
    generator parameter (``mmd_weight``), since it compares generated with
    training events rather than scoring them.

    Example:
        >>> from mlegpipe.context import StageContext
        >>> d = WGANGP(WGANGP.Params(preset="published"), StageContext("discriminator"))
        >>> d.widths == [512] * 5, d.settings["gp_weight"]
        (True, 10.0)
    """

    plugin_name: ClassVar[str] = "wgan-gp"

    @dataclass
    class Params(_NetworkParams):
        gp_weight: float = param(10.0, min=0.0, doc="gradient-penalty weight λ")
        gp_mode: str | None = param(None, choices=("two-sided", "one-sided", None),
                                    doc="(‖∇D‖ - 1)² as published, or only max(0, ‖∇D‖ - 1)² (Lipschitz penalty; "
                                        "the cpu preset's choice)")

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"layers": 3, "width": 128, "activation": "leaky_relu", "leaky_slope": 0.2, "dropout": 0.0,
                "residual": False, "norm": "none", "lr": 2e-4, "beta1": 0.5, "beta2": 0.9, "gp_mode": "one-sided"},
        "published": {"layers": 5, "width": 512, "activation": "leaky_relu", "leaky_slope": 0.2, "dropout": 0.1,
                      "residual": False, "norm": "none", "lr": 1e-4, "beta1": 0.5, "beta2": 0.9,
                      "gp_mode": "two-sided"},
    }

    def discriminator_loss(
        self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Wasserstein critic loss plus λ times the gradient penalty."""
        loss = self.score(net, fake.detach(), cond).mean() - self.score(net, real, cond).mean()
        if self.settings["gp_weight"] > 0:
            penalty = gradient_penalty(net, real, fake, cond, self.random_generator(),
                                       one_sided=self.settings["gp_mode"] == "one-sided", rows=self.batch_rows)
            loss = loss + self.settings["gp_weight"] * penalty
        return loss

    def generator_loss(self, net: nn.Module, fake: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """-E[D(fake)]."""
        return -self.score(net, fake, cond).mean()


class LSGAN(_Adversary):
    """Least-squares GAN discriminator (thesis ch. 7, eqs. 25-28).

    L_D = ½⟨(D(real) - b)²⟩ + ½⟨(D(fake) - a)²⟩, L_G = ½⟨(D(fake) - c)²⟩ with
    the defaults a = -1, b = 1, c = 0 (b - a = 2, b - c = 1: the Pearson χ²
    choice). An optional WGAN-style gradient penalty (``gp_weight``) helps
    small CPU networks.

    Example:
        >>> from mlegpipe.context import StageContext
        >>> d = LSGAN(LSGAN.Params(), StageContext("discriminator"))
        >>> class Const(nn.Module):
        ...     def forward(self, x):
        ...         return torch.zeros(len(x), 1)
        >>> float(d.discriminator_loss(Const(), torch.zeros(4, 2), torch.zeros(4, 2)))
        1.0
    """

    plugin_name: ClassVar[str] = "lsgan"

    @dataclass
    class Params(_NetworkParams):
        a: float = param(-1.0, doc="target score of generated events for the discriminator")
        b: float = param(1.0, doc="target score of real events")
        c: float = param(0.0, doc="score the generator wants the discriminator to give its events")
        gp_weight: float = param(0.0, min=0.0, doc="optional gradient-penalty weight (0: none, as published)")

        def __post_init__(self) -> None:
            if self.a == self.b:
                raise ValueError(f"lsgan targets a and b must differ (a = b = {self.a})")

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"layers": 3, "width": 128, "activation": "leaky_relu", "leaky_slope": 0.2, "dropout": 0.0,
                "residual": False, "norm": "none", "lr": 2e-4, "beta1": 0.5, "beta2": 0.9},
        "published": {"layers": 5, "width": 512, "activation": "leaky_relu", "leaky_slope": 0.2, "dropout": 0.1,
                      "residual": False, "norm": "none", "lr": 1e-4, "beta1": 0.5, "beta2": 0.9},
    }

    def discriminator_loss(
        self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """½⟨(D(real) - b)²⟩ + ½⟨(D(fake) - a)²⟩ (+ λ · gradient penalty)."""
        s = self.settings
        loss = 0.5 * ((self.score(net, real, cond) - s["b"]) ** 2).mean()
        loss = loss + 0.5 * ((self.score(net, fake.detach(), cond) - s["a"]) ** 2).mean()
        if s["gp_weight"] > 0:
            loss = loss + s["gp_weight"] * gradient_penalty(net, real, fake, cond, self.random_generator(),
                                                            rows=self.batch_rows)
        return loss

    def generator_loss(self, net: nn.Module, fake: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """½⟨(D(fake) - c)²⟩."""
        return 0.5 * ((self.score(net, fake, cond) - self.settings["c"]) ** 2).mean()


class JSGAN(_Adversary):
    """The standard GAN discriminator with the Roth et al. regularizer (How to GAN LHC Events, arXiv:1907.03764).

    L_D = BCE(l(real), 1) + BCE(l(fake), 0) + γ/2 · Ω with Ω the Roth et al.
    (2017) regularizer of the logit l (:func:`roth_penalty`), which stabilizes
    the Jensen–Shannon GAN; L_G = BCE(l(fake), 1) (non-saturating). The
    published preset (EventGAN): a plain MLP of 10 layers × 512, γ = 0.001,
    Adam 10⁻³ with β = (0.5, 0.9).

    Example:
        >>> from mlegpipe.context import StageContext
        >>> d = JSGAN(JSGAN.Params(preset="published"), StageContext("discriminator"))
        >>> d.widths == [512] * 10, d.settings["gp_weight"]
        (True, 0.001)
    """

    plugin_name: ClassVar[str] = "jsgan"

    @dataclass
    class Params(_NetworkParams):
        gp_weight: float | None = param(None, min=0.0, doc="strength γ of the Roth et al. regularizer")

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"layers": 3, "width": 128, "activation": "leaky_relu", "leaky_slope": 0.2, "dropout": 0.0,
                "residual": False, "norm": "none", "lr": 1e-3, "beta1": 0.5, "beta2": 0.9, "gp_weight": 0.001},
        "published": {"layers": 10, "width": 512, "activation": "leaky_relu", "leaky_slope": 0.2, "dropout": 0.0,
                      "residual": False, "norm": "none", "lr": 1e-3, "beta1": 0.5, "beta2": 0.9, "gp_weight": 0.001},
    }

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        """What the network sees of ``x`` (subclasses may add instance noise)."""
        return x

    def discriminator_loss(
        self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Binary cross entropy of real vs generated plus γ/2 times the Roth penalty."""
        real, fake = self._noisy(real), self._noisy(fake.detach())
        bce = nn.functional.binary_cross_entropy_with_logits
        l_real, l_fake = self.score(net, real, cond), self.score(net, fake, cond)
        loss = bce(l_real, torch.ones_like(l_real)) + bce(l_fake, torch.zeros_like(l_fake))
        if self.settings["gp_weight"] > 0:
            loss = loss + 0.5 * self.settings["gp_weight"] * roth_penalty(net, real, fake, cond)
        return loss

    def generator_loss(self, net: nn.Module, fake: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Non-saturating generator loss BCE(l(fake), 1) = -E[ln σ(l(fake))]."""
        logits = self.score(net, self._noisy(fake), cond)
        return nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


class SetStatisticsNet(nn.Module):
    """DeepSets batch discriminator (GANplifying, Fig. 3): scores each event within its batch.

    For a batch B and each event x in it: Φ(B - x) embeds every difference
    vector (1D convolutions of kernel size 1, i.e. a shared dense map), the
    embedding's standard deviation over the batch summarizes it, and the head
    network scores ``[x, std_B Φ(B - x)]``. Batches larger than ``max_set``
    are scored in consecutive sets of ``max_set`` events (memory grows as n²).

    Example:
        >>> net = SetStatisticsNet(2, [8, 4], mlp(2 + 4, 1, [8]))
        >>> x = torch.randn(6, 2)
        >>> perm = torch.randperm(6)
        >>> torch.allclose(net(x)[perm], net(x[perm]), atol=1e-6)
        True
    """

    def __init__(self, n_in: int, embed_widths: list[int], head: nn.Module, leaky_slope: float = 0.01,
                 aggregation: str = "std", max_set: int = 1024) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = n_in
        for width in embed_widths:
            layers += [nn.Linear(previous, width), nn.LeakyReLU(leaky_slope)]
            previous = width
        self.embed = nn.Sequential(*layers)
        self.head = head
        self.aggregation = aggregation
        self.max_set = max_set

    def _score_set(self, x: torch.Tensor) -> torch.Tensor:
        diff = x.unsqueeze(0) - x.unsqueeze(1)  # [i, j] = B_j - x_i
        emb = self.embed(diff)
        if self.aggregation == "std":
            summary = emb.std(dim=1, correction=0) if x.shape[0] > 1 else torch.zeros_like(emb[:, 0])
        elif self.aggregation == "mean":
            summary = emb.mean(dim=1)
        else:
            summary = emb.amax(dim=1)
        return self.head(torch.cat([x, summary], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= self.max_set:
            return self._score_set(x)
        return torch.cat([self._score_set(part) for part in torch.split(x, self.max_set)])


class DeepSetsDiscriminator(JSGAN):
    """Batch-statistics GAN discriminator of GANplifying (seed 002) with gradient penalty γ.

    L_D = BCE(l(real), 1) + BCE(l(fake), 0) + γ/2 · Ω (Roth et al. penalty,
    :func:`roth_penalty`), L_G = BCE(l(fake), 1) (non-saturating), with l the
    logit. ``input_noise`` adds uniform noise in [-u, u] (standardized units)
    to every event the discriminator sees, real and generated alike, as the
    paper does against over-fitting. The published network: embedding
    (256, 256, 32), std aggregation, head 7 × 256 with dropout 0.5, Adam 5e-5.

    Example:
        >>> from mlegpipe.context import StageContext
        >>> d = DeepSetsDiscriminator(DeepSetsDiscriminator.Params(), StageContext("discriminator"))
        >>> d.build(2)(torch.randn(10, 2)).shape
        torch.Size([10, 1])
    """

    plugin_name: ClassVar[str] = "deepsets"

    @dataclass
    class Params(_NetworkParams):
        embed_widths: list[int] | None = param(None, min=1, doc="widths of the set embedding Φ (last = m)")
        aggregation: str = param("std", choices=("std", "mean", "max"), doc="summary over the batch")
        gp_weight: float | None = param(None, min=0.0, doc="gradient-penalty strength γ")
        input_noise: float | None = param(None, min=0.0, doc="uniform noise half-width added to inputs")
        max_set: int = param(1024, min=2, doc="largest set scored at once (memory ∝ max_set²)")

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"layers": 3, "width": 128, "activation": "leaky_relu", "leaky_slope": 0.01, "dropout": 0.0,
                "residual": False, "norm": "none", "lr": 2e-4, "beta1": 0.5, "beta2": 0.9,
                "embed_widths": [32, 32, 16], "gp_weight": 0.01, "input_noise": 0.0},
        "published": {"layers": 7, "width": 256, "activation": "leaky_relu", "leaky_slope": 0.01, "dropout": 0.5,
                      "residual": False, "norm": "none", "lr": 5e-5, "beta1": 0.5, "beta2": 0.9,
                      "embed_widths": [256, 256, 32], "gp_weight": 0.01, "input_noise": 0.1},
    }

    def _build(self, n_in: int) -> nn.Module:
        s = self.settings
        m = s["embed_widths"][-1]
        return SetStatisticsNet(n_in, list(s["embed_widths"]), self._head(n_in + m), s["leaky_slope"],
                                s["aggregation"], s["max_set"])

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus uniform instance noise in [-u, u] (``input_noise``)."""
        u = self.settings["input_noise"]
        if u <= 0:
            return x
        gen = self.random_generator()  # under data-parallel training: this rank's rows of the global batch's noise
        noise = global_rows(lambda shape: torch.rand(shape, generator=gen, dtype=x.dtype), x.shape,
                            self.batch_rows).to(x.device)
        return x + u * (2.0 * noise - 1.0)


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the adversaries: ``wgan-gp``, ``lsgan``, ``jsgan``, ``deepsets``."""
    registry.add(WGANGP)
    registry.add(LSGAN)
    registry.add(JSGAN)
    registry.add(DeepSetsDiscriminator)
