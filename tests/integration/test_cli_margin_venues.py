"""``solvency margin`` on a multi-venue file (issue 22, "One trader across venues"):
each venue under its own rules and the trader's liquidation ladder, against
hand-computed liquidation prices and costs.

Formulas checked:
* Binance USD-M tiered maintenance (``/fapi/v1/leverageBracket`` BTCUSDT via freqtrade
  ``binance_leverage_tiers.json`` @01d10aeb, and Binance "How to Calculate Liquidation
  Price of USD-M Futures Contracts"): MM = notional x mmr - cum, tier 2 (50k-600k) mmr
  0.005, cum = 50,000 x (0.005 - 0.004) = 50. Clearance fee 1.25 % of the closed
  notional (the binance policy's ``insurance_fee_ppm`` 12,500, UNVERIFIED per symbol),
  taken from what is left over bankruptcy.
* dYdX v4 Large-Cap liquidity tier (dydxprotocol/v4-chain ``protocol/testing/genesis.sh``;
  ``x/perpetuals/types/liquidity_tier.go``): IM 2 %, MM = 0.6 x IM = 1.2 % of notional;
  ``max_liquidation_fee_ppm`` 5,000 (0.5 %).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from statistics import NormalDist

import numpy as np
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.options import black76_price
from solvency.core.options.margin import option_margin
from solvency.engine.multivenue import _Venue
from solvency.engine.portfolio import load_portfolio_engine

runner = CliRunner(env={"COLUMNS": "200"})


def _venue(venue: str, coll: str, amount: str, size: str) -> dict[str, object]:
    return {"venue": venue, "prices": {"BTC-PERP": "100000"},
            "account": {"collateral": {coll: amount},
                        "positions": [{"market": "BTC-PERP", "size": size,
                                       "entry_price": "100000"}]}}


FILE = {"venues": [_venue("binance", "USDT", "20000", "1"),
                   _venue("dydx", "USDC", "30000", "1")]}


def _run(tmp_path: Path, data: object, *args: str) -> tuple[int, str]:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    res = runner.invoke(app, ["margin", str(path), *args])
    return res.exit_code, res.output


def _close(text: str | None, value: Decimal, tol: str = "1e-6") -> bool:
    assert text is not None
    return abs(Decimal(text) - value) <= Decimal(tol) * max(1, abs(value))


def test_two_venues_long_btc_by_hand(tmp_path: Path) -> None:
    code, out = _run(tmp_path, FILE, "--json")
    assert code == 0, out
    r = json.loads(out)
    b, d = r["venues"]
    assert (b["name"], b["maintenance_margin"], d["name"], d["maintenance_margin"]) == (
        "binance", "450", "dydx", "1200")  # 0.005 x 100,000 - 50; 0.012 x 100,000
    # binance: 20,000 + (P - 100,000) = 0.005 P - 50  ->  P = 79,950 / 0.995
    pb = Decimal(79_950) / Decimal("0.995")
    # dydx: 30,000 + (P - 100,000) = 0.012 P  ->  P = 70,000 / 0.988
    pd = Decimal(70_000) / Decimal("0.988")
    assert _close(b["positions"][0]["liquidation_price"], pb)
    assert _close(d["positions"][0]["liquidation_price"], pd)
    ladder = r["ladder"]["BTC"]
    assert ladder["up"] == []
    first, second = ladder["down"]
    assert (first["venue"], second["venue"]) == ("binance", "dydx")
    assert _close(first["prices"]["BTC-PERP"], pb) and _close(second["prices"]["BTC-PERP"], pd)
    assert _close(first["move"], pb / 100_000 - 1)
    # binance's fee 1.25 % x P exceeds what is left (its maintenance 0.005 P - 50): all of it
    assert _close(first["fee"], Decimal("0.0125") * pb)
    assert _close(first["cost"], Decimal("0.005") * pb - 50)
    # dydx then: equity 30,000 + P - 100,000, MM 0.012 P, liquidated a further pd/pb - 1
    (o,) = first["others"]
    assert o["venue"] == "dydx" and not o["liquidated"]
    assert _close(o["margin_ratio"], Decimal("0.012") * pb / (pb - 70_000))
    assert _close(o["distance"], pd / pb - 1)
    # dydx's 0.5 % fee is less than what is left (0.012 P): paid whole
    assert _close(second["cost"], Decimal("0.005") * pd)
    assert second["others"] == [{"venue": "binance", "margin_ratio": None,
                                 "liquidated": True, "distance": None}]


def test_a_short_is_liquidated_on_the_way_up(tmp_path: Path) -> None:
    data = {"venues": [{**_venue("binance", "USDT", "20000", "-1"), "name": "short"},
                       {**_venue("dydx", "USDC", "30000", "1"), "name": "long"}]}
    code, out = _run(tmp_path, data, "--json")
    assert code == 0, out
    ladder = json.loads(out)["ladder"]["BTC"]
    # 20,000 - (P - 100,000) = 0.005 P - 50  ->  P = 120,050 / 1.005
    (up,) = ladder["up"]
    assert up["venue"] == "short"
    assert _close(up["prices"]["BTC-PERP"], Decimal(120_050) / Decimal("1.005"))
    assert [s["venue"] for s in ladder["down"]] == ["long"]
    code, text = _run(tmp_path, data)
    assert code == 0 and "Liquidation ladder: BTC up" in text and "short" in text


def test_bad_files_are_refused_with_the_dotted_key(tmp_path: Path) -> None:
    typo = {"venues": [FILE["venues"][0], {**FILE["venues"][1], "acount": {}}]}
    code, out = _run(tmp_path, typo)
    assert code == 2 and "venues[1].acount" in out, out
    bad = json.loads(json.dumps(FILE))
    bad["venues"][1]["account"]["positions"][0]["market"] = "NOPE"
    code, out = _run(tmp_path, bad)
    assert code == 2 and "venues[1].account.positions[0].market" in out, out
    code, out = _run(tmp_path, {"venues": [FILE["venues"][0], FILE["venues"][0]]})
    assert code == 2 and "venues[1].name" in out, out
    code, out = _run(tmp_path, FILE, "--shock", "-10%")
    assert code == 2 and "--shock" in out, out


def _rebalance(tmp_path: Path, data: object, *args: str) -> tuple[int, str]:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    res = runner.invoke(app, ["rebalance", str(path), *args])
    return res.exit_code, res.output


def test_rebalance_equalizes_the_distances_by_hand(tmp_path: Path) -> None:
    code, out = _rebalance(tmp_path, FILE, "--json", "--delay", "10m")
    assert code == 0, out
    r = json.loads(out)
    (t,) = r["transfers"]
    assert (t["from"], t["from_asset"], t["to"], t["to_asset"]) == (
        "dydx", "USDC", "binance", "USDT")
    # X moved: binance liquidated at (79,950 - X) / 0.995, dydx at (70,000 + X) / 0.988;
    # equal at P = 149,950 / 1.983, X = 79,950 - 0.995 P (to the USDC quantum, rounded up)
    p = Decimal(149_950) / Decimal("1.983")
    assert abs(Decimal(t["amount"]) - (79_950 - Decimal("0.995") * p)) < Decimal("2e-6")
    assert _close(r["min_distance_after"], 1 - p / 100_000)
    assert r["distance_after"]["binance"] == r["distance_after"]["dydx"]
    assert _close(r["min_distance_before"], 1 - Decimal(79_950) / Decimal("99_500"))
    # during the transfer binance has not received it yet
    assert r["min_distance_during"] == r["min_distance_before"]
    assert len(r["after"]["ladder"]["BTC"]["down"]) == 2


def test_rebalance_is_bounded_by_the_withdrawal_rule(tmp_path: Path) -> None:
    # binance 500 USDT (MM 450): liquidated at 99,450 / 0.995 = 99,949.7 (-0.05 %);
    # dydx 2,100 USDC over IM 2,000: it may withdraw 100, although equal distances would
    # need (99,450 x 0.988 - 97,900 x 0.995) / 1.983 = 426.7
    data = json.loads(json.dumps(FILE))
    data["venues"][0]["account"]["collateral"]["USDT"] = "500"
    data["venues"][1]["account"]["collateral"]["USDC"] = "2100"
    code, out = _rebalance(tmp_path, data, "--json")
    assert code == 0, out
    r = json.loads(out)
    assert [(t["from"], t["to"], Decimal(t["amount"])) for t in r["transfers"]] == [
        ("dydx", "binance", Decimal(100))]
    assert _close(r["distance_after"]["binance"], 1 - Decimal(99_350) / Decimal(99_500))
    assert _close(r["distance_after"]["dydx"], 1 - Decimal(98_000) / Decimal(98_800))
    code, text = _rebalance(tmp_path, data)
    assert code == 0 and "dydx (USDC)" in text and "After" in text, text
    code, text = _rebalance(tmp_path, data["venues"][0])
    assert code == 2 and "venues: missing" in text, text


def test_a_venue_liquidatable_already_is_the_first_rung_at_distance_0(
        tmp_path: Path) -> None:
    # binance long 1 BTC on 100 USDT: MM 450 > equity 100, liquidatable now. It is the
    # first rung at move 0 (liquidated already for the others), not the safest venue; the
    # rebalance starts from a smallest distance of 0
    data = json.loads(json.dumps(FILE))
    data["venues"][0]["account"]["collateral"]["USDT"] = "100"
    code, out = _run(tmp_path, data, "--json")
    r = json.loads(out)
    assert r["liquidatable"] is True
    first, second = r["ladder"]["BTC"]["down"]
    assert (first["venue"], first["move"], second["venue"]) == ("binance", "0", "dydx")
    # binance's 1.25 % fee on 100,000 is capped at its equity, 100
    assert (first["fee"], first["cost"]) == ("1250", "100")
    assert second["others"][0]["liquidated"] is True
    assert _close(second["move"], Decimal(70_000) / Decimal("0.988") / 100_000 - 1)
    code, out = _rebalance(tmp_path, data, "--json")
    assert code == 0, out
    r = json.loads(out)
    assert r["min_distance_before"] == "0" and r["distance_before"]["binance"] == "0"
    # X to binance: (99,850 - X) / 0.995 = (70,000 + X) / 0.988 -> X = 29,001.8 / 1.983
    (t,) = r["transfers"]
    assert abs(Decimal(t["amount"]) - Decimal("29001.8") / Decimal("1.983")) < Decimal("2e-6")
    p = (70_000 + Decimal("29001.8") / Decimal("1.983")) / Decimal("0.988")
    assert _close(r["min_distance_after"], 1 - p / 100_000)


# ---------------------------------------------------------------- a venue file per entry
# Bybit BTCUSDT (venues/bybit.toml; GET /v5/market/risk-limit, Bybit "Margin
# Parameters"): tier 1 up to 2,000,000 USDT MMR 0.5 % IMR 1 %, tier 2 up to 4,000,000 MMR
# 1 % IMR 1.75 %; MM = value x MMR - deduction, deduction_2 = 2,000,000 x (1 % - 0.5 %) =
# 10,000 (Bybit "Maintenance Margin (USDT Contract)"). Liquidation: the position is taken
# over at bankruptcy and the margin left goes to the insurance fund (the bitmex policy).
BYBIT = Path(__file__).resolve().parents[2] / "venues" / "bybit.toml"


def _with_bybit(tmp_path: Path, coll: str, size: str) -> dict[str, object]:
    (tmp_path / "venues").mkdir(exist_ok=True)
    (tmp_path / "venues" / "bybit.toml").write_text(BYBIT.read_text())
    return {**_venue("venues/bybit.toml", "USDT", coll, size)}


def test_a_venue_file_per_entry_bybit_by_hand(tmp_path: Path) -> None:
    data = {"venues": [FILE["venues"][0], _with_bybit(tmp_path, "200000", "30"),
                       FILE["venues"][1]]}
    code, out = _run(tmp_path, data, "--json")
    assert code == 0, out
    r = json.loads(out)
    by = r["venues"][1]
    # named by the file's name; 30 BTC x 100,000 = 3,000,000 USDT in tier 2:
    # MM 0.01 x 3,000,000 - 10,000 = 20,000; IM 0.0175 x 3,000,000 = 52,500
    assert (by["name"], by["maintenance_margin"], by["initial_margin"]) == (
        "bybit", "20000", "52500")
    # 200,000 + 30 (P - 100,000) = 0.3 P - 10,000  ->  P = 2,790,000 / 29.7 (tier 2 there)
    p = Decimal(2_790_000) / Decimal("29.7")
    assert _close(by["positions"][0]["liquidation_price"], p)
    first, second, third = r["ladder"]["BTC"]["down"]
    assert [s["venue"] for s in (first, second, third)] == ["bybit", "binance", "dydx"]
    assert _close(first["prices"]["BTC-PERP"], p)
    # the fund takes over at bankruptcy: all that is left over it, 0.3 P - 10,000
    assert first["liquidation_fee_rate"] == "1"
    assert _close(first["cost"], Decimal("0.3") * p - 10_000)
    # the same file as a single-venue account is the same engine: binance's tier 2 has a
    # deduction of 50 where Bybit's tier 1 has none, so Bybit alone at 20,000 USDT is
    # liquidated at 80,000 / 0.995 (binance: 79,950 / 0.995)
    small = {"venues": [_with_bybit(tmp_path, "20000", "1")]}
    code, out = _run(tmp_path, small, "--json")
    (step,) = json.loads(out)["ladder"]["BTC"]["down"]
    assert _close(step["prices"]["BTC-PERP"], Decimal(80_000) / Decimal("0.995"))


def test_a_bad_venue_file_is_refused_naming_the_entry(tmp_path: Path) -> None:
    data = {"venues": [FILE["venues"][0], _with_bybit(tmp_path, "20000", "1")]}
    cases = {
        "venues/nope.toml": "unknown venue 'venues/nope.toml': neither a preset",
        "venues/bad.toml": "markets.BTC-PERP.tiers[0].imr: expected a decimal number",
        "venues/broken.toml": "invalid TOML",
        "venues/list.json": "a venue file must hold an object",
    }
    (tmp_path / "venues" / "bad.toml").write_text(
        'preset = "binance"\n[markets.BTC-PERP]\n'
        'tiers = [ { floor = "0", imr = "x", mmr = "0.005" } ]\n')
    (tmp_path / "venues" / "broken.toml").write_text('preset = "binance"\n[markets.BTC\n')
    (tmp_path / "venues" / "list.json").write_text("[]")
    for name, message in cases.items():
        data["venues"][1]["venue"] = name  # type: ignore[index]
        code, out = _run(tmp_path, data)
        text = " ".join(out.split())
        assert code == 2 and "venues[1].venue:" in text and message in text, (name, out)
        assert "Traceback" not in out
        code, out = _rebalance(tmp_path, data)
        assert code == 2 and "venues[1].venue:" in " ".join(out.split()), (name, out)


def test_a_single_venue_file_names_a_venue_file_too(tmp_path: Path) -> None:
    # Bybit alone, long 1 BTC on 20,000 USDT: IM 1 % = 1,000, MM 0.5 % = 500, liquidated
    # at 80,000 / 0.995; shocked -10 %: equity 10,000, MM 0.005 x 90,000 = 450
    entry = _with_bybit(tmp_path, "20000", "1")
    code, out = _run(tmp_path, entry, "--json", "--shock", "-10%")
    assert code == 0, out
    r = json.loads(out)
    assert (r["venue"], r["initial_margin"], r["maintenance_margin"]) == (
        "bybit", "1000", "500")
    assert _close(r["positions"][0]["liquidation_price"], Decimal(80_000) / Decimal("0.995"))
    (sh,) = r["shocks"]
    assert (sh["equity"], sh["maintenance_margin"]) == ("10000", "450")
    # --venue FILE (relative to where the command runs) overrides the file's preset
    code, out = _run(tmp_path, FILE["venues"][0], "--json", "--venue",
                     str(tmp_path / "venues" / "bybit.toml"))
    assert code == 0 and json.loads(out)["maintenance_margin"] == "500", out
    code, out = _run(tmp_path, entry, "--fees")
    assert code == 2 and "--fees" in out, out
    code, out = _run(tmp_path, {**entry, "venue": "venues/nope.toml"})
    assert code == 2 and "venue: unknown venue 'venues/nope.toml'" in " ".join(out.split())


# ------------------------------------------------------ the price move during --delay
def _three(tmp_path: Path) -> dict[str, object]:
    # binance 20,000 USDT (liquidated at -19.65 %), dydx 30,000 USDC (-29.15 %) and bybit
    # 50,000 USDT: 50,000 + (P - 100,000) = 0.005 P -> P = 50,000 / 0.995 (-49.75 %)
    data = {"venues": [FILE["venues"][0], FILE["venues"][1],
                       _with_bybit(tmp_path, "50000", "1")]}
    for v in data["venues"]:
        v["volatility"] = {"BTC-PERP": "0.8"}  # type: ignore[index]
    return data


def test_a_transfer_landing_after_the_liquidation_is_not_counted(tmp_path: Path) -> None:
    data = _three(tmp_path)
    # 7 days at 80 %: the move touched with probability 1 % is b = 0.8 sqrt(7/365)
    # Phi^-1(0.995) in log price (reflection principle), exp(-b) - 1 = -24.8 % down:
    # binance's -19.65 % lies within it, so a transfer to it would land too late
    b = 0.8 * math.sqrt(7 / 365) * NormalDist().inv_cdf(0.995)
    code, out = _rebalance(tmp_path, data, "--json", "--delay", "7d")
    assert code == 0, out
    r = json.loads(out)
    move = r["delay_move"]["BTC"]
    assert abs(float(move["down"]) - math.expm1(-b)) < 1e-12
    assert abs(float(move["up"]) - math.expm1(b)) < 1e-12
    assert r["lost_in_flight"] == {"binance": ["BTC down"]}
    # binance is left as it is; dydx receives X from bybit until both are liquidated at
    # the same P: (70,000 - X) / 0.988 = (50,000 + X) / 0.995  ->  X = 20,250 / 1.983
    x = Decimal(20_250) / Decimal("1.983")
    (t,) = r["transfers"]
    assert (t["from"], t["to"]) == ("bybit", "dydx")
    assert abs(Decimal(t["amount"]) - x) < Decimal("2e-6")
    p = (50_000 + x) / Decimal("0.995")
    assert _close(r["min_distance_kept"], 1 - p / 100_000)
    assert r["distance_after"]["binance"] == r["distance_before"]["binance"]
    down = r["landing"]["BTC"]["down"]
    assert down["liquidated_in_flight"] == ["binance"]
    assert {s["venue"] for s in down["ladder"]} == {"dydx", "bybit"}
    # at landing the price is 100,000 (1 + move); the further move is P / that - 1
    landed = 100_000 * (1 + Decimal(move["down"]))
    assert all(_close(s["from_landing"], p / landed - 1, "1e-5") for s in down["ladder"])
    # a move of 10 % reaches no venue: binance is helped too (all three equalize)
    code, out = _rebalance(tmp_path, data, "--json", "--delay", "10m",
                           "--move-during-delay", "10%")
    assert code == 0, out
    r = json.loads(out)
    assert r["lost_in_flight"] == {} and r["delay_move"]["BTC"]["source"] == "given"
    assert "binance" in {t["to"] for t in r["transfers"]}
    code, out = _rebalance(tmp_path, data, "--move-during-delay", "10%")
    assert code == 2 and "needs --delay" in out, out
    code, out = _rebalance(tmp_path, data, "--delay", "1h", "--move-during-delay", "120%")
    assert code == 2 and "--move-during-delay" in out, out
    # a move of 99.9 % reaches every venue: no distance is kept (not the scan's 0.5)
    code, out = _rebalance(tmp_path, data, "--json", "--delay", "1d",
                           "--move-during-delay", "0.999")
    assert code == 0, out
    r = json.loads(out)
    assert sorted(r["lost_in_flight"]) == ["binance", "bybit", "dydx"]
    assert r["transfers"] == [] and r["min_distance_kept"] is None
    code, out = _rebalance(tmp_path, data, "--delay", "1d", "--move-during-delay", "0.999")
    assert code == 0 and "none: every venue is liquidated before" in " ".join(out.split())
    # --confidence sets the move from the volatility: refused where it would be ignored
    code, out = _rebalance(tmp_path, data, "--confidence", "0.5")
    assert code == 2 and "--confidence: needs --delay" in out, out
    code, out = _rebalance(tmp_path, data, "--delay", "1d", "--move-during-delay", "10%",
                           "--confidence", "0.5")
    assert code == 2 and "--confidence" in out and "one or the other" in out, out
    code, out = _rebalance(tmp_path, data, "--json", "--delay", "7d", "--confidence", "0.9")
    assert code == 0, out
    z = NormalDist().inv_cdf(0.95)  # (1 + 0.9) / 2
    assert abs(float(json.loads(out)["delay_move"]["BTC"]["down"])
               - math.expm1(-0.8 * math.sqrt(7 / 365) * z)) < 1e-12


def _long_short(binance: str, dydx: str) -> dict[str, object]:
    data = {"venues": [_venue("binance", "USDT", binance, "1"),
                       _venue("dydx", "USDC", dydx, "-1")]}
    for v in data["venues"]:
        v["volatility"] = {"BTC-PERP": "0.8"}
    return data


def test_a_long_and_a_short_compare_on_log_distance_and_no_donor_is_exposed(
        tmp_path: Path) -> None:
    # binance long 1 BTC on 26,320 USDT: (99,950 - 26,320) / 0.995 = 74,000 (-26 %);
    # dydx short 1 BTC on 35,608 USDC: 35,608 - (P - 100,000) = 0.012 P -> P = 134,000
    # (+34 %). In log price dydx is the closer (ln 1.34 = 0.2927 < -ln 0.74 = 0.3011):
    # binance sends X until ln(100,000 / Pb) = ln(Pd / 100,000), Pb Pd = 1e10 with
    # Pb = (73,630 + X) / 0.995, Pd = (135,608 + X) / 1.012 -> X = 403.4648397
    code, out = _rebalance(tmp_path, _long_short("26320", "35608"), "--json", "--delay", "7d")
    assert code == 0, out
    r = json.loads(out)
    assert r["lost_in_flight"] == {}
    (t,) = r["transfers"]
    assert (t["from"], t["to"]) == ("binance", "dydx")
    assert abs(Decimal(t["amount"]) - Decimal("403.4648397")) < Decimal("2e-6")
    # 7 d at 80 %: -24.8 % / +33.0 %; neither venue is reached while the money travels
    # (linear equalization sent 4,013.71 the other way and left dydx inside +33.0 %)
    landing = r["landing"]["BTC"]
    assert landing["down"]["liquidated_in_flight"] == []
    assert landing["up"]["liquidated_in_flight"] == []
    pb = (73_630 + Decimal("403.4648397")) / Decimal("0.995")
    assert _close(r["distance_after"]["binance"], 1 - pb / 100_000, "1e-5")
    # a given move of 30 % either way is -35.7 % / +26.2 % in log price: binance (-34 %)
    # would give until its log distance equals dydx's (X = 6,654.09 -> -27.3 %, inside
    # -30 %); it may give only what keeps it alive one scan point (0.1 %) beyond -30 %:
    # (65,670 + X) / 0.995 = 69,900 -> X = 3,880.5
    data = _long_short("34280", "32572")
    code, out = _rebalance(tmp_path, data, "--json", "--delay", "1d",
                           "--move-during-delay", "30%")
    assert code == 0, out
    r = json.loads(out)
    assert r["lost_in_flight"] == {}
    (t,) = r["transfers"]
    assert (t["from"], t["to"], t["amount"]) == ("binance", "dydx", "3880.500000")
    assert r["landing"]["BTC"]["down"]["liquidated_in_flight"] == []
    assert r["landing"]["BTC"]["up"]["liquidated_in_flight"] == []
    assert r["min_distance_during"] == "0.301"


# ------------------------------------------------------------ options in the ladder
# A USDC-settled put on BTC-PERP declared on deribit (its option_standard rule), marked
# by Black-76 from its vol at the moved underlying as the engine marks it. Deribit's
# maintenance of a short ITM put (Deribit "Margins", the engine's option_margin):
# (0.075 + mark / S) x S = 0.075 S + mark per contract.
NOW = datetime(2026, 3, 20, tzinfo=UTC)
EXPIRY = datetime(2026, 6, 26, 8, tzinfo=UTC)
PUT = {"kind": "option", "option_kind": "put", "strike": "90000", "underlying": "BTC-PERP",
       "expiry": "2026-06-26T08:00:00Z", "base": "BTC", "quote": "USDC",
       "tick_size": "0.1", "lot_size": "0.01", "model": "option_standard"}
OPTIONS = {"venue": "deribit", "now": "2026-03-20T00:00:00Z",
           "markets": {"BTC-90000-P": PUT}, "prices": {"BTC-PERP": "100000"},
           "vols": {"BTC-90000-P": "0.6"},
           "account": {"collateral": {"USDC": "60000"}, "positions": [
               {"market": "BTC-90000-P", "size": "-2", "entry_price": "5000"}]}}


def _put(s: float) -> float:
    t = (EXPIRY - NOW).total_seconds() / (365 * 86_400)
    return float(black76_price(forward=s, strike=90_000.0, time_yr=t, vol=0.6, rate=0.0,
                               is_call=False).price[0])


def test_the_ladder_reprices_options_at_each_move(tmp_path: Path) -> None:
    code, out = _run(tmp_path, {"venues": [FILE["venues"][0], OPTIONS]}, "--json")
    assert code == 0, out
    first, second = json.loads(out)["ladder"]["BTC"]["down"]
    assert (first["venue"], second["venue"]) == ("deribit", "binance")
    s = float(first["prices"]["BTC-PERP"])
    mark = float(first["prices"]["BTC-90000-P"])
    # the put's mark then is its Black-76 premium at that price, on the 0.1 tick
    assert abs(mark - _put(s)) <= 0.05 + 1e-9
    # equity 60,000 + 2 (5,000 - p) = maintenance 2 (0.075 S + p): 0.15 S + 4 p = 70,000;
    # solved here by bisection on the reference price (the tick moves it by < 1 USD)
    lo, hi = 60_000.0, 100_000.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.15 * mid + 4 * _put(mid) > 70_000 else (lo, mid)
    assert abs(s - lo) < 1.0, (s, lo)
    # held at today's mark p0 the put would not be liquidated on the way down at all:
    # equity 70,000 - 2 p0 stays while maintenance 0.15 S + 2 p0 falls with S
    assert 0.15 * s + 4 * _put(100_000.0) < 70_000
    assert _close(first["closed_notional"], Decimal(2) * Decimal(first["prices"]["BTC-90000-P"]))
    (o,) = first["others"]
    assert _close(o["distance"], Decimal(79_950) / Decimal("0.995") / Decimal(repr(s)) - 1)


BTC_PUT = {**PUT, "quote": "BTC", "tick_size": "0.0001"}
BTC_OPTIONS = {**OPTIONS, "markets": {"BTC-90000-P": BTC_PUT},
               "account": {"collateral": {"BTC": "0.6"}, "positions": [
                   {"market": "BTC-90000-P", "size": "-2", "entry_price": "0.05"}]}}


def test_a_btc_quoted_options_closed_notional_is_in_usd(tmp_path: Path) -> None:
    # a BTC-quoted (coin-settled) put: its mark is the Black-76 premium in BTC, p(S) / S
    # on the 0.0001 tick, and its closed notional in USD is contracts x mark x S (BTC's
    # USD price at the moved point). By hand (the printed point): 2 x 0.1376 x
    # 87,895.809877 = 24,188.93 (in BTC, 0.2752, were the settlement price left out)
    code, out = _run(tmp_path, {"venues": [FILE["venues"][0], BTC_OPTIONS]}, "--json")
    assert code == 0, out
    first = json.loads(out)["ladder"]["BTC"]["down"][0]
    assert first["venue"] == "deribit"
    s = Decimal(first["prices"]["BTC-PERP"])
    mark = Decimal(first["prices"]["BTC-90000-P"])
    assert abs(float(mark) - _put(float(s)) / float(s)) <= 0.00005 + 1e-12
    assert _close(first["closed_notional"], 2 * mark * s)
    assert Decimal(first["closed_notional"]) > 20_000


def test_the_ladders_scan_restores_the_options_marks_and_requirements() -> None:
    """A scan re-marks the options at each moved underlying (and their per-contract
    requirements there); afterwards the market table is what it was, or a later ladder
    (another underlying, the next venue's) would read stale requirements."""
    engine = load_portfolio_engine(OPTIONS, source="options.json")
    venue = _Venue("deribit", engine, "options.json", 0)
    o = engine.book.market_index["BTC-90000-P"]
    before = engine.book.mk.copy()
    with venue.moved({"BTC": Decimal("-0.2")}):
        assert not np.array_equal(engine.book.mk[o], before[o], equal_nan=True)
    venue.state("BTC", Decimal("-0.3"))
    venue.crossing("BTC", -1, Decimal("0.5"), Decimal("0.001"))
    assert np.array_equal(engine.book.mk, before, equal_nan=True)


def test_an_option_priced_without_a_vol_is_refused(tmp_path: Path) -> None:
    priced = {**OPTIONS, "vols": {}, "prices": {"BTC-PERP": "100000", "BTC-90000-P": "7000"}}
    code, out = _run(tmp_path, {"venues": [FILE["venues"][0], priced]})
    text = " ".join(out.split())
    assert code == 2 and "venues[1].prices.BTC-90000-P" in text and "vols" in text, out


# ------------------------------------------------- several underlyings, correlated
# binance long 1 BTC on 20,000 USDT (liquidated at 79,950 / 0.995); dydx long 10 ETH at
# 4,000 on 5,000 USDC: 5,000 + 10 (E - 4,000) = 0.012 x 10 E -> E = 35,000 / 9.88.
# Volatility 50 % (BTC) and 75 % (ETH), correlation 0.8: ETH's log move given BTC's is
# beta = 0.8 x 0.75 / 0.5 = 1.2 times it (the conditional mean of jointly normal log
# returns), BTC's given ETH's 0.8 x 0.5 / 0.75.
CORR = {"venues": [
    {**FILE["venues"][0], "volatility": {"BTC-PERP": "0.5"}},
    {"venue": "dydx", "prices": {"ETH-PERP": "4000"}, "volatility": {"ETH-PERP": "0.75"},
     "account": {"collateral": {"USDC": "5000"},
                 "positions": [{"market": "ETH-PERP", "size": "10", "entry_price": "4000"}]}}]}


def test_the_ladder_moves_the_other_underlyings_by_their_beta(tmp_path: Path) -> None:
    corr = tmp_path / "corr.json"
    corr.write_text(json.dumps({"markets": ["BTC-PERP", "ETH-PERP"],
                                "matrix": [[1, 0.8], [0.8, 1]]}))
    code, out = _run(tmp_path, CORR, "--json")
    assert code == 0, out
    alone = json.loads(out)["ladder"]
    assert [s["venue"] for s in alone["BTC"]["down"]] == ["binance"]  # ETH held still
    code, out = _run(tmp_path, CORR, "--json", "--corr", str(corr))
    assert code == 0, out
    r = json.loads(out)
    assert r["ladder_comove"] == {"BTC": {"ETH": "1.2"}, "ETH": {"BTC": "0.533333"}}
    eth_liq = 35_000 / 9.88
    btc_liq = 79_950 / 0.995
    # BTC's ladder: dydx first, when (1 + m) ** 1.2 = eth_liq / 4,000
    first, second = r["ladder"]["BTC"]["down"]
    assert (first["venue"], second["venue"]) == ("dydx", "binance")
    assert abs(float(first["move"]) - ((eth_liq / 4_000) ** (1 / 1.2) - 1)) < 1e-6
    assert _close(first["prices"]["ETH-PERP"], Decimal(repr(eth_liq)))
    assert abs(float(second["move"]) - (btc_liq / 100_000 - 1)) < 1e-6
    # ETH's ladder: binance second, when (1 + m) ** (0.4 / 0.75) = btc_liq / 100,000
    first, second = r["ladder"]["ETH"]["down"]
    assert (first["venue"], second["venue"]) == ("dydx", "binance")
    assert abs(float(second["move"]) - ((btc_liq / 100_000) ** (0.75 / 0.4) - 1)) < 1e-6
    # rebalance under the same correlation: dydx's smallest distance is now on BTC's
    # ladder, 1 - (E / 4,000) ** (1 / 1.2) with E = (35,000 - X) / 9.88 after receiving
    # X from binance, whose own is 1 - (79,950 + X) / 99,500; equal at X (bisected here)
    code, out = _rebalance(tmp_path, CORR, "--json", "--corr", str(corr))
    assert code == 0, out
    r = json.loads(out)
    assert _close(r["min_distance_before"], Decimal(1) - Decimal(repr(
        (eth_liq / 4_000) ** (1 / 1.2))))
    lo, hi = 0.0, 5_000.0
    for _ in range(100):
        mid = (lo + hi) / 2
        gap = (79_950 + mid) / 99_500 - ((35_000 - mid) / 39_520) ** (1 / 1.2)
        lo, hi = (mid, hi) if gap < 0 else (lo, mid)
    (t,) = r["transfers"]
    assert (t["from"], t["to"]) == ("binance", "dydx")
    assert abs(float(t["amount"]) - lo) < 2e-6, (t, lo)
    assert r["distance_after"]["binance"] == r["distance_after"]["dydx"]
    for markets, matrix, message in (
            (["BTC-PERP"], [[1]], "--corr: no market of ETH"),
            (["BTC-PERP", "NOPE"], [[1, 0.8], [0.8, 1]], "'NOPE' is not a market"),
            (["BTC-PERP", "ETH-PERP"], [[1, 0.8], [0.3, 1]], "--corr:")):
        corr.write_text(json.dumps({"markets": markets, "matrix": matrix}))
        code, out = _run(tmp_path, CORR, "--corr", str(corr))
        assert code == 2 and message in " ".join(out.split()), out


# ------------------------------------- one venue: an option's liquidation, underlying
def test_one_venue_gives_an_options_liquidation_as_its_underlyings_price(
        tmp_path: Path) -> None:
    """The same put on one venue (a ladder of one): the report gives the BTC price at
    which the account is liquidated (0.15 S + 4 p(S) = 70,000, as above), not the
    premium the engine's liquidation price of an option is (20,084.3 here)."""
    code, out = _run(tmp_path, OPTIONS, "--json")
    assert code == 0, out
    (p,) = json.loads(out)["positions"]
    assert p["liquidation_price"] is None and p["liquidation_underlying"] == "BTC-PERP"
    s = float(p["liquidation_underlying_price"])
    lo, hi = 60_000.0, 100_000.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.15 * mid + 4 * _put(mid) > 70_000 else (lo, mid)
    assert abs(s - lo) < 1.0, (s, lo)
    assert abs(float(p["liquidation_premium"]) - _put(s)) <= 0.05 + 1e-9
    # first passage of BTC (vol 0.8, the default) to S within a day: 2 Phi(-|ln| / sd)
    sd = 0.8 * math.sqrt(1 / 365)
    want = 2 * NormalDist().cdf(-abs(math.log(s / 100_000)) / sd)
    assert abs(float(p["liquidation_probability"]) / want - 1) < 1e-6
    # the multi-venue report of the same account says the same
    code, out = _run(tmp_path, {"venues": [OPTIONS]}, "--json")
    (v,) = json.loads(out)["venues"]
    assert v["positions"][0]["liquidation_underlying_price"] == p["liquidation_underlying_price"]
    # the table's column holds the underlying's price, named, never the premium
    code, text = _run(tmp_path, OPTIONS)
    assert code == 0 and f"BTC-PERP {p['liquidation_underlying_price']}" in text, text
    assert "20084" not in text, text


def test_an_isolated_option_is_liquidated_by_its_own_row(tmp_path: Path) -> None:
    # isolated: the put's row holds 40,000 (a long perp beside it in its own row of 5,000
    # does not count): 40,000 + 2 (5,000 - p) = 2 (0.075 S + p), 0.15 S + 4 p = 50,000
    iso = json.loads(json.dumps(OPTIONS))
    iso["account"] = {"mode": "isolated", "collateral": {"USDC": "60000"}, "positions": [
        {"market": "BTC-90000-P", "size": "-2", "entry_price": "5000", "margin": "40000"},
        {"market": "BTC-PERP", "size": "1", "entry_price": "100000", "margin": "5000"}]}
    code, out = _run(tmp_path, iso, "--json")
    assert code == 0, out
    put, perp = json.loads(out)["positions"]
    s = float(put["liquidation_underlying_price"])
    lo, hi = 60_000.0, 100_000.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.15 * mid + 4 * _put(mid) > 50_000 else (lo, mid)
    assert abs(s - lo) < 1.0, (s, lo)
    assert "liquidation_underlying" not in perp and perp["liquidation_price"] is not None


def test_an_option_priced_without_a_vol_has_no_underlying_price(tmp_path: Path) -> None:
    priced = {**OPTIONS, "vols": {}, "prices": {"BTC-PERP": "100000", "BTC-90000-P": "7000"}}
    code, out = _run(tmp_path, priced, "--json")
    assert code == 0, out
    (p,) = json.loads(out)["positions"]
    assert (p["liquidation_price"], p["liquidation_underlying_price"],
            p["liquidation_probability"]) == (None, None, None)


def test_a_short_strangles_liquidation_probability_counts_both_crossings(
        tmp_path: Path) -> None:
    """Review 2 item 13: a short put and a short call in one cross row are liquidated by a
    fall or a rise; the probability is the two-barrier first passage of BTC (vol 0.8, the
    default) to either crossing, not the nearer one's alone (0.4991 -> 0.5940 here)."""
    call = {**PUT, "option_kind": "call", "strike": "110000"}
    data = {**OPTIONS, "horizon": "30d",
            "markets": {"BTC-90000-P": PUT, "BTC-110000-C": call},
            "vols": {"BTC-90000-P": "0.6", "BTC-110000-C": "0.6"},
            "account": {"collateral": {"USDC": "100000"}, "positions": [
                {"market": "BTC-90000-P", "size": "-2", "entry_price": "5000"},
                {"market": "BTC-110000-C", "size": "-2", "entry_price": "5000"}]}}
    code, out = _run(tmp_path, data, "--json")
    assert code == 0, out
    put, strangle_call = sorted(json.loads(out)["positions"], key=lambda p: p["market"])[::-1]
    assert put["market"] == "BTC-90000-P"
    t = (EXPIRY - NOW).total_seconds() / (365 * 86_400)

    def short_row_gap(s: float) -> float:
        # collateral + the two shorts' PnL - their Deribit maintenance, at BTC = s
        gap = 100_000.0
        for strike, is_call in ((90_000.0, False), (110_000.0, True)):
            mark = float(black76_price(forward=s, strike=strike, time_yr=t, vol=0.6,
                                       rate=0.0, is_call=is_call).price[0])
            gap -= 2 * (mark - 5_000) + float(option_margin(
                underlying_price=s, strike=strike, mark_price=mark, size=-2.0,
                is_call=is_call, settlement="linear").mm[0])
        return gap

    crossings = []
    for lo, hi in ((100_000.0, 40_000.0), (100_000.0, 160_000.0)):  # lo: above maintenance
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if short_row_gap(mid) > 0 else (lo, mid)
        crossings.append(lo)
    for p in (put, strangle_call):
        prices = p["liquidation_underlying_prices"]
        down, up = float(prices["down"]), float(prices["up"])
        assert abs(down - crossings[0]) < 1.0 and abs(up - crossings[1]) < 1.0, (prices,
                                                                                 crossings)
        assert p["liquidation_underlying_price"] == prices["down" if 1e5 - down < up - 1e5
                                                           else "up"]
        # by hand: 1 - P(stay in (a, b)), the eigenfunction series of the heat equation
        # on (a, b) (Feller II, X.5; independent of the code's method-of-images sum)
        a, b = math.log(down / 1e5), math.log(up / 1e5)
        width, var_t = b - a, 0.8**2 * 30 / 365
        stay = sum(4 / (n * math.pi) * math.sin(n * math.pi * -a / width)
                   * math.exp(-(n * math.pi) ** 2 * var_t / (2 * width**2))
                   for n in range(1, 400, 2))
        prob = float(p["liquidation_probability"])
        assert abs(prob - (1 - stay)) < 2e-6, (prob, 1 - stay)
        one_sided = [2 * NormalDist().cdf(-abs(x) / math.sqrt(var_t)) for x in (a, b)]
        assert max(one_sided) + 0.09 < prob <= sum(one_sided), (prob, one_sided)
