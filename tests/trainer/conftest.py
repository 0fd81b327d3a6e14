"""Trainer test fixtures: one chip cache for the whole session, so each photo is aligned once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def chip_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chips")
