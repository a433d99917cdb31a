"""Benchmark: scenario-grid portfolio margin, 100,000 accounts x 20 options, one core.

Run ``python bench/bench_portfolio.py [--baseline DIR] [--repeat K]``. Two books of
100,000 accounts x 20 option positions:

* ``listed`` (the target's figure): positions on a venue's listed options, as a venue's
  accounts hold them: Deribit's BTC listing shape, 13 expiries (3 dailies, 3 weeklies,
  3 monthlies, 4 quarterlies: Deribit's Contract Introduction Policy,
  https://support.deribit.com/hc/en-us/articles/25944688876957) x 40 strikes x call and
  put = 1,040 options, each at its one mark vol on a smile; each account holds 20
  distinct ones, in listing order (the engine orders a row's positions by market);
* ``distinct``: every position its own strike, expiry and vol (nothing shared: each
  position is valued on its own, the worst case for the scan).

Each is margined by solvency's compiled kernel
(:func:`solvency.core.portfolio.portfolio_margin`, numba, one thread) on the 27-scenario
core of Deribit's grid (9 price buckets x vol up, same, down) with P&L in USD
(``pnl_currency = "quote"``, per-row short-option charge), the listed book also as
shipped (P&L in BTC, short options netted per strike), on Deribit's full grid (35: +
the extended table) and on CME SPAN's 16. Every option is fully revalued with Black-76
(each distinct listed option once per scenario). Each measurement runs in a fresh
process pinned to one numba thread, best CPU time of ``--repeat``. With ``--baseline
DIR`` the same measurements run from another checkout's sources (``DIR/src``),
alternating with this one: the ratio is read side by side at the same load, and a
digest of every account's margins says whether both gave the same bits.

Last, the plain-Python twin (:mod:`solvency.core.portfolio.reference`, a loop per
account) on a sample of accounts, extrapolated to all of them, with the largest
relative difference between the two on the sample.

Target from the portfolio margin issue: at most 1 s for the 27-scenario run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
N_ACCOUNTS = 100_000
PER_ACCOUNT = 20
N_SAMPLE = 300
BUDGET_S = 1.0
SEED = 20261120
F = 60_000.0
# Deribit BTC option expiries (days): 3 dailies, 3 weeklies, 3 monthlies, 4 quarterlies
EXPIRY_DAYS = (1, 2, 3, 7, 14, 21, 28, 56, 84, 91, 182, 273, 364)
STRIKES_PER_EXPIRY = 40
# (book, grid) measured, the target's first
RUNS = (("listed", "deribit-pm-core-27"), ("listed", "deribit-pm-core-27-coin"),
        ("listed", "deribit-pm"), ("listed", "cme-span-16"),
        ("distinct", "deribit-pm-core-27"))


def book(n_accounts: int, per: int, seed: int) -> dict[str, np.ndarray]:
    """Return a BTC-like option book where every position is its own option (strike,
    expiry 1 day to 1 year, vol): nothing is shared between positions."""
    rng = np.random.default_rng(seed)
    n = n_accounts * per
    t = np.exp(rng.uniform(np.log(1 / 365), np.log(1.0), n))
    vol = rng.uniform(0.35, 1.2, n)
    kind_call, kind_put = 1, 2  # KIND_CALL, KIND_PUT
    return {
        "account": np.repeat(np.arange(n_accounts, dtype=np.int64), per),
        "underlying": np.zeros(n, dtype=np.int64),
        "kind": np.where(rng.random(n) < 0.5, kind_call, kind_put).astype(np.int8),
        "strike": F * np.exp(rng.normal(0.0, 1.0, n) * vol * np.sqrt(t)),
        "expiry_yr": t,
        "size": np.round(rng.normal(0.0, 5.0, n), 1),
        "vol": vol,
    }


def listing() -> dict[str, np.ndarray]:
    """Return the listed options: per expiry, 40 strikes from 2.5 ATM standard
    deviations below to 2.5 above (rounded to $100), a call and a put on each, at a
    smile's mark vol (55 % ATM, skewed to the puts)."""
    t = np.repeat(np.array(EXPIRY_DAYS, dtype=np.float64) / 365.0, STRIKES_PER_EXPIRY)
    z = np.tile(np.linspace(-2.5, 2.5, STRIKES_PER_EXPIRY), len(EXPIRY_DAYS))
    iv = 0.55 + 0.025 * z * z - 0.03 * z
    strike = np.round(F * np.exp(z * 0.55 * np.sqrt(t)), -2)
    n = t.shape[0]
    return {"kind": np.repeat(np.array([1, 2], dtype=np.int8), n),
            "strike": np.tile(strike, 2), "expiry_yr": np.tile(t, 2), "vol": np.tile(iv, 2)}


