"""A throwaway PostgreSQL server for tests and benchmarks: ``running_postgres()``.

Runs the distribution's own binaries (``initdb``, ``pg_ctl``) on a cluster in a temporary
directory, listening on a free port of 127.0.0.1 only, with a random password (so the
store's password masking is exercised too), and removes it all afterwards. No service,
no network, no docker: CI installs Debian's ``postgresql`` package (``.ci/run``) and the
tests really run against it.

PostgreSQL refuses to run as root; when we are root the server runs as the ``postgres``
user (or ``nobody``), through ``subprocess``'s ``user=``/``group=`` (no runuser needed).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["PostgresUnavailable", "fresh_database", "pg_bindir", "running_postgres"]


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (the caller skips, or fails in CI)."""


def pg_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: ``$PG_BINDIR``, the newest
    ``/usr/lib/postgresql/*/bin`` (Debian keeps them off PATH), or PATH."""
    env = os.environ.get("PG_BINDIR")
    candidates = [Path(env)] if env else []

    def version(p: str) -> tuple[int, ...]:
        part = Path(p).parent.parent.name
        return tuple(int(x) for x in part.split(".") if x.isdigit())

    candidates += [Path(p).parent for p in sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)]
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file():
            return c
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's "
        "`postgresql` package or set PG_BINDIR")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> dict[str, Any]:
    """subprocess arguments that drop root to an unprivileged user (PostgreSQL's rule)."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(name)
            return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    raise PostgresUnavailable("running as root and no `postgres` or `nobody` user to "
                              "run PostgreSQL as")


def _check(cmd: list[str], what: str, log: Path | None = None, **kw: Any) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, **kw)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip()
        if log is not None and log.is_file():
            tail += "\n" + log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{what} failed (rc {res.returncode}): {tail}")


@contextlib.contextmanager
def running_postgres(*, durable: bool = False) -> Iterator[str]:
    """Start a private PostgreSQL cluster; yield ``postgresql+psycopg://...`` to its
    ``postgres`` database; stop and delete it on exit.

    ``durable=False`` (tests) turns ``fsync`` off: the tests check behaviour, not crash
    safety, and it makes each CREATE DATABASE and commit fast. Benchmarks pass
    ``durable=True`` to measure real commits. ``synchronous_commit`` is never changed.
    """
    bindir = pg_bindir()
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="solvency-pg-", dir="/tmp" if as_user else None))
    data, log, pwfile = root / "data", root / "server.log", root / "pw"
    password = secrets.token_urlsafe(12)
    pwfile.write_text(password + "\n")
    if as_user:
        for p in (root, pwfile):
            os.chown(p, as_user["user"], as_user["group"])
    started = False
    try:
        _check([str(bindir / "initdb"), "-D", str(data), "-U", "solvency",
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                "--locale=C", "--no-sync", "--no-instructions"], "initdb", **as_user)
        pwfile.unlink()
        for attempt in range(5):
            port = _free_port()
            opts = (f"-p {port} -c listen_addresses=127.0.0.1 "
                    f"-c unix_socket_directories={root} -c max_connections=50 "
                    f"-c fsync={'on' if durable else 'off'}")
            try:
                _check([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                        "-t", "60", "-o", opts, "start"], "pg_ctl start", log, **as_user)
            except RuntimeError:
                if attempt == 4:
                    raise
                continue  # most likely the port was taken between probe and bind
            started = True
            break
        yield f"postgresql+psycopg://solvency:{password}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                            "-w", "-t", "60", "stop"], capture_output=True, timeout=120,
                           check=False, **as_user)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url``; return the URL pointing at it
    (each test gets an empty database: cheaper than a cluster, cleaner than DROP TABLE)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)
