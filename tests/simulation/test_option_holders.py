"""Option holders in the stress lab (issue 29 item 4, issue 14): a share of the accounts
short listed options, delta-hedged with the perp at the opening, margined by the venue's
option rule and liquidated like any position.

The hand case: one account writes one at-the-money BTC call (1 contract, 7 days, mark vol
80 %) on the Deribit preset, hedges it with the perp and sees the price rise 500 USDC a
minute. Its maintenance margin at each mark is Deribit's standard rule for a short
option (linear, USDC-settled: ``0.075 x S + mark`` per contract; Deribit "Margin
requirements" / "Inverse options" pages, read 2025, and the rule as bit.com publishes it:
https://www.deribit.com/kb/margin-requirements) plus the perp's size-linear rule
(``1.5 % + 0.005 % per BTC`` of notional; Deribit "Futures contract specifications"),
the option's mark is Black-76 at the underlying's mark (ACT/365, rate 0); the margin
call comes at the first mark where maintenance reaches 80 % of the collateral (the
preset's ``margin_call_ratio``) and the liquidation at the first where it exceeds it.
"""

from __future__ import annotations

import tomllib
from decimal import ROUND_HALF_EVEN, Decimal
from math import erf, log, sqrt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.model.events import Price
from solvency.core.options import black76_price
from solvency.engine.engine import Engine
from solvency.sim.option_holders import (
    draw_option_holders,
    holder_sides,
    load_option_holders,
    option_series,
)
from solvency.sim.population import generate_population, load_population
from solvency.sim.run import build_paths, run_scenario
from solvency.sim.scenario import Scenario, ScenarioError, parse_scenario_data

REPO = Path(__file__).resolve().parents[2]
T0 = 1_621_382_400_000  # 2021-05-19T00:00:00Z
DAY_MS = 86_400_000
S0 = 40_000
RISE = 500  # USDC a minute


def _bars(tmp: Path, n: int = 40) -> Path:
    lines = ["timestamp,timestamp_ms,open,high,low,close,volume"]
    for i in range(n):
        p = S0 + RISE * i
        lines.append(f"x,{T0 + 60_000 * i},{p},{p},{p},{p},1")
    path = tmp / "rise.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _data(csv: Path, **options: Any) -> dict[str, Any]:
    return {
        "name": "one short call", "run": {"verify_every": 1, "vol_window": 4},
        "market": {"model": "replay", "markets": {"BTC-PERP": {
            "source": str(csv), "points_per_bar": 4}}},
        "population": {
            "n_accounts": 1, "open_interest_base": {"BTC-PERP": 0.0001},
            "long_short_ratio": 100.0, "long_account_fraction": 1.0, "entry_spread": 0.0,
            "leverage": [{"weight": 1.0, "median": 1.0, "sigma": 0.0}],
            "options": {"underlying": "BTC-PERP", "holder_fraction": 1.0,
                        "open_interest_base": 1.0, "moneyness": [0.0], "kinds": ["call"],
                        "expiries": ["7d"], "vol": 0.8, "margin_multiple": 1.2,
                        "liquidity": {"depth_per_bps_base": 0.2, "daily_volume_base": 50.0,
                                      "max_bps": 2000.0, "band_bps": 25.0},
                        **options}},
        "venue": {"preset": "deribit", "insurance_fund": 1_000_000},
    }


def _scenario(tmp: Path, **options: Any) -> Scenario:
    return parse_scenario_data(_data(_bars(tmp), **options), source="hand")


def _mark(s: float, t_yr: float) -> float:
    """Black-76 (the reference kernel) on the option's 0.1 USDC tick, half to even."""
    c = float(black76_price(forward=s, strike=S0, time_yr=t_yr, vol=0.8, rate=0.0,
                            is_call=True).price[0])
    return float((Decimal(repr(c)) / Decimal("0.1")).to_integral_value(ROUND_HALF_EVEN)
                 * Decimal("0.1"))


