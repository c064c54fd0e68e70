"""Pipeline files: parsing, overrides, plugin lookup, sample wiring."""

from __future__ import annotations

import pytest

from mlegpipe.config import apply_override, parse_config
from mlegpipe.exceptions import ConfigError, PluginError
from mlegpipe.plan import plan_pipeline

BASE = """
[pipeline]
name = "t"
seed = 7

[truth]
plugin = "test-gauss"
events = 600

[generator]
plugin = "test-gauss-fit"

[detector]
plugin = "test-noise"
"""


def test_parse_and_plan(toy_registry) -> None:
    cfg = parse_config(BASE, "base.toml", registry=toy_registry)
    assert [s.section for s in cfg.stages] == ["truth", "generator", "detector"]
    steps = plan_pipeline(cfg)
    assert steps[1].train_on == ["truth_train", "truth_valid"]
    assert steps[2].outputs == ["truth_train_detector", "truth_valid_detector", "truth_test_detector",
                                "generated_detector"]
    resolved = cfg.resolved()
    assert resolved["truth"]["events"] == 600 and resolved["truth"]["chunk_size"] == 500
    assert "seed = 7" in cfg.resolved_toml()


def test_override(toy_registry) -> None:
    cfg = parse_config(BASE, "base.toml", ["truth.events=900", "pipeline.seed=3"], registry=toy_registry)
    assert cfg.stages[0].params.events == 900 and cfg.settings.seed == 3
    raw = {"a": {"b": 1}}
    apply_override(raw, "a.c=[1, 2]")
    apply_override(raw, "a.d=hello")
    assert raw["a"] == {"b": 1, "c": [1, 2], "d": "hello"}


@pytest.mark.parametrize(
    ("text", "overrides", "error", "fragment"),
    [
        ("[truth\nplugin='x'", [], ConfigError, "TOML syntax error"),
        (BASE.replace('"test-gauss"', '"test-gaus"'), [], PluginError,
         "truth.plugin = 'test-gaus': no truth plugin of this name is installed"),
        (BASE.replace("events = 600", "evnts = 600"), [], ConfigError, "did you mean 'events'?"),
        (BASE.replace("events = 600", "events = -1"), [], ConfigError, "truth.events = -1: must be >= 1"),
        (BASE.replace("[detector]", "[detectr]"), [], ConfigError, "did you mean 'detector'?"),
        (BASE.replace('plugin = "test-noise"', ""), [], ConfigError, "detector.plugin: missing plugin"),
        (BASE, ["generatr.steps=5"], ConfigError, "did you mean 'generator'?"),
        (BASE, ["seed"], ConfigError, "section.key=value"),
        (BASE.replace("seed = 7", "seed = -7"), [], ConfigError, "pipeline.seed = -7"),
        (BASE.replace('name = "t"', 'split = [0.5, 0.6, 0.1]'), [], ConfigError, "pipeline.split"),
        ("[pipeline]\nseed=1\n", [], ConfigError, "declares no stage"),
    ],
)
def test_bad_configs(toy_registry, text: str, overrides: list[str], error: type, fragment: str) -> None:
    with pytest.raises(error) as err:
        parse_config(text, "bad.toml", overrides, registry=toy_registry)
    assert fragment in str(err.value)
    assert str(err.value).startswith("bad.toml")


def test_miswired(toy_registry) -> None:
    text = """
[generator]
plugin = "test-gauss-fit"
[truth]
plugin = "test-gauss"
"""
    with pytest.raises(ConfigError, match="generator.train_on = 'truth_train': no such sample"):
        plan_pipeline(parse_config(text, "w.toml", registry=toy_registry))


JUDGED = BASE.replace("[generator]", '''[unseen]
kind = "truth"
plugin = "test-gauss"
events = 600

[generator]
judge_on = "unseen"''')


def test_a_generator_judged_on_another_truth(toy_registry) -> None:
    """judge_on: learn from [truth], compare with (and generate at the conditions of) the [unseen] test split."""
    cfg = parse_config(JUDGED, "j.toml", registry=toy_registry)
    steps = plan_pipeline(cfg)
    gen = next(s for s in steps if s.section == "generator")
    assert gen.train_on == ["truth_train", "truth_valid"] and gen.reference == "unseen_test"
    comparison = next(c for c in cfg.report_plan.comparisons if c.label == "generated")
    assert (comparison.reference, comparison.reference2, comparison.training) == \
        ("unseen_test", "unseen_valid", "truth_train")
    assert cfg.resolved()["generator"]["judge_on"] == "unseen"


@pytest.mark.parametrize(("change", "fragment"), [
    (('judge_on = "unseen"', 'judge_on = "unsen"'), "generator.judge_on = 'unsen': no truth section with this "
                                                     "prefix before the generator; truths: truth, unseen"),
    (('judge_on = "unseen"', "judge_on = 3"), "generator.judge_on = 3: judge_on is a generator's reference truth"),
    (('plugin = "test-noise"', 'plugin = "test-noise"\njudge_on = "truth"'), "detector.judge_on = 'truth'"),
])
def test_bad_judge_on(toy_registry, change: tuple[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan_pipeline(parse_config(JUDGED.replace(*change), "j.toml", registry=toy_registry))
    assert fragment in str(err.value)
