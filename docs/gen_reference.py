"""The plugin reference, generated from the installed plugins' ``Params`` at every documentation build.

One page per stage kind (truth, generator, detector, discriminator, unfolding,
report) with a table per plugin: parameter, type, default, allowed values or
range, description; and one page of what the extension hooks registered
(feature maps, observables, beam presets, physicality checks, augmentations).
Nothing here is committed as output: ``docs/hooks.py`` calls :func:`generate`
while MkDocs builds, so the pages cannot drift from the code.

Usage::

    from gen_reference import generate          # with docs/ on sys.path
    pages = generate()                          # {"reference/plugins/truth.md": "# Truth sources ...", ...}
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from typing import Any, Literal, get_args, get_origin

__all__ = ["EXTENSION_PAGE", "KIND_TITLES", "PIPELINE_PAGE", "extensions_page", "generate", "param_rows",
           "pipeline_page", "plugin_page"]

#: Page title and a sentence of context per stage kind, in pipeline order.
KIND_TITLES: dict[str, tuple[str, str]] = {
    "truth": ("Truth sources", "Where the events a generator learns come from (`[truth]` sections)."),
    "generator": ("Generators", "The machine-learning event generators (`[generator]` sections)."),
    "detector": ("Detectors", "Parametric detectors and learned detector surrogates (`[detector]` sections)."),
    "discriminator": ("Discriminators", "GAN discriminators (`[discriminator]` sections), used by the GAN "
                      "generators and by `gan-unfold`."),
    "unfolding": ("Unfoldings", "Unfolding detector-level data back to the vertex level (`[unfolding]` "
                  "sections)."),
    "report": ("Reports", "What a run writes at the end (`[report]` sections)."),
}
EXTENSION_PAGE = "reference/plugins/extensions.md"
PIPELINE_PAGE = "reference/pipeline.md"
_SECTION = re.compile(r"^(Example|Examples|Attributes|Arguments|Args|Parameters|Returns|Raises|Note|Notes|"
                      r"Usage|Yields|See also)s?:\s*$")
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc|ref):`~?([^`]+)`")


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _code(text: str) -> str:
    """An inline code span holding ``text`` (backticks inside are handled; a pipe inside a code span does not
    split a table cell in Python-Markdown, so it stays as it is)."""
    text = str(text)
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _toml(value: Any) -> str:
    """A default value as it would be written in TOML."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _number(x: Any) -> str:
    return repr(x) if not isinstance(x, float) or not x.is_integer() else repr(int(x)) if abs(x) < 1e15 else repr(x)


def _type_name(tp: Any) -> str:
    from mlegpipe.schema import _type_name as name

    return name(tp)


def _nested(tp: Any) -> tuple[type | None, bool]:
    """The dataclass inside an annotation (``D``, ``D | None``, ``list[D]``) and whether it is a list of them."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp, False
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if len(args) == 1 and dataclasses.is_dataclass(args[0]):
            return args[0], True
    if origin in (typing.Union, __import__("types").UnionType):
        for arg in get_args(tp):
            found, many = _nested(arg)
            if found is not None:
                return found, many
    return None, False


def _allowed(tp: Any, meta: typing.Mapping[str, Any]) -> str:
    """Allowed values (choices, a Literal type) or the numeric range of one parameter."""
    parts = []
    choices = meta.get("choices")
    literals: tuple[Any, ...] = ()
    for candidate in [tp, *get_args(tp)]:
        if get_origin(candidate) is Literal:
            literals += get_args(candidate)
    values = tuple(choices) if choices is not None else literals
    if values:
        parts.append("one of " + ", ".join(_code(_toml(v)) for v in values))
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None or hi is not None:
        low = "" if lo is None else (f"> {_number(lo)}" if meta.get("exclusive_min") else f"≥ {_number(lo)}")
        high = "" if hi is None else f"≤ {_number(hi)}"
        both = " and ".join(p for p in (low, high) if p)
        is_list = get_origin(tp) in (list, tuple) or any(get_origin(a) in (list, tuple) for a in get_args(tp))
        parts.append(("each " if is_list else "") + both)
    return "; ".join(parts)


def param_rows(params: type, prefix: str = "") -> list[dict[str, str]]:
    """One row per parameter of the dataclass ``params``, nested tables flattened as ``table.key``.

    Each row has ``name``, ``type``, ``default``, ``allowed`` and ``doc`` (Markdown-ready text).
    """
    hints = typing.get_type_hints(params)
    rows: list[dict[str, str]] = []
    for field in dataclasses.fields(params):
        tp = hints[field.name]
        name = f"{prefix}{field.name}"
        nested, many = _nested(tp)
        if field.default is not dataclasses.MISSING:
            default: Any = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        if default is dataclasses.MISSING:
            shown = "*required*"
        elif nested is not None and dataclasses.is_dataclass(default):
            shown = "table (below)"
        else:
            shown = _code(_toml(default))
        rows.append({"name": name, "type": _type_name(tp), "default": shown,
                     "allowed": _allowed(tp, field.metadata), "doc": _cell(field.metadata.get("doc", ""))})
        if nested is not None:
            rows += param_rows(nested, f"{name}[]." if many else f"{name}.")
    return rows


def _description(cls: type) -> str:
    """The class docstring up to its first section (Example:, Attributes:, ...), roles turned into code."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    kept = []
    for line in doc.splitlines():
        if _SECTION.match(line.strip()):
            break
        kept.append(line)
    text = "\n".join(kept).strip()
    text = _ROLE.sub(lambda m: f"``{m.group(1).split('.')[-1] if m.group(0).count('~') else m.group(1)}``", text)
    # a docstring's indented continuation would become a Markdown code block
    return "\n".join(line.strip() for line in text.splitlines())


