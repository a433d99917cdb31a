"""``solvency margin --shock`` (issue 28, "account-level shocks"): the account valued by
the engine with every market's price moved at once, checked against hand-computed
equity and maintenance margin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})

# binance, one tier: maintenance 0.4 % of notional; long 1 BTC at 100,000 with 10,000 USDT
FILE = {"venue": "binance",
        "markets": {"BTC-PERP": {"tiers": [{"floor": "0", "mmr": "0.004", "imr": "0.008"}]}},
        "prices": {"BTC-PERP": "100000"},
        "account": {"mode": "cross", "collateral": {"USDT": "10000"},
                    "positions": [{"market": "BTC-PERP", "size": "1",
                                   "entry_price": "100000"}]}}


def _run(tmp_path: Path, *args: str, data: dict[str, object] = FILE) -> tuple[int, str]:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    res = runner.invoke(app, ["margin", str(path), *args])
    return res.exit_code, res.output


def test_shocks_by_hand(tmp_path: Path) -> None:
    code, out = _run(tmp_path, "--json", "--shock", "-5%,-9.6%,-9.7%,-10%,+20%")
    assert code == 0, out
    rows = {r["shock"]: r for r in json.loads(out)["shocks"]}
    # price 100,000 x (1 + s): equity 10,000 + 100,000 s; maintenance 0.4 % of the price
    for shock, price in (("-0.05", 95_000), ("-0.096", 90_400), ("-0.097", 90_300),
                         ("-0.1", 90_000), ("0.2", 120_000)):
        r = rows[shock]
        equity = 10_000 + (price - 100_000)
        assert float(r["equity"]) == pytest.approx(equity, abs=1e-6)
        assert float(r["maintenance_margin"]) == pytest.approx(0.004 * price, abs=1e-6)
        assert r["liquidatable"] is (equity < 0.004 * price)
    # liquidatable below s = -9,600 / 99,600 = -9.64 %: equity 400 >= 361.6 at -9.6 %,
    # 300 < 361.2 at -9.7 %
    assert rows["-0.096"]["liquidatable"] is False
    assert rows["-0.097"]["liquidatable"] is True
    assert float(rows["-0.1"]["maintenance_shortfall"]) == pytest.approx(360.0, abs=1e-6)


def test_the_table_and_bad_shocks(tmp_path: Path) -> None:
    code, out = _run(tmp_path, "--shock", "-10%")
    assert code == 0 and "Under price shocks" in out and "-10" in out
    for bad in ("abc", "-100%", "nan"):
        code, out = _run(tmp_path, "--shock", bad)
        assert code == 2, (bad, out)
        assert "shock" in out and "Traceback" not in out


def test_an_option_given_by_price_is_not_shocked_silently(tmp_path: Path) -> None:
    put = "BTC-26JUN26-90000-P"
    data = {"venue": "deribit", "now": "2026-03-20T00:00:00Z",
            "prices": {"BTC-USD-INVERSE": "100000", "BTC-PERP": "100000", put: "0.07"},
            "account": {"mode": "cross", "collateral": {"BTC": "1"},
                        "positions": [{"market": put, "size": "-1", "entry_price": "0.07"}]}}
    code, out = _run(tmp_path, "--shock", "-10%", data=data)
    assert code == 2
    assert f"prices.{put}: an option's price cannot be shocked" in " ".join(out.split())


def test_what_if_trades_through_the_engine(tmp_path: Path) -> None:
    """Issue 28, "what-if": --add books a trade of the account against a funded
    counterparty through the engine's fill path, then reports."""
    code, out = _run(tmp_path, "--json", "--add", "BTC-PERP:1")
    assert code == 0, out
    report = json.loads(out)
    (pos,) = report["positions"]
    assert float(pos["size"]) == 2.0
    assert float(report["maintenance_margin"]) == pytest.approx(0.004 * 200_000, abs=1e-6)
    assert report["what_if"] == [{"market": "BTC-PERP", "size": "1", "price": None}]
    # closing at 101,000 realizes 1,000 of profit: the account is flat, equity 11,000
    code, out = _run(tmp_path, "--json", "--add", "BTC-PERP:-1@101000")
    assert code == 0, out
    report = json.loads(out)
    assert report["positions"] == []
    assert float(report["equity"]) == pytest.approx(11_000.0, abs=1e-6)
    # beyond what 10,000 USDT carries at 0.8 % initial margin: the engine's rejection
    code, out = _run(tmp_path, "--add", "BTC-PERP:20")
    assert code == 2
    assert "rejected insufficient_initial_margin" in " ".join(out.split())
    for bad in ("BTC-PERP", "BTC-PERP:0", "BTC-PERP:x", "BTC-PERP:1@-5", "NOPE:1"):
        code, out = _run(tmp_path, "--add", bad)
        assert code == 2 and "--add" in out and "Traceback" not in out, (bad, out)


def test_what_if_collateral_moves_through_the_engine(tmp_path: Path) -> None:
    """Issue 28, "what-if ... moving collateral": --move deposits or withdraws through the
    engine before the report. By hand (binance, 0.4 % / 0.8 %): long 1 BTC at 100,000 with
    10,000 USDT has its liquidation price where 10,000 + (p - 100,000) = 0.004 p, i.e.
    p = 90,000 / 0.996 = 90,361.44...; with 5,000 more, 85,000 / 0.996 = 85,341.36...;
    a withdrawal of 9,000 leaves 1,000 >= initial margin 800 (accepted), one of 9,300
    leaves 700 < 800 (refused with the engine's reason)."""
    code, out = _run(tmp_path, "--json", "--move", "USDT:5000")
    assert code == 0, out
    report = json.loads(out)
    assert float(report["equity"]) == pytest.approx(15_000.0, abs=1e-6)
    assert float(report["positions"][0]["liquidation_price"]) == pytest.approx(
        85_000 / 0.996, abs=0.01)
    assert report["what_if_collateral"] == [{"asset": "USDT", "amount": "5000"}]
    code, out = _run(tmp_path, "--json", "--move", "USDT:-9000")
    assert code == 0, out
    report = json.loads(out)
    assert float(report["equity"]) == pytest.approx(1_000.0, abs=1e-6)
    assert float(report["positions"][0]["liquidation_price"]) == pytest.approx(
        99_000 / 0.996, abs=0.01)
    code, out = _run(tmp_path, "--move", "USDT:-9300")
    assert code == 2
    assert "--move USDT:-9300: rejected insufficient_initial_margin" in " ".join(out.split())
    # moves come before trades: 20 BTC more (initial margin 0.8 % of 2,100,000 = 16,800)
    # is refused on 10,000 USDT and carried with 10,000 more
    code, out = _run(tmp_path, "--add", "BTC-PERP:20")
    assert code == 2 and "insufficient_initial_margin" in out
    code, out = _run(tmp_path, "--json", "--add", "BTC-PERP:20", "--move", "USDT:10000")
    assert code == 0, out
    report = json.loads(out)
    assert float(report["positions"][0]["size"]) == 21.0
    assert float(report["initial_margin"]) == pytest.approx(16_800.0, abs=1e-6)
    for bad in ("USDT", "USDT:0", "USDT:x", ":5", "NOPE:5", "USDT:nan"):
        code, out = _run(tmp_path, "--move", bad)
        assert code == 2 and "--move" in out and "Traceback" not in out, (bad, out)
