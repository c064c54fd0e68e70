"""Shared fixtures."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per test worker (`pytest -n 2` on 2 cores); derandomized hypothesis under CI."""
    import os

    import torch
    from hypothesis import settings

    torch.set_num_threads(1)
    settings.register_profile("ci", derandomize=True, deadline=None)
    if os.environ.get("CI"):
        settings.load_profile("ci")


@pytest.fixture(scope="session")
def toy_registry():
    """The installed plugins plus the test-only toy stages."""
    import toy_stages

    from mlegpipe.registry import load_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_plugins(extra=[toy_stages])
