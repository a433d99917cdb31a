"""``solvency backtest`` end to end: both CSV layouts, gzip, JSON, HTML, precise errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
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
    assert out["zone"] in ("green", "yellow", "red")


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
    html = report.read_text()
    # No CDN: the only cdn.plot.ly mention is plotly.js's own topojson default for maps.
    assert "<script src=" not in html and 'src="https://cdn.plot.ly' not in html
    assert "plotly.js" in html and len(html) > 1_000_000  # plotly.js inline
    for model in ("fixed", "ewma", "garch", "gjr", "fhs"):
        assert f"margin {model}" in html


def test_real_btc_history_all_models() -> None:
    if not BTC_1H.is_file():
        missing(f"real data {BTC_1H} not present (CI keeps ../shared beside the checkout)")
    out = _json(["backtest", "--prices", str(BTC_1H), "--model", "all"])
    models = {m["model"]: m for m in out["models"]}  # type: ignore[index, union-attr]
    assert set(models) == {"fixed", "ewma", "garch", "gjr", "fhs"}
    for m in models.values():
        assert m["observations"] > 1800
        assert m["zone"] in ("green", "yellow", "red")


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