def listed_book(n_accounts: int, per: int, seed: int) -> dict[str, np.ndarray]:
    """Return a book of ``per`` distinct listed options per account (uniformly drawn,
    in listing order), sizes as :func:`book`'s."""
    rng = np.random.default_rng(seed)
    opts = listing()
    n_opts = opts["kind"].shape[0]
    # sorted draws from [0, n - per] plus 0..per-1: per distinct indices, increasing
    pick = (np.sort(rng.integers(0, n_opts - per + 1, (n_accounts, per)), axis=1)
            + np.arange(per)).ravel()
    n = n_accounts * per
    return {
        "account": np.repeat(np.arange(n_accounts, dtype=np.int64), per),
        "underlying": np.zeros(n, dtype=np.int64),
        **{k: v[pick] for k, v in opts.items()},
        "size": np.round(rng.normal(0.0, 5.0, n), 1),
    }


def grids() -> dict[str, Any]:
    """The grids measured, by name."""
    from solvency.adapters.grids import load_grid

    deribit = load_grid("deribit_pm")

    def core27(grid: Any, name: str) -> Any:
        keep = grid.move_is_fraction == 0.0
        return replace(grid, name=name, price_move=grid.price_move[keep],
                       vol_move=grid.vol_move[keep], weight=grid.weight[keep],
                       move_is_fraction=grid.move_is_fraction[keep])

    usd = replace(deribit, pnl_currency="quote", short_option_net="position")
    out = [core27(usd, "deribit-pm-core-27"), core27(deribit, "deribit-pm-core-27-coin"),
           deribit, load_grid("cme_span_16")]
    return {g.name: g for g in out}


def the_book(name: str) -> dict[str, np.ndarray]:
    """The book ``name`` (``listed`` or ``distinct``)."""
    make = listed_book if name == "listed" else book
    return make(N_ACCOUNTS, PER_ACCOUNT, SEED)


def child(book_name: str, grid_name: str, repeat: int) -> dict[str, Any]:
    """Margin one book on one grid ``repeat`` times in this process (the sources on
    PYTHONPATH); return the best CPU time and a digest of the margins."""
    from solvency.core.portfolio import portfolio_margin

    b = the_book(book_name)
    grid = grids()[grid_name]
    portfolio_margin(**{k: v[:PER_ACCOUNT] for k, v in b.items()}, underlying_price=[F],
                     rate=0.0, grid=grid, n_accounts=N_ACCOUNTS)  # compile / load cache
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.process_time()
        out = portfolio_margin(**b, underlying_price=[F], rate=0.0, grid=grid,
                               n_accounts=N_ACCOUNTS)
        best = min(best, time.process_time() - t0)
    assert out is not None
    h = hashlib.sha256()
    for arr in (out.mm, out.im, out.worst_scenario, out.scan_loss):
        h.update(np.ascontiguousarray(arr).tobytes())
    return {"cpu_s": best, "digest": h.hexdigest()[:16], "n_scenarios": grid.n_scenarios,
            "mm_head": out.mm[:N_SAMPLE].tolist()}


