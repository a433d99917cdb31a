"""Read OHLCV bars from CSV (plain or gzip) and resample them to a coarser interval.

Two layouts are recognised from the first line:

* the repository's market-data format (``../shared/data/README.md``): a header with
  ``timestamp`` (ISO-8601 UTC bar open time) and/or ``timestamp_ms`` (epoch ms), then
  ``open, high, low, close, volume`` and possibly more columns;
* the CCXT ``fetch_ohlcv`` layout: ``timestamp(ms), open, high, low, close, volume``,
  with a header row or without one.

The file is read by ``pyarrow.csv`` into arrays (:mod:`solvency.adapters.csvarrays`) and
checked with vectorised numpy; where that finds a problem, or pyarrow cannot read the
file as plain columns, the per-line reader reads it again and reports the problem as an
:class:`OhlcvError` naming the file, line and field. Both give the same arrays (a test
holds them equal on the real files of ``../shared/data``). A time without a zone is UTC.
"""

from __future__ import annotations

import csv
import gzip
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO

import numpy as np
import numpy.typing as npt

from solvency.adapters.csvarrays import file_bytes, first_row, read_columns

__all__ = ["Ohlcv", "OhlcvError", "parse_interval_ms", "read_ohlcv", "read_ohlcv_lines",
           "resample_ohlcv"]

_UNITS_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
                    "w": 604_800_000}
_TS_COLUMNS: Final = ("timestamp_ms", "timestamp", "time", "datetime", "date")
_MIN_MS: Final = 10**11  # 1973-03-03 in ms; a smaller number is a timestamp in seconds
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class OhlcvError(ValueError):
    """A CSV file that cannot be read as OHLCV bars (the message says where and why)."""


@dataclass(frozen=True, slots=True)
class Ohlcv:
    """Bars in time order: open time in epoch ms, prices in quote units, base volume."""

    ts_ms: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]

    def __len__(self) -> int:
        """Return the number of bars."""
        return int(self.ts_ms.size)

    @property
    def interval_ms(self) -> int:
        """Return the bar interval: the most common gap between consecutive bars."""
        if self.ts_ms.size < 2:
            raise OhlcvError("interval: fewer than two bars")
        gaps, counts = np.unique(np.diff(self.ts_ms), return_counts=True)
        return int(gaps[np.argmax(counts)])