def test_one_hedged_short_call_margined_called_and_liquidated_as_the_rule_says(
        tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    path = build_paths(sc)["BTC-PERP"]
    ts, px = path.ts_ms, path.prices[0]
    v0 = sc.venue()
    pop = generate_population(sc.population, v0, {"BTC-PERP": float(px[0])},
                              sc.seed_population)
    assert sc.options is not None
    listing = option_series(sc.options, v0.markets["BTC-PERP"], pop.marks["BTC-PERP"],
                            int(ts[0]))
    assert [s.name for s in listing] == ["BTC_USDC-26MAY21-40000-C"]
    v = sc.venue(listing=listing)
    book = draw_option_holders(sc.options, v, pop, listing, int(ts[0]))
    # one contract (100 lots of 0.01) short; premium at S0 on the tick; delta hedge
    t0 = 7 * DAY_MS / (365 * DAY_MS)
    prem0 = _mark(S0, t0)
    assert book.lots.tolist() == [-100]
    assert float(book.entry_ticks[0]) * 0.1 == pytest.approx(prem0)
    delta = _call_delta(S0, t0)  # N(d1), by hand
    assert book.hedge_lots.tolist() == [round(delta / 0.0001)]
    # collateral: 1.2 x the short call's IM at the opening, (0.15 x S0 + premium)
    assert int(book.collateral_quanta[0]) == pytest.approx(
        1.2 * (0.15 * S0 + prem0) * 1e6, abs=1)
    eng = Engine(v)
    load_population(eng, pop)
    load_option_holders(eng, pop, book, ts_ms=int(ts[0]))
    acct = pop.accounts[0]
    hedge = 1 + int(book.hedge_lots[0])  # the drawn long lot and the hedge, in 0.0001 BTC
    perp_btc = hedge * 0.0001
    deposits = 4.0 + int(book.collateral_quanta[0]) / 1e6  # the perp's 1x collateral too
    called = liquidated = None
    for k in range(1, ts.shape[0]):
        s = float(px[k])
        out = eng.apply(Price(id=f"p{k}", market="BTC-PERP", price=Decimal(repr(s)),
                              ts_ms=int(ts[k])))
        kinds = [o.type for o in out if getattr(o, "account", "").startswith(acct)]
        if "margin_call" in kinds and called is None:
            called = k
        if "liquidation" in kinds:
            liquidated = k
            break
        t = (T0 + 7 * DAY_MS - int(ts[k])) / (365 * DAY_MS)
        mark = _mark(s, t)
        equity = deposits + prem0 - mark + perp_btc * (s - S0)
        mm = (0.075 * s + mark) + perp_btc * s * (0.015 + 0.00005 * perp_btc)
        view = eng.account_view(acct)
        # within one 0.1 tick of the option's mark: the engine rounds its deterministic
        # Black-76 premium, this test the reference kernel's
        assert float(view["equity_usd"]) == pytest.approx(equity, abs=0.11), k
        assert float(view["maintenance_margin"]) == pytest.approx(mm, abs=0.11), k
        if abs(mm - 0.8 * equity) > 0.25:
            assert (called is not None) == (mm >= 0.8 * equity), k
        assert mm <= equity + 0.25, k  # not liquidated yet: the rule agrees
    assert called is not None and liquidated is not None
    # the step before the liquidation was above maintenance; at the liquidation's mark
    # the rule puts the account below it
    s = float(px[liquidated])
    t = (T0 + 7 * DAY_MS - int(ts[liquidated])) / (365 * DAY_MS)
    mark = _mark(s, t)
    assert (0.075 * s + mark) + perp_btc * s * (0.015 + 0.00005 * perp_btc) > (
        deposits + prem0 - mark + perp_btc * (s - S0)) - 0.25
    # by hand alone: the first mark where the rule puts the account below maintenance
    # (44,500 USDC, bar 9 of the rise, step 36 at 4 points a bar)
    hand = [k for k in range(1, ts.shape[0]) if _hand_mm_over_equity(
        float(px[k]), int(ts[k]), perp_btc, deposits + prem0) > 0]
    assert hand[0] == liquidated == 36 and float(px[36]) == 44_500
    eng.verify()
    # the run does the same: called, liquidated at that step, and says so in its metrics
    r = run_scenario(sc, state_hashes=True)
    o = r.metrics["options"]
    assert (o["holders"], o["holders_called"], o["holders_liquidated"]) == (1, 1, 1)
    first = int(np.flatnonzero(r.series.liq_count > 0)[0])
    assert first == liquidated
    assert o["contracts_liquidated"] > 0 and o["notional_liquidated"] > 0
    assert r.metrics["violation"] is None


def test_a_put_writers_hedge_turns_its_drawn_long_short(tmp_path: Path) -> None:
    # the drawn perp is one long lot; a short put's hedge sells ~0.48 BTC: the run's
    # records must see the position as short (long liquidations and ADL go by side)
    sc = _scenario(tmp_path, kinds=["put"])
    assert sc.options is not None
    px = build_paths(sc)["BTC-PERP"]
    v0 = sc.venue()
    pop = generate_population(sc.population, v0, {"BTC-PERP": float(px.prices[0][0])},
                              sc.seed_population)
    assert pop.pos_lots.tolist() == [1]
    listing = option_series(sc.options, v0.markets["BTC-PERP"], pop.marks["BTC-PERP"],
                            int(px.ts_ms[0]))
    v = sc.venue(listing=listing)
    book = draw_option_holders(sc.options, v, pop, listing, int(px.ts_ms[0]))
    assert book.hedge_lots.tolist() == [-round((1 - _call_delta(S0, 7 / 365)) / 0.0001)]
    eng = Engine(v)
    load_population(eng, pop)
    load_option_holders(eng, pop, book, ts_ms=int(px.ts_ms[0]))
    assert holder_sides(eng, pop, book) == {(pop.accounts[0], "BTC-PERP"): -1}


def _hand_mm_over_equity(s: float, ts_ms: int, perp_btc: float, cash: float) -> float:
    t = (T0 + 7 * DAY_MS - ts_ms) / (365 * DAY_MS)
    mark = _mark(s, t)
    mm = (0.075 * s + mark) + perp_btc * s * (0.015 + 0.00005 * perp_btc)
    return mm - (cash - mark + perp_btc * (s - S0))


def _call_delta(s: float, t: float) -> float:
    d1 = (log(s / S0) + 0.5 * 0.64 * t) / (0.8 * sqrt(t))
    return 0.5 * (1 + erf(d1 / sqrt(2)))


def test_same_seed_same_hash_and_no_options_no_change(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    a = run_scenario(sc, state_hashes=True).metrics
    b = run_scenario(sc, state_hashes=True).metrics
    assert a["engine_state_hash"] == b["engine_state_hash"]
    assert a["options"] == b["options"]
    # without [population.options]: no option market, no "options" metric, and the
    # perp book is the book the same seed draws with them (the same draw picks holders)
    data = _data(tmp_path / "rise.csv")
    del data["population"]["options"]
    plain = run_scenario(parse_scenario_data(data, source="plain"), state_hashes=True)
    assert "options" not in plain.metrics
    assert plain.metrics["engine_state_hash"] != a["engine_state_hash"]


def test_options_leave_the_drawn_perp_book_and_the_non_writers_unchanged(
        tmp_path: Path) -> None:
    # the same seed draws the same perp book with and without [population.options]: the
    # population arrays are equal, and once the option book is loaded every account that
    # writes nothing has the same positions, collateral and margin as without it
    csv = _bars(tmp_path)
    data = _data(csv, holder_fraction=0.5)
    data["population"].update(n_accounts=12, open_interest_base={"BTC-PERP": 3.0},
                              long_short_ratio=1.0, long_account_fraction=0.5,
                              leverage=[{"weight": 1.0, "median": 2.0, "sigma": 0.3}])
    with_opt = parse_scenario_data(data, source="with")
    del data["population"]["options"]
    plain = parse_scenario_data(data, source="plain")
    assert with_opt.options is not None and plain.options is None
    ts = build_paths(plain)["BTC-PERP"].ts_ms
    prices = {"BTC-PERP": float(S0)}
    pops = [generate_population(sc.population, sc.venue(), prices, sc.seed_population)
            for sc in (with_opt, plain)]
    for name in ("accounts", "collateral_asset", "collateral_quanta", "isolated",
                 "leverage", "pos_account", "pos_market", "pos_lots", "entry_ticks",
                 "holder_draw"):
        x, y = getattr(pops[0], name), getattr(pops[1], name)
        assert np.array_equal(np.asarray(x), np.asarray(y)), name
    assert pops[0].marks == pops[1].marks
    pop = pops[0]
    v0 = with_opt.venue()
    listing = option_series(with_opt.options, v0.markets["BTC-PERP"],
                            pop.marks["BTC-PERP"], int(ts[0]))
    v = with_opt.venue(listing=listing)
    book = draw_option_holders(with_opt.options, v, pop, listing, int(ts[0]))
    writers = {pop.accounts[i] for i in book.holders.tolist()}
    others = [a for a in pop.accounts if a not in writers]
    assert writers and others  # both kinds present: the comparison below is not empty
    eng = Engine(v)
    load_population(eng, pop, ts_ms=int(ts[0]))
    load_option_holders(eng, pop, book, ts_ms=int(ts[0]))
    ref = Engine(plain.venue())
    load_population(ref, pops[1], ts_ms=int(ts[0]))
    for acct in others:
        assert eng.account_view(acct) == ref.account_view(acct), acct
    assert any(eng.account_view(a) != ref.account_view(a) for a in writers)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("underlying", "ETH-PERP", "population.options.underlying"),
    ("holder_fraction", 0.0, "population.options.holder_fraction"),
    ("kinds", ["straddle"], "population.options.kinds"),
    ("expiries", ["1m"], "population.options.expiries"),
    ("vol_max", 0.5, "population.options.vol_max"),
    ("moneyness", [0.0, 0.0], "population.options.moneyness"),
    ("volume", 1, "population.options.volume"),
], ids=["underlying-not-a-path-market", "no-holders", "unknown-kind",
        "expiry-inside-the-run", "cap-below-vol", "same-strike-twice", "typo"])
