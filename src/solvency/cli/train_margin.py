"""``solvency train-margin``: fit the predictive margin model and write its model file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Literal, cast

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from solvency.adapters.ohlcv import OhlcvError, parse_interval_ms, read_ohlcv, resample_ohlcv
from solvency.adapters.predictive import ModelFileError, feature_inputs, write_model_file
from solvency.cli.tables import print_table
from solvency.core.predictive_margin import (
    DAY_MS,
    DEFAULT_FEATURES,
    DEFAULT_FORM,
    DEFAULT_SCALE,
    DEFAULT_SMOOTHING,
    FEATURES,
    Form,
    PredictiveModel,
    Scale,
    fit_predictive,
    predictive_features,
    scale_series,
    training_rows,
)
from solvency.core.volatility import RISKMETRICS_LAMBDA_DAILY, ewma_lambda_for_interval

__all__ = ["SeriesSpec", "parse_series", "train_margin", "train_models"]

console = Console()
err = Console(stderr=True, soft_wrap=True)
_SPEC_KEYS = ("symbol", "perp", "spot")


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """One training series: its bars, the funding symbol and a basis partner."""

    prices: Path
    symbol: str | None = None
    perp: Path | None = None
    spot: Path | None = None


def parse_series(text: str) -> SeriesSpec:
    """Parse ``PRICES[,symbol=SYM][,perp=FILE][,spot=FILE]``."""
    parts = text.split(",")
    kv: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or key not in _SPEC_KEYS or not value or key in kv:
            raise ValueError(f"--series {text!r}: expected PRICES[,symbol=SYM][,perp=FILE]"
                             "[,spot=FILE], each key once")
        kv[key] = value
    if not parts[0]:
        raise ValueError(f"--series {text!r}: the prices file is missing")
    return SeriesSpec(prices=Path(parts[0]), symbol=kv.get("symbol"),
                      perp=Path(kv["perp"]) if "perp" in kv else None,
                      spot=Path(kv["spot"]) if "spot" in kv else None)


def train_models(
    specs: list[SeriesSpec], *, funding: Path | None, until_ms: int,
    features: tuple[str, ...] = DEFAULT_FEATURES, quantile: float = 0.99,
    horizon_steps: int = 1, interval_ms: int = DAY_MS,
    lam_daily: float = RISKMETRICS_LAMBDA_DAILY,
    sides: tuple[Literal["long", "short"], ...] = ("long", "short"),
    scale: Scale = DEFAULT_SCALE, form: Form = DEFAULT_FORM, pooled: bool = True,
    smoothing: float = DEFAULT_SMOOTHING,
) -> list[PredictiveModel]:
    """Fit one model per side (``pooled``: one fit on both sides' rows, written once per
    side) on every series' rows whose horizon ends by ``until_ms``."""
    lam = ewma_lambda_for_interval(interval_ms / 1000.0, lam_daily)
    probe = PredictiveModel(
        features=features, coef=(0.0,) * (len(features) + 1), impute=(0.0,) * len(features),
        quantile=quantile, side="long", horizon_steps=horizon_steps, interval_ms=interval_ms,
        lam=lam, garch_warmup=250, garch_refit_every=50, garch_fit_window=2000,
        train_from_ms=0, train_to_ms=until_ms, n_train=0, library="", series=(),
        scale=scale, form=form, pooled=pooled, smoothing=smoothing)
    probe.validate()
    per_series = []
    for spec in specs:
        bars = read_ohlcv(spec.prices)
        if len(bars) > 1 and bars.interval_ms != interval_ms:
            bars = resample_ohlcv(bars, interval_ms)
        inp = feature_inputs(bars, funding=funding if spec.symbol else None,
                             symbol=spec.symbol, perp=spec.perp, spot=spec.spot)
        X, sigma = predictive_features(inp, lam=lam, garch_warmup=probe.garch_warmup,
                                       garch_refit_every=probe.garch_refit_every,
                                       garch_fit_window=probe.garch_fit_window)
        per_series.append((X, scale_series(X, sigma, scale), np.diff(np.log(bars.close)),
                           bars.ts_ms))
    groups = [sides] if pooled else [(side,) for side in sides]
    models: list[PredictiveModel] = []
    for group in groups:
        xs, ys, shorts, starts, ends = [], [], [], [], []
        for side in group:
            for X, s, r, ts in per_series:
                Xr, y, idx = training_rows(X, s, r, ts, horizon_steps=horizon_steps,
                                           side=side, min_history=probe.min_history,
                                           until_ms=until_ms, interval_ms=interval_ms)
                if idx.size:
                    xs.append(Xr)
                    ys.append(y)
                    shorts.append(np.full(idx.size, side == "short"))
                    starts.append(int(ts[idx[0]] + interval_ms))
                    ends.append(int(ts[idx[-1]] + (horizon_steps + 1) * interval_ms))
        if not xs:
            raise ValueError("no training rows before --until")
        Xt, yt = np.vstack(xs), np.concatenate(ys)
        coef, impute, lib = fit_predictive(Xt, yt, features=features, quantile=quantile,
                                           scale=scale, form=form,
                                           short_rows=np.concatenate(shorts))
        models.extend(PredictiveModel(
            features=features, coef=coef, impute=impute, quantile=quantile, side=side,
            horizon_steps=horizon_steps, interval_ms=interval_ms, lam=lam,
            garch_warmup=probe.garch_warmup, garch_refit_every=probe.garch_refit_every,
            garch_fit_window=probe.garch_fit_window, train_from_ms=min(starts),
            train_to_ms=max(ends), n_train=int(yt.size), library=lib,
            series=tuple(s.prices.name for s in specs), scale=scale, form=form,
            pooled=pooled, smoothing=smoothing) for side in group)
    return models


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(2)


