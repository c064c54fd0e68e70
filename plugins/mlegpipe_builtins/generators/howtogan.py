"""``howtogan``: the How to GAN LHC Events generator (arXiv:1907.03764) on the six quarks of tt̄.

An :class:`~mlegpipe_builtins.generators._gan_base.AdversarialGenerator` that
generates each quark's (p_x, p_y, p_z) and rebuilds its energy from a fixed
mass per slot (the ``cartesian`` feature map: EventGAN's Lorentz-vector
layer), trained against the standard Jensen–Shannon GAN discriminator with the
Roth et al. regularizer (``jsgan``), with the paper's MMD² term on the W and
top masses of both tops (``mmd_observables = ["m_W1", "m_W2", "m_t1",
"m_t2"]``, Breit–Wigner kernels of the declared peak widths, weight 1). The
masses are the LHC domain's declared observables, so the loss and the report
use the same definitions. ``mmd_observable_weight = 0`` is the ablation
without the MMD term.

Presets: ``published`` is EventGAN's set-up (generator and discriminator
10 × 512, noise 18, Adam 10⁻³ with β = (0.5, 0.9), batch 1024, one
discriminator step per generator step, inputs standardized without further
preprocessing, the masses' kernels of width Γ alone); ``cpu`` (default) is
small enough to train in minutes on two cores (see :data:`CPU_HOWTOGAN`).
``mmd_observable_weight`` trades the peaks against the rest: a heavier MMD²
term sharpens the W and top peaks and, on small networks, lets the other
kinematics collapse (``benchmarks/bench_howtogan.py`` measures it).

Example (TOML):
    [truth]
    plugin = "root"
    files = ["sample_data/ttbar_allhad_small.root"]

    [generator]
    plugin = "howtogan"               # features = ["quarks"], mmd_observables = W and top masses
    # mmd_observable_weight = 0       # the ablation

Example:
    >>> from mlegpipe.context import StageContext
    >>> gan = HowToGAN(HowToGAN.Params(preset="published"), StageContext("generator"))
    >>> gan.settings["layers"], gan.settings["width"], gan.settings["noise_dim"], gan.settings["preprocess"]
    (10, 512, 18, 'none')
    >>> gan.settings["mmd_observables"], gan.settings["mmd_observable_weight"]
    (['m_W1', 'm_W2', 'm_t1', 'm_t2'], 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mlegpipe import hookimpl
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError
from mlegpipe.features import FeatureMap
from mlegpipe.schema import param
from mlegpipe.stages import Discriminator
from mlegpipe_builtins.generators._gan_base import AdversarialGenerator
from mlegpipe_builtins.generators._gan_params import GANParams
from mlegpipe_builtins.generators._listed_features import listed_feature_map
from mlegpipe_builtins.lhc import QUARKS

__all__ = ["CPU_HOWTOGAN", "PUBLISHED_HOWTOGAN", "RESONANCE_MASSES", "HowToGAN"]

#: The paper's MMD targets: m(q q̄') and m(b q q̄') of both tops (the LHC domain's declared observables).
RESONANCE_MASSES: list[str] = ["m_W1", "m_W2", "m_t1", "m_t2"]

#: EventGAN's published set-up (generator; the ``jsgan`` discriminator's published preset matches it). The number of
#: steps is not stated in the reference: 100 000 batches of 1024 here.
PUBLISHED_HOWTOGAN: dict[str, Any] = {
    "noise_dim": 18, "layers": 10, "width": 512, "activation": "leaky_relu", "leaky_slope": 0.2, "dropout": 0.0,
    "residual": False, "norm": "none", "steps": 100_000, "batch_size": 1024, "critic_steps": 1,
    "lr": 1e-3, "beta1": 0.5, "beta2": 0.9, "lr_schedule": "constant", "preprocess": "none",
    "mmd_observable_scales": [1.0], "mmd_observable_events": 1024,
}
#: Small networks for two CPU cores. Beyond the paper: the masses' kernel adds Breit–Wigner widths of 4, 16
#: and 64 Γ (with Γ alone, a generated peak some 30 GeV wide feels almost no pull towards the 2 GeV one),
#: a moving average of the generator weights, asinh-compressed momenta, 256 events per MMD².
CPU_HOWTOGAN: dict[str, Any] = {
    "noise_dim": 18, "layers": 3, "width": 128, "activation": "leaky_relu", "leaky_slope": 0.2, "dropout": 0.0,
    "residual": False, "norm": "none", "steps": 6000, "batch_size": 512, "critic_steps": 1,
    "lr": 1e-3, "beta1": 0.5, "beta2": 0.9, "lr_schedule": "cosine", "ema": 0.999, "preprocess": "asinh",
    "mmd_observable_scales": [1.0, 4.0, 16.0, 64.0], "mmd_observable_events": 256,
}


class HowToGAN(AdversarialGenerator):
    """How to GAN LHC Events: quark 3-momenta with fixed masses, JS discriminator, MMD² on the resonance masses.

    See the module docstring. ``features`` names the collection (and any flat
    fields) to learn; ``masses`` fixes the per-slot masses of a single
    collection instead of the training medians (EventGAN: ``[4.7, 0, 0, 4.7,
    0, 0]``, massless light quarks).

    Example:
        >>> from mlegpipe.context import StageContext
        >>> gan = HowToGAN(HowToGAN.Params(mmd_observable_weight=0.0), StageContext("generator"))
        >>> gan.settings["mmd_observable_weight"], gan.DEFAULT_DISCRIMINATOR
        (0.0, 'jsgan')
    """

    plugin_name: ClassVar[str] = "howtogan"

    @dataclass
    class Params(GANParams):
        features: list[str] = param([QUARKS], doc="the fixed-multiplicity collection (and flat fields) to learn as "
                                                 "(p_x, p_y, p_z) per particle")
        masses: list[float] | None = param(None, min=0.0, doc="mass per particle slot of the one collection in "
                                                              "features (GeV; None: the training medians)")
        validate_every: int = param(0, min=0, doc="validate every this many steps (0: never; the final, moving-"
                                                 "average weights are used: validation keeps the weights closest "
                                                 "in momentum space, blind to the resonance peaks)")
        preprocess: str | None = param(None, choices=("asinh", "none", None),
                                       doc="asinh((p - median)/MAD) on the momenta before standardizing, or "
                                           "'none': standardized only, as published (None: the preset's)")

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": CPU_HOWTOGAN, "published": PUBLISHED_HOWTOGAN}
    MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {
        "mmd_weight": 0.0, "augment": [], "reject_unphysical": False, "mmd_observables": RESONANCE_MASSES,
        "mmd_observable_weight": 1.0}
    DEFAULT_DISCRIMINATOR: ClassVar[str] = "jsgan"

    def make_feature_map(self, events: EventBatch) -> FeatureMap:
        """``cartesian`` on ``features`` (with ``masses`` for the one collection when given).

        Raises:
            ConfigError: ``masses`` is given while ``features`` names more or fewer than one collection, or with
                another number of masses than particles per event.
        """
        options: dict[str, Any] = {}
        if self.params.masses is not None:
            collections = [f for f in self.params.features if events.has_collection(f)]
            if len(collections) != 1:
                raise ConfigError("masses gives the particle masses of one collection; features names "
                                  f"{len(collections)} collections ({', '.join(collections) or 'none'})",
                                  path=f"{self.ctx.name}.masses", value=list(self.params.masses))
            mult = events.multiplicity(collections[0])
            if len(mult) and mult.min() == mult.max() and int(mult[0]) != len(self.params.masses):
                raise ConfigError(f"collection {collections[0]!r} has {int(mult[0])} particles per event; give one "
                                  "mass per particle", path=f"{self.ctx.name}.masses", value=list(self.params.masses))
            options["masses"] = {collections[0]: list(self.params.masses)}
        return listed_feature_map("cartesian", events, self.params.features, registry=self.ctx.lookup(),
                                  where=self.ctx.name, options=options)

    def info(self) -> dict[str, Any]:
        """The GAN figures plus the observables of the MMD² term, their kernel widths and its weight."""
        out = super().info()
        s = self.settings
        out.update({"mmd_observables": list(s["mmd_observables"]), "mmd_observable_weight": s["mmd_observable_weight"]})
        if s["mmd_observable_widths"] is not None:
            out["mmd_observable_widths"] = list(s["mmd_observable_widths"])
        return out

    def default_discriminator(self) -> Discriminator:
        """The ``jsgan`` discriminator at this generator's preset (published: 10 × 512)."""
        from mlegpipe_builtins.discriminators.critics import JSGAN

        return JSGAN(JSGAN.Params(preset=self.params.preset), self.ctx.child("discriminator"))


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register ``howtogan``."""
    registry.add(HowToGAN)
