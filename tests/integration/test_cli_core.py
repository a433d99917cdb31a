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
        (lambda p: p["prices"].update({"BTC-PERP": "NaN"}), "not finite"),
        (lambda p: p["prices"].update({"DOGE-PERP": "1"}), "unknown market"),
        (lambda p: p["account"].update(mode="portfolio"), "account.mode"),
        (lambda p: p["account"]["positions"][0].update(size="0.0001"), "invalid_size"),
        (lambda p: p["account"]["positions"][0].update(margin="5"), "only isolated"),
        (lambda p: p["account"]["positions"][0].update(market="XRP"), "unknown market"),
        (lambda p: p["account"]["positions"][0].pop("entry_price"), "entry_price"),
        (lambda p: p["account"]["collateral"].update(USDT="-5"), "collateral.USDT"),
        (lambda p: p["account"]["collateral"].update(DOGE="5"), "unknown_asset"),
        (lambda p: p.update(markets={"BTC-PERP": {"tiers": [{"floor": "5", "mmr": "0.1",
                                                              "imr": "0.2"}]}}), "floor 0"),
        (lambda p: p.update(markets={"BTC-PERP": {"leverage": "5"}}), "unknown keys"),
        (lambda p: p.update(horizon="soon"), "horizon"),
        (lambda p: p.update(extra=1), "unknown keys"),
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
    assert set(data) == {"binance", "bitmex", "deribit", "drift", "dydx", "hyperliquid"}
    for name, venue in data.items():
        assert {"BTC-PERP", "ETH-PERP"} <= set(venue["markets"]), name
        settle = {m["settle"] for k, m in venue["markets"].items() if k.endswith("-PERP")}
        assert settle == ({"USDT"} if name in ("binance", "bitmex") else {"USDC"}), name
    table = runner.invoke(app, ["venues"])
    assert table.exit_code == 0 and "hyperliquid" in table.output
