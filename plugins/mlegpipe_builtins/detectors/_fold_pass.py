"""How a learned surrogate decides which folded events pass the detector: the ``pass_model``.

``smear`` with beams flags an event ``measured`` when its scattered lepton was
measured (inside the acceptance zones) AND the electron method of the smeared
lepton gives Q², y, x > 0. The second condition depends on the smearing noise,
not only on the vertex: at y → 0 (large x, E' ≈ E_e) a 2-3 % momentum
smearing decides whether y > 0. Two ways to learn that:

- ``learned``: the response is learned on passing events only (a response
  truncated at y = 0, a sharp edge a flow or GAN learns poorly) and the pass
  probability p(pass | vertex) is drawn independently of the folded values.
- ``kinematic``: the response is learned on every event whose lepton was measured
  (flag ``lepton_measured_P``, else ``lepton_measured_E``: an untruncated, near
  Gaussian response), the classifier learns p(lepton measured | vertex), and an
  event passes when its lepton is drawn measured and the electron method of the
  FOLDED lepton gives finite Q², y, x > 0, exactly the cut ``smear`` applies.
- ``auto``: ``kinematic`` when the detector sample allows it (beams, a lepton
  flag beside the electron-method pass flag, lepton detector features), else ``learned``.

Example:
    >>> from mlegpipe.events import EventBatch
    >>> b = EventBatch.from_columns({"a": [1.0], "measured": [True]})
    >>> resolve_pass_model("auto", b, "measured", ["a"], "detector") is None
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError
from mlegpipe_builtins.dis import LEPTON_FIELDS

__all__ = ["ELECTRON_FLAGS", "LEPTON_FLAGS", "electron_labels", "resolve_pass_model"]

#: Pass flags that mean "lepton measured and electron-method Q², y, x > 0" (``smear`` with beams).
ELECTRON_FLAGS: tuple[str, ...] = ("measured", "measured_electron")
#: Per-event "lepton measured" flags of ``smear`` output, first found wins.
LEPTON_FLAGS: tuple[str, ...] = ("lepton_measured_P", "lepton_measured_E")
#: Lepton quantities whose folding changes the electron-method labels.
_LEPTON_FEATURES = frozenset({*LEPTON_FIELDS, "lepton_P", "lepton_pt", "lepton_theta", "lepton_phi"})


def resolve_pass_model(mode: str, detector: EventBatch, flag_name: str | None, detector_features: Sequence[str],
                       where: str) -> str | None:
    """The lepton flag a ``kinematic`` pass model learns from, or None for ``learned``.

    Arguments:
        mode: ``auto``, ``learned`` or ``kinematic``.
        detector: the detector-level training sample.
        flag_name: the event pass flag found in it (None: none).
        detector_features: the features the surrogate folds.
        where: TOML path of the stage, for errors.

    Raises:
        ConfigError: ``kinematic`` was asked for but the sample does not allow it (naming why).

    Example:
        >>> b = EventBatch.from_columns({"lepton_E": [1.0], "measured": [True], "lepton_measured_P": [True]})
        >>> resolve_pass_model("auto", b, "measured", ["lepton_E"], "detector") is None  # no beams
        True
    """
    if mode == "learned":
        return None
    lepton_flag = next((f for f in LEPTON_FLAGS if detector.has(f)), None)
    why = ""
    if flag_name not in ELECTRON_FLAGS:
        why = f"the pass flag {flag_name!r} is not the electron-method flag ({', '.join(ELECTRON_FLAGS)})"
    elif detector.beams is None:
        why = "the detector sample carries no beams (the electron method needs them)"
    elif lepton_flag is None:
        why = "the detector sample has no lepton flag (" + ", ".join(LEPTON_FLAGS) + ")"
    elif not set(detector_features) & _LEPTON_FEATURES:
        why = "no lepton quantity is folded"
    if why and mode == "kinematic":
        raise ConfigError(f"pass_model = 'kinematic' is not possible: {why}", path=f"{where}.pass_model",
                          value=mode, hint="use pass_model = 'learned'")
    return None if why else lepton_flag


def electron_labels(events: EventBatch) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Electron-method labels of the events' lepton (track momentum, as ``smear``) and the pass mask.

    The mask is ``smear``'s condition on the labels: finite, Q² > 0, y > 0, x > 0;
    labels of failing events are 0, as in ``smear`` output.

    Example:
        >>> from mlegpipe.beams import Beams
        >>> b = EventBatch.from_columns({"lepton_E": [20.0, 30.0], "lepton_px": [5.0, 0.1], "lepton_py": [0.0, 0.0],
        ...                              "lepton_pz": [-np.sqrt(375.0), -30.0]}, beams=Beams.preset("hera"))
        >>> electron_labels(b)[1].tolist()  # the second lepton has E' > E_e along the beam: y < 0
        [True, False]
    """
    from mlegpipe_builtins.dis.reconstruction import electron_method

    px, py, pz = (events.column(n) for n in LEPTON_FIELDS[1:])
    e_beam = events.column("beam_energy") if events.has("beam_energy") else None
    with np.errstate(all="ignore"):
        dis = {k: np.asarray(v, dtype=np.float64)
               for k, v in electron_method(np.sqrt(px**2 + py**2 + pz**2), px, py, pz, events.beams, e_beam).items()}
        ok = np.all([np.isfinite(v) for v in dis.values()], axis=0) & (dis["Q2"] > 0) & (dis["y"] > 0) & (dis["x"] > 0)
    return {k: np.where(ok, v, 0.0) for k, v in dis.items()}, ok
