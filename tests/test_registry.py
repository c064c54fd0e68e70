"""The plugin system: entry points, broken plugins, strict mode, documentation of hooks."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import re
import types
from pathlib import Path

import pytest

from mlegpipe import hookimpl, hookspecs
from mlegpipe.exceptions import PluginError
from mlegpipe.registry import PluginLoadWarning, load_plugins
from mlegpipe.stages import STAGE_KINDS, Detector

ROOT = Path(__file__).resolve().parents[1]


def test_builtins_come_from_entry_points() -> None:
    eps = {ep.name: ep.value for ep in md.entry_points(group="mlegpipe")}
    assert eps["dis"] == "mlegpipe_builtins.truth.dis"
    reg = load_plugins(strict=True)
    info = reg.get("truth", "camel")
    assert info.distribution == "mlegpipe" and info.module == "mlegpipe_builtins.truth.toys"
    assert not reg.failed


def test_core_imports_no_plugin_by_name() -> None:
    for path in (ROOT / "mlegpipe").rglob("*.py"):
        text = path.read_text()
        assert "mlegpipe_builtins" not in text, f"{path} imports a built-in plugin by name"


def _fake_entry_point(monkeypatch: pytest.MonkeyPatch, module_name: str) -> None:
    real = md.entry_points

    def entry_points(**kw):  # noqa: ANN202
        eps = list(real(**kw))
        if kw.get("group") == "mlegpipe":
            eps.append(md.EntryPoint("broken", module_name, "mlegpipe"))
        return eps

    monkeypatch.setattr(md, "entry_points", entry_points)


def test_broken_plugin_warns_and_rest_works(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_point(monkeypatch, "no_such_module_for_mlegpipe")
    with pytest.warns(PluginLoadWarning, match="plugin 'broken'.*no_such_module_for_mlegpipe"):
        reg = load_plugins(strict=False)
    assert "broken" in reg.failed
    assert reg.get("truth", "camel")
    with pytest.raises(PluginError, match="broken"):
        load_plugins(strict=True)


def test_duplicate_and_bad_kind() -> None:
    class Twice(Detector):
        """Registered twice."""

    plugin = types.SimpleNamespace()

    @hookimpl
    def mlegpipe_register_stages(registry):  # noqa: ANN001, ANN202
        registry.add(Twice, "camel-detector")
        registry.add(Twice, "camel-detector")

    plugin.mlegpipe_register_stages = mlegpipe_register_stages
    with pytest.raises(PluginError, match="registered twice"):
        load_plugins(extra=[plugin])


def test_unknown_plugin_lists_installed() -> None:
    reg = load_plugins()
    with pytest.raises(PluginError) as err:
        reg.get("truth", "camle", path="truth.plugin")
    assert "installed truth plugins:" in str(err.value) and "did you mean 'camel'?" in str(err.value)


def test_every_hook_is_typed_documented_and_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    hooks = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("mlegpipe_")]
    assert hooks
    for name in hooks:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__) > 80, f"hook {name} needs a docstring"
        assert all(p.annotation is not inspect.Parameter.empty for p in inspect.signature(fn).parameters.values())
        assert re.search(rf"`{name}\(", readme), f"hook {name} is not documented in README.md"


def test_stage_kinds_are_the_documented_ones() -> None:
    assert list(STAGE_KINDS) == ["truth", "generator", "detector", "discriminator", "unfolding", "report"]
