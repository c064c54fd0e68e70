"""A small fuzz of the pipeline loader: any TOML document either validates or raises a clean MlegpipeError."""

from __future__ import annotations

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlegpipe.config import parse_config
from mlegpipe.exceptions import MlegpipeError

KEYS = st.sampled_from(["pipeline", "truth", "generator", "detector", "report", "kind", "plugin", "events",
                        "seed", "split", "inputs", "train_on", "surrogate", "steps", "name", "camel", "x"])
SCALARS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                    st.booleans(), st.text(max_size=12), st.sampled_from(["camel", "ring", "truth", "flow"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)
DOCS = st.dictionaries(KEYS, st.one_of(SCALARS, st.dictionaries(KEYS, VALUES, max_size=6)), max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=DOCS)
def test_loader_never_crashes(toy_registry, doc: dict) -> None:
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return  # not representable as TOML (mixed-type arrays in old TOML)
    try:
        parse_config(text, "fuzz.toml", registry=toy_registry)
    except MlegpipeError as err:
        assert str(err).startswith("fuzz.toml")


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text(toy_registry, text: str) -> None:
    try:
        parse_config(text, "fuzz.toml", registry=toy_registry)
    except MlegpipeError:
        pass
