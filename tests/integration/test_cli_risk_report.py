"""``solvency risk-report`` (issue 18): the standard report validates against its JSON
Schema (docs/schema/risk-report-v1.json, checked with the ``jsonschema`` package), its
liquidations at risk are the engine's own figures (tests/unit/engine/
test_liquidations_at_risk.py holds them to an actual engine run of the same shock), a
sweep's bad debt gives VaR99/ES99 by hand, and a proof root of another state is refused."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import jsonschema
from typer.testing import CliRunner

from solvency.adapters.eventlog import load_venue
from solvency.adapters.grids import load_grid
from solvency.adapters.risk_report import schema
from solvency.cli.main import app
from solvency.engine.engine import Engine
from solvency.engine.summary import liquidations_at_risk
from tests.conftest import REPO

runner = CliRunner()


def test_the_schema_in_docs_is_the_one_the_package_validates_with() -> None:
    docs = json.loads((REPO / "docs" / "schema" / "risk-report-v1.json").read_text())
    assert docs == schema()
    jsonschema.Draft202012Validator.check_schema(docs)


def test_demo_report_validates_and_carries_the_engines_figures(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proofs = tmp_path / "p"
    assert runner.invoke(app, ["prove", "--out", str(proofs)]).exit_code == 0
    res = runner.invoke(app, ["risk-report", "--out", str(out), "--proofs", str(proofs)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    jsonschema.validate(report, json.loads(
        (REPO / "docs" / "schema" / "risk-report-v1.json").read_text()))
    assert report["proof_of_liabilities"]["root"] == json.loads(
        (proofs / "root.json").read_text())["root"]
    # the same figures as the engine's own view of the same state
    from importlib import resources

    from solvency.adapters.eventlog import LineError, read_events

    engine = Engine(load_venue("binance"), pm_grid=load_grid("deribit_pm"))
    src = resources.files("solvency.data").joinpath("demo_events.jsonl")
    with resources.as_file(src) as p:
        for item in read_events(Path(p)):
            if not isinstance(item, LineError):
                engine.apply(item)
    assert report["state_hash"] == engine.state_hash()
    assert report["liquidations_at_risk"] == liquidations_at_risk(engine)
    shocks = [r["shock"] for r in report["liquidations_at_risk"]]
    assert shocks[0] == "+0%" and {"-30%", "-5%", "+5%", "+30%"} <= set(shocks)
    btc = next(m for m in report["markets"] if m["market"] == "BTC-PERP")
    assert btc["open_interest"] == engine.open_interest()["BTC-PERP"]


def test_bad_debt_var_and_es_from_a_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    # 200 runs: 196 without bad debt, then 10, 20, 30, 40. By hand: VaR99 is the
    # ceil(0.99 x 200) = 198th smallest loss, 20
    values = [0.0] * 196 + [10.0, 20.0, 30.0, 40.0]
    lines = ["run,bad_debt"] + [f"{i},{v}" for i, v in enumerate(values)]
    (sweep / "sweep.csv").write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["risk-report", "--sweep", str(sweep), "--out",
                              str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    bd = json.loads((tmp_path / "r.json").read_text())["bad_debt"]
    assert bd["runs"] == 200 and bd["var99"] == "20.00"
    # ES99 = mean of the worst 1 % (2 runs): (30 + 40) / 2
    assert bd["es99"] == "35.00"
    # issue 14: the fund's coverage of that VaR99, in the sweep's asset (USDT): the
    # demo's fund over 20 and over 35, and whether it covers the VaR exactly
    fund = Decimal(json.loads(runner.invoke(app, ["replay", "--json"]).stdout)[
        "insurance_fund"]["USDT"])
    assert bd["asset"] == "USDT" and Decimal(bd["insurance_fund"]) == fund
    assert bd["coverage_var99"] == f"{fund / 20:.6g}"
    assert bd["coverage_es99"] == f"{fund / 35:.6g}" and bd["covered"] is True


def test_fund_coverage_in_replay(tmp_path: Path) -> None:
    """``solvency replay --stress-var``: the fund's coverage of the stress lab's bad-debt
    VaR99 (issue 14), from a sweep's CSV or an amount, by hand against the summary's
    own insurance fund."""
    sweep = tmp_path / "sweep.csv"
    values = [0.0] * 98 + [60_000.0, 80_000.0]  # VaR99 = 99th smallest = 60,000
    sweep.write_text("run,bad_debt\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    res = runner.invoke(app, ["replay", "--json", "--stress-var", str(sweep)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    cov = summary["fund_coverage"]
    fund = Decimal(summary["insurance_fund"]["USDT"])
    assert 0 < fund < 60_000
    assert cov["bad_debt_var99"] == "60000.00" and cov["bad_debt_es99"] == "80000.00"
    assert cov["runs"] == 100 and cov["source"] == str(sweep)
    assert cov["coverage_var99"] == f"{fund / 60_000:.6g}" and cov["covered"] is False
    res = runner.invoke(app, ["replay", "--json", "--stress-var", str(fund)])
    cov = json.loads(res.stdout)["fund_coverage"]
    assert cov["coverage_var99"] == "1" and cov["covered"] is True  # exactly covered
    assert cov["bad_debt_es99"] is None and cov["runs"] is None
    res = runner.invoke(app, ["replay", "--stress-var", "0"])
    assert "= inf (covered)" in " ".join(res.stdout.split())
    for bad, words in (("-5", "must be a finite amount >= 0"),
                       ("nope", "neither a sweep folder or CSV nor an amount")):
        res = runner.invoke(app, ["replay", "--stress-var", bad])
        assert res.exit_code == 2 and words in res.output and "Traceback" not in res.output


def test_a_proof_of_another_state_is_refused(tmp_path: Path) -> None:
    proofs = tmp_path / "p"
    assert runner.invoke(app, ["prove", "--out", str(proofs)]).exit_code == 0
    root = json.loads((proofs / "root.json").read_text())
    root["state_hash"] = "0" * 64
    (proofs / "root.json").write_text(json.dumps(root))
    res = runner.invoke(app, ["risk-report", "--proofs", str(proofs), "--out",
                              str(tmp_path / "r.json")])
    assert res.exit_code == 2 and "state_hash differs" in " ".join(res.output.split())
