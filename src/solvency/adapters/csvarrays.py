"""Columns of a market-data CSV (plain or ``.gz``) read by ``pyarrow.csv`` into arrays.

The readers of OHLCV bars (:mod:`solvency.adapters.ohlcv`) and of Binance ``bookDepth``
files (:mod:`solvency.sim.market`) read a whole file here in one call, then check the
arrays with vectorised numpy. Where pyarrow cannot read a file as plain columns (a ragged
row, a quoted oddity, an empty cell, a timestamp it does not parse), :func:`read_columns`
returns ``None`` and the caller falls back to its per-line reader, which names the bad
line; the fast path never decides a file is wrong, it only declines.

Timestamps are epoch milliseconds (int64): an integer column is taken as it is, an
ISO-8601 column pyarrow parses as a timestamp is converted to milliseconds, a time
without a zone being UTC (pyarrow never applies the local zone, whatever ``TZ`` says).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

__all__ = ["file_bytes", "first_row", "read_columns"]

_EXACT_FLOAT_INT: Final = 2**53  # an int64 above this would not survive the line reader's float()


def file_bytes(path: Path) -> bytes | None:
    """Return the file's bytes, decompressed where it ends in ``.gz`` (None: unreadable)."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile):
        return None


def first_row(data: bytes) -> list[str] | None:
    """Return the first line split on commas (None if empty, quoted or not UTF-8).

    Only a layout hint for the fast path: quoting and blank first lines are left to the
    per-line reader (the fast path declines such files).
    """
    try:
        line = data[:data.find(b"\n") if b"\n" in data[:65536] else 65536].decode("utf-8")
    except UnicodeDecodeError:
        return None
    line = line.removeprefix("\ufeff").rstrip("\r")
    if not line.strip() or '"' in line:
        return None
    return line.split(",")


def _values(column: pa.ChunkedArray, dtype: type[np.generic]) -> npt.NDArray[Any]:
    """The column's values as a numpy array (a copy; the column holds no nulls).

    Read from the Arrow buffer: pyarrow's own ``to_numpy`` imports pandas (about a
    second on first use), which a command-line read of one file should not pay.
    """
    arr = column.combine_chunks()
    width = np.dtype(dtype).itemsize
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr),
                         offset=arr.offset * width).copy()


def _ts_ms(column: pa.ChunkedArray) -> npt.NDArray[np.int64] | None:
    typ = column.type
    if pa.types.is_int64(typ):
        ts: npt.NDArray[np.int64] = _values(column, np.int64)
        return ts if ts.size == 0 or int(np.abs(ts).max()) < _EXACT_FLOAT_INT else None
    if not pa.types.is_timestamp(typ):
        return None  # strings, doubles, dates: the per-line reader decides
    per_ms = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}[typ.unit]
    raw: npt.NDArray[np.int64] = _values(column.cast(pa.int64()), np.int64)
    if per_ms is None:
        return raw * 1000
    if (raw % per_ms).any():
        return None  # sub-millisecond times: the per-line reader's rounding applies
    return raw // per_ms


def read_columns(
    data: bytes, *, n_fields: int, skip_header: bool, floats: Sequence[int], ts: int,
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.float64]]] | None:
    """Read one timestamp column and float columns of a CSV with ``pyarrow.csv``.

    Parameters
    ----------
    data
        The file's bytes (:func:`file_bytes`: decompressed; zlib in one call is faster
        than pyarrow's streaming decompression here).
    n_fields
        Fields per row (from the first row); a row with another count declines.
    skip_header
        Whether the first row is a header.
    floats
        Indexes of the columns read as float64.
    ts
        Index of the timestamp column (epoch ms integers or ISO-8601 times).

    Returns
    -------
    tuple or None
        ``(ts_ms, [column, ...])`` in file order, or None where pyarrow cannot read the
        file as plain, complete columns (the caller then reads it line by line).
    """
    names = [f"c{i}" for i in range(n_fields)]
    read = pacsv.ReadOptions(column_names=names, skip_rows=1 if skip_header else 0,
                             block_size=1 << 22)
    wanted = sorted({ts, *floats})
    convert = pacsv.ConvertOptions(
        include_columns=[names[i] for i in wanted],
        column_types={names[i]: pa.float64() for i in floats},
        strings_can_be_null=True, quoted_strings_can_be_null=True)
    try:
        table = pacsv.read_csv(pa.BufferReader(data), read_options=read, convert_options=convert)
    except (pa.ArrowException, OSError, EOFError, ValueError):
        return None
    if any(table.column(names[i]).null_count for i in wanted):
        return None
    ts_ms = _ts_ms(table.column(names[ts]))
    if ts_ms is None:
        return None
    cols = [_values(table.column(names[i]), np.float64) for i in floats]
    return ts_ms, cols
