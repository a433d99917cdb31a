"""CLI tables never cut a cell: at 80 and 60 columns, in a pipe, for every table command.

Rich used to shrink a table wider than the console by cutting cells (``80302…``). Each
command here runs for real; its text output must hold no ellipsis, stay within the width
(the state hash line excepted), show every value of its ``--json`` output whole where the
table shows it verbatim, and hold every word of the same output at 400 columns.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from solvency.cli import simulate as simulate_cli
from solvency.cli import sweep as sweep_cli
from solvency.cli.main import app
from solvency.sim.sweep import SweepResult
from tests.conftest import missing

WIDE = 400
WIDTHS = (80, 60)
SOLVENCY = Path(sys.executable).parent / "solvency"

PORTFOLIO = {
    "venue": "binance",
    "prices": {"BTC-PERP": "100000", "ETH-PERP": "4000"},
    "volatility": {"BTC-PERP": "0.55"}, "horizon": "8h",
    "account": {"mode": "cross", "collateral": {"USDT": "80302.123456", "BTC": "0.1"},
                "positions": [{"market": "BTC-PERP", "size": "1.234", "entry_price": "98000.5"},
                              {"market": "ETH-PERP", "size": "-5", "entry_price": "4100"}]},
}

GREEKS = {
    "venue": "deribit", "now": "2026-01-01T00:00:00Z", "rate": "0.03",
    "markets": {
        "BTC-C": {"type": "option", "underlying": "BTC", "kind": "call", "strike": "100000",
                  "expiry": "2026-01-31T00:00:00Z", "settle": "USDC"},
        "BTC-P": {"type": "option", "underlying": "BTC", "kind": "put", "strike": "90000",
                  "expiry": "2026-01-31T00:00:00Z", "settle": "BTC"},
    },
    "prices": {"BTC": "100000"},
    "vols": {"BTC-C": "0.6", "BTC-P": "0.7"},
    "account": {"positions": [{"market": "BTC-C", "size": "-10"},
                              {"market": "BTC-P", "size": "3"},
                              {"market": "BTC-USD-INVERSE", "size": "1000"}]},
}


def _words(out: str) -> set[str]:
    """Words of a text output: box drawing (U+2500-U+257F) and separators count as spaces."""
    return {w.rstrip(",") for w in re.sub("[\u2500-\u257f]", " ", out).split()}


def _text(args: list[str], columns: int) -> str:
    res = CliRunner(env={"COLUMNS": str(columns)}).invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.stdout


def _json(args: list[str]) -> Any:
    return json.loads(_text([*args, "--json"], WIDE))


def _check(out: str, width: int) -> None:
    assert "…" not in out, out
    for line in out.splitlines():
        if not line.startswith("state hash: "):  # printed whole, whatever the width
            assert len(line) <= width, (width, line)


def _same_words(args: list[str], width: int) -> str:
    """The output at ``width``: checked, and holding every word of the wide output."""
    wide = _text(args, WIDE)
    assert "…" not in wide
    out = _text(args, width)
    _check(out, width)
    assert _words(wide) <= _words(out), sorted(_words(wide) - _words(out))
    return out


def _margin_values(report: dict[str, Any]) -> set[str]:
    values = {report[k] for k in ("equity", "collateral", "initial_margin",
                                  "maintenance_margin", "margin_ratio", "free_collateral")}
    for p in report["positions"]:
        values |= {p[k] for k in ("market", "size", "entry_price", "mark_price", "notional",
                                  "initial_margin", "maintenance_margin", "unrealized_pnl",
                                  "liquidation_probability")}
        values.add(p["liquidation_price"] or "none")
    return values


@pytest.fixture
def portfolio(tmp_path: Path) -> Path:
    path = tmp_path / "portfolio.json"
    path.write_text(json.dumps(PORTFOLIO))
    return path


@pytest.mark.parametrize("width", WIDTHS)
def test_margin(portfolio: Path, width: int) -> None:
    args = ["margin", str(portfolio)]
    out = _same_words(args, width)
    report = _json(args)
    assert report["equity"] == "93269.506456"  # wider than a cut 80-column cell
    assert _margin_values(report) <= _words(out)


def _pipe(args: list[str]) -> str:
    """Run the installed command with stdout, stderr and stdin off a terminal, no COLUMNS."""
    if not SOLVENCY.is_file():
        missing(f"{SOLVENCY} not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    res = subprocess.run([str(SOLVENCY), *args], env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, check=False,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.decode()


def test_margin_in_a_pipe_gets_80_columns_and_no_cut(portfolio: Path) -> None:
    out = _pipe(["margin", str(portfolio)])
    _check(out, 80)
    assert _margin_values(_json(["margin", str(portfolio)])) <= _words(out)
    # this table needs 81 columns: at rich's pipe default of 80 it folds into records
    assert "  equity              93269.506456" in out.splitlines()


@pytest.mark.parametrize("width", WIDTHS)
def test_greeks(tmp_path: Path, width: int) -> None:
    path = tmp_path / "greeks.json"
    path.write_text(json.dumps(GREEKS))
    out = _same_words(["greeks", str(path)], width)
    report = _json(["greeks", str(path)])
    assert {p["market"] for p in report["positions"]} <= _words(out)


@pytest.mark.parametrize("width", WIDTHS)
def test_venues(width: int) -> None:
    out = _same_words(["venues"], width)
    words = _words(out)
    for name, v in _json(["venues"]).items():
        assert {name, *_words(v["as_of"])} <= words
        for market, m in v["markets"].items():
            assert {market, m["kind"], m["settle"], m["model"]} <= words
            if m["model"] == "tiered":
                assert {m["tiers"][0]["imr"], m["tiers"][0]["mmr"]} <= words


def _replay_values(summary: dict[str, Any]) -> Iterator[str]:
    for key in ("events", "applied", "rejected", "duplicates", "liquidations", "adl",
                "conserved", "state_hash"):
        yield str(summary[key])
    for key in ("ledger_totals", "fee_pool", "rounding", "insurance_fund", "bad_debt"):
        yield from summary[key]
        yield from summary[key].values()
    for a in summary["accounts_nearest_liquidation"] + summary["accounts_largest"]:
        yield a["account"]
        yield a["margin_ratio"]
        yield a["equity_usd"]
        yield a["notional_usd"]
        yield from a["positions"]
        yield from a["positions"].values()


@pytest.mark.parametrize("width", WIDTHS)
def test_replay_bundled_demo(width: int) -> None:
    out = _same_words(["replay"], width)
    assert set(_replay_values(_json(["replay"]))) <= _words(out)


def test_replay_in_a_pipe() -> None:
    out = _pipe(["replay"])
    _check(out, 80)
    assert set(_replay_values(_json(["replay"]))) <= _words(out)


def _bars_csv(path: Path, n: int = 400) -> Path:
    rng = np.random.default_rng(2)
    close = 30_000.0 * np.exp(np.cumsum(rng.standard_t(4, n) * 0.01))
    opens = np.r_[30_000.0, close[:-1]]
    t0 = 1_600_000_000_000 // 86_400_000 * 86_400_000
    path.write_text("".join(
        f"{t0 + i * 86_400_000},{o},{max(o, c) * 1.001},{min(o, c) * 0.999},{c},1.0\n"
        for i, (o, c) in enumerate(zip(opens, close, strict=True))))
    return path


@pytest.mark.parametrize("width", WIDTHS)
def test_backtest(tmp_path: Path, width: int) -> None:
    csv = _bars_csv(tmp_path / "d.csv")
    out = _same_words(["backtest", "--prices", str(csv), "--warmup", "150", "--model", "all"],
                      width)
    assert "Margin backtest" in out


def _capture(module: Any, monkeypatch: pytest.MonkeyPatch, width: int) -> io.StringIO:
    buf = io.StringIO()
    monkeypatch.setattr(module, "console", Console(file=buf, width=width, color_system=None))
    return buf


METRICS: dict[str, dict[str, Any]] = {
    venue: {"liquidations": 1234 + i, "accounts_liquidated": 321, "bad_debt": 1_234_567.891,
            "liquidated_notional": 98_765_432.1, "insurance_fund_min": -4_321.5,
            "adl_haircut": 0.012345, "cascade_amplification": None, "conserved": True,
            "var99_bad_debt": 7_654_321.0}
    for i, venue in enumerate(("binance", "dydx", "hyperliquid", "bybit"))
}


@pytest.mark.parametrize("width", [*WIDTHS, 40])
def test_simulate_table(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    outs = {}
    for w in (WIDE, width):
        buf = _capture(simulate_cli, monkeypatch, w)
        simulate_cli._print_table("Stress run (4 venues)", METRICS)
        outs[w] = buf.getvalue()
    _check(outs[width], width)
    assert _words(outs[WIDE]) <= _words(outs[width])
    # the headline figures with their units, every digit (no settlement asset given here)
    shown = {"1,234,567.89", "98,765,432.10", "7,654,321.00", "yes", "-", "FAIL"}
    assert shown <= _words(outs[width])


def _sweep_result() -> SweepResult:
    params = ("liquidity.ETH-PERP.impact_y", "venue.margin_call_ratio")
    points = [{"point": i, params[0]: 0.5 * (i + 1), params[1]: "0.85", "paths": 16,
               "liquidations": 12.5 + i, "bad_debt": 1_234_567.891 * i,
               "var95_bad_debt": 2_345_678.9, "var99_bad_debt": 3_456_789.0,
               "insurance_fund_min": -98_765.4, "adl_count": 7.25,
               "capital_efficiency": 0.0123, "conserved": True, "on_frontier": i == 1}
              for i in range(3)]
    return SweepResult(params=params, rows=[{}] * 48, points=points, backend="processes",
                       workers=4, wall_s=12.5, task_wall_s=40.0)


@pytest.mark.parametrize("width", [*WIDTHS, 40])
def test_sweep_table(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    result = _sweep_result()
    outs = {}
    for w in (WIDE, width):
        buf = _capture(sweep_cli, monkeypatch, w)
        sweep_cli._print_table("Sweep (3 points)", result)
        outs[w] = buf.getvalue()
    _check(outs[width], width)
    assert _words(outs[WIDE]) <= _words(outs[width])
    assert {"liquidity.ETH-PERP.impact_y", "1,234,568", "2,345,679", "-98,765", "0.0123",
            "yes"} <= _words(outs[width])
