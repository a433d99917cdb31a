"""Files of the predictive margin model: funding history, feature inputs, model files.

* :func:`read_funding`: the ``../shared/data/binance_um_funding_*.csv`` layout
  (``timestamp,timestamp_ms,symbol,funding_interval_hours,funding_rate``) for one symbol.
* :func:`feature_inputs`: a market's bars with its funding and perp-spot basis aligned,
  ready for :func:`solvency.core.predictive_margin.predictive_features`.
* :func:`read_model_file` / :func:`write_model_file`: the JSON model file
  (``{"format": "solvency-predictive-margin", "version": 2, "models": [...]}``, one model
  per side); :data:`SHIPPED_MODEL` is the one the package ships.
"""

from __future__ import annotations

import csv
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np

from solvency.adapters.ohlcv import Ohlcv, OhlcvError, read_ohlcv, resample_ohlcv
from solvency.core.predictive_margin import FeatureInputs, PredictiveModel, funding_per_bar

__all__ = [
    "FORMAT",
    "SHIPPED_MODEL",
    "ModelFileError",
    "feature_inputs",
    "read_funding",
    "read_model_file",
    "shipped_model_path",
    "write_model_file",
]

FORMAT: Final = "solvency-predictive-margin"
SHIPPED_MODEL: Final = "predictive_margin_v2.json"
VERSION: Final = 2
_FUNDING_COLUMNS: Final = ("timestamp_ms", "symbol", "funding_rate")


class ModelFileError(ValueError):
    """A funding or model file that cannot be used (the message says where and why)."""


def shipped_model_path() -> Path:
    """Return the path of the model file the package ships."""
    return Path(str(resources.files("solvency") / "data" / SHIPPED_MODEL))


def read_funding(path: str | Path, symbol: str) -> tuple[np.ndarray[Any, np.dtype[np.int64]],
                                                         np.ndarray[Any, np.dtype[np.float64]]]:
    """Return ``(settle_ms, rate)`` of ``symbol`` from a funding CSV, in time order.

    Rates are fractions per settlement (``0.0001`` = 1 bp). A missing column, a bad
    number or a repeated time is refused with ``file:line``.
    """
    p = Path(path)
    ts: list[int] = []
    rate: list[float] = []
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            missing = [c for c in _FUNDING_COLUMNS if c not in header]
            if missing:
                raise ModelFileError(f"{p}:1: funding file lacks columns {missing}")
            i_ts, i_sym, i_rate = (header.index(c) for c in _FUNDING_COLUMNS)
            for lineno, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise ModelFileError(f"{p}:{lineno}: expected {len(header)} fields")
                if row[i_sym] != symbol:
                    continue
                try:
                    t, f = int(row[i_ts]), float(row[i_rate])
                except ValueError:
                    raise ModelFileError(f"{p}:{lineno}: bad timestamp_ms or funding_rate"
                                         ) from None
                if not math.isfinite(f) or (ts and t <= ts[-1]):
                    raise ModelFileError(f"{p}:{lineno}: rate not finite or time not "
                                         "increasing")
                ts.append(t)
                rate.append(f)
    except OSError as exc:
        raise ModelFileError(f"{p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not ts:
        raise ModelFileError(f"{p}: no funding rows for symbol {symbol!r}")
    return np.asarray(ts, dtype=np.int64), np.asarray(rate, dtype=np.float64)


def _aligned_close(other: Path, bars: Ohlcv) -> np.ndarray[Any, np.dtype[np.float64]]:
    o = read_ohlcv(other)
    if len(o) > 1 and o.interval_ms != bars.interval_ms:
        o = resample_ohlcv(o, bars.interval_ms)
    out = np.full(len(bars), np.nan)
    pos = np.searchsorted(o.ts_ms, bars.ts_ms)
    ok = pos < len(o)
    ok[ok] = o.ts_ms[pos[ok]] == bars.ts_ms[ok]
    out[ok] = o.close[pos[ok]]
    return out


def feature_inputs(
    bars: Ohlcv, *, funding: Path | None = None, symbol: str | None = None,
    perp: Path | None = None, spot: Path | None = None,
) -> FeatureInputs:
    """Return the bars with funding (``funding`` + ``symbol``) and basis aligned.

    ``perp`` names the perpetual's bars when ``bars`` are spot; ``spot`` the spot bars
    when ``bars`` are the perpetual (at most one). Either is resampled to the bars'
    interval; bars without a partner keep NaN basis.
    """
    if perp is not None and spot is not None:
        raise ModelFileError("give --perp (the bars are spot) or --spot (the bars are the "
                             "perpetual), not both")
    if (funding is None) != (symbol is None):
        raise ModelFileError("a funding file needs its symbol (and a symbol its file)")
    close_ms = bars.ts_ms + bars.interval_ms
    fund = np.full(len(bars), np.nan)
    if funding is not None and symbol is not None:
        settle, rate = read_funding(funding, symbol)
        fund = funding_per_bar(close_ms, settle, rate)
    basis = np.full(len(bars), np.nan)
    try:
        if perp is not None:
            basis = np.log(_aligned_close(perp, bars) / bars.close) * 1e4
        elif spot is not None:
            basis = np.log(bars.close / _aligned_close(spot, bars)) * 1e4
    except OhlcvError as exc:
        raise ModelFileError(str(exc)) from None
    return FeatureInputs(ts_ms=bars.ts_ms, interval_ms=bars.interval_ms, high=bars.high,
                         low=bars.low, close=bars.close, volume=bars.volume, funding=fund,
                         basis_bp=basis)


def read_model_file(path: str | Path | None = None) -> list[PredictiveModel]:
    """Return the models of a model file (default: the shipped one)."""
    p = shipped_model_path() if path is None else Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelFileError(f"{p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{p}:{exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ModelFileError(f"{p}: not a {FORMAT} version {VERSION} file (version 1, "
                             "before the scale, form, pooled and smoothing keys: retrain "
                             "with solvency train-margin)")
    if set(data) != {"format", "version", "models"} or not isinstance(data["models"], list):
        raise ModelFileError(f"{p}: expected exactly the keys format, version, models")
    out = []
    for i, m in enumerate(data["models"]):
        if not isinstance(m, dict):
            raise ModelFileError(f"{p}: models[{i}]: expected an object")
        try:
            out.append(PredictiveModel.from_dict(m))
        except ValueError as exc:
            raise ModelFileError(f"{p}: models[{i}]: {exc}") from None
    if not out:
        raise ModelFileError(f"{p}: no models")
    return out


def write_model_file(models: list[PredictiveModel], path: str | Path) -> None:
    """Write the models as a model file (stable key order, one model per side)."""
    doc = {"format": FORMAT, "version": VERSION, "models": [m.to_dict() for m in models]}
    Path(path).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
