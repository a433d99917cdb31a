"""``solvency margin --max-size MARKET[@LEVERAGE]`` (issue 28, "the largest size at a
chosen leverage"): bisection on lots through the engine's own pre-trade check, checked
against hand calculations on the binance preset's BTC-PERP brackets (initial margin
0.8 % of notional below 50,000 USD, 1 % from 50,000 to 600,000; maximum leverage 125x
and 100x: Binance USDⓈ-M leverage and margin brackets, as in the preset's source) and
Binance's "Initial Margin = Notional Position Value / Leverage"
(https://www.binance.com/en/support/faq/360033162192)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})


def _file(positions: list[dict[str, str]]) -> dict[str, object]:
    return {"venue": "binance", "prices": {"BTC-PERP": "100000"},
            "account": {"mode": "cross", "collateral": {"USDT": "1000"},
                        "positions": positions}}


def _max(tmp_path: Path, data: dict[str, object], *specs: str) -> list[dict[str, object]]:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    args = [a for s in specs for a in ("--max-size", s)]
    res = runner.invoke(app, ["margin", str(path), "--json", *args])
    assert res.exit_code == 0, res.output
    return list(json.loads(res.output)["max_size"])


def test_venue_tiers_by_hand(tmp_path: Path) -> None:
    # 1,000 USDT, flat. Bracket 1 (0.8 %) would allow 125,000 USD but ends at 50,000;
    # bracket 2 (1 %): 0.01 N <= 1,000 -> N <= 100,000 = 1.000 BTC (lot 0.001) each way
    (row,) = _max(tmp_path, _file([]), "BTC-PERP")
    for side in ("buy", "sell"):
        assert row[side]["size"] == "1.000"  # type: ignore[index]
        assert row[side]["notional"] == "100000.000"  # type: ignore[index]
        assert row[side]["limited_by"] == "insufficient_initial_margin"  # type: ignore[index]
    # long 0.3 BTC at the mark: a buy may take the position to 1 BTC (0.7 more); a sell
    # first closes the 0.3 (always allowed), then opens a short of up to 1 BTC: 1.3
    (row,) = _max(tmp_path, _file([{"market": "BTC-PERP", "size": "0.3",
                                     "entry_price": "100000"}]), "BTC-PERP")
    assert row["buy"]["size"] == "0.700"  # type: ignore[index]
    assert row["sell"]["size"] == "1.300"  # type: ignore[index]


@pytest.mark.parametrize(("spec", "size", "reason"), [
    # IM = N / 20 <= 1,000 -> N <= 20,000 (20x is allowed in every bracket up to 100 M)
    ("BTC-PERP@20", "0.200", "insufficient_initial_margin"),
    # N / 100 <= 1,000 -> 100,000; 100x is allowed up to bracket 3's floor, 600,000
    ("BTC-PERP@100", "1.000", "insufficient_initial_margin"),
    # N / 110 <= 1,000 allows 110,000, but 110x only in bracket 1 (125x): N <= 50,000
    ("BTCUSDT@110", "0.500", "leverage_bracket"),
], ids=["20x", "100x", "110x-bracket"])
def test_chosen_leverage_by_hand(tmp_path: Path, spec: str, size: str, reason: str) -> None:
    (row,) = _max(tmp_path, _file([]), spec)
    assert row["market"] == "BTC-PERP"
    assert row["buy"]["size"] == size and row["sell"]["size"] == size  # type: ignore[index]
    assert row["buy"]["limited_by"] == reason  # type: ignore[index]


def test_table_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_file([])))
    res = runner.invoke(app, ["margin", str(path), "--max-size", "BTC-PERP@20"])
    assert res.exit_code == 0 and "Largest order" in res.output and "0.200" in res.output
    for bad, words in (("BTC-PERP@200", "above the market's maximum leverage 125"),
                       ("BTC-PERP@-1", "leverage > 0"), ("NOPE", "unknown market"),
                       ("BTC-PERP@x", "MARKET[@LEVERAGE]")):
        res = runner.invoke(app, ["margin", str(path), "--max-size", bad])
        assert res.exit_code == 2 and words in res.output, (bad, res.output)
        assert "Traceback" not in res.output
