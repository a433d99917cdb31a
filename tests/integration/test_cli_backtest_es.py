"""``solvency backtest``: the Acerbi-Szekely expected-shortfall tests beside the VaR
tests (issue 28), on prices whose answer is known: daily log returns N(0, 2 %), a fixed
margin rate at the true 97.5 % quantile of the loss is not rejected; at 60 % of it, it
is (Acerbi and Szekely 2014, "Backtesting Expected Shortfall", Risk)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from solvency.cli.main import app

runner = CliRunner(env={"COLUMNS": "250"})
SIGMA, P = 0.02, 0.025


def _prices(tmp_path: Path, n: int = 1500) -> Path:
    rng = np.random.default_rng(5)
    close = 30_000.0 * np.exp(np.cumsum(rng.standard_normal(n) * SIGMA))
    opens = np.r_[30_000.0, close[:-1]]
    t0 = 1_600_041_600_000
    lines = ["timestamp,open,high,low,close,volume"] + [
        f"{t0 + i * 86_400_000},{o},{max(o, c)},{min(o, c)},{c},1"
        for i, (o, c) in enumerate(zip(opens, close, strict=True))]
    path = tmp_path / "p.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("scale", "rejected"), [(1.0, False), (0.6, True)],
                         ids=["true-quantile", "60pc"])
def test_es_tests_on_known_returns(tmp_path: Path, scale: float, rejected: bool) -> None:
    # the loss of a long is 1 - e^r ~ -r: its 97.5 % quantile is 1 - e^(-z sigma)
    rate = scale * -np.expm1(-stats.norm.ppf(1 - P) * SIGMA)
    res = runner.invoke(app, ["backtest", "--prices", str(_prices(tmp_path)), "--model",
                              "fixed", "--fixed-rate", f"{rate:.10f}", "--warmup", "100",
                              "--confidence", str(1 - P), "--es-sims", "1000", "--json"])
    assert res.exit_code == 0, res.output
    es = json.loads(res.stdout)["es_backtest"]
    assert es["simulations"] == 1000 and es["forecast"] == "normal"
    if rejected:
        assert es["z2"] > 0.5 and es["z2_p"] < 0.01 and es["z1_p"] < 0.05
    else:
        assert abs(es["z2"]) < 0.4 and es["z2_p"] > 0.05 and es["z1_p"] > 0.05


def test_no_es_test_on_request(tmp_path: Path) -> None:
    res = runner.invoke(app, ["backtest", "--prices", str(_prices(tmp_path, 300)), "--model",
                              "ewma", "--warmup", "100", "--es-sims", "0", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["es_backtest"] is None
