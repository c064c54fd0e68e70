"""Vectorized eic-smear smearing of flat particle arrays (the core of the `smear` detector).

Given true (px, py, pz, E, pid, charge) in the eic-smear frame (hadron beam along
+z), each device smears its variable inside its acceptance; then, as in
eic-smear: negative E, P, pT become 0, theta is reflected into [0, pi], phi is
wrapped into [0, 2 pi); a momentum is measured when phi and two of P, pT, pz,
theta were smeared (priority P-theta, P-pT, P-pz, pT-theta, pz-theta, pT-pz), the
rest being recomputed; E is never derived from P nor P from E. Not-measured
values are 0 and flagged.

Example:
    >>> import numpy as np
    >>> from mlegpipe_builtins.detectors._devices import DeviceParams, compile_devices
    >>> devs = compile_devices([DeviceParams(variable="E", formula="0.1 * sqrt(E)")], "d")
    >>> truth = {"px": np.array([1.0]), "py": np.array([0.0]), "pz": np.array([0.0]), "E": np.array([1.0]),
    ...          "pid": np.array([22]), "charge": np.array([0.0])}
    >>> out = smear_flat(truth, devs, np.random.SeedSequence(1), SmearOptions())
    >>> bool(out["measured_E"][0]), bool(out["measured_P"][0]), float(out["px"][0])
    (True, False, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlegpipe.exceptions import DataError
from mlegpipe.formula import Formula
from mlegpipe_builtins.detectors._devices import SMEARED_VARIABLES, Device, genre_mask

__all__ = ["SmearOptions", "kinematics", "smear_flat"]

TWO_PI = 2.0 * np.pi
# Pairs that fix the momentum magnitude and polar angle, by priority (phi is always needed).
_PAIRS: tuple[tuple[str, str], ...] = (("P", "theta"), ("P", "pT"), ("P", "pz"), ("theta", "pT"), ("theta", "pz"),
                                       ("pT", "pz"))


@dataclass(frozen=True)
class SmearOptions:
    """Delphes-style extras: efficiency formula and thresholds on the smeared values."""

    efficiency: Formula | None = None
    threshold_pT: float = 0.0
    threshold_E_em: float = 0.0
    threshold_E_hadronic: float = 0.0


def kinematics(px: np.ndarray, py: np.ndarray, pz: np.ndarray, E: np.ndarray) -> dict[str, np.ndarray]:  # noqa: N803
    """True E, P, theta, phi, pT, pz, eta, m of flat arrays (eta = +-inf along the beam).

    Example:
        >>> k = kinematics(np.array([3.0]), np.array([0.0]), np.array([4.0]), np.array([5.0]))
        >>> float(k["P"][0]), float(k["pT"][0]), round(float(k["theta"][0]), 4)
        (5.0, 3.0, 0.6435)
    """
    pt = np.hypot(px, py)
    p = np.hypot(pt, pz)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), np.copysign(np.inf, pz))
    return {
        "E": E, "P": p, "theta": np.arctan2(pt, pz), "phi": np.mod(np.arctan2(py, px), TWO_PI), "pT": pt, "pz": pz,
        "eta": eta, "m": np.sqrt(np.maximum(E * E - p * p, 0.0)),
    }


def _stream(seed: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """A generator keyed below ``seed`` without mutating it (same seed, same streams)."""
    return np.random.default_rng(np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *key)))


def _width(device: Device, env: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    sub = {k: env[k][index] for k in device.sigma.variables}
    sigma = np.broadcast_to(np.asarray(device.sigma(sub), dtype=np.float64), (len(index),))
    bad = ~np.isfinite(sigma) | (sigma < 0)
    if bad.any():
        i = int(np.argmax(bad))
        at = {k: float(v[i]) for k, v in sub.items()}
        raise DataError(f"resolution formula {device.sigma.text!r} gives width {float(sigma[i])!r} for "
                        f"{int(bad.sum())} particle(s), e.g. at {at}; widths must be finite and >= 0",
                        path=device.sigma.where)
    return sigma


def _apply(value: np.ndarray, sigma: np.ndarray, z: np.ndarray, lognormal: np.ndarray) -> np.ndarray:
    """value + sigma z, or for log-normal devices value exp(s z - s²/2) with s² = ln(1 + (sigma/value)²)."""
    out = value + sigma * z
    if lognormal.any():
        v, sg, zz = value[lognormal], sigma[lognormal], z[lognormal]
        with np.errstate(divide="ignore", invalid="ignore"):
            s2 = np.log1p(np.where(v != 0, (sg / np.abs(v)) ** 2, 0.0))
        out[lognormal] = v * np.exp(np.sqrt(s2) * zz - 0.5 * s2)
    return out


def smear_flat(
    truth: dict[str, np.ndarray],
    devices: list[Device],
    seed: np.random.SeedSequence,
    options: SmearOptions,
    smearable: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Smear flat particle arrays; return smeared px, py, pz, E, theta, phi and measured flags.

    Arguments:
        truth: flat arrays px, py, pz, E, pid, charge (eic-smear frame).
        devices: compiled devices (checked free of overlaps).
        seed: the chunk's SeedSequence; one normal stream per variable (one draw per
            measured particle, in particle order), one uniform stream for the efficiency.
        options: efficiency and thresholds.
        smearable: mask of the particles to smear (final state); others are not measured.

    Returns:
        ``px, py, pz, E, theta, phi`` (0 where not measured) and the booleans
        ``measured_E``, ``measured_P`` (momentum vector), ``measured_angles``; and
        ``unphysical``: inputs with a non-finite component or E < 0 (not measured).
    """
    n = len(truth["E"])
    momentum = [np.asarray(truth[k], dtype=np.float64) for k in ("px", "py", "pz", "E")]
    physical = np.isfinite(momentum[0]) & np.isfinite(momentum[1]) & np.isfinite(momentum[2])
    physical &= np.isfinite(momentum[3]) & (momentum[3] >= 0)
    if not physical.all():  # generated events may be unphysical: such particles are not measured
        momentum = [np.where(physical, v, 0.0) for v in momentum]
    env = kinematics(*momentum)
    pid, charge = truth["pid"], truth["charge"]
    ok = physical if smearable is None else physical & np.asarray(smearable, dtype=bool)
    if options.efficiency is not None:
        eff = np.broadcast_to(np.asarray(options.efficiency(env), dtype=np.float64), (n,))
        ok = ok & (_stream(seed, len(SMEARED_VARIABLES)).random(n) < np.nan_to_num(eff, nan=0.0))
    # Pass 1: which device measures which variable of which particle, and with what width.
    done = {v: np.zeros(n, dtype=bool) for v in SMEARED_VARIABLES}
    width = {v: np.zeros(n) for v in SMEARED_VARIABLES}
    lognormal = {v: np.zeros(n, dtype=bool) for v in SMEARED_VARIABLES}
    cache: dict = {}
    for device in devices:
        v = device.variable
        mask = device.accepts(env, pid, charge, cache) & ok
        mask &= ~done[v]  # a particle on an edge shared by two zones: the first device listed
        index = np.flatnonzero(mask)
        if not len(index):
            continue
        width[v][index] = _width(device, env, index)
        lognormal[v][index] = device.lognormal
        done[v][index] = True
    # Pass 2: one normal per measured (particle, variable), drawn in particle order from the variable's stream.
    value = {}
    for i, v in enumerate(SMEARED_VARIABLES):
        value[v] = np.zeros(n)
        index = np.flatnonzero(done[v])
        if len(index):
            z = _stream(seed, i).standard_normal(len(index))
            value[v][index] = _apply(env[v][index], width[v][index], z, lognormal[v][index])
    for v in ("E", "P", "pT"):
        np.maximum(value[v], 0.0, out=value[v])
    theta = np.mod(np.abs(value["theta"]), TWO_PI)  # reflect at 0 and pi: a polar angle is periodic in 2 pi
    value["theta"] = np.clip(np.where(theta > np.pi, TWO_PI - theta, theta), 0.0, np.pi)
    value["phi"] = np.mod(value["phi"], TWO_PI)
    value["phi"][value["phi"] >= TWO_PI] = 0.0
    out = _assemble(value, done, env, pid, options)
    out["unphysical"] = ~physical
    return out


