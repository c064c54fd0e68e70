"""The LHC domain: top-quark pairs and jets in proton-proton collisions, as a plugin.

Everything mlegpipe knows about the LHC lives here and reaches the core through
hooks (:mod:`mlegpipe_builtins.lhc.domain`): the top-pair samples of Pythia
(:mod:`~mlegpipe_builtins.lhc.ttbar`), jet clustering (:mod:`~mlegpipe_builtins.lhc.jets`),
the decay-chain coordinates of tt̄ → 6 quarks (:mod:`~mlegpipe_builtins.lhc.chain`),
the resonance and jet observables (:mod:`~mlegpipe_builtins.lhc.observables`) and the
pp detector of the ``smear`` family (:mod:`~mlegpipe_builtins.lhc.detector`).

Events of this domain carry particle collections: ``quarks`` (the six quarks of
tt̄ → b q q̄' b̄ q q̄' in decay-chain order :data:`QUARK_ORDER`), ``jets``
(variable multiplicity, p_T-ordered), ``lepton`` (the prompt charged lepton) and
the missing transverse momentum fields ``met`` and ``met_phi``.

Example:
    >>> QUARK_ORDER[:3], round(W_MASS, 3), round(TOP_MASS, 1)
    (('b1', 'q1', 'qbar1'), 80.385, 172.5)
"""

__all__ = ["JETS", "LEPTON", "MET", "MET_PHI", "QUARKS", "QUARK_ORDER", "TOP_MASS", "TOP_WIDTH", "W_MASS", "W_WIDTH"]

#: The six quarks of tt̄ → 6 quarks, in decay-chain order: the b of the top, the W⁺'s quark and antiquark,
#: the b̄ of the antitop, the W⁻'s quark and antiquark (within a W pair the quark first).
QUARKS = "quarks"
QUARK_ORDER: tuple[str, ...] = ("b1", "q1", "qbar1", "b2", "q2", "qbar2")
#: Jets (anti-kT R = 0.4), the prompt lepton, the missing transverse momentum (GeV) and its azimuth.
JETS = "jets"
LEPTON = "lepton"
MET = "met"
MET_PHI = "met_phi"
#: Pole masses and widths (GeV) of the reference samples (Pythia 8.317 with 6:m0 = 172.5; widths as Pythia computes).
TOP_MASS = 172.5
TOP_WIDTH = 1.343
W_MASS = 80.385
W_WIDTH = 2.092
