"""``solvency fund-target`` on a sweep table: the target, the fee share, precise errors."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

from typer.testing import CliRunner

from solvency.cli.main import app

runner = CliRunner()
HEADER = ("point,path,seed_market,bad_debt,adl_haircut,adl_overshoot,insurance_fund_start,"
          "insurance_fund_drawdown,insurance_fund_equity_drawdown")


def _sweep(folder: Path, rows: list[str]) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "sweep.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return folder


def _rows(point: int, n: int) -> list[str]:
    # path i: cash drawdown 9e9 (ignored: the equity drawdown is used), equity drawdown
    # 1000 i, an ADL haircut of 30 of which 10 was overshoot, bad debt 5 on odd paths.
    return [f"{point},{i},1,{5 if i % 2 else 0},30.0,10.0,50000.0,9e9,{1000 * i}.5"
            for i in range(1, n + 1)]


def test_target_and_fee_share(tmp_path: Path) -> None:
    folder = _sweep(tmp_path / "s", _rows(0, 100))
    res = runner.invoke(app, ["fund-target", "--sweep", str(folder), "--fee-income", "2500",
                              "--days", "30", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # need_i = 1000 i + 0.5 + (30 - 10) + (5 if i odd): sorted ascending by i;
    # VaR99 = need_99 = 99,025.5, ES99 = need_100 = 100,020.5 (q n = 99 exactly).
    assert (out["paths"], D(out["var"]), D(out["es"])) == (100, D("99025.5"), D("100020.5"))
    assert D(out["target"]) == D(out["es"]) and D(out["fund"]) == D(50000)
    assert D(out["shortfall"]) == D("50020.5")
    assert D(out["fee_share"]) == D("50020.5") / D(75000)  # 2,500 a day for 30 days
    assert D(out["days_at_full_share"]) == D("20.01")  # 50,020.5 / 2,500, rounded up
    table = runner.invoke(app, ["fund-target", "--sweep", str(folder), "--fee-income",
                                "1000", "--days", "30", "--measure", "var"])
    assert table.exit_code == 0, table.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in table.stdout.splitlines() if line.count("│") == 3}
    assert rows["target (var99)"] == "99,025.50"
    assert rows["fee share to rebuild in 30 days"] == "none within the period"  # > 30,000
    assert rows["days to rebuild at a share of 100 %"] == "49.03"  # 49,025.5 / 1,000


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    two = _sweep(tmp_path / "two", _rows(0, 3) + _rows(1, 3))
    bad = _sweep(tmp_path / "bad", [*_rows(0, 2), "0,3,1,lots,30.0,10.0,50000.0,1,1"])
    cases = [
        (["--sweep", str(two)], "2 grid points (0, 1): choose one with --point"),
        (["--sweep", str(two), "--point", "7"], "no point 7"),
        (["--sweep", str(bad)], "sweep.csv:4: bad_debt: expected a number, got 'lots'"),
        (["--sweep", str(tmp_path / "none")], "No such file"),
        (["--sweep", str(two), "--point", "1", "--measure", "cvar"], "expected es or var"),
        (["--sweep", str(two), "--point", "1", "--days", "ten"], "--days 'ten'"),
        (["--sweep", str(two), "--point", "1", "--days", "0"], "days > 0"),
    ]
    for args, fragment in cases:
        res = runner.invoke(app, ["fund-target", *args, "--fee-income", "100"])
        assert res.exit_code == 2, res.output
        assert fragment in res.output, (args, res.output)
    other = _sweep(tmp_path / "cols", ["0,1,1"])
    (other / "sweep.csv").write_text("point,path,bad_debt\n0,1,0\n")
    res = runner.invoke(app, ["fund-target", "--sweep", str(other), "--fee-income", "1"])
    assert res.exit_code == 2 and "expected the columns" in res.output


def test_the_engine_steers_the_fee_share_to_the_target(tmp_path: Path) -> None:
    """Issue 19, "the engine's policy can read it": --venue-out writes a venue file whose
    fee-share policy reads the target; on it the engine steps the fund's share of fees up
    while the fund is below the target and down above 110 % of it (by hand below)."""
    from solvency.adapters.eventlog import load_venue
    from solvency.core.ledger.ledger import INSURANCE
    from solvency.core.model.events import Deposit, Fill, Price
    from solvency.engine.engine import Engine

    folder = _sweep(tmp_path / "s", _rows(0, 100))
    out_file = tmp_path / "v.json"
    res = runner.invoke(app, ["fund-target", "--sweep", str(folder), "--fee-income", "2500",
                              "--days", "30", "--venue", "dydx", "--venue-out",
                              str(out_file), "--fund", "0"])
    assert res.exit_code == 0, res.output
    data = json.loads(out_file.read_text())
    # ES99 100,020.5 (above); all of it a shortfall from a fund of 0: 100,020.5 / 75,000
    # of the fees is more than all of them, so the share may rise to 100 % in steps of 10
    assert data["preset"] == "dydx"
    assert data["insurance"] == {"fee_share_ppm": 0, "policy": {
        "target_fund": "100020.500000", "target_asset": "USDC", "target_ppm": 1_000_000,
        "release_ppm": 1_100_000, "step_ppm": 100_000, "min_share_ppm": 0,
        "max_share_ppm": 1_000_000}}
    e = Engine(load_venue(str(out_file)))
    for acct in ("alice", "bob"):
        e.apply(Deposit(id=f"d-{acct}", account=acct, asset="USDC", amount=D(1_000_000)))
    e.apply(Price(id="p0", market="BTC-USD", price=D(100000)))

    def fill(i: int, fee: str) -> list[tuple[str, str, str]]:
        out = e.apply(Fill(id=f"f{i}", market="BTC-USD", buyer="alice", seller="bob",
                           size=D("0.001"), price=D(100000), fee_buyer=D(fee)))
        return [(o.old, o.new, o.reason) for o in out  # type: ignore[attr-defined]
                if o.type == "params_changed"]

    # share 0: the first fill's fee leaves the fund at 0 < target: one step up; the
    # second pays 10 % of 10 USDC in, 1 / 100,020.5 of the target: another step
    assert fill(1, "10") == [("0", "100000", "insurance fund at 0 of its USDC target")]
    assert fill(2, "10") == [("100000", "200000", "insurance fund at 9.99795e-06 of its "
                                                  "USDC target")]
    # a fund above 110 % of the target (a donation) steps it back down
    e.apply(Deposit(id="d-f", account="__insurance__", asset="USDC", amount=D(120_000)))
    changed = fill(3, "10")
    assert [(a, b) for a, b, _ in changed] == [("200000", "100000")], changed
    # 1 + 120,000 + 20 % of 10: 120,003 > 110 % of 100,020.5
    assert e.ledger.balance(INSURANCE, "USDC") == 120_003 * 10**6
    e.verify()
    # written for another asset than the venue settles in: refused, nothing written
    bad = runner.invoke(app, ["fund-target", "--sweep", str(folder), "--fee-income", "1",
                              "--venue", "binance", "--venue-out", str(tmp_path / "b.json")])
    assert bad.exit_code == 2 and "--asset" in bad.output
    assert not (tmp_path / "b.json").exists()