def plugin_page(registry: Any, kind: str) -> str:
    """The Markdown page of every plugin of one stage kind."""
    title, intro = KIND_TITLES.get(kind, (kind.capitalize(), ""))
    infos = [registry.get(kind, name) for name in registry.names(kind)]
    out = [f"# {title}", "", intro, "",
           "Generated from the installed plugins' `Params` when the documentation is built (the same "
           "information as `mlegpipe plugins NAME`). A parameter shown as `unset` is filled from a preset or "
           "from the model's own default, as its description says. Nested tables are written `table.key` "
           "(`[section.table]` in TOML), and lists of tables `table[].key` (`[[section.table]]`).", ""]
    out += ["| plugin | distribution | summary |", "|---|---|---|"]
    out += [f"| [`{i.name}`](#{_anchor(i.name)}) | {_cell(i.distribution)} | {_cell(i.summary)} |" for i in infos]
    out.append("")
    for info in infos:
        out += [f"## {info.name}", "",
                f"Class `{info.cls.__module__}.{info.cls.__qualname__}`, registered by `{info.module}` of the "
                f"distribution `{info.distribution}` {info.version}.", ""]
        description = _description(info.cls)
        if description:
            out += [description, ""]
        out += ["```toml", f"[{kind}]", f'plugin = "{info.name}"', "```", ""]
        rows = param_rows(info.cls.Params)
        if not rows:
            out += ["No parameters.", ""]
            continue
        out += ["| parameter | type | default | allowed | description |", "|---|---|---|---|---|"]
        out += [f"| `{r['name']}` | {_cell(r['type'])} | {r['default']} | {r['allowed']} | {r['doc']} |"
                for r in rows]
        out.append("")
    return "\n".join(out)


def _anchor(name: str) -> str:
    """The id MkDocs's toc gives a heading ``## name``."""
    return re.sub(r"[^\w\- ]", "", name).strip().lower().replace(" ", "-")


def _extension_doc(item: Any) -> str:
    if hasattr(item, "sqrt_s") and hasattr(item, "label"):
        return str(item.label)
    if hasattr(item, "overlay") or (hasattr(item, "x") and hasattr(item, "y") and not hasattr(item, "doc")):
        return f"2D pair: {item.x} and {item.y}"
    doc = getattr(item, "doc", "") or ""
    if not doc:
        lines = (inspect.cleandoc(getattr(item, "__doc__", "") or "")).splitlines()
        doc = lines[0] if lines else ""
    return _ROLE.sub(lambda m: f"``{m.group(1)}``", doc)


