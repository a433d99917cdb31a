"""Stress lab over a real window, side by side with another checkout (issue 17's speed target).

Run: ``python bench/bench_window.py [--accounts 100000] [--start T --horizon H]
[--baseline DIR] [--prices FILE]``.

The run is what ``solvency simulate --prices FILE --venue binance`` does with the bundled
default scenario (its calibrated population, liquidity and all five agents) over the real
2021-05-16..20 Binance BTC/USDT 1-minute bars (ETH-PERP follows BTC's moves); by default
the whole file (the default's own window is not in it: 28,004 points), with the
population cut to ``--accounts``. ``--start``/``--horizon`` pick a window inside the
file instead. Each run is a fresh process pinned to one numba thread, after a warm-up
run in that process that loads the compiled kernels; its CPU time (``process_time``,
the figure to compare on a machine shared with other work) and wall time are printed
with account-steps per CPU second.

``--baseline DIR`` runs the same window with the sources of another checkout (``DIR/src``:
e.g. a ``git worktree add`` of the commit before an optimisation) at the same time, one
process each, and prints the ratio of CPU times and whether every metric (``wall_s``
aside) and the engine's state hash are identical. Target (issue 17): the whole file at
100,000 accounts in <= 40 s of CPU on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from machine import describe

REPO = Path(__file__).resolve().parents[1]
PRICES = REPO.parent / "shared" / "data" / "btcusdt_binance_spot_1m_2021-05-16_2021-05-20.csv"
TARGET_CPU_S = 40.0

# run in a fresh interpreter with the checkout's sources first on the path
RUNNER = r"""
import hashlib, json, os, re, sys, time
from pathlib import Path
os.environ["NUMBA_NUM_THREADS"] = "1"
from solvency.sim.run import run_scenario
from solvency.sim.scenario import DEFAULT_SCENARIO_TOML, parse_scenario

accounts, start, horizon, prices, repo = sys.argv[1:6]

def scenario(n, start, horizon):
    text = re.sub(r"(?m)^n_accounts = .*$", f"n_accounts = {n}", DEFAULT_SCENARIO_TOML)
    if start:
        text = re.sub(r'(?m)^start = ".*"$', f'start = "{start}"', text)
        text = re.sub(r'(?m)^horizon = ".*"$', f'horizon = "{horizon}"', text)
    return parse_scenario(text, source="default.toml", base_dir=Path(repo) / "scenarios"
                          ).with_prices({"BTC-PERP": prices})

run_scenario(scenario(500, "2021-05-19T12:30:00Z", "1h"))  # warm-up: kernels loaded
sc = scenario(int(accounts), start, horizon)
c0, t0 = time.process_time(), time.perf_counter()
res = run_scenario(sc, state_hashes=True)
cpu, wall = time.process_time() - c0, time.perf_counter() - t0
m = dict(res.metrics)
state = m.pop("engine_state_hash")
m.pop("engine_section_hashes")
m.pop("wall_s")
digest = hashlib.sha256(json.dumps(m, sort_keys=True, default=repr).encode()).hexdigest()
print(json.dumps({"cpu_s": cpu, "wall_s": wall, "points": m["points"],
                  "accounts": m["accounts"], "liquidations": m["liquidations"],
                  "adl_count": m["adl_count"], "conserved": m["conserved"],
                  "state_hash": state, "metrics_sha256": digest}))
"""


def start_run(src: Path, args: argparse.Namespace) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(src), NUMBA_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(args.accounts), args.start or "",
         args.horizon or "", args.prices, str(src.parent)],
        env=env, stdout=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"run failed (exit {proc.returncode})")
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def line(label: str, r: dict[str, object]) -> str:
    cpu = float(r["cpu_s"])  # type: ignore[arg-type]
    rate = int(r["accounts"]) * int(r["points"]) / cpu  # type: ignore[call-overload]
    return (f"{label}: {cpu:.1f} s CPU, {float(r['wall_s']):.1f} s wall "  # type: ignore[arg-type]
            f"({r['points']:,} points x {r['accounts']:,} accounts: {rate / 1e6:.1f} M "
            f"account-steps per CPU s); liquidations {r['liquidations']:,}, ADL fills "
            f"{r['adl_count']:,}, conserved {r['conserved']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--start", default=None, help="window start (default: the whole file)")
    ap.add_argument("--horizon", default="24h")
    ap.add_argument("--prices", default=str(PRICES))
    ap.add_argument("--baseline", default=None, help="a checkout to run side by side")
    args = ap.parse_args()
    print(describe(), flush=True)
    with open("/proc/loadavg") if Path("/proc/loadavg").exists() else open(os.devnull) as f:
        print(f"load average at start: {f.read().strip() or '?'}", flush=True)
    window = f"{args.start} + {args.horizon}" if args.start else "the whole file"
    print(f"window: {window} of {Path(args.prices).name}, {args.accounts:,} accounts",
          flush=True)
    mine = start_run(REPO / "src", args)
    base = start_run(Path(args.baseline).resolve() / "src", args) if args.baseline else None
    r = finish(mine)
    print(line("this checkout", r))
    target = "met" if float(r["cpu_s"]) <= TARGET_CPU_S else "missed"  # type: ignore[arg-type]
    if args.accounts == 100_000 and not args.start:
        print(f"target <= {TARGET_CPU_S:.0f} s CPU: {target} "
              f"({float(r['cpu_s']) / TARGET_CPU_S:.2f}x the target)")  # type: ignore[arg-type]
    if base is not None:
        b = finish(base)
        print(line(f"baseline {args.baseline}", b))
        same = all(r[k] == b[k] for k in ("state_hash", "metrics_sha256", "points"))
        print(f"speed-up (baseline CPU / this CPU): "
              f"{float(b['cpu_s']) / float(r['cpu_s']):.2f}x; "  # type: ignore[arg-type]
              f"state hash and every metric identical: {same}")


if __name__ == "__main__":
    main()
