"""Correlation of markets for ``solvency margin --corr``: a JSON file, or estimated from
price files (OHLCV CSV, as ``solvency backtest`` reads them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from solvency.adapters.ohlcv import OhlcvError, read_ohlcv
from solvency.core.volatility import log_return_correlation
from solvency.engine.joint import JointSpec

__all__ = ["CorrelationError", "estimate_correlation", "load_correlation"]


class CorrelationError(ValueError):
    """A correlation file or price file that cannot be used (says which and why)."""


def load_correlation(path: Path, *, paths: int, seed: int) -> JointSpec:
    """Read ``{"markets": [names], "matrix": [[...], ...]}`` (JSON, row-major, numbers).

    The matrix's shape, symmetry, unit diagonal and positive semi-definiteness are checked
    when it is used (:func:`solvency.engine.joint.correlation_factor`).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CorrelationError(f"{path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorrelationError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or set(data) != {"markets", "matrix"}:
        raise CorrelationError(f"{path}: expected an object with exactly 'markets' and "
                               "'matrix'")
    names, matrix = data["markets"], data["matrix"]
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)
            and len(set(names)) == len(names)):
        raise CorrelationError(f"{path}: markets: a list of distinct market names")
    ok = isinstance(matrix, list) and len(matrix) == len(names) and all(
        isinstance(row, list) and len(row) == len(names) and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in row)
        for row in matrix)
    if not ok:
        raise CorrelationError(f"{path}: matrix: {len(names)} rows of {len(names)} numbers")
    return JointSpec(names=tuple(names),
                     matrix=tuple(tuple(float(x) for x in row) for row in matrix),
                     source=str(path), paths=paths, seed=seed)


def estimate_correlation(files: Mapping[str, Path], *, paths: int, seed: int) -> JointSpec:
    """Estimate the correlation of markets' log returns from their price files
    (``MARKET -> OHLCV CSV``; closes at the timestamps all files share,
    :func:`solvency.core.volatility.log_return_correlation`)."""
    if not files:
        raise CorrelationError("--corr estimate: give each market's price file with "
                               "--corr-prices MARKET=FILE")
    ts, closes = [], []
    for name, p in files.items():
        try:
            bars = read_ohlcv(p)
        except OhlcvError as exc:
            raise CorrelationError(f"--corr-prices {name}: {exc}") from None
        ts.append(bars.ts_ms)
        closes.append(bars.close)
    try:
        matrix, n = log_return_correlation(ts, closes)
    except ValueError as exc:
        raise CorrelationError(f"--corr estimate: {exc}") from None
    source = (f"estimated from {n} common log returns of "
              + ", ".join(f"{k}={Path(v).name}" for k, v in files.items()))
    return JointSpec(names=tuple(files), matrix=tuple(tuple(float(x) for x in row)
                                                      for row in matrix),
                     source=source, paths=paths, seed=seed)
