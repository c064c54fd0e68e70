"""Stage contracts: what each kind of pipeline stage consumes and produces.

A pipeline chains stages declared in TOML: truth source → generator →
detector → discriminator → unfolding → report. Each kind has a base class
here; plugins subclass it, declare their parameters as a dataclass ``Params``
and register the class through the ``mlegpipe_register_stages`` hook.

Trainable stages (generators, learned detectors, unfolding) save and load
their state as a flat ``dict`` of tensors, NumPy arrays and JSON-able values
(see :mod:`mlegpipe.checkpoint`), so checkpoints load with
``torch.load(weights_only=True)``.

Example:
    >>> from dataclasses import dataclass, field
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> class Constant(TruthSource):
    ...     '''Every event at x = 0.5.'''
    ...     @dataclass
    ...     class Params:
    ...         events: int = 3
    ...     def iter_batches(self):
    ...         yield EventBatch.from_columns({"x": np.full(self.params.events, 0.5)})
    >>> src = Constant(Constant.Params(), StageContext("truth"))
    >>> len(src.read())
    3
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "STAGE_KINDS",
    "AdversarialModel",
    "Detector",
    "DifferentiableSurrogate",
    "Discriminator",
    "Generator",
    "NetworkInputs",
    "NetworkProbe",
    "Report",
    "RunRecord",
    "Stage",
    "StageContext",
    "TruthSource",
    "Unfolding",
    "UnfoldingInputs",
    "checked_conditions",
]


@dataclass
class _NoParams:
    """A stage without parameters."""


class Stage:
    """Base of every stage.

    Class attributes:
        kind: the stage kind (one of :data:`STAGE_KINDS`).
        plugin_name: the name users write in TOML (``plugin = "dis"``), declared
            once on the class; the registry registers the class under it.
        Params: a dataclass of the stage's parameters (see :mod:`mlegpipe.schema`).

    Arguments:
        params: a validated ``Params`` instance.
        ctx: the stage's run-time context (seeds, run folder, log).
    """

    kind: ClassVar[str] = ""
    plugin_name: ClassVar[str] = ""
    Params: ClassVar[type] = _NoParams

    def __init__(self, params: Any, ctx: StageContext) -> None:
        self.params = params
        self.ctx = ctx

    def info(self) -> dict[str, Any]:
        """Figures worth reporting (cross sections, efficiencies, timings); JSON-able."""
        return {}


class TruthSource(Stage):
    """Produces truth events: MC samples, a built-in sampler, a toy density.

    Subclasses implement :meth:`iter_batches`; the pipeline reads the whole
    configured sample with :meth:`read` and splits it into train, validation
    and test sets.
    """

    kind: ClassVar[str] = "truth"

    @property
    def beams(self) -> Beams | None:
        """The beam set-up of the events (None for toy densities)."""
        return None

    def iter_batches(self) -> Iterator[EventBatch]:
        """Yield the events in chunks of bounded size, reproducibly from ``ctx``."""
        raise NotImplementedError

    def read(self) -> EventBatch:
        """All configured events as one batch."""
        return EventBatch.concat(self.iter_batches())

    def exact_density(self) -> Any:
        """For toy densities: an object with exact ``pdf`` and quantile boundaries (else None)."""
        return None

    def cuts(self) -> dict[str, float]:
        """The generation cuts of the sample, by name (``{"q2_min": 1.0}``): physicality checks may enforce them."""
        return {}


@dataclass
class NetworkInputs:
    """What a generator's torch network sees for some events (model interpretation, loss landscapes).

    Returned by :meth:`Generator.interpretation_inputs`.

    Attributes:
        features: standardized model-space features, float32 ``(n, k)``: what a
            GAN's network or a VAE's decoder outputs, or what a flow models the density of.
        condition: the standardized conditioning input, float32 ``(n, c)``
            (None for unconditional models).
        context: the feature map's per-event context, float64 ``(n,)``: what
            decoding the features needs besides them (:meth:`~mlegpipe.features.FeatureMap.context_of`:
            the lepton beam energy of the DIS lepton maps, a variable multiplicity; zeros for maps without one).
            A GAN's discriminator features are computed from ``features`` and ``context``.
        extra: model-specific tensors, e.g. ``{"phi": ...}`` (float64 ``(n,)``)
            for GANs that draw the azimuth uniformly instead of generating it.

    Example:
        >>> import torch
        >>> inputs = NetworkInputs(torch.zeros(2, 3), None, np.array([10.0, 20.0]))
        >>> inputs.features.shape, inputs.context.tolist(), inputs.extra
        (torch.Size([2, 3]), [10.0, 20.0], {})
    """

    features: torch.Tensor
    condition: torch.Tensor | None
    context: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class NetworkProbe:
    """The torch network inside a trained generator and how to feed it: the contract of model interpretation.

    :meth:`Generator.network_probe` returns one; :mod:`mlegpipe.interpret`
    hooks :attr:`network`'s hidden layers while :attr:`forward` runs on
    :attr:`inputs` (hidden-layer maps), colours the maps by observables of
    the events :attr:`decode` gives for the same inputs, and moves the
    network's weights for loss landscapes (:attr:`loss`).

    Attributes:
        network: the module whose layers are hooked (and whose weights a landscape moves).
        label: where it sits in the generator (``"network"``, ``"flows[0]"``, ``"vae.decoder"``).
        inputs: ``inputs(n, condition_values, generator) -> list of tensors``: what :attr:`forward` is fed
            for ``n`` draws of the generator's randomness (noise, latent points), drawn from the torch
            ``generator``, at ``condition_values`` (``{name: value}``, a value of each of :attr:`conditions`;
            None for unconditional models).
        forward: ``forward(*tensors)``: one pass of the network on (a batch of) those tensors.
        decode: ``decode(tensors, seed) -> EventBatch``: the events the generator makes from those inputs,
            index-aligned with them (unphysical ones included, nothing redrawn); ``seed`` (a
            ``numpy.random.SeedSequence``) for anything drawn besides (a uniform azimuth).
        conditions: the names of the generator's conditions (empty: unconditional).
        loss: ``loss(events, seed) -> (loss_fn, label)``: the model's own training loss on fixed ``events``
            (noise drawn once from ``seed``) as a function of :attr:`network`'s weights only, and its name
            for plots; None when the model has none but an adversary's (GANs).
        loss_name: what users call that loss (``nll``, ``vae``).

    Example:
        >>> import torch
        >>> from mlegpipe.events import EventBatch
        >>> net = torch.nn.Linear(3, 1)
        >>> probe = NetworkProbe(
        ...     net, "network", lambda n, values, gen: [torch.randn(n, 3, generator=gen)], net,
        ...     lambda tensors, seed: EventBatch.from_columns({"a": net(tensors[0]).detach().double().numpy()[:, 0]}))
        >>> inputs = probe.inputs(4, None, torch.Generator().manual_seed(0))
        >>> probe.conditional, len(probe.decode(inputs, np.random.SeedSequence(0)))
        (False, 4)
    """

    network: torch.nn.Module
    label: str
    inputs: Callable[[int, Mapping[str, float] | None, torch.Generator], list[torch.Tensor]]
    forward: Callable[..., torch.Tensor]
    decode: Callable[[Sequence[torch.Tensor], np.random.SeedSequence], EventBatch]
    conditions: list[str] = field(default_factory=list)
    loss: Callable[[EventBatch, int], tuple[Callable[[], torch.Tensor], str]] | None = None
    loss_name: str = ""

    @property
    def conditional(self) -> bool:
        """Whether the network is fed condition values (a generator with conditions)."""
        return bool(self.conditions)


def checked_conditions(given: Mapping[str, Any] | None, accepted: Sequence[str], path: str) -> dict[str, Any]:
    """The sampling ``conditions`` a generator was given, as a dict, each checked to be one it takes.

    Arguments:
        given: condition values by name (None: none).
        accepted: the generator's :attr:`Generator.conditions`.
        path: where the conditions came from, for the error (``generator.conditions``, ``--condition``).

    Raises:
        ConfigError: a condition the generator does not take, naming it and the ones it takes.

    Example:
        >>> checked_conditions({"beam_energy": 60.0}, ["beam_energy"], "generator.conditions")
        {'beam_energy': 60.0}
        >>> try:
        ...     checked_conditions({"sqrt_s": 1.0}, [], "generator.conditions")
        ... except Exception as err:
        ...     print(str(err).splitlines()[0])
        generator.conditions = 'sqrt_s': no such condition: this generator takes no conditions
    """
    out = dict(given or {})
    unknown = [c for c in out if c not in accepted]
    if unknown:
        message = ("this generator takes no such condition; it takes: " + ", ".join(accepted)) if accepted \
            else "no such condition: this generator takes no conditions"
        raise ConfigError(message, path=path, value=unknown[0])
    return out


class Generator(Stage):
    """Learns an event generator from truth events and samples new ones.

    Attributes:
        features: names of the event fields (and collections) the model learns and produces.
        conditions: names of the event-level fields the model is conditioned on
            (``beam_energy``, ``sqrt_s``, ``n_jets``; empty for an unconditional
            model): :meth:`sample` needs a value for each, and a pipeline takes
            them from the truth the generator is judged against.
    """

    kind: ClassVar[str] = "generator"
    features: list[str]
    conditions: list[str] = []

    def fit(
        self,
        train: EventBatch,
        valid: EventBatch,
        discriminator: Discriminator | None = None,
    ) -> dict[str, Any]:
        """Train on ``train``, track a metric on ``valid``; return the training history."""
        raise NotImplementedError

    def sample(
        self,
        n: int,
        seed: np.random.SeedSequence,
        conditions: Mapping[str, np.ndarray | float] | None = None,
    ) -> EventBatch:
        """Generate ``n`` events, reproducibly from ``seed``.

        ``conditions`` gives a value (or one value per event) for each
        conditioning field, e.g. ``{"beam_energy": 60.0}``.
        """
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to sample again: weights, scalers, feature maps."""
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        raise NotImplementedError

    def interpretation_inputs(self, events: EventBatch) -> NetworkInputs:
        """What the trained network sees for ``events`` (see :class:`NetworkInputs`).

        Used by :mod:`mlegpipe.interpret` (loss landscapes, discriminator maps);
        generators with a torch network implement it, others keep this default.

        Raises:
            NotImplementedError: the generator has no network to look into.

        Example:
            >>> # inputs = trained_gan.interpretation_inputs(truth_events)
            >>> # inputs.features.shape, inputs.condition.shape   # (n, k), (n, 1) for cfatgan
        """
        raise NotImplementedError(f"generator {self.plugin_name or type(self).__name__!r} exposes no network inputs")

    def network_probe(self) -> NetworkProbe:
        """The trained torch network and how to feed and decode it (see :class:`NetworkProbe`).

        ``mlegpipe interpret`` and ``mlegpipe landscape`` work on any generator
        that implements it; generators without a torch network keep this default.

        Raises:
            NotImplementedError: the generator has no network to look into.

        Example:
            >>> # probe = trained_gan.network_probe()
            >>> # probe.label, probe.conditions      # ('network', ['beam_energy']) for cfatgan
        """
        raise NotImplementedError(f"generator {self.plugin_name or type(self).__name__!r} exposes no torch network "
                                  "(it implements no Generator.network_probe): hidden-layer maps and loss "
                                  "landscapes need one")

    def default_discriminator(self) -> Discriminator | None:
        """The adversary :meth:`fit` trains against when given none (None: not trained adversarially)."""
        return None


