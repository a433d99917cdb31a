"""``solvency backtest``: run a margin model through a price history and test its exceptions."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from scipy import stats

from solvency.adapters.ohlcv import Ohlcv, OhlcvError, parse_interval_ms, read_ohlcv, resample_ohlcv
from solvency.adapters.predictive import feature_inputs, read_model_file
from solvency.adapters.report import BacktestReport, iso_utc, write_html_report, write_svg_figure
from solvency.cli.tables import print_table
from solvency.core.backtest import backtest as backtest_stats
from solvency.core.backtest import es_backtest, normal_es_from_var
from solvency.core.dynamic_margin import (
    MODELS,
    ApcTool,
    DynamicMargin,
    MarginBacktest,
    MarginModel,
    MarginModelConfig,
    margin_backtest,
)
from solvency.core.predictive_margin import (
    PredictiveModel,
    predictive_features,
    predictive_rate_series,
)
from solvency.core.volatility import RISKMETRICS_LAMBDA_DAILY, ewma_lambda_for_interval

__all__ = ["backtest", "model_config", "run_backtests"]

console = Console()
err = Console(stderr=True, soft_wrap=True)

_CLI_MODELS = (*MODELS, "predictive", "all")
_ALL = ("fixed", "ewma", "garch", "gjr", "fhs")  # every model of MODELS; all adds predictive
_APC = ("none", "buffer", "stressed", "floor")
_MAX_EXCEPTION_ROWS = 40


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _bars(prices: Path, interval_ms: int) -> Ohlcv:
    bars = read_ohlcv(prices)
    if len(bars) < 2:
        raise OhlcvError(f"{prices}: need at least two bars")
    if interval_ms == bars.interval_ms:
        return bars
    return resample_ohlcv(bars, interval_ms)


def run_backtests(
    close: np.ndarray[Any, np.dtype[np.float64]],
    models: list[str],
    base: MarginModelConfig,
    *,
    apc: str = "none",
    max_change: float | None = None,
    predictive_raw: np.ndarray[Any, np.dtype[np.float64]] | None = None,
) -> list[MarginBacktest]:
    """Run each model on the close series with the shared settings of ``base``.

    ``predictive`` needs its raw rates (``predictive_raw``, from
    :func:`solvency.core.predictive_margin.predictive_rate_series`).
    """
    r = np.diff(np.log(close))
    runs = []
    for name in models:
        cfg = model_config(name, base)
        if name == "predictive":
            if predictive_raw is None:
                raise ValueError("predictive: no model rates")
            runs.append(margin_backtest(r, cfg, apc=cast(ApcTool, apc),
                                        max_change=max_change, raw=predictive_raw))
            continue
        runs.append(margin_backtest(r, cfg, apc=cast(ApcTool, apc), max_change=max_change))
    return runs


def model_config(name: str, base: MarginModelConfig) -> MarginModelConfig:
    """Return model ``name``'s configuration with the shared settings of ``base``."""
    if name == "predictive":
        # the rates come from the model file; the policy reads horizon, side, floor, warm-up
        return MarginModelConfig(model="predictive", confidence=base.confidence,
                                 horizon_steps=base.horizon_steps, floor=base.floor,
                                 side=base.side, warmup=base.warmup)
    return MarginModelConfig(
        model=cast(MarginModel, name), confidence=base.confidence,
        horizon_steps=base.horizon_steps, multiplier=base.multiplier, floor=base.floor,
        lam=base.lam, side=base.side, warmup=base.warmup, fhs_window=base.fhs_window,
        garch_refit_every=base.garch_refit_every, fixed_rate=base.fixed_rate,
    )


