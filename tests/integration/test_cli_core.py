"""The ``solvency`` command end to end: margin, replay, venues (CliRunner, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})

PORTFOLIO = {
    "venue": "binance",
    "prices": {"BTC-PERP": "100000", "ETH-PERP": "4000"},
    "account": {"mode": "cross", "collateral": {"USDT": "10000"},
                "positions": [{"market": "BTC-PERP", "size": "0.5", "entry_price": "98000"}]},
}


def _write(tmp_path: Path, obj: object, name: str = "p.json") -> Path:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_margin_json_has_the_documented_keys(tmp_path: Path) -> None:
    res = runner.invoke(app, ["margin", str(_write(tmp_path, PORTFOLIO)), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    for key in ("equity", "initial_margin", "maintenance_margin", "margin_ratio",
                "free_collateral", "positions"):
        assert key in out
    pos = out["positions"][0]
    for key in ("market", "notional", "initial_margin", "maintenance_margin",
                "liquidation_price", "unrealized_pnl", "liquidation_probability"):
        assert key in pos
    # 50,000 USDT notional is in Binance's second BTCUSDT bracket (floor 50,000, 100x,
    # MMR 0.5 %, maintenance amount 50): IM 1 % = 500, MM 250 - 50 = 200
    assert (out["initial_margin"], out["maintenance_margin"]) == ("500", "200")
    assert out["equity"] == "11000"


def test_margin_table_and_venue_override(tmp_path: Path) -> None:
    res = runner.invoke(app, ["margin", str(_write(tmp_path, PORTFOLIO)), "--venue", "bitmex"])
    assert res.exit_code == 0, res.output
    assert "bitmex" in res.output and "BTC-PERP" in res.output


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(venue="ftx"), "venue"),
        (lambda p: p["prices"].update({"BTC-PERP": "-1"}), "prices.BTC-PERP"),
        (lambda p: p["prices"].update({"BTC-PERP": "NaN"}),
         "prices.BTC-PERP: expected a finite number, got NaN"),
        (lambda p: p["prices"].update({"DOGE-PERP": "1"}), "unknown market"),
        (lambda p: p["account"].update(mode="spot"), "account.mode"),
        (lambda p: p["account"]["positions"][0].update(size="0.0001"), "invalid_size"),
        (lambda p: p["account"]["positions"][0].update(margin="5"), "only isolated"),
        (lambda p: p["account"]["positions"][0].update(market="XRP"), "unknown market"),
        (lambda p: p["account"]["positions"][0].pop("entry_price"), "entry_price"),
        (lambda p: p["account"]["collateral"].update(USDT="-5"), "collateral.USDT"),
        (lambda p: p["account"]["collateral"].update(DOGE="5"), "unknown_asset"),
        (lambda p: p.update(markets={"BTC-PERP": {"tiers": [{"floor": "5", "mmr": "0.1",
                                                              "imr": "0.2"}]}}), "floor 0"),
        (lambda p: p.update(markets={"BTC-PERP": {"leverage": "5"}}),
         "markets.BTC-PERP.leverage: unknown key"),
        (lambda p: p.update(horizon="soon"), "horizon"),
        (lambda p: p.update(extra=1), "extra: unknown key; expected one of: account,"),
        (lambda p: p.update(account=[]), "account"),
    ],
    ids=["unknown-venue", "negative-price", "nan-price", "unknown-price-market", "bad-mode",
         "size-off-lot", "margin-in-cross", "unknown-position-market", "missing-entry",
         "negative-collateral", "unknown-asset", "tiers-not-from-zero", "unknown-override",
         "bad-horizon", "unknown-key", "account-not-object"],
)
def test_bad_portfolio_files_fail_precisely(tmp_path: Path, mutate: object, message: str) -> None:
    data = json.loads(json.dumps(PORTFOLIO))
    mutate(data)  # type: ignore[operator]
    res = runner.invoke(app, ["margin", str(_write(tmp_path, data))])
    assert res.exit_code == 2, res.output
    assert message in res.output


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "invalid JSON"), ("", "invalid JSON"), ("[]", "portfolio")],
    ids=["truncated", "empty", "array"],
)
def test_malformed_portfolio_files(tmp_path: Path, text: str, message: str) -> None:
    res = runner.invoke(app, ["margin", str(_write(tmp_path, text))])
    assert res.exit_code == 2
    assert message in res.output


def test_missing_portfolio_file(tmp_path: Path) -> None:
    res = runner.invoke(app, ["margin", str(tmp_path / "nope.json")])
    assert res.exit_code == 2
    assert "nope.json" in res.output


# -- issue 28 items 1-5: inverse-only portfolios, exact entries, coin-margined haircuts,
# -- accounts already below maintenance, one position per market

def _inverse(venue: str, size: str, mode: str = "isolated") -> dict[str, object]:
    pos: dict[str, str] = {"market": "BTC-USD-INVERSE", "size": size, "entry_price": "95000"}
    if mode == "isolated":
        pos["margin"] = "0.2"
        collateral = {"BTC": "0"}
    else:
        collateral = {"BTC": "0.2"}
    return {"venue": venue, "prices": {"BTC-USD-INVERSE": "100000"},
            "account": {"mode": mode, "collateral": collateral, "positions": [pos]}}


def _margin_json(tmp_path: Path, data: object) -> dict[str, object]:
    res = runner.invoke(app, ["margin", str(_write(tmp_path, data)), "--json"])
    assert res.exit_code == 0, res.output
    out: dict[str, object] = json.loads(res.output)
    return out


@pytest.mark.parametrize(
    ("venue", "usd_per_contract"),
    [("binance", 100), ("deribit", 10), ("bitmex", 1)],
    ids=["binance-BTCUSD_PERP", "deribit-BTC-PERPETUAL", "bitmex-XBTUSD"],
)
def test_margin_inverse_only_portfolio_is_valued_by_its_own_price(
        tmp_path: Path, venue: str, usd_per_contract: int) -> None:
    # the file (long 500 contracts at 95,000, 0.2 BTC isolated margin, only the
    # inverse market priced): BTC is valued at the inverse market's own price, 100,000.
    # uPnL = N x CS x (1/95,000 - 1/100,000) BTC (BitMEX inverse guide: "# Contracts x
    # Multiplier x (1/Entry Price - 1/Exit Price)"); equity = (0.2 BTC + uPnL) x 100,000
    out = _margin_json(tmp_path, _inverse(venue, "500"))
    assert "\"nan\"" not in json.dumps(out)
    upnl_btc = 500 * usd_per_contract * (1 / 95000 - 1 / 100000)
    assert float(str(out["equity"])) == pytest.approx((0.2 + upnl_btc) * 100000, abs=0.01)
    assert out["asset_prices"] == {"BTC": {"usd": "100000", "market": "BTC-USD-INVERSE"}}
    pos = out["positions"][0]  # type: ignore[index]
    assert float(pos["unrealized_pnl"]) == pytest.approx(upnl_btc * 100000, abs=0.01)
    assert pos["liquidation_price"] is not None


def test_margin_names_a_missing_price(tmp_path: Path) -> None:
    # ETH collateral with no ETH market priced (and no ETH-settled inverse market): an
    # error that names the price to give, not NaN
    data = json.loads(json.dumps(PORTFOLIO))
    data["prices"] = {"BTC-PERP": "100000"}
    data["account"]["collateral"] = {"USDT": "10000", "ETH": "1"}
    res = runner.invoke(app, ["margin", str(_write(tmp_path, data))])
    assert res.exit_code == 2, res.output
    assert "account.collateral.ETH: no USD price for ETH: give prices.ETH-PERP" in res.output


@pytest.mark.parametrize("mode", ["isolated", "cross"])
def test_margin_entry_price_is_shown_as_given(tmp_path: Path, mode: str) -> None:
    # the engine keeps the cost in satoshi (0.52631579 BTC for 50,000 USD at 95,000),
    # which implies 95,000.00171 (isolated) or 94,999.999905 (cross): show the input
    out = _margin_json(tmp_path, _inverse("binance", "500", mode))
    assert out["positions"][0]["entry_price"] == "95000"  # type: ignore[index]


@pytest.mark.parametrize("mode", ["isolated", "cross"])
def test_binance_coin_m_cross_and_isolated_agree_with_the_venue_formula(
        tmp_path: Path, mode: str) -> None:
    # Binance 'How to Calculate Liquidation Price of COIN-M Futures Contracts' (FAQ
    # ceccfcfb4e3a45e3b48b0b1bb1a8ae46), one-way short, bracket 1 of BTCUSD_PERP (MMR
    # 0.4 %, cum 0): LP = N x CS x (MMR - 1) / (WB + cum - N x CS / EP)
    #    = 500 x 100 x (0.004 - 1) / (0.2 + 0 - 50,000 / 95,000) = 152,612.90.
    # Cross: WB is the crossWalletBalance, and "all BTC in the COIN-M Futures wallet can
    # be used for all BTC based contracts" ('Leverage and Margin in Coin-Margined
    # Futures Contracts', FAQ be2c7d9d95b04a7e8044ed02dd7dfe5c): no collateral haircut
    # (the 5 % BTC haircut is Multi-Assets Mode, USDⓈ-M only), so both modes agree.
    out = _margin_json(tmp_path, _inverse("binance", "-500", mode))
    pos = out["positions"][0]  # type: ignore[index]
    lp = 500 * 100 * (0.004 - 1) / (0.2 + 0 - 500 * 100 / 95000)
    assert lp == pytest.approx(152612.90, abs=0.005)
    assert float(pos["liquidation_price"]) == pytest.approx(lp, abs=0.01)
    # equity = (0.2 - 50,000 x (1/95,000 - 1/100,000)) x 100,000 = 17,368.42; no haircut
    assert float(str(out["equity"])) == pytest.approx(17368.42, abs=0.01)
    assert out["collateral"] == out["equity"]


def test_coin_backs_its_own_margin_at_par_and_other_assets_with_its_haircut(
        tmp_path: Path) -> None:
    # cross: 0.2 BTC, short 500 BTCUSD_PERP (as above) and long 0.1 BTCUSDT at 100,000.
    # BTC net 0.17368421 covers its own initial margin, 0.5 BTC / 125 = 0.004 BTC, at
    # par; the rest backs the USDT-settled position at Binance's Multi-Assets 95 %:
    # 0.004 x 100,000 + 0.95 x (0.17368421 - 0.004) x 100,000 = 400 + 16,120 = 16,520
    data = _inverse("binance", "-500", "cross")
    data["prices"] = {"BTC-USD-INVERSE": "100000", "BTC-PERP": "100000"}
    data["account"]["positions"].append(  # type: ignore[index]
        {"market": "BTC-PERP", "size": "0.1", "entry_price": "100000"})
    out = _margin_json(tmp_path, data)
    assert float(str(out["collateral"])) == pytest.approx(16520.0, abs=0.01)


def _below_maintenance(mark: str) -> dict[str, object]:
    return {"venue": "binance", "prices": {"BTC-PERP": mark}, "horizon": "8h",
            "account": {"mode": "cross", "collateral": {"USDT": "1500"},
                        "positions": [{"market": "BTC-PERP", "size": "1",
                                       "entry_price": "100000"}]}}


def test_margin_says_an_account_below_maintenance_is_liquidatable(tmp_path: Path) -> None:
    # 1,500 USDT, long 1 BTCUSDT from 100,000 marked at 98,000: equity 1,500 - 2,000 =
    # -500; notional 98,000 is in bracket 2 (MMR 0.5 %, cum 50): MM = 490 - 50 = 440.
    # It recovers where 1,500 + (P - 100,000) = 0.005 P - 50: P = 98,450 / 0.995
    res = runner.invoke(app, ["margin", str(_write(tmp_path, _below_maintenance("98000"))),
                              "--json"])
    assert res.exit_code == 4, res.output
    out = json.loads(res.output)
    assert out["liquidatable"] is True
    assert (out["equity"], out["maintenance_margin"]) == ("-500", "440")
    assert out["margin_ratio"] is None  # no ratio without positive collateral
    assert out["maintenance_shortfall"] == "940"
    pos = out["positions"][0]
    assert pos["liquidatable"] is True
    assert pos["liquidation_price"] is None
    assert float(pos["recovery_price"]) == pytest.approx(98450 / 0.995, abs=0.01)
    assert pos["liquidation_probability"] == "1"
    table = runner.invoke(app, ["margin", str(_write(tmp_path, _below_maintenance("98000")))])
    assert table.exit_code == 4
    assert "LIQUIDATABLE" in table.output
    assert "collateral -500 is below maintenance margin 440" in table.output


def test_margin_healthy_account_and_the_horizon_as_given(tmp_path: Path) -> None:
    # at 100,000: equity 1,500 against MM 500 - 50 = 450; ratio 450 / 1,500 = 0.3
    res = runner.invoke(app, ["margin", str(_write(tmp_path, _below_maintenance("100000"))),
                              "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["liquidatable"], out["margin_ratio"], out["horizon"]) == (False, "0.3", "8h")
    assert out["maintenance_shortfall"] == "0"
    assert out["positions"][0]["recovery_price"] is None
    table = runner.invoke(app, ["margin", str(_write(tmp_path, _below_maintenance("100000")))])
    assert table.exit_code == 0
    assert "P(liq) 8h" in table.output and "0.333333d" not in table.output
    assert "LIQUIDATABLE" not in table.output


@pytest.mark.parametrize("mode", ["isolated", "cross"])
@pytest.mark.parametrize("second", ["BTC-PERP", "BTCUSDT"], ids=["same-name", "alias"])
def test_margin_refuses_two_positions_in_one_market(tmp_path: Path, mode: str,
                                                    second: str) -> None:
    data = json.loads(json.dumps(PORTFOLIO))
    data["account"]["mode"] = mode
    extra = {"market": second, "size": "0.1", "entry_price": "99000"}
    if mode == "isolated":
        data["account"]["positions"][0]["margin"] = "1000"
        extra["margin"] = "100"
    data["account"]["positions"].append(extra)
    res = runner.invoke(app, ["margin", str(_write(tmp_path, data))])
    assert res.exit_code == 2, res.output
    assert ("account.positions[1].market: BTC-PERP already has a position "
            "(account.positions[0]); give one net position per market") in res.output


def test_replay_bundled_demo_json_summary(tmp_path: Path) -> None:
    out_path = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["replay", "--json", "--out", str(out_path)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert "accounts" not in summary  # the full listing only with --all-accounts
    for key in ("events", "rejected", "account_count", "accounts_nearest_liquidation",
                "accounts_largest", "open_interest", "ledger_totals", "conserved",
                "state_hash"):
        assert key in summary
    assert summary["conserved"] is True
    assert summary["rejected"] == 2 and summary["duplicates"] == 1
    outs = [json.loads(line) for line in out_path.read_text().splitlines()]
    kinds = {o["type"] for o in outs}
    assert {"rejected", "margin_call", "settled"} <= kinds
    # ledger totals equal deposits minus withdrawals read from the demo file itself
    from importlib import resources

    net: dict[str, float] = {}
    demo = resources.files("solvency.data").joinpath("demo_events.jsonl").read_text()
    rejected = {o["event"] for o in outs if o["type"] == "rejected"}
    for line in demo.splitlines():
        if line.startswith("#"):
            continue
        ev = json.loads(line)
        if ev["type"] in ("deposit", "withdraw") and ev["id"] not in rejected:
            sign = 1 if ev["type"] == "deposit" else -1
            net[ev["asset"]] = net.get(ev["asset"], 0) + sign * float(ev["amount"])
    for asset, total in summary["ledger_totals"].items():
        assert float(total) == pytest.approx(net.get(asset, 0.0))


def test_replay_is_deterministic_across_runs() -> None:
    a = json.loads(runner.invoke(app, ["replay", "--json"]).stdout)
    b = json.loads(runner.invoke(app, ["replay", "--json"]).stdout)
    assert a["state_hash"] == b["state_hash"]


def test_replay_reports_malformed_lines_and_continues(tmp_path: Path) -> None:
    events = "\n".join([
        '{"type":"deposit","id":"1","account":"a","asset":"USDT","amount":"100"}',
        '{"type":"deposit","id":"2","account":"a","asset":"USDT","amount":NaN}',
        "not json at all",
        '{"type":"withdraw","id":"3","account":"a","asset":"USDT","amount":"500"}',
        '{"type":"deposit","id":"1","account":"a","asset":"USDT","amount":"100"}',
    ])
    out_path = tmp_path / "o.jsonl"
    res = runner.invoke(app, ["replay", str(_write(tmp_path, events, "e.jsonl")), "--json",
                              "--out", str(out_path)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["events"] == 5 and summary["rejected"] == 3 and summary["duplicates"] == 1
    assert summary["ledger_totals"]["USDT"] == "100.000000"
    reasons = [json.loads(x)["reason"] for x in out_path.read_text().splitlines()]
    assert reasons == ["invalid_number", "malformed", "insufficient_balance"]


def test_replay_with_a_venue_file(tmp_path: Path) -> None:
    venue = {"preset": "binance", "markets": {"BTC-PERP": {"tiers": [
        {"floor": "0", "mmr": "0.05", "imr": "0.1"}]}}}
    events = "\n".join([
        '{"type":"deposit","id":"1","account":"a","asset":"USDT","amount":"1000"}',
        '{"type":"deposit","id":"2","account":"b","asset":"USDT","amount":"1000"}',
        '{"type":"price","id":"3","market":"BTCUSDT","price":"100000"}',
        '{"type":"fill","id":"4","market":"BTC-PERP","buyer":"a","seller":"b",'
        '"size":"0.2","price":"100000"}',
    ])
    res = runner.invoke(app, ["replay", str(_write(tmp_path, events, "e.jsonl")), "--venue",
                              str(_write(tmp_path, venue, "v.json")), "--json",
                              "--all-accounts"])
    summary = json.loads(res.stdout)
    # 0.2 BTC x 100000 at IM 10 % needs 2000 USDT: refused under the overridden tiers
    assert summary["rejected"] == 1
    assert summary["accounts"]["a"]["positions"] == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [(["replay", "missing.jsonl"], "no such file"),
     (["replay", "--venue", "ftx"], "neither a preset"),
     (["margin", "x.json", "--venue", "ftx"], "unknown venue")],
    ids=["missing-events", "unknown-venue", "margin-unknown-venue"],
)
def test_cli_errors(args: list[str], message: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert message in res.output


def test_venues_lists_every_preset_with_btc_and_eth() -> None:
    res = runner.invoke(app, ["venues", "--json"])
    assert res.exit_code == 0
    data = json.loads(res.output)
    # the six venues, and Binance's two dated collateral rules (2025-10-10 and -14)
    assert set(data) == {"binance", "bitmex", "deribit", "drift", "dydx", "hyperliquid",
                         "binance-2025-10-10", "binance-2025-10-14"}
    for name, venue in data.items():
        assert {"BTC-PERP", "ETH-PERP"} <= set(venue["markets"]), name
        settle = {m["settle"] for k, m in venue["markets"].items() if k.endswith("-PERP")}
        usdt = name.split("-")[0] in ("binance", "bitmex")
        assert settle == ({"USDT"} if usdt else {"USDC"}), name
    table = runner.invoke(app, ["venues"])
    assert table.exit_code == 0 and "hyperliquid" in table.output
