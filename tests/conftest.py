"""Shared fixtures."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def toy_registry():
    """The installed plugins plus the test-only toy stages."""
    import toy_stages

    from mlegpipe.registry import load_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_plugins(extra=[toy_stages])
