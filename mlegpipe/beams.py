"""Beams of any collider or fixed-target set-up: two particles head-on along the z axis.

A :class:`Beams` is two :class:`Beam` s, beam ``a`` travelling along +z and
beam ``b`` along −z, each a PDG id and an energy in GeV (for nuclei: per
nucleon, as colliders quote them). A beam whose energy equals its mass is a
target at rest. pp, pp̄, ep, eA, e⁺e⁻ and fixed-target set-ups are all the
same object; :attr:`Beams.kind` names which it is.

Per-event beam energies (an energy scan in one file) are declared, not
guessed: ``fields`` names, for each beam, the event field that holds its
energy (:meth:`Beams.energies`). Named presets are registered by plugins
through the ``mlegpipe_register_beam_presets`` hook (:func:`beam_presets`).

Lepton-hadron set-ups also answer by role (:attr:`Beams.lepton`,
:attr:`Beams.lepton_energy`, :attr:`Beams.lepton_direction`, ...), which is
what lepton-hadron domains such as DIS read; other set-ups raise a clear error.

Example:
    >>> pp = Beams.symmetric(2212, 6500.0, name="lhc13")
    >>> round(pp.sqrt_s), pp.kind
    (13000, 'pp')
    >>> ep = Beams.lepton_hadron(27.6, 920.0, lepton_pdg=-11, lepton_direction=-1)
    >>> ep.kind, ep.lepton_energy, ep.lepton_direction
    ('ep', 27.6, -1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mlegpipe.exceptions import PhysicsError

__all__ = ["ELECTRON_MASS", "PROTON_MASS", "Beam", "Beams", "beam_presets", "particle_mass"]

PROTON_MASS = 0.938272  # GeV
ELECTRON_MASS = 0.000510999  # GeV
NUCLEON_MASS = 0.931494  # GeV: atomic mass unit, the per-nucleon mass of a nucleus beam

#: Beam particles mlegpipe knows by PDG id: (name, mass in GeV).
_PARTICLES: dict[int, tuple[str, float]] = {
    11: ("e-", ELECTRON_MASS), -11: ("e+", ELECTRON_MASS),
    13: ("mu-", 0.1056584), -13: ("mu+", 0.1056584),
    22: ("gamma", 0.0),
    2212: ("p", PROTON_MASS), -2212: ("pbar", PROTON_MASS),
    2112: ("n", 0.939565),
}
_LEPTONS = frozenset({11, -11, 13, -13, 15, -15})


def _is_nucleus(pdg: int) -> bool:
    """PDG nuclear codes 10LZZZAAAI."""
    return abs(pdg) >= 1_000_000_000


def particle_mass(pdg: int) -> float:
    """Mass of a beam particle in GeV (per nucleon for nuclei).

    Example:
        >>> particle_mass(2212), particle_mass(1000791970)  # proton, gold-197 (per nucleon)
        (0.938272, 0.931494)
    """
    if pdg in _PARTICLES:
        return _PARTICLES[pdg][1]
    if _is_nucleus(pdg):
        return NUCLEON_MASS
    raise PhysicsError("unknown beam particle: give its mass", path="beams.pdg", value=pdg)


@dataclass(frozen=True)
class Beam:
    """One beam: a particle species and its energy.

    Arguments:
        pdg: PDG id (2212 proton, 11 electron, -11 positron, 1000791970 gold-197, ...).
        energy: energy in GeV (per nucleon for nuclei); equal to the mass for a target at rest.
        mass: mass in GeV (default: from the PDG id).

    Example:
        >>> Beam(2212, 6500.0).name, Beam(11, 10.0).is_lepton
        ('p', True)
    """

    pdg: int
    energy: float
    mass: float | None = None

    def __post_init__(self) -> None:
        if self.mass is None:
            object.__setattr__(self, "mass", particle_mass(self.pdg))
        if not (math.isfinite(self.mass) and self.mass >= 0):
            raise PhysicsError("a beam mass must be a non-negative number of GeV", path="beams.mass", value=self.mass)
        if not math.isfinite(self.energy) or self.energy <= 0 or self.energy < self.mass * (1 - 1e-9):
            raise PhysicsError(f"beam energy must be a number of GeV of at least the {self.name} mass "
                               f"{self.mass:g} GeV", path="beams.energy", value=self.energy)

    @property
    def name(self) -> str:
        """Short name of the species (``p``, ``e+``, ``A197`` for a nucleus of mass number 197)."""
        if self.pdg in _PARTICLES:
            return _PARTICLES[self.pdg][0]
        if _is_nucleus(self.pdg):
            return f"A{(abs(self.pdg) // 10) % 1000}"
        return f"pdg{self.pdg}"

    @property
    def is_lepton(self) -> bool:
        """True for charged-lepton beams."""
        return self.pdg in _LEPTONS

    @property
    def is_nucleus(self) -> bool:
        """True for nuclear beams (PDG 10LZZZAAAI)."""
        return _is_nucleus(self.pdg)

    @property
    def momentum(self) -> float:
        """Magnitude of the beam momentum in GeV (0 at rest)."""
        return math.sqrt(max(self.energy**2 - self.mass**2, 0.0))

    def with_energy(self, energy: float) -> Beam:
        """The same species at another energy."""
        return replace(self, energy=float(energy))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able)."""
        return {"pdg": self.pdg, "energy": self.energy, "mass": self.mass}


