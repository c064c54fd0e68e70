"""Every pipeline shipped in pipelines/ validates: schemas, plugin names, sample flow, stage construction."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlegpipe.config import load_config
from mlegpipe.pipeline import build_stages
from mlegpipe.registry import load_plugins

PIPELINES = sorted((Path(__file__).resolve().parents[1] / "pipelines").glob("*.toml"))


@pytest.fixture(scope="module")
def registry():
    return load_plugins(strict=True)


def test_there_are_pipelines() -> None:
    names = {p.stem for p in PIPELINES}
    assert {"quickstart", "detector_matrix"} <= names


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_validates(path: Path, registry) -> None:
    config = load_config(path, registry=registry)
    assert config.steps, f"{path.name} has no stages"
    build_stages(config)
