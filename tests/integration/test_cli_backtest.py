"""``solvency backtest`` end to end: both CSV layouts, gzip, JSON, HTML, precise errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from solvency.cli.main import app
from tests.conftest import missing

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
BTC_1H = DATA / "btcusdt_binance_spot_1h_2017-08-17_2024-04-21.csv.gz"
runner = CliRunner()

JSON_KEYS = ("observations", "exceptions", "kupiec_lr", "kupiec_p", "christoffersen_lr",
             "conditional_coverage_lr", "zone")


def _bars(n: int, step_ms: int, seed: int = 1) -> list[tuple[int, float, float, float, float,
                                                              float]]:
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.standard_t(4, n) * 0.01))
    opens = np.r_[30_000.0, close[:-1]]
    t0 = 1_600_000_000_000 // 86_400_000 * 86_400_000
    return [(t0 + i * step_ms, o, max(o, c) * 1.001, min(o, c) * 0.999, c, 1.0)
            for i, (o, c) in enumerate(zip(opens, close, strict=True))]


def _write_ccxt(path: Path, rows: list[tuple[int, float, float, float, float, float]], *,
                header: bool) -> Path:
    lines = ["timestamp,open,high,low,close,volume"] if header else []
    lines += [",".join(str(v) for v in row) for row in rows]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def _write_shared_format(path: Path, rows: list[tuple[int, float, float, float, float,
                                                      float]]) -> Path:
    from datetime import UTC, datetime

    lines = ["timestamp,timestamp_ms,open,high,low,close,volume"]
    for t, o, h, lo, c, v in rows:
        iso = datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{iso},{t},{o},{h},{lo},{c},{v}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _json(args: list[str]) -> dict[str, object]:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("layout", "suffix"),
    [pytest.param("ccxt-no-header", ".csv", id="ccxt-headerless"),
     pytest.param("ccxt-header", ".csv.gz", id="ccxt-header-gzip"),
     pytest.param("shared", ".csv", id="shared-data-format")],
)
def test_json_output_for_each_layout(tmp_path: Path, layout: str, suffix: str) -> None:
    rows = _bars(24 * 200, 3_600_000)  # hourly bars, resampled to days by the command
    path = tmp_path / f"bars{suffix}"
    if layout == "shared":
        _write_shared_format(path, rows)
    else:
        _write_ccxt(path, rows, header=layout == "ccxt-header")
    out = _json(["backtest", "--prices", str(path), "--warmup", "60"])
    for key in JSON_KEYS:
        assert key in out
    assert out["observations"] == 200 - 1 - 60
    assert out["zone"] == _basel_zone(out["exceptions"], out["observations"])  # type: ignore[arg-type]


def _basel_zone(exceptions: int, observations: int) -> str:
    """Basel traffic light at 99 % (Basel Committee 1996, "Supervisory framework for the
    use of backtesting", Table 2): green while the binomial probability of at most that
    many exceptions is below 95 %, red from 99.99 %."""
    cdf = stats.binom.cdf(exceptions, observations, 0.01)
    return "green" if cdf < 0.95 else ("yellow" if cdf < 0.9999 else "red")


def test_same_result_for_both_layouts(tmp_path: Path) -> None:
    rows = _bars(300, 86_400_000, seed=3)
    a = _json(["backtest", "--prices", str(_write_ccxt(tmp_path / "a.csv", rows, header=False)),
               "--warmup", "100", "--model", "fhs"])
    b = _json(["backtest", "--prices", str(_write_shared_format(tmp_path / "b.csv", rows)),
               "--warmup", "100", "--model", "fhs"])
    assert a == b


def test_table_output_and_offline_html_report(tmp_path: Path) -> None:
    path = _write_ccxt(tmp_path / "d.csv", _bars(400, 86_400_000, seed=2), header=False)
    report = tmp_path / "out" / "report.html"
    res = runner.invoke(app, ["backtest", "--prices", str(path), "--warmup", "150",
                              "--model", "all", "--report", str(report)])
    assert res.exit_code == 0, res.output
    assert "Margin backtest" in res.stdout and "Kupiec" in res.stdout
    assert "ES Z2 (p)" in res.stdout  # the Acerbi-Szekely tests beside the VaR tests
    html = report.read_text()
    assert "<th>ES Z1 (p)</th><th>ES Z2 (p)</th>" in html
    # No CDN: the only cdn.plot.ly mention is plotly.js's own topojson default for maps.
    assert "<script src=" not in html and 'src="https://cdn.plot.ly' not in html
    assert "plotly.js" in html and len(html) > 1_000_000  # plotly.js inline
    for model in ("fixed", "ewma", "garch", "gjr", "fhs"):
        assert f"margin {model}" in html


ANALYTICS_MD = Path(__file__).parents[2] / "docs" / "analytics.md"
BTC_PERP_1H = DATA / "btcusdt_binance_um_perp_1h_2019-09-08_2022-07-27.csv.gz"
# GARCH and GJR rates come out of arch's optimizer (SLSQP from starting values), which a
# newer arch or scipy may end a few iterations elsewhere: starting the refits from the
# previous fit moved these rates by at most 9e-5 relative (commit e3a9904). Their mean
# rate and largest step are held to 1e-3 relative. The exception counts stay exact: an
# exception is loss > rate, and on this data the loss nearest its rate is 0.75 % (GARCH)
# and 0.20 % (GJR) of the rate away, so rates within 1e-3 give the same exceptions (the
# test checks that gap too, so a failure says which premise broke). Every other model is
# arithmetic on the returns and is held to the printed digits.
OPTIMIZED = ("garch", "gjr")
RATE_REL = 1e-3


def _doc_table(heading: str, first_col: str) -> dict[str, list[str]]:
    """Rows of the first table after ``heading`` in docs/analytics.md, by first cell."""
    text = ANALYTICS_MD.read_text()
    body = text[text.index(heading):]
    rows: dict[str, list[str]] = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in (first_col, "---"):
            rows[cells[0]] = cells[1:]
        elif rows and not line.startswith("|"):
            break
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _lr(m: dict[str, float], key: str) -> str:
    return f"{m[key + '_lr']:.2f} ({m[key + '_p']:.3f})"


def _check_rates(name: str, m: dict[str, Any], mean: str, step: str) -> None:
    if name not in OPTIMIZED:
        assert (_pct(m["mean_rate"]), _pct(m["max_step_increase"])) == (mean, step), name
        return
    assert m["mean_rate"] == pytest.approx(float(mean[:-1]) / 100, rel=RATE_REL, abs=5e-5)
    assert m["max_step_increase"] == pytest.approx(float(step[:-1]) / 100, rel=RATE_REL,
                                                   abs=5e-5)
    rate = np.array(m["series"]["margin_rate"])
    gap = np.min(np.abs(np.array(m["series"]["loss"]) - rate) / rate)
    assert gap > RATE_REL, f"{name}: a loss within {gap:.1e} of its rate: counts may move"


def test_real_btc_backtest_reproduces_the_figures_docs_quote() -> None:
    """docs/analytics.md "Real BTC backtest": every model's row (exceptions of 1,937,
    expected, Kupiec, Christoffersen and conditional-coverage LR and p, zone, mean rate,
    largest one-day increase) as the command prints it today."""
    if not BTC_1H.is_file():
        missing(f"real data {BTC_1H} not present (CI keeps ../shared beside the checkout)")
    quoted = _doc_table("## Real BTC backtest", "model")
    out = _json(["backtest", "--prices", str(BTC_1H), "--model", "all"])
    models = {m["model"]: m for m in out["models"]}  # type: ignore[index, union-attr]
    assert set(models) == {"fixed", "ewma", "garch", "gjr", "fhs", "predictive"}
    # predictive was trained on moves to 2021-12-31, so most of these days are in-sample
    # (its linear program interpolates some of them exactly: loss == rate); docs quote it
    # out of sample only ("Predictive margin", tests/integration/test_cli_predictive.py).
    del models["predictive"]
    for name, m in models.items():
        obs, exc, expected, kupiec, chris, cc, zone, mean, step = quoted[
            name + (" (t)" if name in OPTIMIZED else "")]
        assert (str(m["observations"]), str(m["exceptions"]), f"{m['expected_exceptions']:.1f}",
                _lr(m, "kupiec"), _lr(m, "christoffersen"), _lr(m, "conditional_coverage"),
                m["zone"]) == (obs, exc, expected, kupiec, chris, cc, zone), name
        assert len(m["exception_list"]) == m["exceptions"]
        assert m["zone"] == _basel_zone(m["exceptions"], m["observations"])
        # "1,937 days: yellow from 27, red from 38"
        assert (m["yellow_from"], m["red_from"]) == (27, 38)
        _check_rates(name, m, mean, step)
    # the APC table: EWMA with each tool (EWMA is a recursion: exact to the digits shown)
    tools = {"ewma": None, "ewma + 25 % buffer": "buffer",
             "ewma + 25 % stressed weight": "stressed", "ewma + 10-year floor": "floor"}
    apc_rows = _doc_table("With the EWMA model and each APC tool", "model")
    assert set(apc_rows) == set(tools)
    for label, tool in tools.items():
        m = models["ewma"] if tool is None else _json(
            ["backtest", "--prices", str(BTC_1H), "--model", "ewma", "--apc", tool])
        assert [str(m["exceptions"]), _lr(m, "kupiec"), m["zone"], _pct(m["mean_rate"]),
                _pct(m["max_step_increase"])] == apc_rows[label], label


def test_real_btc_perp_backtest_reproduces_the_counts_docs_quote() -> None:
    """docs/analytics.md: the USDT-M perp 2019-09 .. 2022-07 with ``--warmup 365``: 686
    tested days, fixed 8 (green), EWMA 14 (yellow, Kupiec p = 0.016), GARCH 7, FHS 10
    (green), 6.9 expected."""
    if not BTC_PERP_1H.is_file():
        missing(f"real data {BTC_PERP_1H} not present")
    text = " ".join(ANALYTICS_MD.read_text().split())
    assert ("(`--warmup 365`, 686 tested days): fixed 8 exceptions (green), EWMA 14 (yellow, "
            "Kupiec p = 0.016), GARCH 7 (green), FHS 10 (green); 6.9 expected.") in text
    out = _json(["backtest", "--prices", str(BTC_PERP_1H), "--warmup", "365", "--model", "all"])
    got = {m["model"]: (m["observations"], m["exceptions"], m["zone"])
           for m in out["models"]}  # type: ignore[union-attr]
    assert {k: got[k] for k in ("fixed", "ewma", "garch", "fhs")} == {
        "fixed": (686, 8, "green"), "ewma": (686, 14, "yellow"), "garch": (686, 7, "green"),
        "fhs": (686, 10, "green")}
    ewma = next(m for m in out["models"] if m["model"] == "ewma")  # type: ignore[union-attr]
    assert (f"{ewma['kupiec_p']:.3f}", f"{ewma['expected_exceptions']:.1f}") == ("0.016", "6.9")


def _expect_error(args: list[str], fragment: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code != 0
    assert fragment in res.output, res.output


@pytest.mark.parametrize(
    ("content", "fragment"),
    [pytest.param("", "empty file", id="empty"),
     pytest.param("timestamp,open,high,low,close,volume\n", "no data rows", id="header-only"),
     pytest.param("1600000000000,1,2,0.5\n", "fields", id="short-row"),
     pytest.param("1600000000000,1,2,0.5,abc,1\n", "close 'abc' is not a number",
                  id="non-numeric"),
     pytest.param("1600000000000,1,2,0.5,nan,1\n", "finite", id="nan"),
     pytest.param("1600000000000,1,2,0.5,inf,1\n", "finite", id="inf"),
     pytest.param("1600000000000,1,2,0.5,-3,1\n", "prices must be > 0", id="negative-price"),
     pytest.param("1600000000,1,2,0.5,1,1\n", "looks like seconds", id="seconds-timestamp"),
     pytest.param("date,o,h,l,c\n2020-01-01,1,2,0.5,1\n", "missing column", id="bad-header"),
     pytest.param("1600000000000,1,2,0.5,1,1\n1600000000000,1,2,0.5,1.5,1\n",
                  "two different bars", id="conflicting-duplicate")],
)
def test_malformed_csv_gets_a_precise_error(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    _expect_error(["backtest", "--prices", str(path)], fragment)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [pytest.param(["--model", "svm"], "unknown --model 'svm'", id="unknown-model"),
     pytest.param(["--confidence", "1.5"], "--confidence", id="confidence>1"),
     pytest.param(["--horizon", "soon"], "expected a positive duration", id="bad-horizon"),
     pytest.param(["--interval", "1h", "--horizon", "90m"], "not a multiple",
                  id="horizon-not-multiple"),
     pytest.param(["--warmup", "1000"], "need more than warmup", id="too-short"),
     pytest.param(["--side", "both"], "--side", id="bad-side"),
     pytest.param(["--apc", "magic"], "--apc", id="bad-apc")],
)
def test_bad_options_get_a_precise_error(tmp_path: Path, extra: list[str],
                                         fragment: str) -> None:
    path = _write_ccxt(tmp_path / "d.csv", _bars(400, 86_400_000), header=False)
    _expect_error(["backtest", "--prices", str(path), *extra], fragment)


def test_missing_file_gets_a_precise_error(tmp_path: Path) -> None:
    _expect_error(["backtest", "--prices", str(tmp_path / "nope.csv")], "no such file")