@dataclass(frozen=True)
class Beams:
    """Two beams head-on along z: ``a`` along +z, ``b`` along −z.

    Arguments:
        a: the beam travelling along +z.
        b: the beam travelling along −z (at rest for a fixed target).
        name: the preset name, if any (shown in reports and file metadata).
        fields: for each beam, the event field holding its per-event energy
            (None: every event at the nominal energy).

    Example:
        >>> b = Beams(Beam(2212, 920.0), Beam(-11, 27.6), name="hera")
        >>> round(b.sqrt_s, 1), b.kind, b.lepton_direction
        (318.7, 'ep', -1)
    """

    a: Beam
    b: Beam
    name: str = field(default="", compare=False)
    fields: tuple[str | None, str | None] = (None, None)

    def __post_init__(self) -> None:
        if not isinstance(self.a, Beam) or not isinstance(self.b, Beam):
            raise PhysicsError("beams need two Beam objects", path="beams", value=(self.a, self.b))
        if self.a.momentum == 0 and self.b.momentum == 0:
            raise PhysicsError("both beams are at rest", path="beams")
        object.__setattr__(self, "fields", tuple(self.fields))

    # -- construction ---------------------------------------------------------
    @classmethod
    def symmetric(cls, pdg: int, energy: float, *, pdg_b: int | None = None, name: str = "") -> Beams:
        """Two beams of equal energy (pp at the LHC: ``symmetric(2212, 6500)``; pp̄: ``pdg_b=-2212``)."""
        return cls(Beam(pdg, energy), Beam(pdg if pdg_b is None else pdg_b, energy), name=name)

    @classmethod
    def lepton_hadron(
        cls,
        lepton_energy: float,
        hadron_energy: float,
        *,
        lepton_pdg: int = 11,
        lepton_direction: int = -1,
        hadron_pdg: int = 2212,
        hadron_mass: float | None = None,
        name: str = "",
        fields: Mapping[str, str | None] | None = None,
    ) -> Beams:
        """A lepton-hadron set-up described by role (ep, eA, fixed target).

        Arguments:
            lepton_direction: +1 if the lepton travels along +z, -1 along -z
                (HERA convention: proton along +z, lepton along -z).
            fields: per-event energy fields by role, ``{"lepton": ..., "hadron": ...}``.

        Example:
            >>> Beams.lepton_hadron(10.6, PROTON_MASS, lepton_direction=1).is_fixed_target
            True
        """
        if lepton_direction not in (1, -1):
            raise PhysicsError("lepton_direction must be +1 or -1", path="beams.lepton_direction",
                               value=lepton_direction)
        if abs(lepton_pdg) not in (11, 13, 15):
            raise PhysicsError("not a charged-lepton PDG id", path="beams.lepton_pdg", value=lepton_pdg)
        lepton = _role_beam("lepton", lepton_pdg, lepton_energy, None)
        hadron = _role_beam("hadron", hadron_pdg, hadron_energy, hadron_mass)
        fields = dict(fields or {})
        by_role = (fields.get("lepton"), fields.get("hadron"))
        if lepton_direction == 1:
            return cls(lepton, hadron, name, by_role)
        return cls(hadron, lepton, name, (by_role[1], by_role[0]))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Beams:
        """A named set-up registered by a plugin (see :func:`beam_presets`), optionally overridden.

        ``overrides`` are those of :meth:`from_table` (``lepton_energy = 30``, ``energy = 6800``, ...).

        Example:
            >>> Beams.preset("lhc13").sqrt_s
            13000.0
        """
        presets = beam_presets()
        if name not in presets:
            from mlegpipe.schema import suggest

            raise PhysicsError("unknown beam preset; known: " + ", ".join(sorted(presets)), path="beams.preset",
                               value=name, hint=suggest(name, presets))
        beams = presets[name]
        return beams.overridden(overrides) if overrides else beams

    @classmethod
    def from_table(cls, table: Mapping[str, Any], path: str = "beams") -> Beams:
        """Beams from a TOML table or a preset name.

        Accepted keys: ``preset``; by role (lepton-hadron): ``lepton_energy``,
        ``hadron_energy``, ``lepton_pdg``, ``hadron_pdg``, ``lepton_direction``,
        ``hadron_mass``; by position: ``a`` and ``b`` tables (``pdg``,
        ``energy``, ``mass``) or ``energy`` for both beams; and ``name``. An
        energy given as a string names the event field (ROOT branch) holding
        the per-event energy of that beam.

        Example:
            >>> Beams.from_table({"preset": "sym50", "lepton_energy": "beam_energy",
            ...                   "hadron_energy": "beam_energy"}).fields
            ('beam_energy', 'beam_energy')
        """
        table = {"preset": table} if isinstance(table, str) else dict(table)
        preset = table.pop("preset", None)
        try:
            if preset is not None:
                return cls.preset(str(preset), **table)
            return _build(table)
        except PhysicsError as err:
            if not err.path.startswith(path):
                err.path = f"{path}.{err.path.removeprefix('beams.')}" if err.path else path
                err.args = (str(err),)
            raise
        except TypeError as err:
            raise PhysicsError(f"not a beam set-up ({err}); give a preset name, lepton_energy and hadron_energy, "
                               "or tables a and b with pdg and energy", path=path, value=table) from None

    def overridden(self, overrides: Mapping[str, Any]) -> Beams:
        """These beams with some keys of :meth:`from_table` replaced (an energy given as a string declares a
        per-event energy field and keeps the nominal energy)."""
        overrides = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in overrides.items()}
        new_fields: dict[str, str] = {}
        for key in ("lepton_energy", "hadron_energy"):
            if isinstance(overrides.get(key), str):
                new_fields[key.removesuffix("_energy")] = overrides.pop(key)
        if isinstance(overrides.get("energy"), str):
            new_fields["a"] = new_fields["b"] = overrides.pop("energy")
        for key in ("a", "b"):
            if isinstance(overrides.get(key), dict) and isinstance(overrides[key].get("energy"), str):
                new_fields[key] = overrides[key].pop("energy")
        table = self.to_table(nominal=True)
        if any(k in overrides for k in ("a", "b", "energy")):
            for key in ("lepton_energy", "hadron_energy", "lepton_pdg", "hadron_pdg", "lepton_direction",
                        "hadron_mass"):
                table.pop(key, None)
            for key in ("a", "b"):
                if key in table and key in overrides:
                    overrides[key] = {**table[key], **overrides[key]}
        beams = _build({**table, **overrides}) if overrides else self
        fields = list(self.fields)
        for role, name in new_fields.items():
            index = {"a": 0, "b": 1}.get(role)
            if index is None:
                index = beams._lepton_index() if role == "lepton" else 1 - beams._lepton_index()
            fields[index] = name
        return replace(beams, fields=(fields[0], fields[1]))

    # -- roles ---------------------------------------------------------------------
    @property
    def beams(self) -> tuple[Beam, Beam]:
        """``(a, b)``."""
        return self.a, self.b

    @property
    def kind(self) -> str:
        """``pp``, ``ppbar``, ``ep``, ``eA``, ``ee``, ``AA``, ``pA`` or ``other``; ``fixed-target`` when one beam is at rest.

        Example:
            >>> Beams.lepton_hadron(5.5, PROTON_MASS, lepton_direction=1).kind
            'fixed-target ep'
        """
        def tag(beam: Beam) -> str:
            if beam.is_lepton:
                return "e"
            if beam.is_nucleus:
                return "A"
            return "p" if beam.pdg in (2212, -2212, 2112) else "x"

        ta, tb = sorted((tag(self.a), tag(self.b)), key="epAx".index)
        kind = ta + tb
        if kind == "pp" and self.a.pdg == -self.b.pdg:
            kind = "ppbar"
        if "x" in kind:
            kind = "other"
        return f"fixed-target {kind}" if self.is_fixed_target else kind

    def _lepton_index(self) -> int:
        leptons = [i for i, beam in enumerate(self.beams) if beam.is_lepton]
        if len(leptons) != 1:
            raise PhysicsError(f"not a lepton-hadron set-up ({self.kind}: {self.a.name} on {self.b.name}); this needs "
                               "one lepton beam and one hadron beam", path="beams", value=self.name or self.kind)
        return leptons[0]

    @property
    def is_lepton_hadron(self) -> bool:
        """True when exactly one beam is a charged lepton."""
        return sum(beam.is_lepton for beam in self.beams) == 1

    @property
    def lepton(self) -> Beam:
        """The lepton beam of a lepton-hadron set-up."""
        return self.beams[self._lepton_index()]

    @property
    def hadron(self) -> Beam:
        """The hadron (or nucleus) beam of a lepton-hadron set-up."""
        return self.beams[1 - self._lepton_index()]

    @property
    def lepton_energy(self) -> float:
        """Lepton beam energy in GeV."""
        return self.lepton.energy

    @property
    def hadron_energy(self) -> float:
        """Hadron beam energy in GeV."""
        return self.hadron.energy

    @property
    def lepton_pdg(self) -> int:
        """PDG id of the lepton beam."""
        return self.lepton.pdg

    @property
    def lepton_direction(self) -> int:
        """+1 if the lepton travels along +z, -1 along -z."""
        return 1 if self._lepton_index() == 0 else -1

    @property
    def hadron_mass(self) -> float:
        """Mass of the hadron beam particle in GeV."""
        return float(self.hadron.mass)

    @property
    def hadron_momentum(self) -> float:
        """Magnitude of the hadron beam momentum (0 for a fixed target)."""
        return self.hadron.momentum

    @property
    def lepton_four_momentum(self) -> np.ndarray:
        """(E, px, py, pz) of the lepton beam."""
        return self._four_momentum(self._lepton_index())

    @property
    def hadron_four_momentum(self) -> np.ndarray:
        """(E, px, py, pz) of the hadron beam."""
        return self._four_momentum(1 - self._lepton_index())

    def field_of(self, role: str) -> str | None:
        """The per-event energy field of a beam by role (``a``, ``b``, ``lepton``, ``hadron``), or None."""
        index = {"a": 0, "b": 1}.get(role)
        if index is None:
            index = self._lepton_index() if role == "lepton" else 1 - self._lepton_index()
        return self.fields[index]

    # -- kinematics ------------------------------------------------------------------
    def _four_momentum(self, index: int) -> np.ndarray:
        beam = self.beams[index]
        sign = 1.0 if index == 0 else -1.0
        return np.array([beam.energy, 0.0, 0.0, sign * beam.momentum])

    @property
    def four_momenta(self) -> tuple[np.ndarray, np.ndarray]:
        """(E, px, py, pz) of beam a and of beam b."""
        return self._four_momentum(0), self._four_momentum(1)

    @property
    def is_fixed_target(self) -> bool:
        """True when one beam is at rest."""
        return min(self.a.momentum, self.b.momentum) < 1e-9

    @property
    def s(self) -> float:
        """Squared centre-of-mass energy in GeV² (per nucleon pair for nuclei)."""
        tot = self._four_momentum(0) + self._four_momentum(1)
        return float(tot[0] ** 2 - tot[1] ** 2 - tot[2] ** 2 - tot[3] ** 2)

    @property
    def sqrt_s(self) -> float:
        """Centre-of-mass energy in GeV."""
        return math.sqrt(self.s)

    @property
    def label(self) -> str:
        """A one-line description for plots and reports, e.g. ``p p, √s = 13 TeV (lhc13)``.

        Example:
            >>> Beams.preset("hera").label
            'p e+, √s = 318.7 GeV (hera)'
        """
        energy = f"{self.sqrt_s / 1000:.4g} TeV" if self.sqrt_s >= 1000 else f"{self.sqrt_s:.4g} GeV"
        text = f"{self.a.name} {self.b.name}, √s = {energy}"
        if any(self.fields):
            text += " (per-event energies)"
        return f"{text} ({self.name})" if self.name else text

    # -- per-event energies -------------------------------------------------------------
    def with_energies(self, a: float | None = None, b: float | None = None) -> Beams:
        """These beams with other nominal energies."""
        return replace(self, a=self.a if a is None else self.a.with_energy(a),
                       b=self.b if b is None else self.b.with_energy(b))

    def energies(self, columns: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-event energies of beams a and b: from the declared ``fields`` of ``columns`` (an EventBatch or a
        mapping of arrays), else the nominal energies.

        Example:
            >>> b = Beams.preset("lhc13")
            >>> [e.tolist() for e in b.energies({}, 2)]
            [[6500.0, 6500.0], [6500.0, 6500.0]]
        """
        out = []
        for beam, name in zip(self.beams, self.fields, strict=True):
            if name is None:
                out.append(np.full(n, beam.energy))
                continue
            values = columns.column(name) if hasattr(columns, "column") else columns.get(name)
            if values is None:
                from mlegpipe.exceptions import DataError

                raise DataError("the beams declare a per-event energy field the events do not have", path=name)
            out.append(np.asarray(values, dtype=np.float64))
        return out[0], out[1]

    # -- serialization -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict for metadata and checkpoints (JSON-able); :meth:`from_dict` inverts it."""
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "name": self.name, "fields": list(self.fields)}

    def to_table(self, nominal: bool = False) -> dict[str, Any]:
        """The TOML table form (:meth:`from_table`): by role for lepton-hadron set-ups, else tables a and b.

        Per-event energy fields are written as the energy (a string) unless ``nominal``.
        """
        energy = [beam.energy if nominal or field is None else field
                  for beam, field in zip(self.beams, self.fields, strict=True)]
        if self.is_lepton_hadron:
            lep = self._lepton_index()
            table: dict[str, Any] = {"lepton_energy": energy[lep], "hadron_energy": energy[1 - lep],
                                     "lepton_pdg": self.lepton_pdg, "lepton_direction": self.lepton_direction,
                                     "hadron_pdg": self.hadron.pdg, "hadron_mass": self.hadron_mass}
        else:
            table = {k: {"pdg": beam.pdg, "energy": e, "mass": beam.mass}
                     for k, beam, e in zip("ab", self.beams, energy, strict=True)}
        if self.name:
            table["name"] = self.name
        return table

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Beams:
        """Inverse of :meth:`to_dict`; also reads the lepton-hadron form of files written before generic beams."""
        data = dict(data)
        if "a" in data and "b" in data:
            fields = data.get("fields") or [None, None]
            return cls(Beam(**data["a"]), Beam(**data["b"]), str(data.get("name", "")),
                       (fields[0], fields[1]))
        return _build(data)


