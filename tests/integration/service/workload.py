"""A seeded event workload for the service tests: deposits, fills at high leverage, price
and oracle reports, funding, withdrawals, a crash that liquidates, drains a small
insurance fund and reaches ADL, and bad events of every kind (about 7 %).

``workload(seed, n)`` returns JSON Lines (some deliberately malformed). The same seed gives
the same lines on every machine (``random.Random`` and decimal strings only).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from decimal import Decimal

__all__ = ["START_MS", "workload"]

START_MS = 1_774_512_000_000  # 2026-03-26T08:00:00Z
SOURCES = ("binance", "coinbase", "okx", "bybit", "kraken")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _q(x: float, places: int) -> str:
    return str(Decimal(repr(x)).quantize(Decimal(1).scaleb(-places)))


def workload(seed: int, n: int = 10_000, *, accounts: int = 150, fund: str = "3000",
             start_ms: int = START_MS, crash: tuple[float, float] = (0.35, 0.30),
             bad: bool = True) -> list[str]:
    """``n`` or more JSON Lines: the set-up, then random traffic with a crash of about
    35 % in BTC and 30 % in ETH (``crash``) at 60-75 % of the way through. Marks come from
    oracle rounds (three to five of the guard's sources at one time). ``bad=False``: no
    bad events."""
    rng = random.Random(seed)
    out: list[str] = []
    ts = start_ms
    k = 0

    def emit(obj: dict[str, object]) -> None:
        out.append(json.dumps(obj, separators=(",", ":")))

    def nid() -> str:
        nonlocal k
        k += 1
        return f"w{seed}-{k:06d}"

    names = [f"t{i:03d}" for i in range(accounts)]
    deposits = {a: rng.randrange(2_000, 30_000) for a in names}
    for a in names:
        emit({"type": "deposit", "id": nid(), "ts": _iso(ts), "account": a, "asset": "USDT",
              "amount": str(deposits[a])})
    emit({"type": "deposit", "id": nid(), "ts": _iso(ts), "account": "mm", "asset": "USDT",
          "amount": "50000000"})
    emit({"type": "deposit", "id": nid(), "ts": _iso(ts), "account": "__insurance__",
          "asset": "USDT", "amount": fund})
    px = {"BTC-PERP": 84_000.0, "ETH-PERP": 2_000.0}
    places = {"BTC-PERP": 1, "ETH-PERP": 2}
    lot = {"BTC-PERP": 3, "ETH-PERP": 2}

    def oracle_round(m: str) -> None:
        # three to five sources at one time, within a few basis points of each other
        for src in rng.sample(SOURCES, rng.randrange(3, 6)):
            emit({"type": "oracle", "id": nid(), "ts": ts, "source": src, "market": m,
                  "price": _q(px[m] * (1 + rng.gauss(0, 0.0003)), places[m])})

    for m in px:
        oracle_round(m)
    crash_from, crash_to = int(n * 0.6), int(n * 0.75)
    pre_crash: dict[str, float] = {}
    last_good: str | None = None
    while len(out) < n:
        i = len(out)
        ts += rng.randrange(200, 2_000)
        m = rng.choice(("BTC-PERP", "ETH-PERP"))
        if crash_from <= i < crash_to and rng.random() < 0.3:
            # the crash: each market follows its path down to -35 % / -30 %
            done = (i - crash_from) / (crash_to - crash_from)
            for mk, depth in zip(("BTC-PERP", "ETH-PERP"), crash, strict=True):
                target = pre_crash.setdefault(mk, px[mk]) * (1 - depth * done)
                px[mk] = min(px[mk], target * (1 + rng.gauss(0, 0.001)))
                oracle_round(mk)
            continue
        r = rng.random()
        if r < 0.50:  # a fill at 2-20x of the trader's deposit
            a = rng.choice(names)
            notional = deposits[a] * rng.uniform(0.5, 4.0)
            size = _q(max(notional / px[m], 10 ** -lot[m]), lot[m])
            price = _q(px[m] * (1 + rng.uniform(-0.0005, 0.0005)), places[m])
            buyer, seller = (a, "mm") if rng.random() < 0.7 else ("mm", a)
            if rng.random() < 0.2:
                buyer, seller = a, rng.choice(names)
                if buyer == seller:
                    continue
            emit({"type": "fill", "id": nid(), "ts": _iso(ts), "market": m, "buyer": buyer,
                  "seller": seller, "size": size, "price": price})
        elif r < 0.74:  # a price move: an oracle round in each market (none goes stale)
            px[m] *= 1 + rng.gauss(0, 0.002)
            oracle_round("BTC-PERP")
            oracle_round("ETH-PERP")
        elif r < 0.77:
            emit({"type": "funding", "id": nid(), "ts": _iso(ts), "market": m,
                  "rate": _q(rng.gauss(0, 0.0002), 6)})
        elif r < 0.84:
            a = rng.choice(names)
            emit({"type": "withdraw", "id": nid(), "ts": _iso(ts), "account": a,
                  "asset": "USDT", "amount": str(rng.randrange(1, 3_000))})
        elif r < 0.93:
            a = rng.choice(names)
            amt = rng.randrange(100, 5_000)
            deposits[a] += amt
            emit({"type": "deposit", "id": nid(), "ts": _iso(ts), "account": a,
                  "asset": "USDT", "amount": str(amt)})
        elif bad:
            out.append(_bad(rng, nid(), ts, names, last_good))
        if out and out[-1].startswith("{") and rng.random() < 0.05:
            last_good = out[-1]
    return out


def _bad(rng: random.Random, eid: str, ts: int, names: list[str],
         last_good: str | None) -> str:
    a = rng.choice(names)
    kind = rng.randrange(9)
    base: dict[str, object] = {"type": "deposit", "id": eid, "ts": _iso(ts), "account": a,
                               "asset": "USDT", "amount": "5"}
    if kind == 0:
        return '{"type":"deposit","id":"' + eid + '","amount":'  # malformed JSON
    if kind == 1:
        return json.dumps({**base, "amount": "NaN"})
    if kind == 2:
        return json.dumps({**base, "amount": "-7"})
    if kind == 3:
        return json.dumps({**base, "type": "withdraw", "account": "ghost" + eid})
    if kind == 4:
        return json.dumps({"type": "price", "id": eid, "ts": _iso(ts), "market": "DOGE-PERP",
                           "price": "1"})
    if kind == 5:
        return json.dumps({**base, "ts": _iso(ts - 86_400_000)})  # time going back
    if kind == 6:
        return json.dumps({"type": "fill", "id": eid, "ts": _iso(ts), "market": "BTC-PERP",
                           "buyer": a, "seller": "mm", "size": "0", "price": "84000"})
    if kind == 7 and last_good is not None:
        return last_good  # a resent event: a duplicate
    return json.dumps({**base, "amount": "1e400"})
