"""Quality targets of the project's issues, checked against a :func:`compare_samples` table.

Example:
    >>> rows = evaluate_targets({"classifier": {"auc": 0.52}, "features": {}})
    >>> [(r["metric"], r["passed"]) for r in rows]
    [('classifier AUC', True)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TARGETS", "evaluate_targets", "summarize_targets"]

#: Thresholds: χ²/ndf ≤ factor × truth-vs-truth floor, KL ≤ kl_max, AUC ≤ auc_max,
#: unphysical fraction ≤ unphysical_max, memorization ratio ≥ memorization_min.
TARGETS: dict[str, float] = {
    "chi2_floor_factor": 1.5,
    "kl_max": 5e-3,
    "auc_max": 0.55,
    "unphysical_max": 0.0,
    "memorization_min": 0.9,
}


def _row(metric: str, value: float | None, target: str, passed: bool | None) -> dict[str, Any]:
    return {"metric": metric, "value": value, "target": target, "passed": passed}


def _chi2_row(label: str, entry: Mapping[str, Any], factor: float) -> dict[str, Any]:
    value = entry.get("chi2_ndf")
    floor = entry.get("chi2_ndf_floor")
    limit = factor * (floor if floor is not None and floor == floor else 1.0)
    text = f"≤ {factor:g} × floor ({limit:.3g})" if floor is not None else f"≤ {limit:.3g} (no floor)"
    passed = None if value is None or value != value else bool(value <= limit)
    return _row(label, value, text, passed)


def evaluate_targets(table: Mapping[str, Any], targets: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Each available metric of ``table`` against its target: rows of metric, value, target text, passed.

    Rows: χ²/ndf ≤ 1.5 × floor and KL ≤ 5e-3 per feature (KL ≤ 1.5 × its
    truth-vs-truth floor where that floor is larger: small samples); each joint pair's χ²/ndf ≤
    1.5 × floor; classifier AUC ≤ 0.55; unphysical fraction = 0; memorization
    ratio ≥ 0.9. ``passed`` is None where the value is undefined (NaN).
    """
    t = {**TARGETS, **(targets or {})}
    rows: list[dict[str, Any]] = []
    for name, entry in table.get("features", {}).items():
        rows.append(_chi2_row(f"χ²/ndf {name}", entry, t["chi2_floor_factor"]))
        kl = entry.get("kl")
        if kl is not None:
            # Binned KL has a statistical floor ≈ (bins - 1)/N: below ~10⁵ events it exceeds 5e-3 for
            # truth against truth, so the limit is then 1.5 × that floor.
            kl_floor = entry.get("kl_floor")
            limit = max(t["kl_max"], t["chi2_floor_factor"] * kl_floor) if kl_floor is not None else t["kl_max"]
            text = f"≤ max({t['kl_max']:g}, {t['chi2_floor_factor']:g} × floor) = {limit:.3g}" \
                if kl_floor is not None and limit > t["kl_max"] else f"≤ {t['kl_max']:g}"
            rows.append(_row(f"KL {name}", kl, text, bool(kl <= limit)))
    for name, entry in table.get("joints", {}).items():
        rows.append(_chi2_row(f"χ²/ndf joint {entry.get('x', name)}–{entry.get('y', '')}".rstrip("–"), entry,
                              t["chi2_floor_factor"]))
    if "classifier" in table:
        auc = table["classifier"]["auc"]
        rows.append(_row("classifier AUC", auc, f"≤ {t['auc_max']:g}", bool(auc <= t["auc_max"])))
    if "physicality" in table:
        frac = table["physicality"]["unphysical"]
        rows.append(_row("unphysical fraction", frac, f"≤ {t['unphysical_max']:g}", bool(frac <= t["unphysical_max"])))
    if "memorization" in table:
        ratio = table["memorization"]["ratio"]
        ok = None if ratio != ratio else bool(ratio >= t["memorization_min"])
        rows.append(_row("memorization ratio", ratio, f"≥ {t['memorization_min']:g}", ok))
    return rows


def summarize_targets(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of passed, failed and undefined rows.

    Example:
        >>> summarize_targets([{"passed": True}, {"passed": False}, {"passed": None}])
        {'passed': 1, 'failed': 1, 'undefined': 1}
    """
    return {"passed": sum(r["passed"] is True for r in rows), "failed": sum(r["passed"] is False for r in rows),
            "undefined": sum(r["passed"] is None for r in rows)}
