"""The networks inside trained generators, through the contract :meth:`mlegpipe.stages.Generator.network_probe`.

Every generator that implements :meth:`~mlegpipe.stages.Generator.network_probe`
(a :class:`~mlegpipe.stages.NetworkProbe`: the network, how to feed it at given
condition values, how to decode its inputs into events, its own training
loss) can be looked into: the GANs (``network``, fed noise and the
standardized condition), ``flow`` (the first replica's zuko flow: its hidden
layers are those of the hyper-networks) and ``bvae`` (the VAE's decoder fed
latent points of its buffer).

Generators trained against a discriminator (the GANs) also meet the
:class:`~mlegpipe.stages.AdversarialModel` protocol: their discriminator
(``discriminator_net`` after training in this process, or the
``discriminator`` module of the training checkpoint
``checkpoints/<section>-last.pt``, see :func:`load_discriminator_net`) is fed
the discriminator features of events and the standardized condition, and
their landscapes have the losses ``mmd``, ``generator`` and ``discriminator``.

What the networks see for given events comes from
:meth:`mlegpipe.stages.Generator.interpretation_inputs` (a
:class:`mlegpipe.stages.NetworkInputs`; see :func:`network_inputs`).

Example:
    >>> import torch
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe.nets import mlp
    >>> from mlegpipe.stages import Generator, NetworkProbe
    >>> class Toy(Generator):  # any generator with a network probe can be interpreted
    ...     network = mlp(4, 2, [8, 8])
    ...     def network_probe(self):
    ...         return NetworkProbe(self.network, "network", lambda n, values, gen: [torch.randn(n, 4, generator=gen)],
    ...                             self.network, lambda tensors, seed: EventBatch.from_columns(
    ...                                 {"a": self.network(tensors[0]).detach().double().numpy()[:, 0]}))
    >>> probe = generator_probe(Toy(None, None))
    >>> probe.label, [t.shape for t in probe.inputs(5, None, torch.Generator().manual_seed(0))]
    ('network', [torch.Size([5, 4])])
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError
from mlegpipe.stages import AdversarialModel, Generator, NetworkInputs, NetworkProbe

__all__ = [
    "ADVERSARIAL_LOSSES",
    "discriminator_inputs",
    "discriminator_loss_fn",
    "generator_loss_fn",
    "generator_probe",
    "landscape_losses",
    "load_discriminator_net",
    "network_inputs",
    "own_loss_fn",
    "stage_landscape",
]

#: Landscape losses of generators trained against a discriminator (:class:`~mlegpipe.stages.AdversarialModel`).
ADVERSARIAL_LOSSES: tuple[str, ...] = ("mmd", "generator", "discriminator")


def _name(stage: Any) -> str:
    return getattr(stage, "plugin_name", "") or type(stage).__name__


def generator_probe(stage: Generator) -> NetworkProbe:
    """``stage.network_probe()`` (:meth:`mlegpipe.stages.Generator.network_probe`).

    Raises:
        ConfigError: not a generator, or one without a torch network (it keeps the default
            ``network_probe``), or one not trained or loaded yet.
    """
    if not isinstance(stage, Generator):
        raise ConfigError(f"{_name(stage)!r} is not a generator: it exposes no torch network (no "
                          "Generator.network_probe); hidden-layer maps and landscapes need one", path="generator",
                          value=_name(stage))
    try:
        return stage.network_probe()
    except NotImplementedError as err:
        raise ConfigError(str(err), path="generator", value=_name(stage)) from None


def network_inputs(stage: Generator, events: EventBatch) -> NetworkInputs:
    """``stage.interpretation_inputs(events)`` (:meth:`mlegpipe.stages.Generator.interpretation_inputs`).

    Raises:
        ConfigError: the generator does not expose its network inputs.

    Example:
        >>> class Histogram(Generator):  # no torch network, no interpretation_inputs
        ...     plugin_name = "histogram"
        >>> try:
        ...     network_inputs(Histogram(None, None), None)
        ... except ConfigError as err:
        ...     "interpretation_inputs" in str(err)
        True
    """
    try:
        if not isinstance(stage, Generator):
            raise NotImplementedError
        return stage.interpretation_inputs(events)
    except NotImplementedError:
        raise ConfigError(f"generator {_name(stage)!r} does not expose what its network sees (it implements no "
                          "interpretation_inputs); losses and discriminator maps need it", path="generator",
                          value=_name(stage)) from None


def _adversarial(stage: Any) -> AdversarialModel:
    if not isinstance(stage, AdversarialModel):
        raise ConfigError("only generators trained against a discriminator (GANs) have a discriminator to look into",
                          path="generator", value=_name(stage))
    return stage


def discriminator_inputs(stage: AdversarialModel, events: EventBatch) -> torch.Tensor:
    """What a GAN's discriminator sees for ``events``: ``[features, standardized condition]`` (float32).

    Raises:
        ConfigError: the generator is not trained against a discriminator.
    """
    stage = _adversarial(stage)
    inputs = network_inputs(stage, events)
    with torch.no_grad():
        feats = stage.discriminator_features(inputs.features, torch.from_numpy(inputs.context),
                                             inputs.extra.get("phi")).float()
    return feats if inputs.condition is None else torch.cat([feats, inputs.condition], dim=1)


def load_discriminator_net(stage: AdversarialModel, run_dir: str | Path, section: str, discriminator: Any
                           ) -> nn.Module:
    """The trained discriminator of a GAN generator, from ``run_dir/checkpoints/<section>-last.pt``.

    The generator's own checkpoint holds no discriminator; the training
    checkpoint written at the last step (``checkpoint_every > 0``, the
    default) does. ``discriminator`` is the discriminator stage that built it
    (the run's ``[discriminator]`` section or the GAN's default adversary).

    Raises:
        ConfigError: the generator is not trained against a discriminator.
        CheckpointError: no training checkpoint, or it holds no discriminator.
    """
    from mlegpipe.checkpoint import load_checkpoint

    stage = _adversarial(stage)
    if stage.discriminator_net is not None:
        return stage.discriminator_net
    path = Path(run_dir) / "checkpoints" / f"{section}-last.pt"
    if not path.is_file():
        raise CheckpointError("no training checkpoint holding the discriminator: the run was made with "
                              "checkpoint_every = 0, or this generator has no discriminator", path=str(path),
                              hint="re-run with checkpoint_every > 0 to look into the discriminator")
    ckpt = load_checkpoint(path)
    modules = ckpt.state.get("modules", {})
    if "discriminator" not in modules:
        raise CheckpointError(f"the training checkpoint holds no discriminator (modules: {sorted(modules)})",
                              path=str(path))
    state = modules["discriminator"]
    n_cond = len(stage.conditions)
    first = next(v for k, v in state.items() if k.endswith("weight") or k.endswith("original"))
    net = discriminator.build(int(first.shape[1]) - n_cond, n_cond)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"the discriminator weights do not fit the configured discriminator: "
                              f"{str(err).splitlines()[0]}", path=str(path)) from None
    net.eval()
    return net


def _fixed_events(truth: EventBatch, n: int, rng: np.random.Generator) -> EventBatch:
    if len(truth) < 2:
        raise DataError("need at least two truth events for a loss", path="truth", value=len(truth))
    return truth.take(np.sort(rng.choice(len(truth), size=min(n, len(truth)), replace=False)))


def own_loss_fn(stage: Generator, truth: EventBatch, n: int = 2048, seed: int = 0
                ) -> tuple[nn.Module, Callable[[], torch.Tensor], str]:
    """The generator's own loss (:attr:`NetworkProbe.loss <mlegpipe.stages.NetworkProbe.loss>`) on fixed data.

    Up to ``n`` events of ``truth`` are chosen with ``seed``; returns ``(module, loss_fn, label)``.

    Raises:
        ConfigError: the generator's probe declares no loss.
    """
    probe = generator_probe(stage)
    if probe.loss is None:
        raise ConfigError(f"generator {_name(stage)!r} declares no loss of its own for a landscape (its "
                          "NetworkProbe has no loss)", path="loss", value=_name(stage))
    events = _fixed_events(truth, n, np.random.default_rng(seed))
    fn, label = probe.loss(events, seed)
    return probe.network, fn, label


def landscape_losses(stage: Generator, discriminator_net: nn.Module | None = None) -> list[str]:
    """The landscape losses that apply to ``stage``, the one ``auto`` picks first.

    The probe's own loss (``nll`` for flows, ``vae`` for the B-VAE), then for
    generators trained against a discriminator ``generator`` (with a trained
    discriminator network), ``mmd`` and ``discriminator``.

    Example:
        >>> import torch
        >>> from mlegpipe.stages import NetworkProbe
        >>> class Toy(Generator):
        ...     def network_probe(self):
        ...         net = torch.nn.Linear(1, 1)
        ...         return NetworkProbe(net, "network", None, net, None, loss=lambda e, s: (None, ""), loss_name="mse")
        >>> landscape_losses(Toy(None, None))
        ['mse']
    """
    probe = generator_probe(stage)
    out = [probe.loss_name] if probe.loss is not None else []
    if isinstance(stage, AdversarialModel):
        out += ["generator", "mmd", "discriminator"] if discriminator_net is not None else list(ADVERSARIAL_LOSSES)
    return out


def generator_loss_fn(
    stage: Any,
    truth: EventBatch,
    n: int = 2048,
    seed: int = 0,
    discriminator: Any = None,
    discriminator_net: nn.Module | None = None,
) -> tuple[nn.Module, Callable[[], torch.Tensor], str]:
    """The generator network and a deterministic loss of it on fixed data: ``(module, loss_fn, label)``.

    - generators whose probe declares a loss (:attr:`NetworkProbe.loss
      <mlegpipe.stages.NetworkProbe.loss>`): that loss of ``truth`` (``flow``: the
      negative log-likelihood; ``bvae``: (1 - β)·MSE + β·KL over the decoder's weights);
    - GANs with ``discriminator`` and ``discriminator_net``: the adversarial
      generator loss against the frozen discriminator, on fixed noise;
    - GANs otherwise: MMD² between generated and ``truth`` discriminator
      features (kernel widths 0.2, 0.5, 1 of the standardized features).

    Noise, conditions and events are drawn once from ``seed``, so the loss is
    a function of the weights only.

    Raises:
        ConfigError: the generator declares no loss and has no discriminator.
    """
    if not isinstance(stage, AdversarialModel):
        return own_loss_fn(stage, truth, n, seed)
    rng = np.random.default_rng(seed)
    events = _fixed_events(truth, n, rng)
    probe = generator_probe(stage)
    from mlegpipe.losses import mmd2

    inputs = network_inputs(stage, events)
    context = torch.from_numpy(inputs.context)
    real = discriminator_inputs(stage, events)
    cond = inputs.condition
    n_feat = real.shape[1] - (0 if cond is None else cond.shape[1])
    real_feats = real[:, :n_feat]
    noise = stage.noise(len(events), torch.Generator().manual_seed(seed))
    phi = torch.from_numpy(rng.uniform(-np.pi, np.pi, len(events))) if stage.uniform_phi else None

    def fake() -> torch.Tensor:
        return stage.discriminator_features(stage.generate_tensor(noise, cond), context, phi)

    if discriminator is not None and discriminator_net is not None:
        def adversarial() -> torch.Tensor:
            return discriminator.generator_loss(discriminator_net, fake(), cond)

        return probe.network, adversarial, "generator loss"

    def mmd() -> torch.Tensor:
        return mmd2(fake(), real_feats, [0.2, 0.5, 1.0])

    return probe.network, mmd, "MMD² to truth"


def discriminator_loss_fn(
    stage: Any,
    discriminator: Any,
    net: nn.Module,
    truth: EventBatch,
    n: int = 2048,
    seed: int = 0,
) -> tuple[nn.Module, Callable[[], torch.Tensor], str]:
    """The discriminator network and its training loss on fixed truth and generated batches (thesis Fig. 45).

    The generated batch is made once from fixed noise at the truth events'
    conditions; the random stream of gradient-penalty interpolates is
    reset before each evaluation, so the loss depends on the weights only.
    Evaluate it with autograd on (``loss_landscape(..., grad=True)``).
    """
    stage = _adversarial(stage)
    rng = np.random.default_rng(seed)
    events = _fixed_events(truth, n, rng)
    real = discriminator_inputs(stage, events)
    inputs = network_inputs(stage, events)
    context, cond = torch.from_numpy(inputs.context), inputs.condition
    n_feat = real.shape[1] - (0 if cond is None else cond.shape[1])
    phi = torch.from_numpy(rng.uniform(-np.pi, np.pi, len(events))) if stage.uniform_phi else None
    with torch.no_grad():
        noise = stage.noise(len(events), torch.Generator().manual_seed(seed))
        fake = stage.discriminator_features(stage.generate_tensor(noise, cond), context, phi).float()
    penalty_gen = discriminator.random_generator()
    state = penalty_gen.get_state() if penalty_gen is not None else None

    def loss() -> torch.Tensor:
        if penalty_gen is not None:
            penalty_gen.set_state(state)
        return discriminator.discriminator_loss(net, real[:, :n_feat], fake, cond)

    return net, loss, "discriminator loss"


def stage_landscape(
    stage: Generator,
    truth: EventBatch,
    loss: str = "auto",
    discriminator: Any = None,
    discriminator_net: nn.Module | None = None,
    steps: int = 21,
    span: float = 1.0,
    events: int = 2048,
    seed: int = 0,
    progress: bool = False,
) -> Any:
    """The loss landscape of a trained generator (or of its discriminator) around its weights.

    Arguments:
        stage: the trained generator.
        truth: truth events the loss compares with (a test sample).
        loss: one of :func:`landscape_losses`: the generator's own loss
            (``nll``: flows' negative log-likelihood; ``vae``: the B-VAE's
            (1 - β)·MSE + β·KL over its decoder's weights), or for GANs ``mmd``
            (MMD² to truth), ``generator`` (adversarial loss against the
            frozen discriminator), ``discriminator`` (the discriminator's loss
            over its own weights, thesis Fig. 45); ``auto``: the first that
            applies (own loss, else ``generator`` with a discriminator
            network, else ``mmd``).
        discriminator, discriminator_net: the discriminator stage and its trained network.
        steps, span: the grid (see :func:`~mlegpipe.interpret.landscape.loss_landscape`).
        events: truth events (and noise vectors) in the loss.
        seed: directions, subsampling and noise.

    Returns:
        A :class:`~mlegpipe.interpret.landscape.Landscape` (``info`` has the loss name and seconds).

    Raises:
        ConfigError: a loss that does not apply to this generator (the message lists those that do),
            or a discriminator loss without the trained discriminator.
    """
    import time

    from mlegpipe.interpret.landscape import loss_landscape

    have_disc = discriminator is not None and discriminator_net is not None
    available = landscape_losses(stage, discriminator_net if have_disc else None)
    if not available:
        raise ConfigError(f"no landscape loss applies to generator {_name(stage)!r}: its network probe declares no "
                          "loss and it is not trained against a discriminator", path="loss", value=loss)
    if loss == "auto":
        loss = available[0]
    if loss in ("generator", "discriminator") and not have_disc and "mmd" in available:
        raise ConfigError(f"the {loss} loss needs the trained discriminator", path="loss", value=loss,
                          hint="use loss = 'mmd', or a run with training checkpoints")
    if loss not in available:
        raise ConfigError(f"the {loss!r} loss does not apply to generator {_name(stage)!r}; its losses: "
                          + ", ".join(["auto", *available]), path="loss", value=loss)
    start = time.perf_counter()
    if loss == "discriminator":
        module, fn, label = discriminator_loss_fn(stage, discriminator, discriminator_net, truth, events, seed)
    elif loss in ADVERSARIAL_LOSSES:
        module, fn, label = generator_loss_fn(stage, truth, events, seed,
                                              discriminator if loss == "generator" else None,
                                              discriminator_net if loss == "generator" else None)
    else:
        module, fn, label = own_loss_fn(stage, truth, events, seed)
    land = loss_landscape(module, fn, steps=steps, span=span, seed=seed, progress=progress, label=label,
                          grad=loss == "discriminator")
    land.info.update({"loss": loss, "seconds": time.perf_counter() - start, "events": min(events, len(truth)),
                      "parameters": sum(p.numel() for p in module.parameters())})
    return land