def _write_params(path: Path, bars: Ohlcv, model: str, base: MarginModelConfig, *,
                  market: str, every: int, apc: str, max_change: float | None,
                  raw: np.ndarray[Any, np.dtype[np.float64]] | None) -> int:
    # The posted rates as the engine's params events: the rate for the move from bar i's
    # close is published at that close (bar i's open time + the interval).
    dm = DynamicMargin(market=market, config=model_config(model, base), every_steps=every,
                       apc=cast(ApcTool, apc), max_change=max_change)
    events = dm.events(bars.ts_ms + bars.interval_ms, bars.close, raw=raw)
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return len(events)


def _test_from(runs: list[MarginBacktest], ts: np.ndarray[Any, np.dtype[np.int64]],
               from_ms: int, p: float) -> list[MarginBacktest]:
    # Keep the tested steps whose move starts at or after from_ms; the statistics are
    # recomputed on them (the models still used everything before as history).
    out = []
    for run in runs:
        keep = ts[run.index] >= from_ms
        if not keep.any():
            raise ValueError("--test-from: no tested step on or after that date")
        exc = run.exceptions[keep]
        out.append(MarginBacktest(model=run.model, index=run.index[keep],
                                  rates=run.rates[keep], losses=run.losses[keep],
                                  exceptions=exc, result=backtest_stats(exc, p)))
    return out


_ES_BLOCK = 2_000_000  # simulated losses held at once (16 MB)


def _with_es(runs: list[MarginBacktest], p: float, sims: int,
             seed: int) -> list[MarginBacktest]:
    """Each run with its Acerbi-Szekely tests (``core.backtest.es_backtest``): the posted
    rate read as the VaR of a centred normal loss, its ES ``normal_es_from_var``, p-values
    from ``sims`` loss paths drawn from those normals (``default_rng(seed)`` for every
    model: the same draws, whatever else runs). A run with a rate <= 0 gets none."""
    z = float(stats.norm.ppf(1.0 - p))
    out = []
    for run in runs:
        var = run.rates
        if sims < 1 or not (var > 0.0).all():
            out.append(run)
            continue
        paths = _normal_paths(np.random.default_rng(seed), var / z, sims)
        res = es_backtest(run.losses, var, normal_es_from_var(var, p), p, paths,
                          forecast="normal")
        out.append(replace(run, es=res))
    return out