def run(src: Path, book_name: str, grid_name: str, repeat: int) -> dict[str, Any]:
    """Run :func:`child` in a fresh process with ``src`` first on the path."""
    env = dict(os.environ, PYTHONPATH=str(src), NUMBA_NUM_THREADS="1")
    done = subprocess.run([sys.executable, __file__, "--child", f"{book_name}:{grid_name}",
                           "--repeat", str(repeat)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{src}: {book_name} {grid_name} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return "?"


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--baseline", default=None, help="a checkout to run side by side")
    ap.add_argument("--repeat", type=int, default=3, help="runs per process (best kept)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        book_name, grid_name = args.child.split(":")
        print(json.dumps(child(book_name, grid_name, args.repeat)))
        return
    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(REPO / "src"))
    from machine import describe

    print(describe(), flush=True)
    print(f"load average at start: {_load()}", flush=True)
    n_pos = N_ACCOUNTS * PER_ACCOUNT
    n_listed = listing()["kind"].shape[0]
    print(f"portfolio margin: {N_ACCOUNTS:,} accounts x {PER_ACCOUNT} options = "
          f"{n_pos:,} positions, one core, best CPU time of {args.repeat} in a fresh "
          f"process; book 'listed': {n_listed:,} listed options, 'distinct': every "
          f"position its own option", flush=True)
    checkouts = [("this", REPO / "src")]
    if args.baseline:
        checkouts.append(("baseline", Path(args.baseline).resolve() / "src"))
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    for book_name, grid_name in RUNS:
        for name, src in checkouts:  # alternating: the same load for both
            r = run(src, book_name, grid_name, args.repeat)
            results[(name, book_name, grid_name)] = r
            ns = r["cpu_s"] / (n_pos * r["n_scenarios"]) * 1e9
            print(f"  {name:8} {book_name:8} {grid_name:<24} {r['n_scenarios']:>2} "
                  f"scenarios: {r['cpu_s'] * 1e3:8.1f} ms CPU ({ns:.1f} ns per "
                  f"option-scenario), margins {r['digest']}", flush=True)
    print(f"load average at end: {_load()}")
    if args.baseline:
        for book_name, grid_name in RUNS:
            a = results[("this", book_name, grid_name)]
            b = results[("baseline", book_name, grid_name)]
            print(f"{book_name} {grid_name}: baseline {b['cpu_s'] * 1e3:.1f} ms / this "
                  f"{a['cpu_s'] * 1e3:.1f} ms CPU = {b['cpu_s'] / a['cpu_s']:.2f}x; same "
                  f"margins to the bit: {a['digest'] == b['digest']}")
    coin = results[("this", "listed", "deribit-pm-core-27-coin")]["cpu_s"]
    usd_run = results[("this", "listed", "deribit-pm-core-27")]
    print(f"coin (inverse) P&L + per-strike netting vs USD P&L, listed book: "
          f"{coin / usd_run['cpu_s']:.2f}x")

    from solvency.core.portfolio.reference import Position, portfolio_margin_reference

    b = the_book("listed")
    positions = [
        [Position(0, int(b["kind"][i]), float(b["strike"][i]), float(b["expiry_yr"][i]),
                  float(b["size"][i]), float(b["vol"][i]), F)
         for i in range(a * PER_ACCOUNT, (a + 1) * PER_ACCOUNT)]
        for a in range(N_SAMPLE)
    ]
    t0 = time.perf_counter()
    ref = portfolio_margin_reference(positions, n_underlyings=1, rate=0.0,
                                     grid=grids()["deribit-pm-core-27"])
    per_account = (time.perf_counter() - t0) / N_SAMPLE
    ref_mm = np.array([r[0] for r in ref])
    mm = np.array(usd_run["mm_head"])
    diff = float(np.max(np.abs(mm - ref_mm) / np.maximum(np.abs(ref_mm), 1.0)))
    secs = float(usd_run["cpu_s"])
    python_all = per_account * N_ACCOUNTS
    print(f"plain Python per account (sample of {N_SAMPLE}, listed book): "
          f"{per_account * 1e3:.2f} ms -> {python_all:.0f} s for all; kernel is "
          f"{python_all / secs:,.0f}x faster; max rel diff {diff:.1e}")
    verdict = "OK" if secs <= BUDGET_S else "OVER BUDGET"
    print(f"budget {BUDGET_S:.1f} s for the 27-scenario run (listed book): "
          f"{secs:.3f} s  {verdict}")
    worst = results[("this", "distinct", "deribit-pm-core-27")]["cpu_s"]
    print(f"every position its own option (nothing shared): {worst:.3f} s "
          f"({'within' if worst <= BUDGET_S else 'over'} the budget)")


if __name__ == "__main__":
    main()
