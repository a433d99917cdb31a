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
