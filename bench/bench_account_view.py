"""`Engine.account_view` per call, side by side with a baseline (issue 26: under 50 us).

Run: ``python bench/bench_account_view.py [--accounts 10000,100000] [--baseline DIR]``.

Builds ``bench_replay.py``'s seeded log (one deposit and 3 fills per account on
BTC-PERP and ETH-PERP of the ``binance`` preset, price moves), applies it through
``Engine.apply`` and times, in this process's CPU time (``time.process_time``):

* ``view``: ``account_view`` of accounts a0-a3 (one or two positions each), best of
  ``--rounds`` rounds of 500 calls per account, averaged over the four;
* ``liq``: the liquidation-price kernel alone for the same accounts' positions;
* ``first``: the first ``account_view`` after a price event (its ADL ranks are not
  cached yet), median of 7 events, and ``second``: the next view of another account.

With ``--baseline DIR`` (a checkout's ``src`` folder, e.g. a ``git worktree`` of main)
the same measurement runs in a child process with that tree first on the path,
alternated with this tree's (baseline, new, baseline, new), and the ratios are printed.
Both answer the views as JSON digests, which must be equal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

HERE = Path(__file__).resolve().parent
ACCOUNTS = ("a0", "a1", "a2", "a3")


def measure(n_accounts: int, rounds: int) -> dict[str, Any]:
    """Build the book of ``n_accounts`` and time the views (CPU microseconds)."""
    sys.path.insert(0, str(HERE))
    from bench_replay import run_apply, write_log
    from solvency.core.model.events import Price

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.jsonl"
        write_log(path, n_accounts)
        _, engine = run_apply(path)
    book = engine.book
    views = {a: engine.account_view(a) for a in ACCOUNTS}
    digest = hashlib.sha256(json.dumps(views, sort_keys=True).encode()).hexdigest()[:16]
    reps = 500
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for a in ACCOUNTS:
            for _ in range(reps):
                engine.account_view(a)
        best = min(best, (time.process_time() - t) / (reps * len(ACCOUNTS)) * 1e6)
    liq_args = []
    for a in ACCOUNTS:
        slots, rows = [], []
        for r in engine.rows_of(a):
            for s in book.row_slots(r):
                slots.append(s)
                rows.append(r)
        liq_args.append((np.array(rows, dtype=np.int64), np.array(slots, dtype=np.int64)))
    liq = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for rows_arr, slots_arr in liq_args:
            for _ in range(reps):
                book.liquidation_prices(rows_arr, slots_arr)
        liq = min(liq, (time.process_time() - t) / (reps * len(ACCOUNTS)) * 1e6)
    firsts, seconds = [], []
    btc = book.market_index["BTC-PERP"]
    for k in range(7):
        engine.apply(Price(id=f"bench-view-{k}", market="BTC-PERP", price=book.marks[btc]))
        t = time.process_time()
        engine.account_view(ACCOUNTS[k % 2])
        firsts.append((time.process_time() - t) * 1e6)
        t = time.process_time()
        engine.account_view(ACCOUNTS[2 + k % 2])
        seconds.append((time.process_time() - t) * 1e6)
    return {"accounts": n_accounts, "view_us": best, "liq_us": liq,
            "first_us": statistics.median(firsts), "second_us": statistics.median(seconds),
            "digest": digest}


def _child(src: str, n_accounts: int, rounds: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(HERE.parent)])}
    out = subprocess.run([sys.executable, __file__, "--child", "--accounts", str(n_accounts),
                          "--rounds", str(rounds)], env=env, check=True, capture_output=True,
                         text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", default="10000,100000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", help="a baseline checkout's src folder")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(x) for x in args.accounts.split(",")]
    if args.child:
        print(json.dumps(measure(sizes[0], args.rounds)))
        return
    sys.path.insert(0, str(HERE))
    from machine import describe

    print(describe(), flush=True)
    print(f"load average at start: {Path('/proc/loadavg').read_text().split()[:3]}")
    here_src = str(HERE.parent / "src")
    for n in sizes:
        pairs = []
        for _ in range(2 if args.baseline else 1):
            base = _child(args.baseline, n, args.rounds) if args.baseline else None
            new = _child(here_src, n, args.rounds)
            pairs.append((base, new))
        for key in ("view_us", "liq_us", "first_us", "second_us"):
            news = [p[1][key] for p in pairs]
            line = f"{n:>9,} accounts  {key:9s} new {min(news):10.1f} us"
            if args.baseline:
                bases = [p[0][key] for p in pairs if p[0] is not None]
                line += (f"  baseline {min(bases):10.1f} us  "
                         f"ratio {min(bases) / min(news):5.2f}x")
            print(line, flush=True)
        if args.baseline:
            same = {p[0]["digest"] for p in pairs if p[0]} == {p[1]["digest"] for p in pairs}
            print(f"{n:>9,} accounts  views identical to the baseline's: {same}")
    print(f"load average at end: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
