"""``--pm-grid NAME|FILE`` (issue 23): a grid file of one's own is used where a shipped
name is, and a misspelt key in it is refused with the file and the dotted key."""

from __future__ import annotations

import json
from decimal import Decimal as D
from importlib import resources
from pathlib import Path

from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.model.events import (
    AccountMode,
    Deposit,
    Fill,
    Price,
    Vol,
    event_to_json,
)

runner = CliRunner(env={"COLUMNS": "200"})
CALL = "BTC_USDC-26JUN26-100000-C"
T0 = 1_774_000_000_000


def _events(tmp_path: Path) -> Path:
    events = [
        AccountMode(id="mode", account="pm", mode="portfolio", ts_ms=T0),
        Deposit(id="d1", account="pm", asset="USDC", amount=D(60000), ts_ms=T0),
        Deposit(id="d2", account="mm", asset="USDC", amount=D(1_000_000), ts_ms=T0),
        Price(id="p", market="BTC-PERP", price=D(100000), ts_ms=T0),
        Vol(id="v", market=CALL, iv=D("0.6"), ts_ms=T0),
        Fill(id="f1", market=CALL, buyer="mm", seller="pm", size=D(1), price=D(8000),
             ts_ms=T0),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event_to_json(e)) + "\n" for e in events))
    return path


def _maintenance(args: list[str]) -> str:
    res = runner.invoke(app, ["replay", *args, "--venue", "deribit", "--json",
                              "--all-accounts"])
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["accounts"]["pm"]["margin_ratio"])


def test_a_grid_file_is_used_where_a_name_is(tmp_path: Path) -> None:
    events = str(_events(tmp_path))
    shipped = resources.files("solvency.core.portfolio").joinpath(
        "grids/deribit_pm.toml").read_text()
    same = tmp_path / "same.toml"
    same.write_text(shipped)
    wider = tmp_path / "wider.toml"
    wider.write_text(shipped.replace("price_range = 0.16", "price_range = 0.30"))
    by_name = _maintenance([events, "--pm-grid", "deribit_pm"])
    assert _maintenance([events, "--pm-grid", str(same)]) == by_name
    assert D(_maintenance([events, "--pm-grid", str(wider)])) > D(by_name)  # MM / collateral


def test_a_grid_file_sets_the_scan_range_per_underlying(tmp_path: Path) -> None:
    # [underlyings.SYMBOL] gives one underlying its own scan range (SPAN's are per
    # combined commodity, issue 29): BTC's widens a BTC book's margin; ETH's leaves it
    # as it was
    events = str(_events(tmp_path))
    shipped = resources.files("solvency.core.portfolio").joinpath(
        "grids/deribit_pm.toml").read_text()
    by_name = _maintenance([events, "--pm-grid", "deribit_pm"])
    grids = {}
    for name, text in (
            ("btc", shipped + "\n[underlyings.BTC]\nprice_range = 0.30\n"),
            ("eth", shipped + "\n[underlyings.ETH]\nprice_range = 0.30\n")):
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        grids[name] = _maintenance([events, "--pm-grid", str(path)])
    assert D(grids["btc"]) > D(by_name)
    assert grids["eth"] == by_name


def test_a_misspelt_key_is_refused_with_file_and_key(tmp_path: Path) -> None:
    grid = tmp_path / "typo.toml"
    grid.write_text('name = "t"\nprice_range = 0.1\nvol_rnage_up = 0.5\n'
                    "[[scenarios]]\nprice = 1.0\nwieght = 2\n")
    res = runner.invoke(app, ["replay", "--pm-grid", str(grid)])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert f"{grid}: vol_rnage_up: unknown key; did you mean 'vol_range_up'?" in text
    assert f"{grid}: scenarios[0].wieght: unknown key; did you mean 'weight'?" in text
    res = runner.invoke(app, ["replay", "--pm-grid", str(tmp_path / "none.toml")])
    assert res.exit_code == 2 and "neither a shipped grid" in res.output
    assert "Traceback" not in res.output


def _state_hash(tmp_path: Path, events: str, grid: str, name: str) -> str:
    seed = tmp_path / "venue.seed"
    seed.write_bytes(b"s" * 32)
    out = tmp_path / name
    res = runner.invoke(app, ["prove", events, "--venue", "deribit", "--pm-grid", grid,
                              "--seed-file", str(seed), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return str(json.loads((out / "root.json").read_text())["state_hash"])


def test_prove_and_risk_report_replay_with_the_grid_given(tmp_path: Path) -> None:
    # a scan range of 80 % puts the short call below maintenance during the replay: it
    # is liquidated, so the proven state differs from the one under deribit_pm
    events = str(_events(tmp_path))
    shipped = resources.files("solvency.core.portfolio").joinpath(
        "grids/deribit_pm.toml").read_text()
    same = tmp_path / "same.toml"
    same.write_text(shipped)
    wide = tmp_path / "wide.toml"
    wide.write_text(shipped.replace("price_range = 0.16", "price_range = 0.80"))
    by_name = _state_hash(tmp_path, events, "deribit_pm", "a")
    assert _state_hash(tmp_path, events, str(same), "b") == by_name
    assert _state_hash(tmp_path, events, str(wide), "c") != by_name
    typo = tmp_path / "typo.toml"
    typo.write_text(shipped.replace("vol_range_up", "vol_rnage_up"))
    for command in (["prove", "--out", str(tmp_path / "d")],
                    ["risk-report", "--out", str(tmp_path / "r.json")]):
        res = runner.invoke(app, [*command, events, "--pm-grid", str(typo)])
        assert res.exit_code == 2, res.output
        text = " ".join(res.output.split())
        assert f"{typo}: vol_rnage_up: unknown key; did you mean 'vol_range_up'?" in text
    res = runner.invoke(app, ["risk-report", events, "--venue", "deribit", "--pm-grid",
                              str(wide), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
