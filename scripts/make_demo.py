"""Generate the bundled demo event log (src/solvency/data/demo_events.jsonl).

A day on the ``binance`` preset around the BTC quarterly expiry: twelve accounts (cross,
isolated, BTC-collateral, a coin-margined trader), trades, a 12 % sell-off in 30-minute
marks shaped like 2025-10-10, funding every 8 hours, a governance change of the BTC
maintenance rates, a withdrawal and an oversized fill refused below initial margin, one
duplicate event, and the cash settlement of the quarterly future. Seeded: running it
again gives the same file.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "solvency" / "data" / "demo_events.jsonl"


def main() -> None:
    rng = random.Random(20251010)
    t0 = datetime(2026, 3, 26, 8, 0, tzinfo=UTC)
    events: list[dict[str, object]] = []
    n = 0

    def ev(kind: str, minutes: float, **fields: object) -> None:
        nonlocal n
        n += 1
        ts = (t0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
        events.append({"type": kind, "id": f"e{n:04d}", "ts": ts, **fields})

    traders = [f"trader{i:02d}" for i in range(1, 9)]
    ev("account", 0, account="iso01", mode="isolated")
    for i, acct in enumerate(traders):
        ev("deposit", 0, account=acct, asset="USDT", amount=str(5_000 + 2_500 * i))
    ev("deposit", 0, account="iso01", asset="USDT", amount="4000")
    ev("deposit", 0, account="mm", asset="USDT", amount="2000000")
    ev("deposit", 0, account="__insurance__", asset="USDT", amount="50000")
    ev("price", 1, market="BTC-PERP", price="84000.0")
    ev("price", 1, market="ETH-PERP", price="2000.00")
    ev("price", 1, market="BTC-USD-INVERSE", price="84010.0")
    ev("price", 1, market="BTC-FUT-260327", price="84150.0")
    ev("deposit", 2, account="hodler", asset="BTC", amount="0.5")
    ev("deposit", 2, account="coinm", asset="BTC", amount="0.2")
    ev("deposit", 2, account="mm", asset="BTC", amount="20")
    # opening trades against the market maker
    minute = 3.0
    for i, acct in enumerate(traders):
        lev = 4 + 2 * i
        size = round((5_000 + 2_500 * i) * lev / 84000, 3)
        side_long = i % 3 != 2
        buyer, seller = (acct, "mm") if side_long else ("mm", acct)
        ev("fill", minute, market="BTC-PERP", buyer=buyer, seller=seller, size=f"{size:.3f}",
           price="84000.0", fee_buyer=f"{size * 84000 * 0.0005:.6f}",
           fee_seller=f"{-size * 84000 * 0.0001:.6f}")
        minute += 1
    ev("fill", minute, market="BTC-PERP", buyer="iso01", seller="mm", size="0.400",
       price="84000.0", fee_buyer="16.8", fee_seller="-3.36")
    ev("fill", minute + 1, market="BTC-PERP", buyer="hodler", seller="mm", size="0.200",
       price="84000.0")
    ev("fill", minute + 2, market="ETH-PERP", buyer="mm", seller="trader03", size="5.000",
       price="2000.00")
    ev("fill", minute + 3, market="BTC-USD-INVERSE", buyer="coinm", seller="mm", size="1500",
       price="84010.0")
    ev("fill", minute + 4, market="BTC-FUT-260327", buyer="trader01", seller="mm",
       size="0.050", price="84150.0")
    # a sell-off: 30-minute marks, -12 % at the low, partial recovery
    path = [84000.0]
    shape = [0.0, -0.3, -0.2, -0.5, -1.2, -2.5, -4.0, -6.5, -9.0, -12.0, -10.5, -8.0, -7.2,
             -6.8, -6.0, -6.3, -5.5, -5.0, -4.8, -4.5, -4.2, -4.0, -3.9, -3.8]
    for k, pct in enumerate(shape[1:], start=1):
        noise = rng.uniform(-0.15, 0.15)
        px = round(84000 * (1 + (pct + noise) / 100), 1)
        path.append(px)
        t = 30 * k
        ev("price", t, market="BTC-PERP", price=f"{px:.1f}")
        ev("price", t, market="BTC-USD-INVERSE", price=f"{px + 10:.1f}")
        ev("price", t, market="BTC-FUT-260327", price=f"{px + 150 * (1 - k / 48):.1f}")
        ev("price", t, market="ETH-PERP", price=f"{2000 * (1 + 1.3 * pct / 100):.2f}")
        if k == 6:
            # refused: would leave trader08 below initial margin
            ev("withdraw", t + 1, account="trader08", asset="USDT", amount="20000")
            ev("withdraw", t + 1, account="trader01", asset="USDT", amount="500")
            # refused: 30 BTC on 7,500 USDT of collateral is far beyond initial margin
            ev("fill", t + 2, market="BTC-PERP", buyer="trader02", seller="mm",
               size="30.000", price=f"{px:.1f}")
        if k == 9:
            ev("params", t + 2, market="BTC-PERP",
               tiers=[{"floor": "0", "max_leverage": "50", "mmr": "0.0075"},
                      {"floor": "500000", "max_leverage": "20", "mmr": "0.015"},
                      {"floor": "5000000", "max_leverage": "10", "mmr": "0.03"}])
        if k in (8, 16):
            ev("funding", t + 3, market="BTC-PERP", rate="-0.00025")
            ev("funding", t + 3, market="BTC-USD-INVERSE", rate="-0.0001")
    dup = dict(events[-1])
    events.append(dup)  # a duplicate delivery: ignored by id
    ev("deposit", 24 * 60 - 30, account="trader05", asset="USDT", amount="3000")
    ev("price", 24 * 60, market="BTC-FUT-260327", price=f"{path[-1]:.1f}")
    ev("expiry", 24 * 60 + 1, market="BTC-FUT-260327", price=f"{path[-1] + 3.35:.2f}")
    ev("fill", 24 * 60 + 2, market="BTC-PERP", buyer="mm", seller="trader02", size="0.100",
       price=f"{path[-1]:.1f}", fee_seller="1.5")
    with OUT.open("w", encoding="utf-8") as fh:
        fh.write("# solvency demo event log: generated by scripts/make_demo.py (seeded)\n")
        for e in events:
            fh.write(json.dumps(e, separators=(",", ":")) + "\n")
    print(f"wrote {len(events)} events to {OUT}")


if __name__ == "__main__":
    main()
