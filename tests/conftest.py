"""Shared test helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def missing(reason: str) -> NoReturn:
    """Skip a test whose input is absent, except in CI (``CI=true``), where it fails: CI
    has ../shared beside the checkout, so a renamed data file must not skip silently."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (a test may not skip in CI)")
    pytest.skip(reason)


@pytest.fixture
def shared_data() -> Path:
    """The real market data directory beside the checkout (skip if absent, fail in CI)."""
    if not SHARED_DATA.is_dir():
        missing(f"{SHARED_DATA} not present")
    return SHARED_DATA
