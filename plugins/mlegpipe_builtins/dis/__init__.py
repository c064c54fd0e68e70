"""The DIS domain: inclusive deep-inelastic scattering of a lepton off a hadron, as a plugin.

Everything mlegpipe knows about DIS lives here and reaches the core through
hooks (:mod:`mlegpipe_builtins.dis.domain`): the kinematics of the scattered
lepton (:mod:`~mlegpipe_builtins.dis.kinematics`), the reconstruction methods
(:mod:`~mlegpipe_builtins.dis.reconstruction`), ALLM97 and the Born cross
section (:mod:`~mlegpipe_builtins.dis.allm97`, :mod:`~mlegpipe_builtins.dis.cross_section`),
the lepton feature maps and augmentations, the DIS observables and their
(x, Q²) pair, the physicality limits, the Q²–x plot and the HERA, EIC and JLab
beam presets.

Events of this domain carry the scattered lepton as the multiplicity-one
collection ``lepton`` (flat fields :data:`LEPTON_FIELDS`) and, usually, the
labels :data:`DIS_LABELS`; a per-event lepton beam energy is the field
:data:`BEAM_ENERGY` unless the beams declare another.

Example:
    >>> LEPTON_FIELDS[0], DIS_LABELS
    ('lepton_E', ('x', 'Q2', 'y', 'W2', 'nu'))
"""

__all__ = ["BEAM_ENERGY", "DIS_LABELS", "LEPTON_FIELDS"]

#: Scattered-lepton four-momentum fields (GeV): the collection ``lepton`` of multiplicity one.
LEPTON_FIELDS: tuple[str, ...] = ("lepton_E", "lepton_px", "lepton_py", "lepton_pz")
#: Inclusive DIS truth labels.
DIS_LABELS: tuple[str, ...] = ("x", "Q2", "y", "W2", "nu")
#: Per-event lepton beam energy (conditional models, energy scans).
BEAM_ENERGY = "beam_energy"
