"""Jets of many events at once: anti-kT clustering (scikit-hep ``fastjet``) and truth flavour labels.

:func:`cluster_jets` clusters every event of a jagged awkward array of
particles in one call of fastjet's multi-event interface and returns the jets
above a p_T threshold inside an |η| window, p_T-ordered. :func:`flavour_labels`
gives each jet a truth flavour by hadron cone labelling (the ATLAS definition,
ATL-PHYS-PUB-2015-022, with the cone of the jet radius instead of 0.3): every
b or c hadron with p_T > 5 GeV is associated with its nearest jet if ΔR < R;
a jet with a b hadron is ``5``, else one with a c hadron ``4``, else ``0``.
Hadrons are taken at every stage of their decay chain (B* and B alike), which
does not change the labels, since one b hadron suffices.

FastJet: M. Cacciari, G. P. Salam, G. Soyez, EPJC 72 (2012) 1896
[arXiv:1111.6097]; anti-kT: JHEP 04 (2008) 063 [arXiv:0802.1189].

Example:
    >>> import awkward as ak
    >>> particles = ak.Array([[{"px": 50.0, "py": 0.0, "pz": 0.0, "E": 50.0},
    ...                        {"px": 10.0, "py": 0.5, "pz": 0.0, "E": 10.1},
    ...                        {"px": -30.0, "py": 0.0, "pz": 5.0, "E": 31.0}], []])
    >>> jets = cluster_jets(particles, radius=0.4, pt_min=20.0)
    >>> ak.num(jets).tolist(), [round(pt, 1) for pt in jets.pt[0].tolist()]
    ([2, 0], [60.0, 30.0])
    >>> hadrons = ak.Array([[{"px": -8.0, "py": 0.0, "pz": 1.0, "E": 9.0, "pid": 511}], []])
    >>> flavour_labels(jets, hadrons, radius=0.4).tolist()
    [[0, 5], []]
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import vector

from mlegpipe.exceptions import PluginError

vector.register_awkward()

__all__ = ["HADRON_PT_MIN", "cluster_jets", "flavour_labels", "heavy_flavour"]

#: Hadrons below this p_T (GeV) do not label jets (the ATLAS convention).
HADRON_PT_MIN = 5.0


def _fastjet() -> object:
    try:
        import fastjet
        import fastjet._swig as swig
    except ImportError:
        raise PluginError("jet clustering needs scikit-hep fastjet", path="fastjet",
                          hint="pip install 'mlegpipe[pythia]' (fastjet 3.5)") from None
    # FastJet's banner (a citation request, honoured in this module's docstring) would break progress bars
    swig.ClusterSequence.set_fastjet_banner_stream(None)
    swig.ClusterSequence.print_banner()
    return fastjet


def _momenta(particles: ak.Array) -> ak.Array:
    """Jagged ``Momentum4D`` records ``px, py, pz, E`` (float64) of ``particles`` (other fields dropped)."""
    return ak.zip({c: ak.values_astype(particles[c], np.float64) for c in ("px", "py", "pz", "E")},
                  with_name="Momentum4D")


def cluster_jets(particles: ak.Array, *, radius: float = 0.4, pt_min: float = 20.0,
                 eta_max: float = 4.5) -> ak.Array:
    """Anti-kT jets of every event: p_T > ``pt_min`` (GeV), |η| < ``eta_max``, p_T-ordered.

    Arguments:
        particles: jagged records with ``px, py, pz, E`` (one list per event; other fields ignored).
        radius: the jet radius R.
        pt_min: the jets' p_T threshold.
        eta_max: the jets' |η| limit.

    Returns:
        Jagged ``Momentum4D`` records ``px, py, pz, E`` (E-scheme recombination), one list per event.

    Example:
        >>> one = ak.Array([[{"px": 25.0, "py": 0.0, "pz": 0.0, "E": 25.0}]])
        >>> cluster_jets(one).px.tolist(), cluster_jets(one, pt_min=30.0).px.tolist()
        ([[25.0]], [[]])
    """
    fastjet = _fastjet()
    inputs = _momenta(particles)
    empty = ak.num(inputs) == 0
    if ak.all(empty):  # fastjet's multi-event interface needs a particle somewhere
        return inputs
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, float(radius))
    jets = fastjet.ClusterSequence(inputs, definition).inclusive_jets(min_pt=float(pt_min))
    jets = _momenta(jets)
    jets = jets[(jets.pt > pt_min) & (abs(jets.eta) < eta_max)]
    return jets[ak.argsort(jets.pt, axis=1, ascending=False, stable=True)]


def heavy_flavour(pid: np.ndarray | ak.Array) -> np.ndarray | ak.Array:
    """The heaviest quark flavour (5 = b, 4 = c, else 0) of hadrons with PDG ids ``pid``; 0 for non-hadrons.

    Reads the quark digits of the PDG code (mesons ``n_q2 n_q3 n_J``, baryons
    ``n_q1 n_q2 n_q3 n_J``); quarks, leptons, bosons, diquarks and Pythia's
    internal codes (strings, clusters) are 0.

    Example:
        >>> heavy_flavour(np.array([511, -5122, 421, 443, 211, 5, 5101, 92, 100553])).tolist()
        [5, 5, 4, 4, 0, 0, 0, 0, 5]
    """
    code = abs(pid) % 10_000
    q3, q2, q1 = (code // 10) % 10, (code // 100) % 10, (code // 1000) % 10
    is_hadron = (code >= 100) & (q3 > 0)  # diquarks have n_q3 = 0; codes < 100 are not hadrons
    heaviest = np.maximum(np.maximum(q1, q2), q3)
    return ((heaviest == 5) * 5 + (heaviest == 4) * 4) * is_hadron


def flavour_labels(jets: ak.Array, hadrons: ak.Array, *, radius: float = 0.4,
                   hadron_pt_min: float = HADRON_PT_MIN) -> ak.Array:
    """Truth flavour of each jet by hadron cone labelling: 5 (b), 4 (c) or 0 (light).

    Arguments:
        jets: jagged ``Momentum4D`` jets, one list per event.
        hadrons: jagged records ``px, py, pz, E, pid`` of the event's particles (any
            stage of the record; those that are not b or c hadrons are ignored).
        radius: the cone: a hadron labels its nearest jet if ΔR < ``radius``.
        hadron_pt_min: hadrons below this p_T (GeV) are ignored.

    Returns:
        Jagged int32 labels, one per jet.

    Example:
        >>> j = ak.zip({"px": [[40.0, -40.0]], "py": [[0.0, 0.0]], "pz": [[0.0, 0.0]], "E": [[40.0, 40.0]]},
        ...            with_name="Momentum4D")
        >>> h = ak.Array([[{"px": 10.0, "py": 1.0, "pz": 0.0, "E": 11.0, "pid": 421}]])
        >>> flavour_labels(j, h).tolist(), flavour_labels(j, h, hadron_pt_min=20.0).tolist()
        ([[4, 0]], [[0, 0]])
    """
    flavour = heavy_flavour(hadrons.pid)
    heavy = hadrons[flavour > 0]
    flavour = flavour[flavour > 0]
    momenta = _momenta(heavy)
    keep = momenta.pt > hadron_pt_min
    momenta, flavour = momenta[keep], flavour[keep]
    jets = _momenta(jets)
    # (event, jet, hadron) distances; each hadron labels only its nearest jet
    pairs = ak.cartesian({"jet": jets, "hadron": momenta}, axis=1, nested=True)
    distance = pairs.jet.deltaR(pairs.hadron)
    by_hadron = ak.cartesian({"hadron": momenta, "jet": jets}, axis=1, nested=True)
    nearest = ak.fill_none(ak.min(by_hadron.hadron.deltaR(by_hadron.jet), axis=2), np.inf)
    owned = (distance < radius) & (distance <= nearest[:, np.newaxis, :])
    kind = flavour[:, np.newaxis, :] * ak.ones_like(distance, dtype=np.int32)
    has_b = ak.any(owned & (kind == 5), axis=2)
    has_c = ak.any(owned & (kind == 4), axis=2)
    return ak.values_astype(ak.where(has_b, 5, ak.where(has_c, 4, 0)), np.int32)
