"""One line naming the machine, libraries and commit, printed first by every benchmark.

Figures in docs/benchmarks.md are only comparable on the same kind of machine: the CPU
model, core count, cache sizes (the price update's working set is a few MB, so L2/L3 size
moves it), the library versions and the commit travel with every figure.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _caches() -> str:
    parts = []
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    with contextlib.suppress(OSError):
        for idx in sorted(base.glob("index*")):
            level = (idx / "level").read_text().strip()
            kind = (idx / "type").read_text().strip()
            size = (idx / "size").read_text().strip()
            if kind == "Instruction":
                continue
            parts.append(f"L{level}{'d' if kind == 'Data' else ''} {size}")
    return ", ".join(parts) or "caches ?"


def _commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parent, check=False,
                             timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, check=False, timeout=5,
                                   cwd=Path(__file__).resolve().parent).stdout.strip()
            return out.stdout.strip() + ("+dirty" if dirty else "")
    return "?"


def _versions() -> str:
    names = ("numpy", "numba", "scipy", "arch")
    found = []
    for name in names:
        try:
            mod = __import__(name)
        except ImportError:
            continue
        found.append(f"{name} {getattr(mod, '__version__', '?')}")
    return ", ".join(found)


def describe() -> str:
    """``machine: CPU (N cores; caches) | Python x, numpy y, ... | commit abc123``."""
    return (f"machine: {_cpu_model()} ({os.cpu_count()} cores; {_caches()}) | "
            f"Python {platform.python_version()}, {_versions()} | commit {_commit()}")


if __name__ == "__main__":
    print(describe())