def extensions_page(registry: Any) -> str:
    """The Markdown page of what the extension hooks registered."""
    from mlegpipe.registry import EXTENSIONS

    titles = {"feature_maps": ("Feature maps", "`feature_map = \"NAME\"` of generators"),
              "observables": ("Observables", "compared by reports, metrics and unfoldings; `[observables]` of a "
                              "pipeline adds more"),
              "beam_presets": ("Beam presets", "`beams = \"NAME\"`"),
              "physicality": ("Physicality checks", "the report's unphysical fraction"),
              "augmentations": ("Augmentations", "`augment = [...]` of GAN discriminators")}
    out = ["# Extensions", "",
           "What the plugins registered through the extension hooks (`mlegpipe/hookspecs.py`), generated when the "
           "documentation is built; `mlegpipe plugins --kind KIND` prints the same. Observables computed for "
           "every collection (`n_jets`, `jets1_pt`, ...) are automatic and not listed.", ""]
    for attribute, (hook, _what) in EXTENSIONS.items():
        title, used = titles.get(attribute, (attribute.replace("_", " ").capitalize(), ""))
        entries = registry.extension(attribute)
        out += [f"## {title}", "", f"Registered through `{hook}`; used as {used}." if used else "", ""]
        extra = attribute == "observables"
        out += ["| name | unit | registered by | description |" if extra else "| name | registered by | description |",
                "|---|---|---|---|" if extra else "|---|---|---|"]
        for name in entries.names():
            item = entries.get(name)
            unit = _cell(getattr(item, "unit", "") or "")
            cells = [_code(name)] + ([unit] if extra else []) + [_code(entries.origin(name)),
                                                                  _cell(_extension_doc(item))]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def pipeline_page() -> str:
    """The Markdown page of the ``[pipeline]`` table and the keys every stage section has."""
    from mlegpipe.config import PipelineSettings

    out = ["# The [pipeline] table", "",
           "Generated from `mlegpipe.config.PipelineSettings` when the documentation is built. See "
           "[Pipelines in TOML](../user-guide/pipelines.md) for how sections, samples and overrides work.", "",
           "```toml", "[pipeline]", 'name = "quickstart"', "seed = 2026", "```", "",
           "| parameter | type | default | allowed | description |", "|---|---|---|---|---|"]
    out += [f"| `{r['name']}` | {_cell(r['type'])} | {r['default']} | {r['allowed']} | {r['doc']} |"
            for r in param_rows(PipelineSettings)]
    out += ["", "## Keys of every stage section", "",
            "Read by the pipeline runner, not by the plugin; every other key of a section is a parameter of its "
            "plugin (the pages of this reference).", "",
            "| key | meaning |", "|---|---|",
            "| `plugin` | the plugin's name (required) |",
            "| `kind` | the stage kind when the section is not named after it: truth, generator, detector, "
            "discriminator, unfolding, report |",
            "| `inputs` | the samples a stage consumes (detector: the samples to fold; unfolding: the data) |",
            "| `train_on` | what a trainable stage learns from (generator: a truth prefix such as `\"truth\"`; "
            "learned detector: `[vertex_sample, detector_sample]`) |",
            "| `surrogate` | the section of the frozen detector surrogate an unfolding uses |",
            "| `judge_on` | a generator's reference truth prefix when it is not the one it learns from: its test "
            "split is compared with, and gives the conditions to generate at (e.g. unseen beam energies) |", ""]
    return "\n".join(out)


def generate(registry: Any = None) -> dict[str, str]:
    """Every reference page, by path relative to ``docs/``: one per stage kind, plus the extensions page.

    Arguments:
        registry: a loaded :class:`mlegpipe.registry.Registry` (default: ``load_plugins(strict=True)``: a
            plugin that fails to load fails the documentation build instead of vanishing from the reference).
    """
    if registry is None:
        from mlegpipe.registry import load_plugins

        registry = load_plugins(strict=True)
    pages = {f"reference/plugins/{kind}.md": plugin_page(registry, kind) for kind in registry.kinds()}
    pages[EXTENSION_PAGE] = extensions_page(registry)
    pages[PIPELINE_PAGE] = pipeline_page()
    return pages


if __name__ == "__main__":  # print the pages, e.g. to look at one: python docs/gen_reference.py | less
    for path, text in generate().items():
        print(f"<!-- {path} -->\n{text}\n")
