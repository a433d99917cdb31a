"""A time without a zone is UTC, never the machine's local time (issue 23 item 4).

The loaders run with the process time zone set to America/New_York (UTC-4 in October)
and Asia/Tokyo (UTC+9) through ``TZ`` and :func:`time.tzset`: ``datetime.timestamp()`` of
a naive time then reads it as New York or Tokyo time, which is what made
``load_binance_book_depth(path, at_ms=...)`` pick a snapshot hours away (the issue's
reproducer). Where a parser refuses a time without a zone, the refusal is checked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from solvency.adapters.fetch import parse_utc_ms
from solvency.adapters.ohlcv import read_ohlcv, read_ohlcv_lines
from solvency.core.model.events import EventError, parse_ts_ms
from solvency.engine.option_book import OptionBookError, parse_option_market
from solvency.sim.market import _depth_lines, load_binance_book_depth, read_book_depth
from tests.conftest import missing

# POSIX rules of the same zones, for a machine without /usr/share/zoneinfo
ZONES = {"America/New_York": "EST5EDT,M3.2.0,M11.1.0", "Asia/Tokyo": "JST-9"}
T_0007 = 1_760_054_407_000   # 2025-10-10T00:00:07Z
T_2125 = 1_760_131_500_000   # 2025-10-10T21:25:00Z


@pytest.fixture(params=sorted(ZONES))
def local_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    name = str(request.param)
    before = os.environ.get("TZ")
    zoneinfo = Path("/usr/share/zoneinfo") / name
    os.environ["TZ"] = name if zoneinfo.is_file() else ZONES[name]
    time.tzset()
    try:
        if time.localtime(T_2125 // 1000).tm_gmtoff == 0:
            missing(f"TZ={os.environ['TZ']} did not take effect (time.tzset)")
        yield name
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def _depth_file(tmp_path: Path) -> Path:
    # Binance's own bookDepth layout: "2025-10-10 00:00:07", UTC without a zone
    rows = [f"2025-10-10 {hh}:{mm}:00,{pct},{depth},1"
            for hh, mm, depth in (("17", "25", 9.0), ("21", "25", 1.0))
            for pct in (-1, 1)]
    path = tmp_path / "BTCUSDT-bookDepth-2025-10-10.csv"
    path.write_text("timestamp,percentage,depth,notional\n" + "\n".join(rows) + "\n")
    return path


def test_book_depth_snapshot_times_are_utc(local_zone: str, tmp_path: Path) -> None:
    path = _depth_file(tmp_path)
    want = [T_2125 - 4 * 3_600_000] * 2 + [T_2125] * 2
    assert read_book_depth(path)[0].tolist() == want        # pyarrow
    assert _depth_lines(path)[0].tolist() == want           # the per-line fallback
    # the snapshot at 21:25 UTC, not the one four hours earlier (New York) or none
    # (Tokyo: 21:25 local is before both, so the first would be taken)
    assert load_binance_book_depth(path, at_ms=T_2125).ask_base == (1.0,)
    assert load_binance_book_depth(path, at_ms=T_2125 - 1).ask_base == (9.0,)
    bad = tmp_path / "bad.csv"
    bad.write_text(path.read_text() + "2025-10-10 21:26:00,-1,x,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv:6: depth 'x'"):  # the fallback's message
        read_book_depth(bad)


def test_ohlcv_times_without_a_zone_are_utc(local_zone: str, tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("date,open,high,low,close,volume\n"
                    "2025-10-10 00:00:07,1,1,1,1,1\n2025-10-10T21:25,1,1,1,1,1\n")
    assert read_ohlcv(path).ts_ms.tolist() == [T_0007, T_2125]
    assert read_ohlcv_lines(path).ts_ms.tolist() == [T_0007, T_2125]


def test_other_parsers_read_utc_or_refuse(local_zone: str) -> None:
    assert parse_utc_ms("2025-10-10T21:25") == T_2125          # data fetch --since/--until
    assert parse_utc_ms("2025-10-10") == T_2125 - 77_100_000
    assert parse_ts_ms("2025-10-10T21:25:00Z") == T_2125       # events, portfolio "now"
    with pytest.raises(EventError, match="must be UTC"):
        parse_ts_ms("2025-10-10T21:25:00")
    market = {"type": "option", "underlying": "BTC", "kind": "call", "strike": "1",
              "settle": "USDC", "expiry": "2025-10-10T21:25:00"}
    with pytest.raises(OptionBookError, match="must be UTC"):
        parse_option_market("BTC-C", market)
    assert parse_option_market("BTC-C", {**market, "expiry": "2025-10-10T21:25:00Z"}
                               ).expiry_ms == T_2125