def test_bad_option_settings_are_refused_with_their_key(
        tmp_path: Path, key: str, value: Any, message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace(".", r"\.")):
        # a replay's end is known when its file is read: its expiries are checked then
        run_scenario(_scenario(tmp_path, **{key: value}))


@pytest.mark.parametrize(("line", "key"), [
    ("volume = 1", "population.options.volume"),
    # Decimal("nan") / Decimal("inf") parse: the grids must still be finite and > 0
    ('tick_size = "nan"', "population.options.tick_size"),
    ('tick_size = "inf"', "population.options.tick_size"),
    ('lot_size = "-0.01"', "population.options.lot_size"),
    ('lot_size = "snan"', "population.options.lot_size"),
    # marks carry the vol at 4 decimals: below 0.0001 it would round to 0
    ("vol = 0.00004", "population.options.vol"),
    # portfolio-margined writers (tests/simulation/test_option_writers_pm.py): a grid
    # that is neither shipped nor a file
    ('margin = "portfolio"\npm_grid = "no_such_grid"', "population.options.pm_grid"),
], ids=["typo", "nan-tick", "inf-tick", "negative-lot", "snan-lot", "vol-rounds-to-0",
        "unknown-pm-grid"])
def test_cli_refuses_a_bad_option_table_with_exit_2(tmp_path: Path, line: str,
                                                    key: str) -> None:
    csv = _bars(tmp_path)
    f = tmp_path / "bad.toml"
    f.write_text(f"""name = "bad"
[market]
model = "replay"
[market.markets.BTC-PERP]
source = "{csv}"
[population]
n_accounts = 10
[population.open_interest_base]
BTC-PERP = 1.0
[population.options]
underlying = "BTC-PERP"
holder_fraction = 0.5
open_interest_base = 1.0
{line}
[venue]
preset = "deribit"
""")
    res = CliRunner().invoke(app, ["simulate", str(f)])
    assert res.exit_code == 2, res.output
    assert key in res.output
    assert "Traceback" not in res.output


def test_the_bundled_options_scenario_parses() -> None:
    sc = parse_scenario_data(
        tomllib.loads((REPO / "scenarios" / "options_2021_05_19.toml").read_text()),
        source="options_2021_05_19.toml", base_dir=REPO)
    assert sc.options is not None and sc.options.underlying == "BTC-PERP"
