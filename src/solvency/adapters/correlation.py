"""Correlation of markets for ``solvency margin --corr``: a JSON file, or estimated from
price files (OHLCV CSV, as ``solvency backtest`` reads them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from solvency.adapters.ohlcv import OhlcvError, read_ohlcv
from solvency.core.schema import format_errors
from solvency.core.volatility import log_return_correlation
from solvency.engine.joint import JointSpec

__all__ = ["CorrelationError", "CorrelationFile", "estimate_correlation", "load_correlation"]

_Entry = Annotated[float, Strict()]  # an int too; true/false refused


class CorrelationError(ValueError):
    """A correlation file or price file that cannot be used (says which and why)."""


class CorrelationFile(BaseModel):
    """The correlation of an account's markets for ``solvency margin --corr FILE``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    markets: list[Annotated[str, Strict(), StringConstraints(min_length=1)]] = Field(
        min_length=1, description="The markets, in the matrix's row order (distinct).")
    matrix: list[list[_Entry]] = Field(
        description="Correlation of the markets' log returns, row-major: symmetric, unit "
                    "diagonal, positive semi-definite (checked when it is used).")

    @model_validator(mode="after")
    def _shape(self) -> CorrelationFile:
        n = len(self.markets)
        if len(set(self.markets)) != n:
            raise ValueError("markets: a list of distinct market names")
        if len(self.matrix) != n or any(len(row) != n for row in self.matrix):
            raise ValueError(f"matrix: {n} rows of {n} numbers")
        return self


def load_correlation(path: Path, *, paths: int, seed: int) -> JointSpec:
    """Read ``{"markets": [names], "matrix": [[...], ...]}`` (JSON, row-major, numbers;
    schema :class:`CorrelationFile`, published as ``docs/schema/correlation-v1.json``).

    The matrix's symmetry, unit diagonal and positive semi-definiteness are checked when
    it is used (:func:`solvency.engine.joint.correlation_factor`).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CorrelationError(f"{path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorrelationError(f"{path}: not JSON ({exc})") from None
    try:
        model = CorrelationFile.model_validate(data)
    except ValidationError as exc:
        raise CorrelationError(format_errors(str(path), exc, CorrelationFile)) from None
    names, matrix = model.markets, model.matrix
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