def _momentum(value: dict[str, np.ndarray], done: dict[str, np.ndarray], env: dict[str, np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Magnitude, polar angle and validity from the highest-priority smeared pair (with phi)."""
    n = len(value["P"])
    p, theta = np.zeros(n), np.zeros(n)
    have = np.zeros(n, dtype=bool)
    forward = env["pz"] >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        for a, b in _PAIRS:
            sel = done[a] & done[b] & done["phi"] & ~have
            if not sel.any():
                continue
            va, vb = value[a][sel], value[b][sel]
            if (a, b) == ("P", "theta"):
                mag, th, good = va, vb, np.ones(len(va), dtype=bool)
            elif (a, b) == ("P", "pT"):
                s = np.clip(np.where(va > 0, vb / va, 0.0), 0.0, 1.0)
                th = np.where(forward[sel], np.arcsin(s), np.pi - np.arcsin(s))
                mag, good = va, np.ones(len(va), dtype=bool)
            elif (a, b) == ("P", "pz"):
                c = np.clip(np.where(va > 0, vb / va, 1.0), -1.0, 1.0)
                mag, th, good = va, np.arccos(c), np.ones(len(va), dtype=bool)
            elif (a, b) == ("theta", "pT"):
                sin = np.sin(va)
                good = sin > 1e-12
                mag, th = np.where(good, vb / np.where(good, sin, 1.0), 0.0), va
            elif (a, b) == ("theta", "pz"):
                cos = np.cos(va)
                good = np.abs(cos) > 1e-12
                mag, th = np.where(good, np.maximum(vb / np.where(good, cos, 1.0), 0.0), 0.0), va
            else:
                mag, th, good = np.hypot(va, vb), np.arctan2(va, vb), np.ones(len(va), dtype=bool)
            p[sel], theta[sel] = np.where(good, mag, 0.0), np.where(good, th, 0.0)
            have[sel] = good
    return p, theta, have


def _assemble(value: dict[str, np.ndarray], done: dict[str, np.ndarray], env: dict[str, np.ndarray],
              pid: np.ndarray, options: SmearOptions) -> dict[str, np.ndarray]:
    p, theta, measured_p = _momentum(value, done, env)
    phi = value["phi"]
    pt = p * np.sin(theta)
    if options.threshold_pT > 0:
        measured_p &= pt >= options.threshold_pT
    measured_e = done["E"].copy()
    for genre, cut in (("em", options.threshold_E_em), ("hadronic", options.threshold_E_hadronic)):
        if cut > 0:
            measured_e &= ~genre_mask(genre, pid) | (value["E"] >= cut)
    measured_angles = measured_p | (done["theta"] & done["phi"])
    theta = np.where(measured_p, theta, value["theta"])
    keep = np.where(measured_p, 1.0, 0.0)
    return {
        "px": keep * pt * np.cos(phi), "py": keep * pt * np.sin(phi), "pz": keep * p * np.cos(theta),
        "E": np.where(measured_e, value["E"], 0.0),
        "theta": np.where(measured_angles, theta, 0.0), "phi": np.where(measured_angles, phi, 0.0),
        "measured_E": measured_e, "measured_P": measured_p, "measured_angles": measured_angles,
    }
