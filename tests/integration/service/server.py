"""A real ``solvency serve`` process on 127.0.0.1 for the service tests: start, wait
until ready, SIGTERM or SIGKILL it, start it again on the same store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from solvency.adapters.store import EventStore

__all__ = ["ServerProcess", "free_port", "make_keys"]


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_keys(db: str) -> dict[str, str]:
    """One key per use: ``read``, ``submit`` (submit+read), ``govern`` (all scopes)."""
    with EventStore(db) as store:
        return {
            "read": store.create_key(["read"], label="reader")[1],
            "submit": store.create_key(["submit", "read"], label="submitter")[1],
            "govern": store.create_key(["submit", "read", "govern"], label="admin")[1],
        }


class ServerProcess:
    """``solvency serve --db DB`` as a child process (its log in ``log_path``)."""

    def __init__(self, db: str, workdir: Path, *, venue: str | None = "binance",
                 args: tuple[str, ...] = (), full_cli: bool = False) -> None:
        self.db = db
        self.workdir = workdir
        self.venue = venue
        self.args = args
        self.full_cli = full_cli
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True, timeout: float = 120.0) -> None:
        # `solvency serve` itself (the same typer command), without importing every
        # other command's module: a second off each of the many restarts
        entry = ("from solvency.cli.main import main; main()" if self.full_cli else
                 "import typer; from solvency.cli.serve import serve; typer.run(serve)")
        cmd = [sys.executable, "-c", entry, *(["serve"] if self.full_cli else []),
               "--db", self.db, "--port", str(self.port), "--log-level", "info", *self.args]
        if self.venue is not None:
            cmd += ["--venue", self.venue]
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()  # never leave a server of an earlier start running
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n==== start {self.starts}\n".encode())
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir, env=env)
        log.close()
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    def wait_exit(self, timeout: float = 120.0) -> int:
        """Wait for a server that should exit on its own (a refused start)."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int:
        """SIGTERM (clean shutdown: drains, snapshots); returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(120)
            # uvicorn shuts down cleanly on SIGTERM, then re-raises the signal so the
            # exit status says how the process ended: -SIGTERM is a clean stop
            return 0 if rc == -signal.SIGTERM else rc
        except subprocess.TimeoutExpired:
            self.kill9()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""
