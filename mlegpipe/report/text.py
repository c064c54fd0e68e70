r"""Text of the report page: plot labels (matplotlib mathtext) as HTML, figure captions, σ and versions lines.

Observable labels are written for matplotlib (``$Q^2$ [GeV$^2$]``,
``$p_T(\mathrm{jets}_{1})$``); :func:`math_html` turns them into HTML with
sub- and superscripts and Greek letters, so captions name the observable as
the axis does.

Example:
    >>> math_html("$Q^2$ [GeV$^2$]"), math_html(r"$\phi'$ [rad]")
    ('Q<sup>2</sup> [GeV<sup>2</sup>]', 'φ&#x27; [rad]')
    >>> sigma_text({"value": 1234.5, "error": 6.25})
    '1234.5 ± 6.2 pb'
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["math_html", "sigma_text"]

_SYMBOLS: dict[str, str] = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "φ", "varphi": "φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ",
    "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω", "ell": "ℓ", "to": "→", "rightarrow": "→",
    "times": "×", "cdot": "·", "pm": "±", "sqrt": "√", "infty": "∞", "leq": "≤", "geq": "≥", "approx": "≈",
    "prime": "′", "langle": "⟨", "rangle": "⟩", "perp": "⊥", "parallel": "∥", "gg": "≫", "ll": "≪",
    ",": " ", ";": " ", "!": "", " ": " ", "quad": " ",
}
#: Commands whose argument is kept as it is (fonts, text).
_KEEP = frozenset({"mathrm", "mathit", "mathbf", "mathsf", "mathtt", "text", "textrm", "rm", "it", "bf",
                   "operatorname", "mathcal"})
_ACCENTS: dict[str, str] = {"bar": "\u0304", "overline": "\u0305", "hat": "\u0302", "tilde": "\u0303",
                            "vec": "\u20d7", "dot": "\u0307"}
_COMMAND = re.compile(r"\\([A-Za-z]+|.)")


def _group(text: str, i: int) -> tuple[str, int]:
    """The argument at ``text[i]``: a ``{...}`` group (nested braces) or one character / command."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return "", i
    if text[i] == "{":
        depth, j = 0, i
        while j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return text[i + 1:j], j + 1
            j += 1
        return text[i + 1:], len(text)
    match = _COMMAND.match(text, i)
    if match:
        return match.group(0), match.end()
    return text[i], i + 1


def _math(text: str) -> str:
    """HTML of one mathtext segment (between ``$``)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "^_":
            arg, i = _group(text, i + 1)
            tag = "sup" if char == "^" else "sub"
            out.append(f"<{tag}>{_math(arg)}</{tag}>")
        elif char == "\\":
            match = _COMMAND.match(text, i)
            name = match.group(1) if match else ""
            i = match.end() if match else i + 1
            if name in _ACCENTS:
                arg, i = _group(text, i)
                out.append(_math(arg) + _ACCENTS[name])
            elif name in _KEEP:
                arg, i = _group(text, i)
                out.append(_math(arg))
            elif name in ("left", "right", "big", "Big"):
                continue
            else:
                out.append(html.escape(_SYMBOLS.get(name, name)))
        elif char in "{}":
            i += 1
        else:
            out.append(html.escape(char))
            i += 1
    return "".join(out)


def math_html(text: str) -> str:
    r"""HTML of a matplotlib label: text outside ``$...$`` escaped, mathtext inside converted.

    Example:
        >>> math_html(r"$p_T(\mathrm{jets}_{1})$ [GeV]"), math_html(r"pp → $t\bar{t}$"), math_html("a < b")
        ('p<sub>T</sub>(jets<sub>1</sub>) [GeV]', 'pp → tt̄', 'a &lt; b')
    """
    parts = str(text).split("$")
    if len(parts) % 2 == 0:  # an odd number of $: not mathtext
        return html.escape(str(text))
    return "".join(_math(p) if k % 2 else html.escape(p) for k, p in enumerate(parts))


def sigma_text(sigma: Mapping[str, Any] | None) -> str:
    """``σ ± error pb`` of a cross section record (``value``, ``error`` in pb), or ``not known``.

    The error is given to two significant digits and σ to the same decimal place; very large or small
    values in powers of ten.

    Example:
        >>> sigma_text({"value": 1234.5, "error": 6.25}), sigma_text({"value": 2.5e-5, "error": 1.25e-7})
        ('1234.5 ± 6.2 pb', '(2.500 ± 0.012)e-05 pb')
        >>> sigma_text({"value": 2.5e-3, "error": 0.0}), sigma_text(None)
        ('0.0025 pb (no error given)', 'not known')
    """
    if not sigma or not isinstance(sigma.get("value"), int | float) or not math.isfinite(sigma["value"]):
        return "not known"
    value, error = float(sigma["value"]), float(sigma.get("error") or 0.0)
    if not (error > 0 and math.isfinite(error)):
        return f"{value:.4g} pb (no error given)"
    scale = math.floor(math.log10(abs(value))) if value and not 1e-3 <= abs(value) < 1e6 else 0
    value, error = value / 10**scale, error / 10**scale
    decimals = max(0, 1 - math.floor(math.log10(error)))
    text = f"{value:.{decimals}f} ± {error:.{decimals}f}"
    return f"({text})e{scale:+03d} pb" if scale else f"{text} pb"
