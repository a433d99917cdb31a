"""``solvency margin`` with option positions (issue 29 item 4): a vol gives the option its
Black-76 mark (the engine's own, at the underlying's price and ``now``), prices apply
underlyings first whatever their names, and what the file says is never ignored: a
non-zero ``rate``, a vol without ``now``, both a price and a vol, a vol on a perp are
refused with the key (exit 2)."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.model.presets import load_preset
from solvency.core.options import black76_price
from solvency.core.options.margin import option_margin
from solvency.engine.engine import MS_PER_YEAR

runner = CliRunner(env={"COLUMNS": "200"})
PUT = "BTC-26JUN26-90000-P"  # inverse: mark in BTC, underlying BTC-USD-INVERSE
NOW = "2026-03-20T00:00:00Z"
NOW_MS = 1_773_964_800_000


def _file(tmp_path: Path, **over: Any) -> Path:
    data: dict[str, Any] = {
        "venue": "deribit", "now": NOW,
        "prices": {"BTC-USD-INVERSE": "100000", "BTC-PERP": "100000"},
        "vols": {PUT: "0.6"},
        "account": {"mode": "cross", "collateral": {"USDC": "50000", "BTC": "1"},
                    "positions": [{"market": PUT, "size": "-2", "entry_price": "0.03"}]}}
    data.update(over)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    return path


def _run(path: Path) -> Any:
    return runner.invoke(app, ["margin", str(path), "--json"])


def test_a_vol_gives_the_black76_mark_and_deribits_margin(tmp_path: Path) -> None:
    res = _run(_file(tmp_path))
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    pos = out["positions"][0]
    expiry = load_preset("deribit").markets[PUT].expiry_ms
    assert expiry is not None
    t = (expiry - NOW_MS) / MS_PER_YEAR
    usd = black76_price(forward=100000.0, strike=90000.0, time_yr=t, vol=0.6, rate=0.0,
                        is_call=False).price[0]
    mark = float(pos["mark_price"])
    assert mark == pytest.approx(usd / 100000.0, abs=0.0001 / 2)  # tick 0.0001 BTC
    # Deribit standard margin of the short put at that mark, in BTC, times the BTC price
    im, mm = option_margin(underlying_price=100000.0, strike=90000.0, mark_price=mark,
                           size=-2.0, is_call=False)
    assert float(out["initial_margin"]) == pytest.approx(float(im[0]) * 100000.0, abs=0.01)
    assert float(out["maintenance_margin"]) == pytest.approx(float(mm[0]) * 100000.0,
                                                             abs=0.01)


def test_an_option_price_is_applied_after_its_underlying(tmp_path: Path) -> None:
    # 'BTC-26JUN26-...' sorts before 'BTC-USD-INVERSE': it used to fail with no_mark
    path = _file(tmp_path, vols={}, prices={PUT: "0.0742", "BTC-USD-INVERSE": "100000",
                                            "BTC-PERP": "100000"})
    res = _run(path)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["positions"][0]["mark_price"] == "0.0742"


@pytest.mark.parametrize(("over", "message"), [
    ({"rate": "0.05"}, "rate: solvency margin marks options as the venue does, at rate 0"),
    ({"now": None}, f"vols.{PUT}: a vol needs 'now'"),
    ({"prices": {PUT: "0.07", "BTC-USD-INVERSE": "100000", "BTC-PERP": "100000"}},
     f"vols.{PUT}: give the option's price or its vol, not both"),
    ({"vols": {"BTC-PERP": "0.6"}}, "vols.BTC-PERP: not an option market"),
    ({"vols": {"NOPE": "0.6"}}, "vols.NOPE: unknown market"),
    ({"prices": {"BTC-PERP": "100000"}}, "no_mark"),
])
def test_what_the_file_says_is_not_ignored(tmp_path: Path, over: dict[str, Any],
                                           message: str) -> None:
    res = _run(_file(tmp_path, **over))
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output


def test_the_mark_is_exact_on_the_tick(tmp_path: Path) -> None:
    out = json.loads(_run(_file(tmp_path)).output)
    mark = D(out["positions"][0]["mark_price"])
    assert mark % D("0.0001") == 0


# --- portfolio mode (issue 29 item 4: solvency margin --mode portfolio --pm-grid) -------

CALL = "BTC_USDC-26JUN26-100000-C"


def _pm_file(tmp_path: Path, mode: str = "portfolio") -> Path:
    return _file(tmp_path, vols={PUT: "0.6", CALL: "0.55"}, account={
        "mode": mode, "collateral": {"USDC": "50000", "BTC": "1"},
        "positions": [{"market": PUT, "size": "-2", "entry_price": "0.03"},
                      {"market": CALL, "size": "-1", "entry_price": "5000"},
                      {"market": "BTC-PERP", "size": "0.5", "entry_price": "99000"}]})


def test_portfolio_mode_prints_the_grid_part_by_part(tmp_path: Path) -> None:
    from solvency.adapters.grids import load_grid
    from solvency.core.portfolio import KIND_CALL, KIND_FUTURE, KIND_PUT, portfolio_margin

    res = _run(_pm_file(tmp_path))
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    pm = out["portfolio_margin"]
    assert (pm["grid"], pm["combine"], pm["pnl_currency"]) == ("deribit-pm", "sum", "coin")
    # a coin grid margins the BTC-settled put in BTC (Deribit's BTC book) and the
    # USDC-settled call and perp in USD (its USDC book): two pools of the underlying BTC
    usd, coin = pm["underlyings"]
    assert (usd["underlying"], usd["pnl_currency"]) == ("BTC", "USD")
    assert (coin["underlying"], coin["pnl_currency"]) == ("BTC (BTC-settled)", "BTC")
    assert usd["price_range"] == coin["price_range"] == "0.16"  # the grid's, no override
    grid = load_grid("deribit_pm")
    total_usd = 0.0
    for u in (usd, coin):
        losses = [float(s["loss"]) for s in u["scenarios"]]
        assert len(losses) == grid.n_scenarios
        assert float(u["scan_loss"]) == pytest.approx(max(*losses, 0.0), rel=1e-9)
        assert losses[u["worst_scenario"]] == max(losses)
        # Deribit adds its contingencies to the scan loss, then applies mm_factor (0.8:
        # the sum is the initial margin); USD prints 6 decimals (abs=1e-5), BTC 10 digits
        parts = sum(float(u[k]) for k in ("scan_loss", "delta_charge", "roll_charge",
                                          "short_option_minimum"))
        assert float(u["requirement"]) == pytest.approx(parts * 0.8, rel=1e-9, abs=1e-5)
        rate = float(u["price"]) if u is coin else 1.0
        assert float(u["requirement_usd"]) == pytest.approx(
            float(u["requirement"]) * rate, rel=1e-9, abs=1e-5)
        total_usd += float(u["requirement_usd"])
    # the book is short 2 puts of one strike: 2 x 0.01 BTC
    assert float(coin["short_option_minimum"]) == pytest.approx(0.02, rel=1e-12)
    assert float(coin["roll_charge"]) == 0.0
    assert float(usd["roll_charge"]) == pytest.approx(0.01 * 0.5 * 100000.0)  # gross
    assert float(pm["mm_factor"]) == 0.8
    assert float(pm["maintenance_margin"]) == pytest.approx(total_usd, abs=1e-5)
    assert float(pm["initial_margin"]) == pytest.approx(total_usd * 1.25, abs=1e-5)
    assert out["maintenance_margin"] == pm["maintenance_margin"]
    # the same book through the kernel's own API, positions written by hand: the put is
    # 2 contracts of 1 BTC (pool 1, in coin), the call 1 of 1 BTC, the perp 0.5 BTC
    # (pool 0, in USD); vols 0.6 and 0.55; time to expiry from 'now' (ACT/365)
    expiry = load_preset("deribit").markets[PUT].expiry_ms
    assert expiry is not None
    t = (expiry - NOW_MS) / MS_PER_YEAR
    ref = portfolio_margin(
        account=[0, 0, 0], underlying=[0, 1, 0],
        kind=np.array([KIND_CALL, KIND_PUT, KIND_FUTURE], dtype=np.int8),
        strike=[100000.0, 90000.0, 0.0], expiry_yr=[t, t, 0.0], size=[-1.0, -2.0, 0.5],
        vol=[0.55, 0.6, float("nan")], underlying_price=[100000.0, 100000.0], rate=0.0,
        grid=grid, n_accounts=1, coin=np.array([False, True]))
    assert float(pm["maintenance_margin"]) == pytest.approx(float(ref.mm[0]), rel=1e-9)
    worst_pool = int(np.argmax(ref.requirement[0]))
    assert (usd, coin)[worst_pool]["worst_scenario"] == int(ref.worst_scenario[0])


def test_mode_and_grid_from_the_command_line(tmp_path: Path) -> None:
    path = _pm_file(tmp_path, mode="cross")
    cross = json.loads(_run(path).output)
    assert "portfolio_margin" not in cross and cross["mode"] == "cross"
    res = runner.invoke(app, ["margin", str(path), "--json", "--mode", "portfolio",
                              "--pm-grid", "cme_span_16"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["mode"] == "portfolio" and out["portfolio_margin"]["grid"] == "cme-span-16"
    assert len(out["portfolio_margin"]["underlyings"][0]["scenarios"]) == 16
    table = runner.invoke(app, ["margin", str(path), "--mode", "portfolio"])
    assert table.exit_code == 0 and "Portfolio margin (deribit-pm" in table.output
    bad = runner.invoke(app, ["margin", str(path), "--mode", "portfolio", "--pm-grid",
                              "nope"])
    assert bad.exit_code == 2 and "nope" in bad.output and "Traceback" not in bad.output


def test_one_file_for_margin_and_greeks(tmp_path: Path) -> None:
    """Issue 29 item 4: the venue's own option markets are options of a greeks file too,
    so the file solvency margin reads is one solvency greeks reads: the same put priced
    by both (greeks unrounded, margin on the 0.0001 BTC tick)."""
    path = _pm_file(tmp_path)
    margin = json.loads(_run(path).output)
    res = runner.invoke(app, ["greeks", str(path), "--json"])
    assert res.exit_code == 0, res.output
    greeks = {p["market"]: p for p in json.loads(res.output)["positions"]}
    assert set(greeks) == {PUT, CALL, "BTC-PERP"}
    assert greeks[PUT]["settle"] == "BTC" and greeks[CALL]["settle"] == "USDC"
    marks = {p["market"]: float(p["mark_price"]) for p in margin["positions"]}
    assert greeks[PUT]["price"] == pytest.approx(marks[PUT], abs=0.0001 / 2)
    assert greeks[CALL]["price"] == pytest.approx(marks[CALL], abs=0.1 / 2)  # tick 0.1


def test_a_huge_contract_size_override_exits_2_naming_the_key(tmp_path: Path) -> None:
    # review 2 item 12: the portfolio's markets override on margin, as on greeks
    res = _run(_file(tmp_path, markets={"BTC-USD-INVERSE": {"contract_size": "1e400"}}))
    text = " ".join(res.output.split())
    assert res.exit_code == 2, text
    assert ("markets.BTC-USD-INVERSE.contract_size: expected a number >= 1E-18 and "
            "<= 1E+18, got 1E+400") in text
