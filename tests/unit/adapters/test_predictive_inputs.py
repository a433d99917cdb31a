"""``feature_inputs`` (issue 19): the perp-spot basis and the funding rate aligned to a
market's bars, by hand on a few bars."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from solvency.adapters.ohlcv import read_ohlcv, resample_ohlcv
from solvency.adapters.predictive import ModelFileError, feature_inputs
from solvency.core.predictive_margin import FEATURES, predictive_features

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_600_000_000_000 // DAY * DAY  # 2020-09-13 00:00 UTC
SPOT_CLOSE = (100.0, 102.0, 101.0, 104.0, 103.0)


def _csv(path: Path, ts: list[int], close: list[float]) -> Path:
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{t},{c},{c * 1.01},{c * 0.99},{c},{1 + i}"
              for i, (t, c) in enumerate(zip(ts, close, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


def _spot(tmp_path: Path) -> Path:
    return _csv(tmp_path / "spot.csv", [T0 + i * DAY for i in range(5)], list(SPOT_CLOSE))


def _perp(tmp_path: Path) -> Path:
    # hourly perp bars on days 1..3 only; each day's last hour closes at spot + 0.5 % x day,
    # the other hours at 999 (the daily close is the last hour's: they must not show)
    ts, close = [], []
    for day in (1, 2, 3):
        for h in range(24):
            ts.append(T0 + day * DAY + h * HOUR)
            close.append(SPOT_CLOSE[day] * (1 + 0.005 * day) if h == 23 else 999.0)
    return _csv(tmp_path / "perp.csv", ts, close)


def test_basis_is_ln_perp_over_spot_in_bp_where_both_exist(tmp_path: Path) -> None:
    spot_bars = read_ohlcv(_spot(tmp_path))
    inp = feature_inputs(spot_bars, perp=_perp(tmp_path))
    want = [float("nan")] + [math.log(1 + 0.005 * d) * 1e4 for d in (1, 2, 3)] + [
        float("nan")]
    np.testing.assert_allclose(inp.basis_bp, want, rtol=1e-12)  # 49.88, 99.50, 148.89 bp
    # the perp's own (daily) bars with the spot as partner: the same basis, ln(perp / spot)
    perp_daily = resample_ohlcv(read_ohlcv(_perp(tmp_path)), DAY)
    got = feature_inputs(perp_daily, spot=_spot(tmp_path)).basis_bp
    np.testing.assert_allclose(got, want[1:4], rtol=1e-12)
    # hourly bars cannot take a daily partner: refused with the reason, not filled
    with pytest.raises(ModelFileError, match="cannot resample"):
        feature_inputs(read_ohlcv(_perp(tmp_path)), spot=_spot(tmp_path))
    # and it reaches the model's "basis" column unchanged (signed: a short reads it negated)
    X, _ = predictive_features(inp, lam=0.94, garch_warmup=100)
    np.testing.assert_array_equal(X[:, FEATURES.index("basis")], inp.basis_bp[:4])


def test_funding_is_the_mean_of_each_bars_last_day_in_bp(tmp_path: Path) -> None:
    fund = tmp_path / "funding.csv"
    rows = ["timestamp,timestamp_ms,symbol,funding_interval_hours,funding_rate"]
    # settlements at 08:00 / 16:00 / 00:00 of day 1 (closing bar 1 at day 2 00:00) and one
    # of another symbol that must be skipped
    for t, sym, rate in ((T0 + DAY + 8 * HOUR, "BTCUSDT", 1e-4),
                         (T0 + DAY + 16 * HOUR, "ETHUSDT", 9e-4),
                         (T0 + DAY + 16 * HOUR, "BTCUSDT", 3e-4),
                         (T0 + 2 * DAY, "BTCUSDT", -1e-4)):
        rows.append(f"x,{t},{sym},8,{rate}")
    fund.write_text("\n".join(rows) + "\n")
    inp = feature_inputs(read_ohlcv(_spot(tmp_path)), funding=fund, symbol="BTCUSDT")
    assert math.isnan(inp.funding[0]) and math.isnan(inp.funding[2])
    assert inp.funding[1] == pytest.approx((1 + 3 - 1) / 3)  # bp per settlement
    with pytest.raises(ModelFileError, match="needs its symbol"):
        feature_inputs(read_ohlcv(_spot(tmp_path)), funding=fund)
    with pytest.raises(ModelFileError, match="not both"):
        feature_inputs(read_ohlcv(_spot(tmp_path)), perp=fund, spot=fund)