class Detector(Stage):
    """Folds vertex-level events into detector-level events.

    Parametric detectors only implement :meth:`fold`; learned surrogates set
    ``trainable = True`` and implement :meth:`fit` on (vertex, detector) pairs
    and the state methods. Differentiable surrogates also meet the
    :class:`DifferentiableSurrogate` protocol, used to train generators through a frozen surrogate.
    """

    kind: ClassVar[str] = "detector"
    trainable: ClassVar[bool] = False

    def fold(self, events: EventBatch, seed: np.random.SeedSequence) -> EventBatch:
        """Return the detector-level version of ``events`` (index-aligned)."""
        raise NotImplementedError

    def fit(self, vertex: EventBatch, detector: EventBatch) -> dict[str, Any]:
        """Learn the folding from index-aligned (vertex, detector) pairs."""
        raise NotImplementedError(f"detector {self.plugin_name!r} is not trainable")

    def state_dict(self) -> dict[str, Any]:
        """Learned state (trainable detectors)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""


@runtime_checkable
class DifferentiableSurrogate(Protocol):
    """What an unfolding may call on a trained, differentiable detector surrogate (``flowfold``, ``cfold``, ...).

    Vertex and detector features are named; networks work on them
    standardized by ``vertex_scaler`` and ``detector_scaler`` (:class:`~mlegpipe.features.Scaler` s).

    Attributes:
        vertex_features: the vertex-level features the surrogate folds (observable names).
        detector_features: the detector-level features it produces.
        vertex_scaler, detector_scaler: the standardization of each side.
        has_pass_model: whether events can fail to pass the detector (:meth:`pass_tensor` not always 1).
    """

    vertex_features: Sequence[str]
    detector_features: Sequence[str]
    vertex_scaler: Any
    detector_scaler: Any
    has_pass_model: bool

    def fold(self, events: EventBatch, seed: np.random.SeedSequence) -> EventBatch:
        """The detector-level version of ``events`` (index-aligned)."""

    def fold_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The noise :meth:`fold_tensor` would draw for ``n`` events from ``generator`` (None: a deterministic
        surrogate). Data-parallel training draws it for the global batch and hands each rank its rows."""

    def fold_tensor(self, vertex: torch.Tensor, noise_generator: torch.Generator | None = None,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable folding of standardized vertex features into standardized detector features, with
        the given ``noise`` (rows of :meth:`fold_noise`) or noise drawn from ``noise_generator``."""

    def pass_tensor(self, vertex: torch.Tensor, detector: torch.Tensor) -> torch.Tensor:
        """p(pass | vertex, folded detector features), shape ``(n,)`` (ones without a pass model)."""

    def acceptance_tensor(self, vertex: torch.Tensor) -> torch.Tensor:
        """p(pass | vertex), shape ``(n,)`` (ones without an acceptance model)."""


@runtime_checkable
class AdversarialModel(Protocol):
    """What model interpretation may call on a generator trained against a discriminator (the GANs).

    The discriminator sees ``discriminator_features(z, context, phi)`` of
    standardized generated features ``z`` (real events: the ``features`` of
    :meth:`Generator.interpretation_inputs`), followed by the standardized
    condition; generated features are ``generate_tensor(noise(n), condition)``.

    Attributes:
        conditions: the generator's conditions.
        discriminator_net: the discriminator trained in this process (None after loading a checkpoint).
        uniform_phi: the azimuth is drawn uniformly, not generated (``discriminator_features`` takes it as ``phi``).
    """

    conditions: list[str]
    discriminator_net: torch.nn.Module | None
    uniform_phi: bool

    def interpretation_inputs(self, events: EventBatch) -> NetworkInputs:
        """What the networks see for ``events``."""

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise ``(n, noise_dim)`` for the generator network."""

    def generate_tensor(self, noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Standardized generated features (differentiable in the network's weights)."""

    def discriminator_features(self, z: torch.Tensor, context: torch.Tensor | None = None,
                               phi: torch.Tensor | None = None, /) -> torch.Tensor:
        """What the discriminator sees of standardized features ``z`` (before the condition)."""

    def default_discriminator(self) -> Discriminator | None:
        """A fresh instance of the adversary the generator trains against by default."""


@dataclass
class UnfoldingInputs:
    """What the planner hands an unfolding: the data, its truth when known, the simulation, the surrogate.

    Attributes:
        data: the detector-level events to unfold; ``data_name`` their sample name.
        surrogate: the frozen detector surrogate; ``surrogate_name`` its TOML section (None and ``""`` for
            an unfolding that needs none, :attr:`Unfolding.needs_surrogate`, when the pipeline has none).
        truth: the vertex-level truth of the data (closure tests), else None; ``truth_name`` its name.
        simulation: index-aligned (vertex, detector) simulation pairs (the surrogate's training pairs), else
            None; ``simulation_names`` their names.
    """

    data: EventBatch
    data_name: str
    surrogate: Any
    surrogate_name: str
    truth: EventBatch | None = None
    truth_name: str | None = None
    simulation: tuple[EventBatch, EventBatch] | None = None
    simulation_names: list[str] = field(default_factory=list)


class Discriminator(Stage):
    """An adversary: builds the network and defines the adversarial losses."""

    kind: ClassVar[str] = "discriminator"

    def build(self, n_features: int, n_conditions: int = 0) -> torch.nn.Module:
        """A network mapping ``(batch, n_features + n_conditions)`` to scores ``(batch, 1)``."""
        raise NotImplementedError

    def discriminator_loss(
        self, net: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss minimized by the discriminator (including any gradient penalty)."""
        raise NotImplementedError

    def generator_loss(self, net: torch.nn.Module, fake: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Loss minimized by the generator."""
        raise NotImplementedError

    def make_optimizer(self, parameters: Any) -> torch.optim.Optimizer | None:
        """The optimizer of the network's ``parameters``, or None to let the trainer choose (the default)."""
        return None

    def random_generator(self) -> torch.Generator | None:
        """The torch generator of the adversary's own randomness (penalty interpolates, instance noise), seeded
        from its context; None when it has none (the default). Trainers checkpoint and restore its state."""
        return None

    #: Set inside :meth:`global_batch`: (events of the global batch, this rank's rows).
    batch_rows: tuple[int, slice] | None = None

    @contextlib.contextmanager
    def global_batch(self, rows: tuple[int, slice] | None) -> Iterator[None]:
        """Within: the losses get this rank's rows of a global batch (data-parallel training), and the adversary
        draws its per-event randomness (penalty interpolates, instance noise) for the global batch and keeps
        those rows, so N ranks draw what one process draws. ``None``: the batch is whole (one process)."""
        self.batch_rows = rows
        try:
            yield
        finally:
            self.batch_rows = None


class Unfolding(Stage):
    """Unfolds detector-level data to the vertex level.

    Class attributes:
        needs_surrogate: the unfolding trains through a learned detector surrogate (``gan-unfold``); False for
            those that learn the response from the simulation pairs alone (``ibu``, ``omnifold``).
    """

    kind: ClassVar[str] = "unfolding"
    needs_surrogate: ClassVar[bool] = True
    #: further samples the stage returns beside ``unfolded``/``refolded`` that the report compares with the
    #: truth (a baseline it runs, e.g. ``("omnifold",)``)
    baseline_samples: ClassVar[tuple[str, ...]] = ()

    def check_inputs(self, inputs: UnfoldingInputs, record: RunRecord) -> None:
        """Cheap checks of what :meth:`unfold` will get (observables, features, samples), raising
        :class:`~mlegpipe.exceptions.ConfigError` or :class:`~mlegpipe.exceptions.DataError`.

        The runner calls it as soon as the unfolding's samples exist, before the next stage runs, so that a
        bad setting fails before any training (a surrogate among the inputs may not be trained yet: only its
        feature names are known). The default checks nothing.
        """

    def unfold(self, inputs: UnfoldingInputs, record: RunRecord) -> dict[str, EventBatch]:
        """Return named samples: at least ``unfolded`` (vertex level) and ``refolded``."""
        raise NotImplementedError


@dataclass
class RunRecord:
    """Everything a finished (or running) pipeline produced, handed to reports.

    Attributes:
        config: the resolved pipeline configuration.
        samples: named event batches (``truth_train``, ``truth_test``, ``generated``, ...).
        stages: the stage instances by section name.
        metrics: named figures (JSON-able), filled by stages and reports.
        histories: training histories by section name.
        timings: seconds spent per section.
        run_dir: the run folder.
        seed: the pipeline seed.
        plan: what the report compares (:class:`~mlegpipe.plan.ReportPlan`).
        observables: the pipeline's :class:`~mlegpipe.observables.ObservableSet`.
        truths: per truth section, its beams, cuts and exact density (toys).
    """

    config: dict[str, Any]
    samples: dict[str, EventBatch]
    stages: dict[str, Stage]
    metrics: dict[str, Any]
    histories: dict[str, Any]
    timings: dict[str, float]
    run_dir: Any = None
    seed: int = 0
    plan: Any = None
    observables: Any = None
    truths: dict[str, Any] = field(default_factory=dict)


class Report(Stage):
    """Turns a run's samples and metrics into figures, tables and a page."""

    kind: ClassVar[str] = "report"

    def write(self, record: RunRecord) -> list[str]:
        """Write the report into ``record.run_dir``; return the files written."""
        raise NotImplementedError


STAGE_KINDS: dict[str, type[Stage]] = {
    "truth": TruthSource,
    "generator": Generator,
    "detector": Detector,
    "discriminator": Discriminator,
    "unfolding": Unfolding,
    "report": Report,
}
