"""Throwaway NATS servers with JetStream for the tests: one node, or a 3-node cluster on
127.0.0.1 (Debian's ``nats-server``; ``.ci/run`` installs it when missing)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["NatsUnavailable", "nats_binary", "running_nats"]


class NatsUnavailable(RuntimeError):
    """No ``nats-server`` binary on this machine."""


def nats_binary() -> str:
    path = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
    if path is None:
        raise NatsUnavailable("nats-server not found: install Debian's nats-server "
                              "(`apt-get install -y nats-server`; .ci/run does this)")
    return path


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited {proc.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nats-server not listening on {port}")


@contextmanager
def running_nats(nodes: int = 1, *, max_payload: int | None = None) -> Iterator[str]:
    """Start ``nodes`` JetStream servers (a cluster when more than one) in a temporary
    folder; yield the client URL(s), comma-joined; stop and remove them at the end.
    ``max_payload``: the servers' limit on a message's size (default 1 MiB)."""
    binary = nats_binary()
    tmp = Path(tempfile.mkdtemp(prefix="solvency-nats-"))
    ports = _free_ports(2 * nodes)
    client, cluster = ports[:nodes], ports[nodes:]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(nodes):
            cmd = [binary, "-js", "-a", "127.0.0.1", "-p", str(client[i]),
                   "-sd", str(tmp / f"n{i}"), "-n", f"n{i}"]
            if max_payload is not None:
                conf = tmp / f"n{i}.conf"
                conf.write_text(f"max_payload: {max_payload}\n")
                cmd += ["-c", str(conf)]
            if nodes > 1:
                routes = ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(cluster)
                                  if j != i)
                cmd += ["--cluster_name", "solvency-test",
                        "--cluster", f"nats://127.0.0.1:{cluster[i]}", "--routes", routes]
            log = tmp / f"n{i}.log"
            with log.open("wb") as fh:
                procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT))
        for i, p in enumerate(procs):
            _wait_port(client[i], p, tmp / f"n{i}.log", 30)
        if nodes > 1:  # JetStream elects its meta leader after the routes connect
            _wait_meta_leader(tmp, nodes)
        yield ",".join(f"nats://127.0.0.1:{p}" for p in client)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_meta_leader(tmp: Path, nodes: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = "".join((tmp / f"n{i}.log").read_text(errors="replace") for i in range(nodes))
        if "JetStream cluster new metadata leader" in text or "is the new meta leader" in \
                text.lower() or "Self is new JetStream cluster metadata leader" in text:
            return
        time.sleep(0.1)