def _normal_paths(rng: np.random.Generator, sigma: Any, sims: int) -> Iterator[Any]:
    # ``sims`` loss paths N(0, sigma_t), in blocks of at most _ES_BLOCK numbers
    block = max(1, _ES_BLOCK // max(1, sigma.size))
    done = 0
    while done < sims:
        k = min(block, sims - done)
        yield rng.standard_normal((k, sigma.size)) * sigma
        done += k


def _pick_model(path: Path | None, *, confidence: float, horizon_steps: int,
                interval_ms: int, side: str) -> tuple[PredictiveModel | None, str]:
    # The model of the file that fits the run, or None and why not.
    models = read_model_file(path)
    for m in models:
        if (m.side == side and m.horizon_steps == horizon_steps
                and m.interval_ms == interval_ms and abs(m.quantile - confidence) < 1e-12):
            return m, ""
    have = "; ".join(f"{m.side} {m.quantile} over {m.horizon_steps} x {m.interval_ms} ms"
                     for m in models)
    return None, (f"the predictive model file has no {side} model at {confidence} over "
                  f"{horizon_steps} x {interval_ms} ms (it has: {have})")


def _predictive_raw(bars: Ohlcv, model: PredictiveModel, warmup: int, *,
                    funding: Path | None, symbol: str | None, perp: Path | None,
                    spot: Path | None) -> np.ndarray[Any, np.dtype[np.float64]]:
    inp = feature_inputs(bars, funding=funding, symbol=symbol, perp=perp, spot=spot)
    absent = [f for f, have in (("funding", funding), ("funding_chg", funding),
                                ("basis", perp or spot)) if f in model.features and not have]
    if absent:
        err.print(f"note: no series for the predictive feature(s) {', '.join(absent)}: each "
                  "takes its training median (give --funding/--funding-symbol, --perp or "
                  "--spot)")
    X, sigma = predictive_features(inp, lam=model.lam, garch_warmup=model.garch_warmup,
                                   garch_refit_every=model.garch_refit_every,
                                   garch_fit_window=model.garch_fit_window)
    return predictive_rate_series(X, sigma, model, warmup=warmup)


def _note_in_sample(model: PredictiveModel, ts: np.ndarray[Any, np.dtype[np.int64]],
                    warmup: int, horizon_steps: int, step_ms: int,
                    from_ms: int | None) -> None:
    # Tested moves that end inside the model's training window are in-sample: say so.
    start = ts[warmup:]
    if from_ms is not None:
        start = start[start >= from_ms]
    inside = int(np.count_nonzero(start + horizon_steps * step_ms <= model.train_to_ms))
    if inside:
        err.print(f"note: {inside} of the {start.size} tested predictive steps end by "
                  f"{iso_utc(model.train_to_ms)}, inside the model's training window "
                  "(in-sample); --test-from after it tests out of sample only")


def _flat(run: MarginBacktest, ts: np.ndarray[Any, np.dtype[np.int64]]) -> dict[str, Any]:
    """The statistics and the series they come from, so an audit can recompute them.

    ``series`` has one entry per tested step: ``from`` (UTC open time of the tested move,
    the "from (UTC)" column of the text view), ``margin_rate`` (posted before the move),
    ``loss`` (relative loss of the position over the horizon) and ``exception`` (loss >
    margin rate); ``exception_list`` repeats the exceptions as the text view lists them.
    """
    d = run.result.to_dict()
    d = {"model": run.model, **d}
    d["mean_rate"] = float(np.mean(run.rates))
    d["max_step_increase"] = float(np.max(np.diff(run.rates), initial=0.0))
    dates = [iso_utc(int(t)) for t in ts[run.index]]
    rates, losses = run.rates.tolist(), run.losses.tolist()
    hits = np.flatnonzero(run.exceptions).tolist()
    d["exception_list"] = [{"from": dates[i], "loss": losses[i], "margin_rate": rates[i]}
                           for i in hits]
    d["series"] = {"from": dates, "margin_rate": rates, "loss": losses,
                   "exception": run.exceptions.tolist()}
    d["es_backtest"] = None if run.es is None else run.es.to_dict()
    return d


def _print_tables(runs: list[MarginBacktest], ts: np.ndarray[Any, np.dtype[np.int64]]) -> None:
    summary = Table(title="Margin backtest")
    for col in ("model", "obs", "exceptions", "expected", "Kupiec LR (p)",
                "Christoffersen LR (p)", "LR cc (p)", "zone", "ES Z1 (p)", "ES Z2 (p)",
                "mean rate", "max rise"):
        summary.add_column(col, justify="right")
    for run in runs:
        r = run.result
        summary.add_row(
            run.model, str(r.observations), str(r.exceptions), f"{r.expected_exceptions:.1f}",
            f"{r.kupiec_lr:.2f} ({r.kupiec_p:.3f})",
            f"{r.christoffersen_lr:.2f} ({r.christoffersen_p:.3f})",
            f"{r.conditional_coverage_lr:.2f} ({r.conditional_coverage_p:.3f})",
            r.zone, *_es_cells(run), f"{float(np.mean(run.rates)):.2%}",
            f"{float(np.max(np.diff(run.rates), initial=0.0)):.2%}")
    for run in runs:
        hit = np.flatnonzero(run.exceptions)
        table = Table(title=f"Exceptions: {run.model} ({hit.size})")
        for col in ("from (UTC)", "loss", "margin"):
            table.add_column(col, justify="right")
        for i in hit[:_MAX_EXCEPTION_ROWS]:
            table.add_row(iso_utc(int(ts[run.index[i]])), f"{run.losses[i]:.2%}",
                          f"{run.rates[i]:.2%}")
        if hit.size > _MAX_EXCEPTION_ROWS:
            table.caption = f"first {_MAX_EXCEPTION_ROWS} of {hit.size}; see --report"
        print_table(console, table)
    print_table(console, summary)


def _es_cells(run: MarginBacktest) -> tuple[str, str]:
    """The Acerbi-Szekely Z1 and Z2 cells of a run: ``0.12 (0.345)``, ``none``."""
    es = run.es
    if es is None:
        return "none", "none"
    z1 = "none" if es.z1 is None else f"{es.z1:.3f} ({es.z1_p:.3f})"
    return z1, f"{es.z2:.3f} ({es.z2_p:.3f})"


def _validate(model: str, confidence: float, side: str, apc: str) -> list[str]:
    if model not in _CLI_MODELS:
        raise _fail(f"unknown --model {model!r}; expected one of {', '.join(_CLI_MODELS)}")
    if not (math.isfinite(confidence) and 0.5 < confidence < 1.0):
        raise _fail(f"--confidence {confidence} must lie strictly between 0.5 and 1")
    if side not in ("long", "short"):
        raise _fail(f"--side {side!r} must be long or short")
    if apc not in _APC:
        raise _fail(f"--apc {apc!r} must be one of {', '.join(_APC)}")
    return [*_ALL, "predictive"] if model == "all" else [model]


def _date_ms(text: str) -> int:
    try:
        d = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--test-from {text!r}: expected a date YYYY-MM-DD") from None
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def backtest(
    prices: Annotated[Path, typer.Option("--prices", help="OHLCV CSV (.csv or .csv.gz).")],
    model: Annotated[str, typer.Option(
        help="ewma, garch, gjr, fhs, fixed, predictive or all.")] = "ewma",
    confidence: Annotated[float, typer.Option(help="Margin confidence level.")] = 0.99,
    horizon: Annotated[str, typer.Option(help="Liquidation horizon, e.g. 1d, 8h.")] = "1d",
    interval: Annotated[
        str | None, typer.Option(help="Sampling step (default: the horizon).")] = None,
    side: Annotated[str, typer.Option(help="Position tested: long or short.")] = "long",
    lam: Annotated[float, typer.Option(
        "--lambda", help="EWMA decay per day (rescaled to the interval).")] = (
        RISKMETRICS_LAMBDA_DAILY),
    multiplier: Annotated[float, typer.Option(help="Rate multiplier.")] = 1.0,
    floor: Annotated[float, typer.Option(help="Minimum margin rate.")] = 0.0,
    warmup: Annotated[int, typer.Option(help="Returns used only to calibrate.")] = 500,
    fixed_rate: Annotated[float | None, typer.Option(
        help="Rate of the fixed model (default: calibrated on the warm-up).")] = None,
    apc: Annotated[str, typer.Option(help="APC tool: none, buffer, stressed, floor.")] = "none",
    max_change: Annotated[float | None, typer.Option(
        help="Cap on the relative rate change per step, e.g. 0.05.")] = None,
    margin_model: Annotated[Path | None, typer.Option(
        help="Predictive model file (default: the one the package ships).")] = None,
    funding: Annotated[Path | None, typer.Option(
        help="Funding history CSV for the predictive model's funding features.")] = None,
    funding_symbol: Annotated[str | None, typer.Option(
        help="Symbol of the prices in the funding file, e.g. BTCUSDT.")] = None,
    perp: Annotated[Path | None, typer.Option(
        help="Perpetual bars for the basis when --prices are spot.")] = None,
    spot: Annotated[Path | None, typer.Option(
        help="Spot bars for the basis when --prices are the perpetual.")] = None,
    test_from: Annotated[str | None, typer.Option(
        help="Test only moves from this UTC date on (e.g. 2022-01-01).")] = None,
    params_out: Annotated[Path | None, typer.Option(
        help="Write the posted rates as the engine's params events (JSONL) here.")] = None,
    market: Annotated[str | None, typer.Option(
        help="Market the params events change (with --params-out).")] = None,
    params_every: Annotated[int, typer.Option(
        help="Publish every N steps (with --params-out).")] = 1,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    svg: Annotated[Path | None, typer.Option(help="Write a static SVG figure here.")] = None,
    es_sims: Annotated[int, typer.Option(
        min=0, help="Simulated paths of the expected-shortfall tests' p-values (0: no "
                    "ES test).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the ES tests' simulations.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Backtest a margin model on a price history: exceptions, Kupiec, Christoffersen, zone,
    and the Acerbi-Szekely expected-shortfall tests."""
    models = _validate(model, confidence, side, apc)
    if params_out is not None and (len(models) != 1 or not market or params_every < 1):
        raise _fail("--params-out needs one --model (not all), --market NAME and "
                    "--params-every >= 1")
    try:
        step_ms = parse_interval_ms(interval or horizon)
        horizon_ms = parse_interval_ms(horizon)
        if horizon_ms % step_ms:
            raise OhlcvError(f"--horizon {horizon} is not a multiple of --interval {interval}")
        bars = _bars(prices, step_ms)
    except OhlcvError as exc:
        raise _fail(str(exc)) from None
    if not (0.0 < lam < 1.0) or multiplier <= 0.0 or floor < 0.0:
        raise _fail("--lambda must lie in (0, 1), --multiplier > 0 and --floor >= 0")
    base = MarginModelConfig(
        confidence=confidence, horizon_steps=horizon_ms // step_ms, multiplier=multiplier,
        floor=floor, lam=ewma_lambda_for_interval(step_ms / 1000.0, lam),
        side="long" if side == "long" else "short", warmup=warmup, fixed_rate=fixed_rate,
    )
    # The return from close[i] to close[i+1] is decided at bar i's close = bar i+1's open.
    ts = bars.ts_ms[1:]
    try:
        from_ms = None if test_from is None else _date_ms(test_from)
        raw = None
        if "predictive" in models:
            pm, why = _pick_model(margin_model, confidence=confidence,
                                  horizon_steps=base.horizon_steps, interval_ms=step_ms,
                                  side=side)
            if pm is not None and warmup < pm.min_history:
                why = (f"--warmup {warmup} is shorter than the {pm.min_history} steps the "
                       "predictive model's features need")
                pm = None
            if pm is None and model == "predictive":
                raise ValueError(why)
            if pm is None:
                err.print(f"note: {escape(why)}; --model all runs without it")
                models.remove("predictive")
            else:
                raw = _predictive_raw(bars, pm, warmup, funding=funding,
                                      symbol=funding_symbol, perp=perp, spot=spot)
                _note_in_sample(pm, ts, warmup, base.horizon_steps, step_ms, from_ms)
        runs = run_backtests(bars.close, models, base, apc=apc, max_change=max_change,
                             predictive_raw=raw)
        if params_out is not None:
            n = _write_params(params_out, bars, models[0], base, market=str(market),
                              every=params_every, apc=apc, max_change=max_change, raw=raw)
            err.print(f"wrote {n} params events for {escape(str(market))} to "
                      f"{escape(str(params_out))}")
        if from_ms is not None:
            runs = _test_from(runs, ts, from_ms, 1.0 - confidence)
        runs = _with_es(runs, 1.0 - confidence, es_sims, seed)
    except (ValueError, OSError) as exc:
        raise _fail(f"{prices}: {exc}") from None
    rep = BacktestReport(
        title=f"Margin backtest: {prices.name}", source=str(prices), confidence=confidence,
        horizon=horizon, interval=interval or horizon, side=side, ts_ms=ts,
        close=bars.close[:-1], runs=runs,
    )
    if report is not None:
        write_html_report(rep, report)
    if svg is not None:
        write_svg_figure(rep, svg)
    if as_json:
        flat = [_flat(run, ts) for run in runs]
        out: dict[str, Any] = flat[0] if len(flat) == 1 else {"models": flat}
        typer.echo(json.dumps(out, indent=2))
        return
    _print_tables(runs, ts)
