"""Shared test helpers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import settings as _hypothesis_settings

# CI is deterministic: under CI=true every property test draws the same examples on every
# run (derandomize), so a red CI is a reproducible failure, not a lucky draw. Off CI the
# draws stay random and keep exploring; a failure found there becomes an @example.
_hypothesis_settings.register_profile("solvency-ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    _hypothesis_settings.load_profile("solvency-ci")

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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL server for the session (tests/postgres.py): its
    ``postgres`` database; use ``tests.postgres.fresh_database`` for an empty one per test.
    Skips without the server binaries, except in CI, where it fails."""
    from tests.postgres import PostgresUnavailable, pg_bindir, running_postgres

    try:
        pg_bindir()
    except PostgresUnavailable as exc:
        missing(str(exc))
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def nats_cluster() -> Iterator[str]:
    """Client URLs (comma-joined) of a throwaway 3-node NATS JetStream cluster on
    127.0.0.1 (tests/nats.py). Skips without nats-server, except in CI, where it fails."""
    from tests.nats import NatsUnavailable, nats_binary, running_nats

    try:
        nats_binary()
    except NatsUnavailable as exc:
        missing(str(exc))
    with running_nats(3) as url:
        yield url


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium for the browser tests (the report and the dashboard); a
    missing browser fails unless SOLVENCY_SKIP_BROWSER=1 asks to skip them."""
    if os.environ.get("SOLVENCY_SKIP_BROWSER") == "1":
        pytest.skip("SOLVENCY_SKIP_BROWSER=1: browser tests skipped")
    path = shutil.which("chromium") or ("/usr/bin/chromium"
                                        if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        pytest.fail("chromium not found: install Debian's chromium (`apt-get install -y "
                    "chromium`; .ci/run does this) or set SOLVENCY_SKIP_BROWSER=1 to skip "
                    "the browser tests", pytrace=False)
    return path
