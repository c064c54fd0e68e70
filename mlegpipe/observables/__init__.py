"""Observables: named quantities computed from events, declared once and used by every comparison.

An :class:`Observable` is a vectorized function of an
:class:`~mlegpipe.events.EventBatch` with what a plot needs to show it (label,
unit, log or linear axis). Observables come from three places:

* **plugins** register them through the ``mlegpipe_register_observables`` hook
  (the DIS domain registers x, Q², y, W², ν, E′, θ, ...), with 2D :class:`Pair` s;
* **any particle collection** has its own automatically: ``n_jets``,
  ``jets1_pt`` (the first particle's p_T), ``jets2_eta``, ...; a collection of
  multiplicity one drops the index (``lepton_pt``, ``lepton_theta``);
* **a pipeline** declares expressions in its ``[observables]`` table::

      [observables]
      m_W1 = "mass(q[1] + q[2])"
      pt_tt = { expr = "pt(sum(q))", label = "p_T(t t̄)", unit = "GeV" }
      dR_j12 = "deltaR(jets[0], jets[1])"
      compare = ["m_W1", "pt_tt", "jets1_pt"]     # what the report compares (default: all available)
      pairs = [["jets1_phi", "jets2_phi"]]          # 2D maps

The package: :mod:`~mlegpipe.observables.base` (the types),
:mod:`~mlegpipe.observables.expressions` (the compiler),
:mod:`~mlegpipe.observables.particles` (particles and their functions),
:mod:`~mlegpipe.observables.tensors` (torch tensors), :mod:`~mlegpipe.observables.resolve`
(registered and automatic observables by name), :mod:`~mlegpipe.observables.sets` (a pipeline's table).

Expressions are parsed with :mod:`ast` against a whitelist (no ``eval``): event
fields and other observables by name, ``coll[i]`` for the i-th particle of a
collection (0 = first), ``+``/``-`` of particles (four-vector sums), the
particle functions of :data:`PARTICLE_FUNCTIONS`, the collection functions
``n``, ``sum``, ``ht``, and the arithmetic of :mod:`mlegpipe.formula`. On event
batches four-vector arithmetic runs through ``vector``'s NumPy backend; on
torch tensors (:class:`TensorEvents`: a generator's decoded output) the same
compiled expression is differentiable, so MMD-style losses use the very
observables the report compares (:meth:`Observable.tensor`). An event whose
collection has too few particles for an index gives NaN there (counted, not
plotted); a collection that never has enough is an error.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch, particle_lists
    >>> q = particle_lists({"px": [[3.0, -3.0]], "py": [[4.0, -4.0]], "pz": [[0.0, 0.0]], "E": [[5.0, 5.0]]})
    >>> batch = EventBatch.from_columns({"q": q})
    >>> obs = compile_observable("m", "mass(q[0] + q[1])", where="observables.m")
    >>> obs(batch).tolist(), resolve("q1_pt")(batch).tolist()
    ([10.0], [5.0])
"""

from mlegpipe.observables.base import Observable, Pair, Peak, is_log
from mlegpipe.observables.expressions import compile_observable
from mlegpipe.observables.particles import PAIR_FUNCTIONS, PARTICLE_FUNCTIONS, PARTICLE_QUANTITIES
from mlegpipe.observables.resolve import automatic, resolve, values_of
from mlegpipe.observables.sets import ObservableSet, observable_set
from mlegpipe.observables.tensors import TensorEvents

__all__ = [
    "PAIR_FUNCTIONS",
    "PARTICLE_FUNCTIONS",
    "PARTICLE_QUANTITIES",
    "Observable",
    "ObservableSet",
    "Pair",
    "Peak",
    "TensorEvents",
    "automatic",
    "compile_observable",
    "is_log",
    "observable_set",
    "resolve",
    "values_of",
]