def parse_interval_ms(text: str) -> int:
    """Parse a duration such as ``"1d"``, ``"4h"``, ``"15m"``, ``"30s"`` into milliseconds.

    Raises
    ------
    OhlcvError
        If the text is not a positive integer followed by ms, s, m, h, d or w.
    """
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d|w)\s*", text or "")
    if m is None or int(m.group(1)) == 0:
        raise OhlcvError(f"interval {text!r}: expected a positive duration like 1d, 4h, 15m")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_ts(text: str, where: str) -> int:
    t = text.strip()
    if _is_number(t):
        value = float(t)
        if not math.isfinite(value) or value != int(value):
            raise OhlcvError(f"{where}: timestamp {t!r} is not a whole number of ms")
        if value < _MIN_MS:
            raise OhlcvError(f"{where}: timestamp {t!r} looks like seconds; expected ms")
        return int(value)
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise OhlcvError(f"{where}: timestamp {t!r} is neither epoch ms nor ISO-8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # naive times are taken as UTC, never local time
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + round(delta.microseconds / 1000)


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with _open_text(path) as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if row and any(c.strip() for c in row):
                yield lineno, row


def _columns(header: list[str], where: str) -> tuple[int, list[int]]:
    names = [h.strip().lower() for h in header]
    ts_col = next((names.index(c) for c in _TS_COLUMNS if c in names), None)
    if ts_col is None:
        raise OhlcvError(f"{where}: no timestamp column (one of {', '.join(_TS_COLUMNS)})")
    missing = [c for c in ("open", "high", "low", "close") if c not in names]
    if missing:
        raise OhlcvError(f"{where}: missing column(s) {', '.join(missing)}")
    cols = [names.index(c) for c in ("open", "high", "low", "close")]
    cols.append(names.index("volume") if "volume" in names else -1)
    return ts_col, cols


def read_ohlcv(path: str | Path) -> Ohlcv:
    """Read OHLCV bars from a CSV or ``.csv.gz`` file, sorted by time.

    Exact duplicate bars are dropped; two different bars with the same timestamp, a NaN or
    infinite value, a non-positive price, ``high < low``, a negative volume, a short row or
    a non-numeric field raise :class:`OhlcvError`.

    Parameters
    ----------
    path : str or pathlib.Path
        The file; ``.gz`` files are decompressed on the fly.
    """
    p = Path(path)
    if not p.is_file():
        raise OhlcvError(f"{p}: no such file")
    fast = _read_arrays(p)
    if fast is not None:
        return _build(p, *fast)
    return read_ohlcv_lines(p)


def _layout(p: Path, data: bytes) -> tuple[bool, int, int, list[int]] | None:
    """(header?, fields per row, timestamp column, [open, high, low, close, volume])."""
    row = first_row(data)
    if row is None:
        return None
    if _is_number(row[0].strip()):
        return False, len(row), 0, [1, 2, 3, 4, 5]
    try:
        ts_col, cols = _columns(row, str(p))
    except OhlcvError:
        return None
    return True, len(row), ts_col, cols


def _read_arrays(p: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None:
    """The bars read by pyarrow and checked vectorised; None: read line by line."""
    data = file_bytes(p)
    layout = None if data is None else _layout(p, data)
    if data is None or layout is None:
        return None
    header, n_fields, ts_col, cols = layout
    if max(ts_col, *cols) >= n_fields:
        return None
    got = read_columns(data, n_fields=n_fields, skip_header=header,
                       floats=[c for c in cols if c >= 0], ts=ts_col)
    if got is None or got[0].size == 0:
        return None
    ts, arrays = got
    if cols[4] < 0:
        arrays.append(np.zeros(ts.size))  # no volume column: 0, as the per-line reader
    v = np.column_stack(arrays)
    prices = v[:, :4]
    ok = (np.isfinite(v).all() and bool((prices > 0.0).all())
          and bool((v[:, 1] >= v[:, 2]).all()) and bool((v[:, 4] >= 0.0).all())
          and bool((ts >= _MIN_MS).all()))
    return (ts, v) if ok else None


def read_ohlcv_lines(path: str | Path) -> Ohlcv:
    """Read OHLCV bars line by line (the reference of :func:`read_ohlcv`, and its fallback).

    Slow (one Python ``float`` per field) but names the file, line and field of the first
    problem. Returns the same bars as :func:`read_ohlcv` on a file both accept.
    """
    p = Path(path)
    if not p.is_file():
        raise OhlcvError(f"{p}: no such file")
    ts: list[int] = []
    values: list[tuple[float, float, float, float, float]] = []
    ts_col, cols = 0, [1, 2, 3, 4, 5]
    try:
        rows = _rows(p)
        first = next(rows, None)
        if first is None:
            raise OhlcvError(f"{p}: empty file")
        lineno, row = first
        if not _is_number(row[0].strip()):
            ts_col, cols = _columns(row, f"{p}:{lineno}")
        else:
            _append(p, lineno, row, ts_col=ts_col, cols=cols, ts=ts, values=values)
        for lineno, row in rows:
            _append(p, lineno, row, ts_col=ts_col, cols=cols, ts=ts, values=values)
    except (UnicodeDecodeError, OSError, csv.Error, EOFError) as exc:
        raise OhlcvError(f"{p}: unreadable ({exc})") from None
    if not ts:
        raise OhlcvError(f"{p}: no data rows")
    return _build(p, np.asarray(ts, dtype=np.int64),
                  np.asarray(values, dtype=np.float64).reshape(len(ts), 5))


def _append(
    path: Path, lineno: int, row: list[str], *, ts_col: int, cols: list[int],
    ts: list[int], values: list[tuple[float, float, float, float, float]],
) -> None:
    where = f"{path}:{lineno}"
    need = max(ts_col, *cols) + 1
    if len(row) < need:
        raise OhlcvError(f"{where}: {len(row)} fields, expected at least {need}")
    nums: list[float] = []
    for name, c in zip(("open", "high", "low", "close", "volume"), cols, strict=True):
        text = row[c].strip() if c >= 0 else "0"
        try:
            x = float(text)
        except ValueError:
            raise OhlcvError(f"{where}: {name} {text!r} is not a number") from None
        if not math.isfinite(x):
            raise OhlcvError(f"{where}: {name} is {text!r}; values must be finite")
        nums.append(x)
    o, h, lo, c_, v = nums
    if min(o, h, lo, c_) <= 0.0:
        raise OhlcvError(f"{where}: prices must be > 0")
    if h < lo:
        raise OhlcvError(f"{where}: high {h} < low {lo}")
    if v < 0.0:
        raise OhlcvError(f"{where}: volume {v} < 0")
    ts.append(_parse_ts(row[ts_col], where))
    values.append((o, h, lo, c_, v))


def _build(path: Path, t: npt.NDArray[np.int64], v: npt.NDArray[np.float64]) -> Ohlcv:
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    dup = np.flatnonzero(np.diff(t) == 0)
    if dup.size:
        same = (v[dup] == v[dup + 1]).all(axis=1)
        if not same.all():
            bad = datetime.fromtimestamp(int(t[dup[~same][0]]) / 1000, tz=UTC).isoformat()
            raise OhlcvError(f"{path}: two different bars at {bad}")
        keep = np.ones(t.size, dtype=bool)
        keep[dup + 1] = False
        t, v = t[keep], v[keep]
    return Ohlcv(ts_ms=t, open=v[:, 0].copy(), high=v[:, 1].copy(), low=v[:, 2].copy(),
                 close=v[:, 3].copy(), volume=v[:, 4].copy())


def resample_ohlcv(bars: Ohlcv, interval_ms: int, *, drop_partial_edges: bool = True) -> Ohlcv:
    """Aggregate bars into UTC-aligned buckets of ``interval_ms``.

    Open is the first open, high the max, low the min, close the last close and volume the
    sum. Buckets are ``floor(ts / interval) * interval`` (daily buckets start at 00:00 UTC).
    With ``drop_partial_edges``, a first or last bucket holding fewer bars than a full one
    is dropped (a half-day would give a misleading return); gaps inside are kept.

    Raises
    ------
    OhlcvError
        If the interval is finer than the bars or not a multiple of their interval.
    """
    if interval_ms <= 0:
        raise OhlcvError("interval must be > 0")
    if len(bars) == 0:
        raise OhlcvError("no bars to resample")
    base = bars.interval_ms if len(bars) > 1 else interval_ms
    if interval_ms < base or interval_ms % base:
        raise OhlcvError(
            f"cannot resample {base} ms bars to {interval_ms} ms: not a multiple of the bars"
        )
    bucket = bars.ts_ms // interval_ms * interval_ms
    keys, starts = np.unique(bucket, return_index=True)
    ends = np.append(starts[1:], bucket.size)
    counts = ends - starts
    out = Ohlcv(
        ts_ms=keys.astype(np.int64), open=bars.open[starts], high=np.maximum.reduceat(
            bars.high, starts), low=np.minimum.reduceat(bars.low, starts),
        close=bars.close[ends - 1], volume=np.add.reduceat(bars.volume, starts),
    )
    if not drop_partial_edges or keys.size == 0:
        return out
    full = interval_ms // base
    keep = np.ones(keys.size, dtype=bool)
    keep[0] = counts[0] >= full
    keep[-1] = keep[-1] and counts[-1] >= full
    return Ohlcv(ts_ms=out.ts_ms[keep], open=out.open[keep], high=out.high[keep],
                 low=out.low[keep], close=out.close[keep], volume=out.volume[keep])
