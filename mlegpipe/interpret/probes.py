"""Find the torch networks inside trained stages and feed them: inputs for activation maps, fixed-data losses.

Which attribute is looked into:

- GAN generators (``fatgan``, ``cfatgan``, ``dsgan``, ``lsgan``):
  ``stage.network``, an ``nn.Sequential`` fed ``[noise, standardized beam
  energy]``; its hidden layers are the generator's.
- ``flow``: ``stage.flows[0]`` (the first bootstrap replica), a zuko flow; its
  hidden layers are those of the transformations' hyper-networks, which see
  ``[features, standardized beam energy]``. Activations are recorded on the
  density pass over the flow's own samples.
- discriminators of GANs: ``stage.discriminator_net`` after training in this
  process, or the ``discriminator`` module of the training checkpoint
  ``checkpoints/<section>-last.pt`` of a run folder (see
  :func:`load_discriminator_net`); fed the discriminator features of events
  and the standardized beam energy.

Only public attributes are used: the networks (``network``, ``flows``,
``discriminator_net``), ``noise``, ``cond_scaler``, ``condition_tensor``,
``discriminator_features``, and what the networks see for given events,
:meth:`mlegpipe.stages.Generator.interpretation_inputs` (a
:class:`mlegpipe.stages.NetworkInputs`; see :func:`network_inputs`).

Example:
    >>> import torch
    >>> from mlegpipe.nets import mlp
    >>> class Toy:  # anything with a ``network`` and a ``noise`` method works like a GAN generator
    ...     network = mlp(4, 2, [8, 8])
    ...     conditions = []
    ...     def noise(self, n, generator=None):
    ...         return torch.randn(n, 4, generator=generator)
    >>> probe = generator_probe(Toy())
    >>> probe.attribute, [t.shape for t in probe.inputs(5, None, torch.Generator().manual_seed(0))]
    ('network', [torch.Size([5, 4])])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError
from mlegpipe.stages import NetworkInputs

__all__ = [
    "Probe",
    "discriminator_inputs",
    "discriminator_loss_fn",
    "discriminator_probe",
    "generator_loss_fn",
    "generator_probe",
    "load_discriminator_net",
    "network_inputs",
    "stage_landscape",
]

#: Losses :func:`stage_landscape` knows.
LANDSCAPE_LOSSES: tuple[str, ...] = ("auto", "nll", "mmd", "generator", "discriminator")


@dataclass
class Probe:
    """A network inside a stage, and how to feed it.

    Attributes:
        network: the module whose layers are hooked (and whose weights a landscape moves).
        attribute: where it was found (``"network"``, ``"flows[0]"``, ``"discriminator_net"``).
        inputs: ``inputs(n, beam_energy, torch_generator) -> list of tensors`` (generators only).
        forward: called with those tensors (one batch at a time).
        conditional: whether the network sees the beam energy.
    """

    network: nn.Module
    attribute: str
    forward: Callable[..., object]
    conditional: bool
    inputs: Callable[[int, float | None, torch.Generator], list[torch.Tensor]] | None = None


def _cond(scaler: Any, n: int, beam_energy: float | None, path: str) -> torch.Tensor:
    if beam_energy is None:
        raise ConfigError("the model is conditional on the beam energy; give one", path=path, value=None)
    eb = torch.full((n, 1), float(beam_energy), dtype=torch.float64)
    return scaler.transform(eb).float()


def generator_probe(stage: Any) -> Probe:
    """The network of a trained generator and its input maker.

    Raises:
        ConfigError: the generator is not trained/loaded or exposes no torch module.
    """
    name = getattr(stage, "plugin_name", "") or type(stage).__name__
    conditional = bool(getattr(stage, "conditions", []))
    network = getattr(stage, "network", None)
    if isinstance(network, nn.Module):
        cond_scaler = getattr(stage, "cond_scaler", None)

        def gan_inputs(n: int, beam_energy: float | None, gen: torch.Generator) -> list[torch.Tensor]:
            noise = stage.noise(n, gen)
            if not conditional:
                return [noise]
            return [noise, _cond(cond_scaler, n, beam_energy, f"{name}.beam_energy")]

        def gan_forward(*tensors: torch.Tensor) -> torch.Tensor:
            return network(torch.cat(tensors, dim=1) if len(tensors) > 1 else tensors[0])

        return Probe(network, "network", gan_forward, conditional, gan_inputs)
    flows = getattr(stage, "flows", None)
    if isinstance(flows, list) and flows and isinstance(flows[0], nn.Module):
        flow = flows[0]
        n_features = stage.noise_dim

        def flow_inputs(n: int, beam_energy: float | None, gen: torch.Generator) -> list[torch.Tensor]:
            noise = torch.randn(n, n_features, generator=gen)
            if not conditional:
                return [noise]
            return [noise, _cond(stage.cond_scaler, n, beam_energy, f"{name}.beam_energy")]

        def flow_forward(noise: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
            dist = flow(c)
            x = dist.transform.inv(noise)
            return dist.transform(x)  # the density pass: hooks keep this last call

        return Probe(flow, "flows[0]", flow_forward, conditional, flow_inputs)
    if network is None and (flows == [] or hasattr(stage, "network")):
        raise ConfigError(f"generator {name!r} has no network yet: train it or load its checkpoint first",
                          path=getattr(getattr(stage, "ctx", None), "name", "generator"))
    raise ConfigError(f"generator {name!r} exposes no torch network (looked for the attributes 'network' and "
                      "'flows'); hidden-layer maps and landscapes need one", path="generator", value=name)


def network_inputs(stage: Any, events: EventBatch) -> NetworkInputs:
    """``stage.interpretation_inputs(events)`` (:meth:`mlegpipe.stages.Generator.interpretation_inputs`).

    Raises:
        ConfigError: the generator does not expose its network inputs.

    Example:
        >>> class Histogram:  # no torch network, no interpretation_inputs
        ...     plugin_name = "histogram"
        >>> try:
        ...     network_inputs(Histogram(), None)
        ... except ConfigError as err:
        ...     "interpretation_inputs" in str(err)
        True
    """
    method = getattr(stage, "interpretation_inputs", None)
    try:
        if method is None:
            raise NotImplementedError
        return method(events)
    except NotImplementedError:
        name = getattr(stage, "plugin_name", "") or type(stage).__name__
        raise ConfigError(f"generator {name!r} does not expose what its network sees (it implements no "
                          "interpretation_inputs); losses and discriminator maps need it", path="generator",
                          value=name) from None


def discriminator_inputs(stage: Any, events: EventBatch) -> torch.Tensor:
    """What a GAN's discriminator sees for ``events``: ``[features, standardized beam energy]`` (float32).

    Raises:
        ConfigError: the generator is not a GAN (no ``discriminator_features``).
    """
    if not hasattr(stage, "discriminator_features"):
        raise ConfigError("only GAN generators have a discriminator to look into", path="generator",
                          value=getattr(stage, "plugin_name", type(stage).__name__))
    inputs = network_inputs(stage, events)
    with torch.no_grad():
        feats = stage.discriminator_features(inputs.features, torch.from_numpy(inputs.beam_energy),
                                             inputs.extra.get("phi")).float()
    return feats if inputs.condition is None else torch.cat([feats, inputs.condition], dim=1)


def discriminator_probe(net: nn.Module) -> Probe:
    """A probe of a discriminator network fed :func:`discriminator_inputs`."""
    return Probe(net, "discriminator_net", net, conditional=False)


def load_discriminator_net(stage: Any, run_dir: str | Path, section: str, discriminator: Any) -> nn.Module:
    """The trained discriminator of a GAN generator, from ``run_dir/checkpoints/<section>-last.pt``.

    The generator's own checkpoint holds no discriminator; the training
    checkpoint written at the last step (``checkpoint_every > 0``, the
    default) does. ``discriminator`` is the discriminator stage that built it
    (the run's ``[discriminator]`` section or the GAN's default adversary).

    Raises:
        CheckpointError: no training checkpoint, or it holds no discriminator.
    """
    from mlegpipe.checkpoint import load_checkpoint

    if getattr(stage, "discriminator_net", None) is not None:
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
    n_cond = len(getattr(stage, "conditions", []))
    first = next(v for k, v in state.items() if k.endswith("weight") or k.endswith("original"))
    net = discriminator.build(int(first.shape[1]) - n_cond, n_cond)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"the discriminator weights do not fit the configured discriminator: "
                              f"{str(err).splitlines()[0]}", path=str(path)) from None
    net.eval()
    return net


def generator_loss_fn(
    stage: Any,
    truth: EventBatch,
    n: int = 2048,
    seed: int = 0,
    discriminator: Any = None,
    discriminator_net: nn.Module | None = None,
) -> tuple[nn.Module, Callable[[], torch.Tensor], str]:
    """The generator network and a deterministic loss of it on fixed data: ``(module, loss_fn, label)``.

    - ``flow``: the negative log-likelihood of ``truth`` (its training loss).
    - GANs with ``discriminator`` and ``discriminator_net``: the adversarial
      generator loss against the frozen discriminator, on fixed noise.
    - GANs otherwise: MMD² between generated and ``truth`` discriminator
      features (kernel widths 0.2, 0.5, 1 of the standardized features).

    Noise, conditions and events are drawn once from ``seed``, so the loss is
    a function of the weights only.
    """
    if len(truth) < 2:
        raise DataError("need at least two truth events for a loss", path="truth", value=len(truth))
    rng = np.random.default_rng(seed)
    events = truth.take(np.sort(rng.choice(len(truth), size=min(n, len(truth)), replace=False)))
    probe = generator_probe(stage)
    if probe.attribute == "flows[0]":
        flow = probe.network
        inputs = network_inputs(stage, events)
        z, c = inputs.features, inputs.condition

        def nll() -> torch.Tensor:
            return -flow(c).log_prob(z).mean()

        return flow, nll, "negative log-likelihood"
    from mlegpipe.losses import mmd2

    eb = torch.from_numpy(network_inputs(stage, events).beam_energy)
    real = discriminator_inputs(stage, events)
    cond = stage.condition_tensor(eb.numpy())
    n_feat = real.shape[1] - (0 if cond is None else cond.shape[1])
    real_feats = real[:, :n_feat]
    noise = stage.noise(len(events), torch.Generator().manual_seed(seed))
    phi = None
    if getattr(stage, "uniform_phi", False):
        phi = torch.from_numpy(rng.uniform(-np.pi, np.pi, len(events)))

    def fake() -> torch.Tensor:
        return stage.discriminator_features(stage.generate_tensor(noise, cond), eb, phi)

    if discriminator is not None and discriminator_net is not None:
        def adversarial() -> torch.Tensor:
            return discriminator.generator_loss(discriminator_net, fake(), cond)

        return stage.network, adversarial, "generator loss"

    def mmd() -> torch.Tensor:
        return mmd2(fake(), real_feats, [0.2, 0.5, 1.0])

    return stage.network, mmd, "MMD² to truth"


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
    beam energies; the random stream of gradient-penalty interpolates is
    reset before each evaluation, so the loss depends on the weights only.
    Evaluate it with autograd on (``loss_landscape(..., grad=True)``).
    """
    if len(truth) < 2:
        raise DataError("need at least two truth events for a loss", path="truth", value=len(truth))
    rng = np.random.default_rng(seed)
    events = truth.take(np.sort(rng.choice(len(truth), size=min(n, len(truth)), replace=False)))
    real = discriminator_inputs(stage, events)
    eb = torch.from_numpy(network_inputs(stage, events).beam_energy)
    cond = stage.condition_tensor(eb.numpy())
    n_feat = real.shape[1] - (0 if cond is None else cond.shape[1])
    phi = torch.from_numpy(rng.uniform(-np.pi, np.pi, len(events))) if getattr(stage, "uniform_phi", False) \
        else None
    with torch.no_grad():
        noise = stage.noise(len(events), torch.Generator().manual_seed(seed))
        fake = stage.discriminator_features(stage.generate_tensor(noise, cond), eb, phi).float()
    make_gen = getattr(discriminator, "random_generator", None)
    penalty_gen = make_gen() if callable(make_gen) else None
    state = penalty_gen.get_state() if penalty_gen is not None else None

    def loss() -> torch.Tensor:
        if penalty_gen is not None:
            penalty_gen.set_state(state)
        return discriminator.discriminator_loss(net, real[:, :n_feat], fake, cond)

    return net, loss, "discriminator loss"


