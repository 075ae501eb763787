"""Shared fixtures for inference tests: the real sample data (when present) and the shipped model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = SHARED_DATA / "openslide-fixtures"
SHIPPED_MODEL = REPO / "models" / "slidelane_synthetic_nuclei" / "instanseg.pt"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample slides not present ({SHARED_DATA} is missing: a plain clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The shipped model, or SLIDELANE_TEST_MODEL (a .pt) to test a candidate before shipping it."""
    override = os.environ.get("SLIDELANE_TEST_MODEL")
    if override:
        return Path(override)
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"shipped model not trained yet ({SHIPPED_MODEL}); run python -m training.train_model")
    return SHIPPED_MODEL
