"""Trace every ADL step of a crash replay: which waterfall step sent lots to ADL and why.

For each liquidation step whose plan gives lots to auto-deleveraging this prints the time,
the market, the lots closed in the book / taken over by the fund / sent to ADL, the fund's
cash, its counted capacity, its net position in the market and the lots its position cap
still allowed (``take_max``; 0: the cap was full). Then a summary per minute and market.
Used for docs/validation.md, "Why the binance preset ADLs on 2025-10-10"::

    .venv/bin/python scripts/trace_adl.py --accounts 5000 \\
        --start 2025-10-10T18:00:00Z --end 2025-10-11T00:00:00Z
    .venv/bin/python scripts/trace_adl.py --accounts 5000 --start ... --end ... \\
        --liquidation '{"policy": "binance", "fund_position_cap_ppm": 0}'

It wraps two methods of the engine's liquidator to read what they decided; it changes
nothing the engine computes (the run's metrics are those of ``solvency simulate``).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from solvency.core.liquidation.waterfall import AdlFill, FundTakeover, MarketClose  # noqa: E402
from solvency.core.margin.kernels import S_LOTS  # noqa: E402
from solvency.engine import liquidation as liq  # noqa: E402
from solvency.sim.run import run_scenario  # noqa: E402
from solvency.sim.scenario import parse_scenario_data  # noqa: E402

METRICS = ("liquidated_share_of_oi", "adl_count", "adl_notional", "adl_haircut",
           "insurance_fund_used_share", "insurance_fund_min", "insurance_fund_equity_min",
           "insurance_fund_positions_max")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="scenarios/crash_2025_10_10.toml")
    ap.add_argument("--venue", default="binance")
    ap.add_argument("--accounts", type=int, default=5000)
    ap.add_argument("--start", help="replay start (every market), e.g. 2025-10-10T18:00:00Z")
    ap.add_argument("--end", help="replay end (every market)")
    ap.add_argument("--liquidation", help="a [venue.liquidation] section as JSON (then the "
                    "venue is --venue's preset with it)")
    args = ap.parse_args()
    path = REPO / args.scenario
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["population"]["n_accounts"] = args.accounts
    for market in data["market"]["markets"].values():
        if args.start:
            market["start"] = args.start
        if args.end:
            market["end"] = args.end
    venue: str | None = args.venue
    if args.liquidation:
        data["venue"] = {**data["venue"], "preset": args.venue,
                         "liquidation": json.loads(args.liquidation)}
        venue = None
    scenario = parse_scenario_data(data, source=str(path), base_dir=REPO)

    seen: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    take_max = liq.Liquidator._takeover_lots_max
    execute = liq.Liquidator._execute

    def traced_take(self: Any, pos: Any, value_q: int, capacity: int) -> int | None:
        res = take_max(self, pos, value_q, capacity)
        book = self.ctx.book
        r = self._fund_row()
        held = 0
        if r is not None:
            s = book.slot_of(r, pos.m)
            held = int(book.st[s, S_LOTS]) if s >= 0 else 0
        seen.update(capacity=capacity, held=held, take_max=res,
                    unit=abs(value_q) / abs(pos.lots) if pos.lots else 0.0)
        return res

    def traced_execute(self: Any, r: int, pos: Any, plan: Any, adl: Any, cause: str,
                       bq: int, close: int) -> Any:
        steps = getattr(plan, "steps", ())
        adl_lots = sum(s.lots for s in steps if isinstance(s, AdlFill))
        if adl_lots:
            book = self.ctx.book
            scale = book.asset_scale[pos.a]
            cash, _held_cost, _held_value = self.fund_equity_quanta(pos.a)
            unit = seen.get("unit", 0.0) / scale
            rows.append(dict(
                t=self.ctx.clock_ms, market=book.instruments[pos.m].name, close=close,
                book=sum(s.lots for s in steps if isinstance(s, MarketClose)),
                fund=sum(s.lots for s in steps if isinstance(s, FundTakeover)),
                adl=adl_lots, adl_notional=adl_lots * unit, cash=cash / scale,
                capacity=seen.get("capacity", 0) / scale, fund_lots=seen.get("held", 0),
                fund_notional=abs(seen.get("held", 0)) * unit, take_max=seen.get("take_max")))
        return execute(self, r, pos, plan, adl, cause, bq, close)

    liq.Liquidator._takeover_lots_max = traced_take  # type: ignore[method-assign]
    liq.Liquidator._execute = traced_execute  # type: ignore[method-assign]
    metrics = run_scenario(scenario, venue=venue).metrics
    print(json.dumps({k: metrics[k] for k in METRICS}, indent=1))
    minutes: dict[tuple[str, str], list[float]] = collections.defaultdict(
        lambda: [0, 0.0, float("inf"), 0.0, 0])
    for x in rows:
        when = dt.datetime.fromtimestamp(x["t"] / 1000, dt.UTC).strftime("%m-%d %H:%M")
        b = minutes[(when, x["market"])]
        b[0] += 1
        b[1] += x["adl_notional"]
        b[2] = min(b[2], x["capacity"])
        b[3] = max(b[3], x["fund_notional"])
        b[4] += x["take_max"] == 0
    print(f"{len(rows)} steps sent lots to ADL, "
          f"{sum(x['adl_notional'] for x in rows):,.0f} of notional at the mark")
    for (when, market), (n, notional, cap, held, full) in sorted(minutes.items()):
        print(f"{when} {market}: {n} steps ({full} with the cap full), ADL {notional:,.0f}; "
              f"fund capacity >= {cap:,.0f}, fund position <= {held:,.0f}")
    if rows:
        print(f"fund cash at the ADL steps: >= {min(x['cash'] for x in rows):,.0f}")


if __name__ == "__main__":
    main()