def stage_landscape(
    stage: Any,
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
        loss: ``nll`` (flows), ``mmd`` (GANs: MMD² to truth), ``generator``
            (GANs: adversarial loss against the frozen discriminator),
            ``discriminator`` (GANs: the discriminator's loss over its own
            weights, thesis Fig. 45), or ``auto``: ``nll`` for flows,
            ``generator`` for GANs with a discriminator network, else ``mmd``.
        discriminator, discriminator_net: the discriminator stage and its trained network.
        steps, span: the grid (see :func:`~mlegpipe.interpret.landscape.loss_landscape`).
        events: truth events (and noise vectors) in the loss.
        seed: directions, subsampling and noise.

    Returns:
        A :class:`~mlegpipe.interpret.landscape.Landscape` (``info`` has the loss name and seconds).
    """
    import time

    from mlegpipe.interpret.landscape import loss_landscape

    if loss not in LANDSCAPE_LOSSES:
        raise ConfigError("unknown landscape loss; known: " + ", ".join(LANDSCAPE_LOSSES), path="loss", value=loss)
    is_flow = generator_probe(stage).attribute == "flows[0]"
    have_disc = discriminator is not None and discriminator_net is not None
    if loss == "auto":
        loss = "nll" if is_flow else ("generator" if have_disc else "mmd")
    if (loss == "nll") != is_flow:
        raise ConfigError("the nll loss is the flows' (GANs: mmd, generator, discriminator)", path="loss",
                          value=loss)
    if loss in ("generator", "discriminator") and not have_disc:
        raise ConfigError(f"the {loss} loss needs the trained discriminator", path="loss", value=loss,
                          hint="use loss = 'mmd', or a run with training checkpoints")
    start = time.perf_counter()
    if loss == "discriminator":
        module, fn, label = discriminator_loss_fn(stage, discriminator, discriminator_net, truth, events, seed)
    else:
        module, fn, label = generator_loss_fn(stage, truth, events, seed,
                                              discriminator if loss == "generator" else None,
                                              discriminator_net if loss == "generator" else None)
    land = loss_landscape(module, fn, steps=steps, span=span, seed=seed, progress=progress, label=label,
                          grad=loss == "discriminator")
    land.info.update({"loss": loss, "seconds": time.perf_counter() - start, "events": min(events, len(truth)),
                      "parameters": sum(p.numel() for p in module.parameters())})
    return land