def _day_end_ms(text: str) -> int:
    d = date.fromisoformat(text)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000) + DAY_MS


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def train_margin(
    series: Annotated[list[str], typer.Option(
        "--series", help="PRICES[,symbol=SYM][,perp=FILE][,spot=FILE]; repeat per market.")],
    out: Annotated[Path, typer.Option(help="Model file to write (JSON).")],
    funding: Annotated[Path | None, typer.Option(
        help="Funding history CSV (binance_um_funding_* layout).")] = None,
    until: Annotated[str, typer.Option(
        help="Last training day (UTC, inclusive): every move ends by its midnight.")] = (
        "2021-12-31"),
    features: Annotated[str, typer.Option(
        help=f"Comma-separated features from: {', '.join(FEATURES)}.")] = (
        ",".join(DEFAULT_FEATURES)),
    confidence: Annotated[float, typer.Option(help="Margin confidence level.")] = 0.99,
    horizon: Annotated[str, typer.Option(help="Liquidation horizon, e.g. 1d.")] = "1d",
    interval: Annotated[
        str | None, typer.Option(help="Sampling step (default: the horizon).")] = None,
    lam: Annotated[float, typer.Option(
        "--lambda", help="EWMA decay per day (rescaled to the interval).")] = (
        RISKMETRICS_LAMBDA_DAILY),
    scale: Annotated[str, typer.Option(
        help="Volatility the loss is measured in: garch or ewma.")] = DEFAULT_SCALE,
    form: Annotated[str, typer.Option(
        help="log (rate = exp(b.x) x scale) or linear (max(0, b.x) x scale).")] = (
        DEFAULT_FORM),
    pooled: Annotated[bool, typer.Option(
        "--pooled/--per-side", help="One fit on both sides' rows, or one per side.")] = True,
    smoothing: Annotated[float, typer.Option(
        help="Weight of today's rate in the log-space smoothing (1: none; log form).")] = (
        DEFAULT_SMOOTHING),
) -> None:
    """Fit the predictive margin model on price history and write its model file."""
    try:
        specs = [parse_series(s) for s in series]
        until_ms = _day_end_ms(until)
        step_ms = parse_interval_ms(interval or horizon)
        horizon_ms = parse_interval_ms(horizon)
        if horizon_ms % step_ms:
            raise ValueError(f"--horizon {horizon} is not a multiple of --interval {interval}")
        if not (math.isfinite(confidence) and 0.5 < confidence < 1.0) or not 0.0 < lam < 1.0:
            raise ValueError("--confidence must lie in (0.5, 1) and --lambda in (0, 1)")
        if scale not in ("garch", "ewma") or form not in ("log", "linear"):
            raise ValueError(f"--scale {scale!r} / --form {form!r}: expected garch or ewma "
                             "/ log or linear")
        if any(s.symbol for s in specs) and funding is None:
            raise ValueError("a series names a funding symbol: give --funding FILE")
        models = train_models(
            specs, funding=funding, until_ms=until_ms,
            features=tuple(f.strip() for f in features.split(",") if f.strip()),
            quantile=confidence, horizon_steps=horizon_ms // step_ms, interval_ms=step_ms,
            lam_daily=lam, scale=cast(Scale, scale), form=cast(Form, form), pooled=pooled,
            smoothing=smoothing)
        write_model_file(models, out)
    except (OhlcvError, ModelFileError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"Predictive margin model: {out}")
    for col in ("side", "rows", "trained on (UTC)", "term", "coefficient", "missing ->"):
        table.add_column(col, justify="right")
    for m in models:
        window = f"{_iso(m.train_from_ms)} .. {_iso(m.train_to_ms)}"
        names = ("intercept", *m.features)
        fills = ("", *(f"{v:.4g}" for v in m.impute))
        for i, name in enumerate(names):
            first = i == 0
            table.add_row(m.side if first else "", str(m.n_train) if first else "",
                          window if first else "", name, f"{m.coef[i]:.6g}", fills[i])
    print_table(console, table)
    console.print(f"{models[0].library}; {len(specs)} series: "
                  f"{', '.join(models[0].series)}")