def _role_beam(role: str, pdg: int, energy: float, mass: float | None) -> Beam:
    """A beam of a lepton-hadron set-up, its errors naming the role's key (``beams.hadron_energy``)."""
    try:
        return Beam(pdg, energy, mass)
    except PhysicsError as err:
        key = {"beams.energy": f"beams.{role}_energy", "beams.mass": f"beams.{role}_mass",
               "beams.pdg": f"beams.{role}_pdg"}.get(err.path, err.path)
        raise PhysicsError(err.message, path=key, value=err.value, hint=err.hint) from None


def _energy_and_field(value: Any, path: str) -> tuple[float | None, str | None]:
    if isinstance(value, str):
        return None, value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PhysicsError("expected an energy in GeV or the name of a per-event energy field", path=path,
                           value=value)
    return float(value), None


def _build(table: Mapping[str, Any]) -> Beams:
    """Beams from the keys of :meth:`Beams.from_table` (no preset)."""
    table = dict(table)
    name = str(table.pop("name", ""))
    role_keys = {"lepton_energy", "hadron_energy", "lepton_pdg", "hadron_pdg", "lepton_direction", "hadron_mass"}
    if role_keys & set(table):
        unknown = set(table) - role_keys
        if unknown:
            raise TypeError(f"unexpected keys {sorted(unknown)} beside lepton/hadron keys")
        if "lepton_energy" not in table or "hadron_energy" not in table:
            raise TypeError("lepton_energy and hadron_energy are both needed")
        le, lf = _energy_and_field(table.pop("lepton_energy"), "beams.lepton_energy")
        he, hf = _energy_and_field(table.pop("hadron_energy"), "beams.hadron_energy")
        if le is None or he is None:
            raise PhysicsError("a per-event energy field needs a preset for the nominal energies",
                               path="beams.lepton_energy" if le is None else "beams.hadron_energy",
                               value=lf or hf)
        return Beams.lepton_hadron(le, he, name=name, fields={"lepton": lf, "hadron": hf},
                                   **{k: table[k] for k in table})
    energy = table.pop("energy", None)
    a, b = dict(table.pop("a", {})), dict(table.pop("b", {}))
    if table:
        raise TypeError(f"unexpected keys {sorted(table)}")
    if energy is not None:
        a.setdefault("energy", energy)
        b.setdefault("energy", energy)
    beams, fields = [], []
    for key, spec in (("a", a), ("b", b)):
        if "pdg" not in spec or "energy" not in spec:
            raise TypeError(f"beam {key} needs pdg and energy")
        e, f = _energy_and_field(spec["energy"], f"beams.{key}.energy")
        if e is None:
            raise PhysicsError("a per-event energy field needs a preset for the nominal energy",
                               path=f"beams.{key}.energy", value=f)
        beams.append(Beam(int(spec["pdg"]), e, spec.get("mass")))
        fields.append(f)
    return Beams(beams[0], beams[1], name, (fields[0], fields[1]))


def beam_presets() -> dict[str, Beams]:
    """Every named beam set-up registered by the installed plugins (``mlegpipe_register_beam_presets``).

    Example:
        >>> "lhc13" in beam_presets() and "hera" in beam_presets()
        True
    """
    from mlegpipe.registry import default_registry

    return default_registry().beam_presets.items()
