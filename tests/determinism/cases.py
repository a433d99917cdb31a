"""The recorded cases of the determinism tests (issues 12 and 30).

Each case runs the real engine and returns its final ``state_hash``, its per-section
hashes and a hash of every out-event it produced:

* ``demo/<preset>``: the bundled demo log (``solvency replay``) under each preset;
* ``random/<preset>/<seed>``: a seeded log of deposits, fills, price moves with a crash
  (liquidations, ADL), funding and isolated margin;
* ``options/deribit/<seed>``: options and a portfolio-margined account under the
  ``deribit`` preset and the ``deribit_pm`` grid, marks and implied volatilities at
  irregular intervals (Black-76 repricing, the portfolio-margin scan), a crash; this
  record also holds the bits of every row's portfolio requirement (``Book.pm``, not
  part of the state hash but a decision value);
* ``scenario/<file>``: every scenario under ``scenarios/`` through the stress lab on a
  reduced population (300 accounts), with its real price data from ``../shared/data``.

``python -m tests.determinism.cases --write`` records them in ``golden.json``. A golden
hash changes only with a deliberate behaviour change, and the commit that changes it says
why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import struct
import tomllib
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from solvency.adapters.eventlog import LineError, read_events
from solvency.adapters.grids import load_grid
from solvency.core.model.events import (
    AccountMode,
    Deposit,
    Fill,
    InputEvent,
    Price,
    Vol,
    event_to_json,
)
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input_line
from solvency.sim.run import run_scenario
from solvency.sim.scenario import parse_scenario_data

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden.json")
GOLDEN_MACHINE = Path(__file__).with_name("golden_machine.json")
PRESETS = ("binance", "dydx", "hyperliquid", "drift", "deribit", "bitmex")
SCENARIO_ACCOUNTS = 300
RANDOM_SEEDS = (1, 2, 3)


def _digest(items: list[Any]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(json.dumps(item, sort_keys=True, separators=(",", ":"), default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def _record(engine: Engine, outs: list[Any]) -> dict[str, Any]:
    return {"state_hash": engine.state_hash(), "sections": engine.section_hashes(),
            "out_events": _digest([event_to_json(o) for o in outs]),
            "out_event_count": len(outs)}


def run_log(preset: str, lines: list[str], *, restore_at: int | None = None) -> dict[str, Any]:
    """Apply JSON lines (parse errors skipped) to a fresh engine; return its record.

    With ``restore_at``, the engine is snapshotted before that line, restored from the
    snapshot's JSON text and the rest applied to the restored one (a kill and recovery).
    """
    engine = Engine(load_preset(preset))
    outs: list[Any] = []
    for i, line in enumerate(lines):
        if i == restore_at:
            engine = Engine.restore(json.loads(json.dumps(engine.snapshot())))
        try:
            event = parse_input_line(line)
        except ValueError:
            continue
        outs.extend(engine.apply(event))
    return _record(engine, outs)


def demo_case(preset: str) -> dict[str, Any]:
    src = resources.files("solvency.data").joinpath("demo_events.jsonl")
    with resources.as_file(src) as p:
        engine = Engine(load_preset(preset))
        outs: list[Any] = []
        for item in read_events(Path(p)):
            if not isinstance(item, LineError):
                outs.extend(engine.apply(item))
    return _record(engine, outs)


def random_lines(preset: str, seed: int, n_accounts: int = 40, n_events: int = 400) -> list[str]:
    """A seeded log: deposits, fills at the mark, a random walk with one crash, funding."""
    rng = random.Random(f"{preset}:{seed}")
    venue = load_preset(preset)
    settle = venue.markets["BTC-PERP"].settle
    tick = venue.markets["BTC-PERP"].tick_size
    lot = venue.markets["BTC-PERP"].lot_size
    ts = 1_774_512_000_000
    price = Decimal(100_000)
    lines = [json.dumps({"type": "price", "id": "p0", "ts": ts, "market": "BTC-PERP",
                         "price": str(price)})]
    lines.append(json.dumps({"type": "deposit", "id": "fund", "ts": ts,
                             "account": "__insurance__", "asset": settle, "amount": "5000"}))
    for i in range(n_accounts):
        lines.append(json.dumps({"type": "deposit", "id": f"d{i}", "ts": ts,
                                 "account": f"a{i}", "asset": settle,
                                 "amount": str(rng.choice((500, 1000, 5000, 20000)))}))
    crash_at = n_events // 2
    for k in range(n_events):
        ts += 1000
        roll = rng.random()
        if roll < 0.35 or k in (crash_at, crash_at + 1):
            # moves in whole basis points, in decimal: the inputs are the same on every
            # machine (random.gauss goes through libm's log and cos)
            bp = -600 if k in (crash_at, crash_at + 1) else rng.randint(-80, 80)
            price = max(tick, (price * (1 + Decimal(bp) / 10_000) / tick).to_integral_value()
                        * tick)
            lines.append(json.dumps({"type": "price", "id": f"p{k}", "ts": ts,
                                     "market": "BTC-PERP", "price": str(price)}))
        elif roll < 0.9:
            b, s = rng.sample(range(n_accounts), 2)
            size = lot * rng.randint(1, max(1, int(Decimal("0.2") / lot)))
            lines.append(json.dumps({"type": "fill", "id": f"f{k}", "ts": ts,
                                     "market": "BTC-PERP", "buyer": f"a{b}",
                                     "seller": f"a{s}", "size": str(size),
                                     "price": str(price)}))
        else:
            rate = Decimal(rng.randint(-30, 30)) / Decimal(100_000)
            lines.append(json.dumps({"type": "funding", "id": f"r{k}", "ts": ts,
                                     "market": "BTC-PERP", "rate": str(rate)}))
    return lines


def random_case(preset: str, seed: int) -> dict[str, Any]:
    return run_log(preset, random_lines(preset, seed))


def restored_midway_case(preset: str, seed: int) -> dict[str, Any]:
    """The seeded log with a snapshot, a restore from JSON text and the rest of the log:
    the record must equal the uninterrupted run's (a process killed and recovered)."""
    lines = random_lines(preset, seed)
    return run_log(preset, lines, restore_at=len(lines) // 2)


OPTION_SEEDS = (1, 2)
OPTION_MARKETS = ("BTC_USDC-26JUN26-100000-C", "BTC-26JUN26-90000-P")


def _option_events(rng: random.Random, engine: Engine, ts: int) -> list[InputEvent]:
    """One step of the options log: a move of both BTC marks, an implied-volatility
    change or a trade at the current mark (read from the engine, so the trade is valid)."""
    book = engine.book
    roll = rng.random()
    if roll < 0.4:
        return []
    if roll < 0.6:
        market = rng.choice(OPTION_MARKETS)
        iv = Decimal(rng.randint(35, 140)) / 100
        return [Vol(id=f"v{ts}", market=market, iv=iv, ts_ms=ts)]
    market = rng.choice((*OPTION_MARKETS, "BTC-PERP"))
    m = book.market_index[market]
    price = book.marks[m]
    if price is None:
        return []
    lot = book.instruments[m].lot_size
    size = lot * rng.randint(1, 30 if market != "BTC-PERP" else 2000)
    buyer, seller = rng.sample([f"c{i}" for i in range(6)] + ["pm", "mm"], 2)
    return [Fill(id=f"f{ts}", market=market, buyer=buyer, seller=seller, size=size,
                 price=price, ts_ms=ts)]


def options_case(seed: int, *, restore_at: int | None = None) -> dict[str, Any]:
    """Options and a portfolio-margined account (deribit preset, deribit_pm grid), the
    log drawn step by step against the engine's own marks; with ``restore_at``, the
    engine is restored from its snapshot's JSON text after that many steps."""
    rng = random.Random(f"options:{seed}")
    grid = load_grid("deribit_pm")
    engine = Engine(load_preset("deribit"), pm_grid=grid)
    ts = 1_774_000_000_000
    setup: list[InputEvent] = [
        AccountMode(id="mode", account="pm", mode="portfolio", ts_ms=ts),
        Deposit(id="d-pm", account="pm", asset="USDC", amount=Decimal(90_000), ts_ms=ts),
        Deposit(id="d-mm", account="mm", asset="USDC", amount=Decimal(20_000_000), ts_ms=ts),
        Deposit(id="d-mmb", account="mm", asset="BTC", amount=Decimal(200), ts_ms=ts),
        Deposit(id="fund", account="__insurance__", asset="USDC", amount=Decimal(50_000),
                ts_ms=ts),
        Price(id="p-btc", market="BTC-PERP", price=Decimal(100_000), ts_ms=ts),
        Price(id="p-inv", market="BTC-USD-INVERSE", price=Decimal(100_000), ts_ms=ts),
        Price(id="p-eth", market="ETH-PERP", price=Decimal(3_000), ts_ms=ts),
        *(Vol(id=f"v0-{n}", market=mk, iv=Decimal("0.6"), ts_ms=ts)
          for n, mk in enumerate(OPTION_MARKETS)),
        *(Deposit(id=f"d-c{i}", account=f"c{i}", asset="USDC",
                  amount=Decimal(rng.choice((20_000, 50_000, 200_000))), ts_ms=ts)
          for i in range(6)),
    ]
    outs: list[Any] = []
    for event in setup:
        outs.extend(engine.apply(event))
    # the portfolio account: short calls, long puts, long the perp
    for n, (market, size, pm_buys) in enumerate((
            ("BTC_USDC-26JUN26-100000-C", "3", False), ("BTC-26JUN26-90000-P", "2", True),
            ("BTC-PERP", "3.5", True))):
        m = engine.book.market_index[market]
        price = engine.book.marks[m]
        assert price is not None
        buyer, seller = ("pm", "mm") if pm_buys else ("mm", "pm")
        outs.extend(engine.apply(Fill(id=f"f-pm{n}", market=market, buyer=buyer,
                                      seller=seller, size=Decimal(size), price=price,
                                      ts_ms=ts)))
    price = Decimal(100_000)
    steps = 240
    for k in range(steps):
        if k == restore_at:
            engine = Engine.restore(json.loads(json.dumps(engine.snapshot())), pm_grid=grid)
        ts += rng.randint(150, 9_000)  # irregular intervals
        if rng.random() < 0.45 or k in (steps // 2, steps // 2 + 3):
            bp = -700 if k in (steps // 2, steps // 2 + 3) else rng.randint(-90, 90)
            price = (price * (1 + Decimal(bp) / 10_000)).quantize(Decimal(1))
            events: list[InputEvent] = [
                Price(id=f"p{k}", market="BTC-PERP", price=price, ts_ms=ts),
                Price(id=f"i{k}", market="BTC-USD-INVERSE", price=price, ts_ms=ts)]
        else:
            events = _option_events(rng, engine, ts)
        for event in events:
            outs.extend(engine.apply(event))
    record = _record(engine, outs)
    record["pm"] = hashlib.sha256(b"".join(
        struct.pack("<d", float(x)) for x in engine.book.pm.ravel())).hexdigest()
    record["liquidations"] = sum(1 for o in outs if o.type == "liquidation")
    return record


def options_restored_midway_case(seed: int) -> dict[str, Any]:
    """The options log with a restore half-way: the record, ``Book.pm`` bits included,
    must equal the uninterrupted run's."""
    return options_case(seed, restore_at=120)


def scenario_files() -> list[Path]:
    return sorted((REPO / "scenarios").glob("*.toml"))


def scenario_case(path: Path) -> dict[str, Any]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data.setdefault("population", {})["n_accounts"] = SCENARIO_ACCOUNTS
    scenario = parse_scenario_data(data, source=str(path), base_dir=path.resolve().parent.parent)
    m = run_scenario(scenario, state_hashes=True).metrics
    return {"state_hash": m["engine_state_hash"], "sections": m["engine_section_hashes"],
            "liquidations": m.get("liquidations"), "adl_count": m.get("adl_count")}


def all_cases(*, scenarios: bool = True) -> dict[str, dict[str, Any]]:
    out = {f"demo/{p}": demo_case(p) for p in PRESETS}
    for p in PRESETS:
        for seed in RANDOM_SEEDS:
            out[f"random/{p}/{seed}"] = random_case(p, seed)
    for seed in OPTION_SEEDS:
        out[f"options/deribit/{seed}"] = options_case(seed)
    if scenarios:
        for path in scenario_files():
            out[f"scenario/{path.name}"] = scenario_case(path)
    return out


def cpu_features() -> list[str]:
    """The CPU features numpy sees (AVX-512, FMA, ...): the class of machine whose libm and
    SIMD loops produced the scenarios' inputs (price paths and impact use exp and log)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return sorted(k for k, v in __cpu_features__.items() if v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="record golden.json")
    ap.add_argument("--no-scenarios", action="store_true")
    args = ap.parse_args()
    cases = all_cases(scenarios=not args.no_scenarios)
    if args.write:
        GOLDEN.write_text(json.dumps(cases, indent=1, sort_keys=True) + "\n")
        GOLDEN_MACHINE.write_text(json.dumps({"cpu_features": cpu_features()}, indent=1)
                                  + "\n")
        print(f"wrote {len(cases)} cases to {GOLDEN}")
    else:
        print(json.dumps(cases, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
