"""``solvency margin --corr`` (issue 28, "joint probability of liquidation of a cross
account"): the account valued by the engine's kernels under correlated log-normal moves
of its markets, checked against closed forms.

* one market: the terminal probability of a driftless log price,
  ``Phi(-ln(mark/liq) / (sigma sqrt T))``, half the first-passage figure of the position
  view (reflection principle; Shreve, *Stochastic Calculus for Finance II*, 2004, 3.7.3);
* two markets, single-tier maintenance: the account is liquidatable where
  ``A e^x1 + B e^x2 < D`` (hand-derived below), a region of the bivariate normal plane
  whose probability is bracketed by staircases of rectangles, each a
  ``scipy.stats.multivariate_normal`` CDF difference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr
from scipy.stats import multivariate_normal
from typer.testing import CliRunner

from solvency.cli.main import app
from tests.conftest import missing

runner = CliRunner(env={"COLUMNS": "200"})
ONE_TIER = {"tiers": [{"floor": "0", "mmr": "0.004", "imr": "0.008"}]}
SIGMA = 0.8  # annualized, both markets
HORIZON_Y = 1 / 365


def _file(positions: list[dict[str, str]], collateral: str) -> dict[str, object]:
    return {"venue": "binance", "markets": {"BTC-PERP": ONE_TIER, "ETH-PERP": ONE_TIER},
            "prices": {"BTC-PERP": "100000", "ETH-PERP": "5000"},
            "volatility": {"BTC-PERP": str(SIGMA), "ETH-PERP": str(SIGMA)},
            "account": {"mode": "cross", "collateral": {"USDT": collateral},
                        "positions": positions}}


def _run(tmp_path: Path, data: dict[str, object], rho: float, *args: str
         ) -> tuple[int, str]:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    corr = tmp_path / "corr.json"
    corr.write_text(json.dumps({"markets": ["BTC-PERP", "ETH-PERP"],
                                "matrix": [[1, rho], [rho, 1]]}))
    res = runner.invoke(app, ["margin", str(path), "--horizon", "1d", "--corr", str(corr),
                              *args])
    return res.exit_code, res.output


def test_one_market_equals_the_terminal_probability(tmp_path: Path) -> None:
    data = _file([{"market": "BTC-PERP", "size": "1", "entry_price": "100000"}], "4000")
    code, out = _run(tmp_path, data, 0.3, "--json", "--paths", "40000")
    assert code == 0, out
    report = json.loads(out)
    pos = report["positions"][0]
    liq = float(pos["liquidation_price"])
    # equity 4,000 + (p - 100,000) = 0.004 p  ->  p = 96,000 / 0.996
    assert liq == pytest.approx(96_000 / 0.996, rel=1e-6)
    closed = float(ndtr(-math.log(100_000 / liq) / (SIGMA * math.sqrt(HORIZON_Y))))
    assert float(pos["terminal_probability"]) == pytest.approx(closed, rel=1e-5)
    assert float(pos["liquidation_probability"]) == pytest.approx(2 * closed, rel=1e-5)
    joint = report["joint_liquidation"]
    assert joint["markets"] == ["BTC-PERP"] and joint["paths"] == 40_000
    se = math.sqrt(closed * (1 - closed) / 40_000)
    assert float(joint["probability"]) == pytest.approx(closed, abs=4 * se)


def _bivariate_bracket(a: float, b: float, d: float, s: float, rho: float,
                       strips: int = 4000) -> tuple[float, float]:
    """P(A e^X1 + B e^X2 < D), X ~ N(0, s^2 [[1, rho], [rho, 1]]): x2 < h(x1) =
    ln((D - A e^x1) / B), h decreasing, empty beyond x1 = ln(D / A). Over strips of x1
    the region holds the rectangle under h's right end and lies in the one under its
    left end: a lower and an upper sum of multivariate_normal CDF differences (strips
    narrower towards x1 = ln(D / A), where h falls steeply)."""
    cov = s * s * np.array([[1.0, rho], [rho, 1.0]])
    top = math.log(d / a)
    edges = top - (top + 8 * s) * np.sqrt(1.0 - np.linspace(0.0, 1.0, strips + 1))
    h = np.full(edges.shape, -np.inf)
    inside = a * np.exp(edges[:-1]) < d
    h[:-1][inside] = np.log((d - a * np.exp(edges[:-1][inside])) / b)
    low_h = np.maximum(h, -12 * s)  # CDF at -12 s is 0 to double precision

    def cdf(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        return np.asarray(multivariate_normal(mean=[0, 0], cov=cov).cdf(
            np.column_stack([x1, x2])), dtype=np.float64)

    right, left = edges[1:], edges[:-1]
    lower = (cdf(right, low_h[1:]) - cdf(left, low_h[1:])).sum()
    upper = (cdf(right, low_h[:-1]) - cdf(left, low_h[:-1])).sum()
    return float(lower), float(upper) + float(ndtr(-8.0))


@pytest.mark.parametrize("rho", [0.8, -0.4], ids=["rho=0.8", "rho=-0.4"])
def test_two_markets_against_the_bivariate_normal(tmp_path: Path, rho: float) -> None:
    # long 0.4 BTC at 100,000 and 8 ETH at 5,000 (entries at the marks), 4,000 USDT.
    # equity = 4,000 + 40,000 (e^x1 - 1) + 40,000 (e^x2 - 1); maintenance 0.4 % of each
    # notional: liquidatable iff 0.996 (40,000 e^x1 + 40,000 e^x2) < 76,000
    data = _file([{"market": "BTC-PERP", "size": "0.4", "entry_price": "100000"},
                  {"market": "ETH-PERP", "size": "8", "entry_price": "5000"}], "4000")
    code, out = _run(tmp_path, data, rho, "--json", "--paths", "40000", "--seed", "7")
    assert code == 0, out
    joint = json.loads(out)["joint_liquidation"]
    assert joint["markets"] == ["BTC-PERP", "ETH-PERP"] and joint["seed"] == 7
    lo, hi = _bivariate_bracket(0.996 * 40_000, 0.996 * 40_000, 76_000,
                                SIGMA * math.sqrt(HORIZON_Y), rho)
    assert hi - lo < 5e-4
    p = float(joint["probability"])
    se = math.sqrt(p * (1 - p) / 40_000)
    assert lo - 4 * se <= p <= hi + 4 * se, (lo, p, hi)
    assert float(joint["standard_error"]) == pytest.approx(se, abs=1e-6)


def test_seeded_and_correlation_matters(tmp_path: Path) -> None:
    data = _file([{"market": "BTC-PERP", "size": "0.4", "entry_price": "100000"},
                  {"market": "ETH-PERP", "size": "-8", "entry_price": "5000"}], "4000")
    answers = []
    for rho, paths in ((0.9, "20000"), (-0.9, "20000"), (0.9, "20000")):
        code, out = _run(tmp_path, data, rho, "--json", "--paths", paths)
        assert code == 0, out
        answers.append(float(json.loads(out)["joint_liquidation"]["probability"]))
    # the same seed gives the same answer; a hedge (long BTC, short ETH) is far safer when
    # the two move together than when they move apart
    assert answers[0] == answers[2]
    assert answers[0] < answers[1] / 10


def test_table_and_refusals(tmp_path: Path) -> None:
    data = _file([{"market": "BTC-PERP", "size": "0.4", "entry_price": "100000"},
                  {"market": "ETH-PERP", "size": "8", "entry_price": "5000"}], "4000")
    code, out = _run(tmp_path, data, 0.5, "--paths", "5000")
    assert code == 0, out
    assert "account, jointly" in out and "P(liq) 1d" in out and "seed 0" in out
    code, out = _run(tmp_path, data, 1.5, "--paths", "100")
    assert code == 2 and "diagonal must be 1 and every entry in [-1, 1]" in out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"markets": ["BTC-PERP"], "matrix": [[1]]}))
    path = tmp_path / "p.json"
    res = runner.invoke(app, ["margin", str(path), "--corr", str(bad)])
    assert res.exit_code == 2 and "no entry for ETH-PERP" in res.output
    res = runner.invoke(app, ["margin", str(path), "--corr", "estimate"])
    assert res.exit_code == 2 and "--corr-prices MARKET=FILE" in res.output
    assert "Traceback" not in res.output


def test_estimated_from_the_shared_hourly_data(tmp_path: Path, shared_data: Path) -> None:
    # Bybit BTC and ETH perps, 1h (../shared/data/README.md): Pearson correlation of the
    # hourly log returns at the hours both files have, recomputed here with pandas
    data_dir = shared_data
    btc = data_dir / "btcusdt_bybit_perp_1h_2023-11-29_2026-02-08.csv.gz"
    eth = data_dir / "ethusdt_bybit_perp_1h_2023-12-18_2026-02-08.csv.gz"
    if not (btc.is_file() and eth.is_file()):
        missing("the Bybit hourly files are not in ../shared/data")
    frames = [pd.read_csv(f, usecols=["timestamp_ms", "close"]).set_index("timestamp_ms")
              .rename(columns={"close": f"close_{name}"})
              for f, name in ((btc, "btc"), (eth, "eth"))]
    both = frames[0].join(frames[1], how="inner")
    rets = np.log(both).diff().dropna()
    rho = float(rets["close_btc"].corr(rets["close_eth"]))
    assert 0.5 < rho < 0.95
    data = _file([{"market": "BTC-PERP", "size": "0.4", "entry_price": "100000"},
                  {"market": "ETH-PERP", "size": "8", "entry_price": "5000"}], "4000")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    res = runner.invoke(app, ["margin", str(path), "--json", "--paths", "1000", "--corr",
                              "estimate", "--corr-prices", f"BTC-PERP={btc}",
                              "--corr-prices", f"ETH-PERP={eth}"])
    assert res.exit_code == 0, res.output
    joint = json.loads(res.output)["joint_liquidation"]
    assert float(joint["correlation"][0][1]) == pytest.approx(rho, abs=1e-6)
    assert f"{len(rets)} common log returns" in joint["correlation_source"]


def test_coin_collateral_moves_with_its_market(tmp_path: Path) -> None:
    # 0.05 BTC of collateral (weight 0.95 on binance) behind a long of 1 BTC-PERP at
    # 100,000: the coin is priced by BTC-PERP and falls with it in every scenario. By hand
    # (bracket 2 at the liquidation notional: 0.5 %, maintenance amount 50):
    # 0.0475 p + (p - 100,000) = 0.005 p - 50  ->  p = 99,950 / 1.0425 = 95,875.30.
    # Held at 100,000, the coin would make the joint figure 0.146 instead of 0.157.
    data = {"venue": "binance", "prices": {"BTC-PERP": "100000"},
            "volatility": {"BTC-PERP": str(SIGMA)},
            "account": {"mode": "cross", "collateral": {"BTC": "0.05"}, "positions": [
                {"market": "BTC-PERP", "size": "1", "entry_price": "100000"}]}}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    corr = tmp_path / "c.json"
    corr.write_text(json.dumps({"markets": ["BTC-PERP"], "matrix": [[1]]}))
    res = runner.invoke(app, ["margin", str(path), "--json", "--corr", str(corr),
                              "--paths", "40000"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    (pos,) = report["positions"]
    liq = float(pos["liquidation_price"])
    assert liq == pytest.approx(99_950 / 1.0425, abs=1e-5)
    closed = float(ndtr(-math.log(100_000 / liq) / (SIGMA * math.sqrt(HORIZON_Y))))
    se = math.sqrt(closed * (1 - closed) / 40_000)
    assert float(report["joint_liquidation"]["probability"]) == pytest.approx(closed,
                                                                              abs=4 * se)


def test_a_correlation_file_is_read_by_its_schema(tmp_path: Path) -> None:
    """The --corr file is read by a pydantic model (docs/schema/correlation-v1.json): a
    misspelt key, a true/false entry, a ragged matrix or repeated markets are refused
    with the file and the dotted key, exit 2, before any scenario is drawn."""
    data = _file([{"market": "BTC-PERP", "size": "1", "entry_price": "100000"}], "4000")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    corr = tmp_path / "c.json"
    cases = [({"markets": ["BTC-PERP"], "matrx": [[1]]}, "c.json: matrx: unknown key"),
             ({"markets": ["BTC-PERP"], "matrix": [[True]]},
              "c.json: matrix[0][0]: Input should be a valid number"),
             ({"markets": ["BTC-PERP", "ETH-PERP"], "matrix": [[1, 0], [0]]},
              "matrix: 2 rows of 2 numbers"),
             ({"markets": ["BTC-PERP", "BTC-PERP"], "matrix": [[1, 0], [0, 1]]},
              "distinct market names"),
             ({"markets": [], "matrix": []}, "c.json: markets")]
    for body, expected in cases:
        corr.write_text(json.dumps(body))
        res = runner.invoke(app, ["margin", str(path), "--corr", str(corr)])
        assert res.exit_code == 2, (body, res.output)
        assert expected in " ".join(res.output.split()), (body, res.output)
        assert "Traceback" not in res.output
