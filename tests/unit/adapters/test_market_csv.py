"""Market data CSV through pyarrow (issue 23 item 5): the same arrays as the per-line
reader on the real files, and a bad file still refused with its line named."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from solvency.adapters.ohlcv import OhlcvError, _read_arrays, read_ohlcv, read_ohlcv_lines
from solvency.sim.market import (
    BookDepthError,
    _depth_arrays,
    _depth_lines,
    load_binance_book_depth,
    read_book_depth,
)

FIELDS = ("ts_ms", "open", "high", "low", "close", "volume")
# the benchmark's file (58,419 hourly bars, gzip), a plain 1-minute file, one with extra
# columns after volume (buy_volume, n_trades)
REAL = ("btcusdt_binance_spot_1h_2017-08-17_2024-04-21.csv.gz",
        "btcusdt_binance_spot_1m_2024-08-02_2024-08-08.csv",
        "btcusd_gemini_spot_1m_2025-10-10_from_trades.csv")
BOOK_DEPTH = "btcusdt_binance_um_bookdepth_2025-10-10.csv.gz"


def _same(a: object, b: object) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) and
               getattr(a, k).dtype == getattr(b, k).dtype for k in FIELDS)


@pytest.mark.parametrize("name", REAL)
def test_real_files_give_identical_arrays(shared_data: Path, name: str) -> None:
    path = shared_data / name
    assert _read_arrays(path) is not None  # the pyarrow path read it, no fallback
    fast, slow = read_ohlcv(path), read_ohlcv_lines(path)
    assert _same(fast, slow)
    assert len(fast) == {REAL[0]: 58_419, REAL[1]: 10_080, REAL[2]: 1_440}[name]


def test_real_book_depth_gives_identical_arrays(shared_data: Path) -> None:
    path = shared_data / BOOK_DEPTH
    fast = _depth_arrays(path)
    assert fast is not None
    slow = _depth_lines(path)
    assert all(np.array_equal(f, s) and f.dtype == s.dtype for f, s in zip(fast, slow,
                                                                           strict=True))
    assert fast[0].size == 28_790 and int(fast[0][0]) == 1_760_054_407_000  # 00:00:07Z


HEADER = "timestamp,timestamp_ms,open,high,low,close,volume\n"
GOOD = ["2024-01-01T00:00:00Z,1704067200000,100,101,99,100.5,3",
        "2024-01-01T01:00:00Z,1704070800000,100.5,102,100,101,0.25",
        "2024-01-01T02:00:00Z,1704074400000,101,101.5,100.25,101.25,7"]


def _write(tmp_path: Path, lines: list[str], *, header: str = HEADER,
           gz: bool = False) -> Path:
    text = header + "\n".join(lines) + "\n"
    if gz:
        path = tmp_path / "bars.csv.gz"
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path = tmp_path / "bars.csv"
        path.write_text(text)
    return path


# (case id, the line replacing GOOD[1] (file line 3), what the message says)
BAD = [
    ("nan", "2024-01-01T01:00:00Z,1704070800000,100.5,nan,100,101,0.25",
     "high is 'nan'; values must be finite"),
    ("negative price", "2024-01-01T01:00:00Z,1704070800000,-1,102,100,101,0.25",
     "prices must be > 0"),
    ("high below low", "2024-01-01T01:00:00Z,1704070800000,100.5,99,100,101,0.25",
     "high 99.0 < low 100.0"),
    ("negative volume", "2024-01-01T01:00:00Z,1704070800000,100.5,102,100,101,-2",
     "volume -2.0 < 0"),
    ("not a number", "2024-01-01T01:00:00Z,1704070800000,100.5,1O2,100,101,0.25",
     "high '1O2' is not a number"),
    ("short row", "2024-01-01T01:00:00Z,1704070800000,100.5,102",
     "4 fields, expected at least 7"),
    ("empty cell", "2024-01-01T01:00:00Z,1704070800000,100.5,,100,101,0.25",
     "high '' is not a number"),
    ("seconds", "2024-01-01T01:00:00Z,1704070800,100.5,102,100,101,0.25",
     "looks like seconds"),
]


@pytest.mark.parametrize(("line", "says"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
@pytest.mark.parametrize("gz", [False, True], ids=["csv", "gz"])
def test_a_bad_row_is_refused_naming_its_line(tmp_path: Path, line: str, says: str,
                                              gz: bool) -> None:
    path = _write(tmp_path, [GOOD[0], line, GOOD[2]], gz=gz)
    assert _read_arrays(path) is None  # the vectorised check declines ...
    with pytest.raises(OhlcvError) as exc:
        read_ohlcv(path)                # ... and the per-line reader names the line
    assert str(exc.value).startswith(f"{path}:3: ")
    assert says in str(exc.value)


@pytest.mark.parametrize("header", [
    HEADER,
    "timestamp,open,high,low,close,volume\n",              # ISO times only (Z)
    "date,open,high,low,close\n",                          # naive ISO, no volume
    "",                                                    # CCXT: no header, epoch ms
], ids=["repo-layout", "iso-z", "naive-no-volume", "ccxt-headerless"])
def test_layouts_read_by_pyarrow_match_the_line_reader(tmp_path: Path, header: str) -> None:
    rows = [r.split(",") for r in GOOD]
    if header.startswith("timestamp,open"):
        lines = [",".join([r[0], *r[2:]]) for r in rows]
    elif header.startswith("date"):
        lines = [",".join([r[0].replace("T", " ").removesuffix("Z"), *r[2:6]])
                 for r in rows]
    elif header == "":
        lines = [",".join(r[1:]) for r in rows]
    else:
        lines = GOOD
    path = _write(tmp_path, lines, header=header)
    assert _read_arrays(path) is not None
    fast, slow = read_ohlcv(path), read_ohlcv_lines(path)
    assert _same(fast, slow)
    assert fast.ts_ms.tolist() == [1_704_067_200_000, 1_704_070_800_000, 1_704_074_400_000]
    assert fast.volume.tolist() == ([0.0] * 3 if header.startswith("date") else [3, 0.25, 7])


def test_offsets_and_duplicates_follow_the_line_reader(tmp_path: Path) -> None:
    # +01:00 is converted to UTC (pyarrow or the fallback); an exact duplicate is dropped
    lines = ["2024-01-01T01:00:00+01:00,100,101,99,100.5,3",
             "2024-01-01T01:00:00Z,100.5,102,100,101,0.25",
             "2024-01-01T01:00:00Z,100.5,102,100,101,0.25"]
    path = _write(tmp_path, lines, header="timestamp,open,high,low,close,volume\n")
    fast, slow = read_ohlcv(path), read_ohlcv_lines(path)
    assert _same(fast, slow)
    assert fast.ts_ms.tolist() == [1_704_067_200_000, 1_704_070_800_000]


def test_two_different_bars_at_one_time_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, [GOOD[0], GOOD[0].replace(",3", ",4")])
    with pytest.raises(OhlcvError, match="two different bars at 2024-01-01T00:00:00"):
        read_ohlcv(path)


DEPTH_HEADER = "timestamp,percentage,depth,notional\n"


@pytest.mark.parametrize(("line", "says"), [
    ("2025-10-10 00:00:37,-1,abc,1", "depth 'abc' is not a number"),
    ("2025-10-10 00:00:37,-1,inf,1", "depth is 'inf'; values must be finite"),
    ("2025-10-10 00:00:37,-1", "2 fields, expected at least 3"),
    ("yesterday,-1,5,1", "timestamp 'yesterday' is neither epoch ms nor ISO-8601"),
], ids=["text", "infinite", "short", "bad-time"])
def test_a_bad_book_depth_row_is_refused_naming_its_line(tmp_path: Path, line: str,
                                                         says: str) -> None:
    path = tmp_path / "depth.csv"
    path.write_text(DEPTH_HEADER + "2025-10-10 00:00:07,-1,5,1\n" + line + "\n")
    with pytest.raises(BookDepthError) as exc:
        load_binance_book_depth(path)
    assert str(exc.value) == f"{path}:3: {says}"


def test_book_depth_file_errors_are_precise(tmp_path: Path) -> None:
    with pytest.raises(BookDepthError, match="no such file"):
        read_book_depth(tmp_path / "none.csv")
    path = tmp_path / "depth.csv"
    path.write_text("timestamp,pct,depth\n2025-10-10 00:00:07,-1,5\n")
    with pytest.raises(BookDepthError, match=r"depth\.csv:1: missing column\(s\) percentage"):
        read_book_depth(path)
