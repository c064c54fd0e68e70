"""How a GAN sees events: everything between an :class:`EventBatch` and the networks' tensors.

:class:`GANRepresentation` holds the feature map and the scalers fitted to the
training events, and goes both ways differentiably::

    events ─► feature map ─► [energy scaling] ─► asinh ─► standardize ─► z (network output)
    z ─► standardize⁻¹ ─► asinh⁻¹ ─► [energy scaling⁻¹] ─► feature map⁻¹ ─► lepton (E, p) ─► augmented features

What a model needs beyond the map and the standardization is composed in by
argument: the energy scaling
(:class:`~mlegpipe_builtins.generators._gan_energy_scaling.EnergyScaling`,
``energy_scaling``: generate T - ln E_b and show the critic the augmented
features in units of E_b), ``random_azimuth``
(:meth:`GANRepresentation.rotate_azimuth` of every generated (p_x, p_y)),
``uniform_phi`` (the map's last feature, the azimuth, is drawn, not
generated), the augmented features the critic sees beside ``z``
(:class:`~mlegpipe_builtins.generators._gan_critic_features.CriticFeatures`)
and the condition scaler (``log_condition``: the standardized ln E_b).

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe.features import make_feature_map
    >>> train = EventBatch.from_columns({"x": np.random.default_rng(0).normal(2.0, 0.5, 1000)})
    >>> rep = GANRepresentation().fit(train, make_feature_map({"name": "columns", "features": ["x"]}))
    >>> z = rep.encode(train)
    >>> round(float(z.mean()), 6) + 0.0, rep.generated_names
    (0.0, ['x'])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError, PhysicsError
from mlegpipe.features import AsinhScale, FeatureMap, LogStandardize, Standardize, decode_events, make_feature_map
from mlegpipe.stages import NetworkInputs
from mlegpipe_builtins.dis import BEAM_ENERGY
from mlegpipe_builtins.dis.kinematics import physical_mask
from mlegpipe_builtins.dis.labels import beams_at
from mlegpipe_builtins.generators._gan_critic_features import CriticFeatures
from mlegpipe_builtins.generators._gan_energy_scaling import Energy, EnergyScaling
from mlegpipe_builtins.generators._listed_features import fixed_multiplicity

__all__ = ["GANRepresentation"]


class GANRepresentation:
    """Events ⇄ the standardized generated features ``z``, the critic's features and the condition.

    Arguments:
        conditional: the networks are conditioned on the per-event ``beam_energy``.
        uniform_phi: the map's last feature (the azimuth) is drawn uniformly instead of generated.
        asinh: asinh((x - median)/MAD) on the map's heavy-tailed features and the augmented ones
            before standardizing (``preprocess = "asinh"``).
        energy: :class:`EnergyScaling`, or None for features in GeV.
        random_azimuth: every generated (p_x, p_y) is rotated by a uniform azimuth (in training and sampling).
        log_condition: the condition is the standardized ln E_b instead of E_b.
        augment: augmented features the critic sees beside ``z`` (asinh-scaled with ``asinh``;
            :class:`~mlegpipe_builtins.generators._gan_critic_features.CriticFeatures`).
        linear_augment: augmented features the critic sees once more, standardized without asinh.
        registry: where feature maps and augmentations are looked up.
        where: the TOML path of the generator, for errors.
    """

    def __init__(
        self,
        *,
        conditional: bool = False,
        uniform_phi: bool = False,
        asinh: bool = True,
        energy: EnergyScaling | None = None,
        random_azimuth: bool = False,
        log_condition: bool = False,
        augment: Sequence[str] = (),
        linear_augment: Sequence[str] = (),
        registry: Any = None,
        where: str = "generator",
    ) -> None:
        self.conditional = conditional
        self.uniform_phi = uniform_phi
        self.asinh = asinh
        self.energy = energy
        self.random_azimuth = random_azimuth
        self.critic = CriticFeatures(augment, linear_augment, asinh=asinh, beam_units=energy is not None,
                                     registry=registry, where=where)
        self.registry = registry
        self.where = where
        self.feature_map: FeatureMap | None = None
        self.beams: Beams | None = None
        self.pre = AsinhScale([])
        self.scaler = Standardize()
        self.cond_scaler = LogStandardize() if log_condition else Standardize()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, conditional: bool, uniform_phi: bool, registry: Any,
                      where: str) -> GANRepresentation:
        """The representation :class:`~mlegpipe_builtins.generators._gan_params.GANParams` settings describe."""
        return cls(conditional=conditional, uniform_phi=uniform_phi, asinh=settings["preprocess"] == "asinh",
                   energy=EnergyScaling(where) if settings["energy_scaling"] else None,
                   random_azimuth=bool(settings["random_azimuth"]), log_condition=bool(settings["log_condition"]),
                   augment=settings["augment"], linear_augment=settings["linear_augment"], registry=registry,
                   where=where)

    # -- layout ---------------------------------------------------------------------------------------
    def _map(self) -> FeatureMap:
        if self.feature_map is None:
            raise ConfigError("the generator is used before it was trained or loaded", path=self.where)
        return self.feature_map

    @property
    def n_generated(self) -> int:
        """Number of features the network outputs."""
        return len(self._map().names) - (1 if self.uniform_phi else 0)

    @property
    def generated_names(self) -> list[str]:
        """Names of the generated features (the network's outputs, before standardization)."""
        return list(self._map().names[: self.n_generated])

    @property
    def has_physical_limits(self) -> bool:
        """True when the feature map's decoded events have domain limits to check (the DIS lepton maps)."""
        return self.feature_map is not None and bool(self.feature_map.range_fields)

    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, events: EventBatch, feature_map: FeatureMap) -> GANRepresentation:
        """Fit ``feature_map`` and every scaler to the training ``events``; returns self."""
        if len(events) < 2:
            raise DataError("a GAN needs at least two training events", path=self.where, value=len(events))
        self.beams = events.beams
        self.feature_map = fixed_multiplicity(feature_map.fit(events), self.where)
        full = self.feature_map.encode(events)
        names = self.generated_names
        self.pre = AsinhScale([self.asinh and n in self.feature_map.heavy_tailed for n in names])
        if self.energy is not None:
            self.energy.check(names)
        eb = torch.from_numpy(self.context(events))
        scaled = self._to_model(torch.from_numpy(full[:, : len(names)]), eb)
        self.scaler.fit(self.pre.fit(scaled).transform(scaled), events.weights)
        if self.critic.names:
            lepton = self.feature_map.inverse(torch.from_numpy(full), eb)
            self.critic.fit(lepton, eb, self.feature_map.fields, events.weights)
        if self.conditional:
            self.cond_scaler.fit(self.context(events)[:, None], events.weights)
        if self.random_azimuth and list(self.feature_map.names[:2]) != ["lepton_px", "lepton_py"]:
            raise ConfigError("random_azimuth rotates (lepton_px, lepton_py), the first two generated features; "
                              f"this model generates {names}", path=f"{self.where}.random_azimuth", value=True)
        return self

    # -- events -> tensors ------------------------------------------------------------------------------
    def context(self, events: EventBatch) -> np.ndarray:
        """The feature map's per-event context (the lepton beam energy of DIS maps; zeros for maps without one)."""
        if self.feature_map is not None and self.feature_map.needs_context:
            return self.feature_map.context_of(events)
        return np.zeros(len(events))

    def _to_model(self, raw: torch.Tensor, eb: Energy) -> torch.Tensor:
        return raw if self.energy is None else self.energy.to_model(raw, self.generated_names, eb)

    def _from_model(self, scaled: torch.Tensor, eb: Energy) -> torch.Tensor:
        return scaled if self.energy is None else self.energy.from_model(scaled, self.generated_names, eb)

    def encode(self, events: EventBatch) -> torch.Tensor:
        """Standardized generated features of ``events`` (float32 ``(n, n_generated)``)."""
        full = torch.from_numpy(self._map().encode(events)[:, : self.n_generated])
        scaled = self._to_model(full, torch.from_numpy(self.context(events)))
        return self.scaler.transform(self.pre.transform(scaled)).float()

    def to_physical(self, z: torch.Tensor, beam_energy: Energy = None) -> torch.Tensor:
        """Undo the standardization (and asinh preprocessing): generated features in physical units.

        Differentiable; compute in float64 for exact inverses. ``beam_energy``
        (per event, GeV) is needed with energy scaling.
        """
        return self._from_model(self._unscaled(z), beam_energy)

    def _unscaled(self, z: torch.Tensor) -> torch.Tensor:
        """Standardization⁻¹, then asinh⁻¹ where some feature is compressed (AsinhScale's inverse takes sinh of
        every column: of a plain momentum of some 700 GeV that overflows and makes the gradient NaN)."""
        x = self.scaler.inverse(z)
        return self.pre.inverse(x) if self.pre.mask is not None and bool(self.pre.mask.any()) else x

    def rotate_azimuth(self, z: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """Standardized generated features ``z`` with (p_x, p_y) rotated by the angles ``phi`` (differentiable).

        Rotations about the beam axis keep p_T, p_z and E, so physical events
        stay physical; with ``random_azimuth`` every generated event gets a uniform one.

        Example:
            >>> # rep.rotate_azimuth(z, torch.full((len(z),), np.pi))  # (p_x, p_y) -> (-p_x, -p_y)
        """
        raw = self._unscaled(z.to(torch.float64))  # a rotation commutes with E_b scaling
        phi = phi.to(torch.float64)
        c, s = torch.cos(phi), torch.sin(phi)
        px, py = raw[:, 0], raw[:, 1]
        raw = torch.cat([torch.stack([c * px - s * py, s * px + c * py], dim=1), raw[:, 2:]], dim=1)
        return self.scaler.transform(self.pre.transform(raw)).to(z.dtype)

    def condition_tensor(self, beam_energy: np.ndarray | torch.Tensor) -> torch.Tensor | None:
        """Standardized conditioning input ``(n, 1)`` for per-event beam energies (None if unconditional)."""
        if not self.conditional:
            return None
        eb = torch.as_tensor(np.asarray(beam_energy, dtype=np.float64))[:, None]
        return self.cond_scaler.transform(eb).float()

    def beam_energy_of(self, condition: torch.Tensor) -> np.ndarray:
        """The per-event beam energies (GeV) a standardized condition ``(n, 1)`` stands for."""
        return self.cond_scaler.inverse(condition.double())[:, 0].numpy()

    # -- what the critic sees ---------------------------------------------------------------------------
    def discriminator_features(self, z: torch.Tensor, beam_energy: torch.Tensor | None = None,
                               phi: torch.Tensor | None = None) -> torch.Tensor:
        """What the discriminator sees: ``[z, soft_clip(standardized augmented features)]``.

        Arguments:
            z: standardized generated features ``(n, n_generated)``.
            beam_energy: per-event lepton beam energy (GeV), for maps that need it.
            phi: azimuths for models that draw φ uniformly (only used by augmentations).
        """
        if not self.critic.names:
            return z
        if beam_energy is None:
            beam_energy = torch.full((len(z),), self.default_beam_energy())
        eb = beam_energy.to(torch.float64)
        raw = self.to_physical(z.to(torch.float64), eb)
        if self.uniform_phi and phi is None:
            phi = torch.zeros(len(z), dtype=torch.float64)
        full = raw if phi is None else torch.cat([raw, phi.to(torch.float64)[:, None]], dim=1)
        lepton = self._map().inverse(full, eb)
        return torch.cat([z, self.critic(lepton, eb, self._map().fields).to(z.dtype)], dim=1)

    def randomize_azimuth(self, z: torch.Tensor, angles: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Generated ``z`` rotated by the azimuths ``angles()`` with ``random_azimuth`` (else ``z`` itself, and
        ``angles`` is not called).

        Arguments:
            angles: draws one angle in [-π, π) per event (float64) from the caller's stream.
        """
        return self.rotate_azimuth(z, angles()) if self.random_azimuth else z

    def generated_features(self, z: torch.Tensor, beam_energy: torch.Tensor,
                           angles: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The critic's features of generated ``z``; models with ``uniform_phi`` and augmented features see them at
        the azimuths ``angles()`` (:meth:`discriminator_features`)."""
        phi = angles() if self.uniform_phi and self.critic.augment else None
        return self.discriminator_features(z, beam_energy, phi)

    def real_discriminator_features(self, events: EventBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(discriminator features, beam energy) of real events (φ: their own)."""
        z = self.encode(events)
        eb = torch.from_numpy(self.context(events))
        phi = torch.from_numpy(self._map().encode(events)[:, -1]) if self.uniform_phi else None
        with torch.no_grad():
            return self.discriminator_features(z, eb, phi), eb

    def network_inputs(self, events: EventBatch) -> NetworkInputs:
        """Standardized generated features, condition, map context and φ (``extra["phi"]``) of ``events``."""
        eb = self.context(events)
        extra = {"phi": torch.from_numpy(self._map().encode(events)[:, -1])} if self.uniform_phi else {}
        return NetworkInputs(self.encode(events), self.condition_tensor(eb), eb, extra)

    # -- tensors -> events --------------------------------------------------------------------------------
    def default_beam_energy(self) -> float:
        """The lepton beam energy of lepton-hadron training beams (the DIS maps' context); 0 for any other
        set-up (pp, no beams), whose maps need none.

        Example:
            >>> GANRepresentation().default_beam_energy()
            0.0
        """
        if self.beams is None or not self.beams.is_lepton_hadron:
            return 0.0
        return float(self.beams.lepton_energy)

    def event_tensors(self, z: torch.Tensor, beam_energy: torch.Tensor | None = None,
                      phi: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The decoded event fields ``{field: (n,) float64 tensor}`` of standardized generated ``z`` (differentiable).

        :meth:`to_physical`, then the feature map's inverse: what
        :meth:`mlegpipe.observables.Observable.tensor` evaluates declared
        observables on (the How-to-GAN MMD² on resonance masses).

        Arguments:
            z: standardized generated features ``(n, n_generated)``.
            beam_energy: per-event context of the map (the lepton beam energy of DIS maps; None: the default).
            phi: azimuths for models that draw φ uniformly (None: zeros).

        Example:
            >>> import numpy as np
            >>> from mlegpipe.events import EventBatch
            >>> from mlegpipe.features import make_feature_map
            >>> train = EventBatch.from_columns({"x": np.random.default_rng(0).normal(2.0, 0.5, 100)})
            >>> rep = GANRepresentation().fit(train, make_feature_map({"name": "columns", "features": ["x"]}))
            >>> bool(torch.allclose(rep.event_tensors(rep.encode(train))["x"], torch.from_numpy(train.column("x"))))
            True
        """
        fmap = self._map()
        if beam_energy is None:
            beam_energy = torch.full((len(z),), self.default_beam_energy(), dtype=torch.float64)
        eb = torch.as_tensor(beam_energy).to(torch.float64)
        raw = self.to_physical(z.to(torch.float64), eb)
        if self.uniform_phi:
            phi = torch.zeros(len(z), dtype=torch.float64) if phi is None else phi.to(torch.float64)
            raw = torch.cat([raw, phi[:, None]], dim=1)
        full = fmap.inverse(raw, eb)
        return {f: full[:, i] for i, f in enumerate(fmap.fields)}

    def beam_energies(self, n: int, beam_energy: np.ndarray | float | None) -> np.ndarray:
        """Per-event beam energies ``(n,)``: the given value(s), else (unconditional) the beams' lepton energy.

        Raises:
            ConfigError: a conditional model is given no energy.
            PhysicsError: an energy is not a positive number of GeV.
        """
        if beam_energy is None:
            if self.conditional:
                raise ConfigError("this generator is conditional on beam_energy; give a value",
                                  path=f"{self.where}.conditions.beam_energy", value=None)
            beam_energy = self.default_beam_energy()
        eb = np.broadcast_to(np.asarray(beam_energy, dtype=np.float64), (n,)).copy()
        if self.conditional and (not np.isfinite(eb).all() or (eb <= 0).any()):
            raise PhysicsError("beam energies must be positive numbers of GeV",
                               path=f"{self.where}.conditions.beam_energy", value=float(eb.min()))
        return eb

    def decode_columns(self, z: torch.Tensor, beam_energy: np.ndarray | float | None,
                       seed: np.random.SeedSequence) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Event columns of standardized generated features ``z`` and the mask of physical events.

        Uses :func:`mlegpipe.features.decode_events`: lepton models get the DIS
        invariants x, Q², y, W², ν (each event at its own beam energy) and the
        kinematic limits are checked. Models with ``uniform_phi`` draw the
        azimuth uniformly from ``seed``.
        """
        eb = self.beam_energies(len(z), beam_energy)
        raw = self.to_physical(z.detach().to(torch.float64), torch.from_numpy(eb)).numpy()
        if self.uniform_phi:
            rng = np.random.default_rng(seed)
            raw = np.concatenate([raw, rng.uniform(-np.pi, np.pi, len(raw))[:, None]], axis=1)
        with np.errstate(all="ignore"):
            return decode_events(self._map(), raw, eb, self.beams)

    def events(self, columns: dict[str, np.ndarray], meta: Mapping[str, Any]) -> EventBatch:
        """An :class:`EventBatch` of decoded ``columns`` (beams at the sampled energy when it is one)."""
        beams = self.beams
        eb = columns.get(BEAM_ENERGY)
        if self.conditional and beams is not None and eb is not None and len(eb) and np.all(eb == eb[0]):
            beams = beams_at(beams, float(eb[0]))
        return EventBatch.from_columns(self._map().assemble(columns), beams, dict(meta))

    def physical_mask(self, events: EventBatch) -> np.ndarray:
        """True for events inside the kinematic limits (finite; lepton models: 0 < x, y ≤ 1, W² ≥ M², ...)."""
        values = events.matrix(list(self._map().fields))
        ok = np.isfinite(values).all(axis=1)
        if self.has_physical_limits and self.beams is not None:
            eb = events.column(BEAM_ENERGY) if events.has(BEAM_ENERGY) else np.full(len(events),
                                                                                 self.beams.lepton_energy)
            for energy in np.unique(eb):
                sel = eb == energy
                beams = beams_at(self.beams, float(energy))
                ok[sel] &= physical_mask(events.column("x")[sel], events.column("Q2")[sel],
                                         events.column("y")[sel], events.column("W2")[sel], beams)
        return ok

    # -- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Scalers, feature map, beams and the options a checkpoint must agree with."""
        state: dict[str, Any] = {
            "scaler": self.scaler.state_dict(),
            "pre": self.pre.state_dict(),
            "feature_map": self._map().config(),
            "beams": self.beams.to_dict() if self.beams is not None else None,
            "energy_scaling": self.energy is not None,
            "log_condition": isinstance(self.cond_scaler, LogStandardize),
            **self.critic.state_dict(),
        }
        if self.cond_scaler.fitted:
            state["cond_scaler"] = self.cond_scaler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> GANRepresentation:
        """Restore from :meth:`state_dict`; returns self.

        Raises:
            CheckpointError: the state was trained with other ``energy_scaling`` or ``log_condition``.
        """
        self.beams = Beams.from_dict(dict(state["beams"])) if state.get("beams") else None
        if state.get("hadron_follows") and self.beams is not None and not any(self.beams.fields):
            # states written before beams declared their per-event energy fields (symmetric scans)
            self.beams = self.beams.overridden({"lepton_energy": BEAM_ENERGY, "hadron_energy": BEAM_ENERGY})
        for option, here in (("energy_scaling", self.energy is not None),
                             ("log_condition", isinstance(self.cond_scaler, LogStandardize))):
            if (option == "energy_scaling" or self.conditional) and bool(state.get(option, False)) != here:
                raise CheckpointError(f"the state was trained with {option} = {state.get(option, False)}, these "
                                      f"parameters say {here}", path=f"{self.where}.{option}",
                                      hint=f"set {option} to the value it was trained with")
        self.feature_map = make_feature_map(dict(state["feature_map"]), self.beams, registry=self.registry)
        self.scaler.load_state_dict(state["scaler"])
        self.pre.load_state_dict(state["pre"])
        self.critic.load_state_dict(state)
        if "cond_scaler" in state:
            self.cond_scaler.load_state_dict(state["cond_scaler"])
        return self
