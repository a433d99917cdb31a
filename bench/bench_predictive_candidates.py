"""Predictive margin (issue 19): the model candidates against the goal, measured.

Run ``python bench/bench_predictive_candidates.py`` (needs ../shared/data). Builds the
features of ``solvency train-margin`` on daily bars (Binance BTC/USDT and ETH/USDT spot for
training, funding from Binance USDT-M), fits every candidate on moves ending by
2021-12-31 and prints, per out-of-sample series (moves from 2022-01-01: BTC spot long and
short, Binance BTC perp, BTC spot spliced with Bybit perp from 2023-11-29, Bybit BTC and
ETH perp), exceptions / expected, Kupiec and Christoffersen p, zone, mean rate and the
largest one-step rise, beside GARCH, GJR, FHS and EWMA on the same moves.

``--spliced-csv FILE`` writes the spliced daily series (the CSV the ``solvency backtest``
figures of docs/analytics.md read) and exits.

Also prints the time-series cross-validation inside the training window (folds 2020H2,
2021H1, 2021H2, each fitted on moves ending before it; nothing from 2022 on): pooled
exceptions per quantile and smoothing. Candidates differ in scale (EWMA or GARCH), form
(linear or log), pooling of the two sides, features and smoothing
(``core/predictive_margin.py``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from machine import describe
from solvency.adapters.ohlcv import Ohlcv, read_ohlcv, resample_ohlcv
from solvency.adapters.predictive import feature_inputs
from solvency.core.backtest import backtest, position_loss
from solvency.core.dynamic_margin import MarginModelConfig, margin_backtest
from solvency.core.predictive_margin import (
    DAY_MS,
    PredictiveModel,
    fit_predictive,
    predictive_features,
    predictive_rate_series,
    scale_series,
    training_rows,
)

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
FUNDING = DATA / "binance_um_funding_btcusdt_ethusdt_2020-01_2026-06.csv"
BTC = DATA / "btcusdt_binance_spot_1h_2017-08-17_2024-04-21.csv.gz"
ETH = DATA / "ethusdt_binance_spot_1h_2017-08-17_2021-06-10.csv.gz"
PERP = DATA / "btcusdt_binance_um_perp_1h_2019-09-08_2022-07-27.csv.gz"
BYBTC = DATA / "btcusdt_bybit_perp_1h_2023-11-29_2026-02-08.csv.gz"
BYETH = DATA / "ethusdt_bybit_perp_1h_2023-12-18_2026-02-08.csv.gz"
LAM, GW = 0.94, 250


def _ms(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp() * 1000)


T22 = _ms(2022, 1, 1)


def _daily(path: Path) -> Ohlcv:
    return resample_ohlcv(read_ohlcv(path), DAY_MS)


def _spliced() -> Ohlcv:
    # Binance spot bars before the first Bybit bar (2023-11-29), Bybit perp bars from then.
    a, b = _daily(BTC), _daily(BYBTC)
    keep = a.ts_ms < b.ts_ms[0]
    return Ohlcv(*(np.concatenate([getattr(a, f)[keep], getattr(b, f)])
                   for f in ("ts_ms", "open", "high", "low", "close", "volume")))


def _series(bars: Ohlcv, symbol: str) -> dict[str, Any]:
    X, sigma = predictive_features(feature_inputs(bars, funding=FUNDING, symbol=symbol),
                                   lam=LAM, garch_warmup=GW)
    return {"X": X, "sigma": sigma, "r": np.diff(np.log(bars.close)), "ts": bars.ts_ms}


def _fit(train: list[dict[str, Any]], cand: dict[str, Any], quantile: float,
         until_ms: int) -> list[PredictiveModel]:
    sides = ("long", "short")
    groups = [sides] if cand["pooled"] else [(s,) for s in sides]
    out = []
    for group in groups:
        xs, ys, sh = [], [], []
        for side in group:
            for s in train:
                scale = scale_series(s["X"], s["sigma"], cand["scale"])
                Xr, y, idx = training_rows(s["X"], scale, s["r"], s["ts"], horizon_steps=1,
                                           side=side, min_history=GW, until_ms=until_ms,
                                           interval_ms=DAY_MS)
                xs.append(Xr)
                ys.append(y)
                sh.append(np.full(idx.size, side == "short"))
        coef, impute, lib = fit_predictive(np.vstack(xs), np.concatenate(ys),
                                           features=cand["features"], quantile=quantile,
                                           scale=cand["scale"], form=cand["form"],
                                           short_rows=np.concatenate(sh))
        for side in group:
            out.append(PredictiveModel(
                features=cand["features"], coef=coef, impute=impute, quantile=quantile,
                side=side, horizon_steps=1, interval_ms=DAY_MS, lam=LAM, garch_warmup=GW,
                garch_refit_every=50, garch_fit_window=2000, train_from_ms=0,
                train_to_ms=until_ms, n_train=0, library=lib, series=(), scale=cand["scale"],
                form=cand["form"], pooled=cand["pooled"], smoothing=cand["smoothing"]))
    return out


def _cell(rates: np.ndarray, exc: np.ndarray) -> str:
    res = backtest(exc, 0.01)
    rise = float(np.max(np.diff(rates), initial=0.0))
    return (f"{res.exceptions}/{res.expected_exceptions:.1f} {res.kupiec_p:.2f}/"
            f"{res.christoffersen_p:.2f} {res.zone} {np.mean(rates):.2%} {rise:.2%}")


def _oos(s: dict[str, Any], warm: int, side: str, raw: np.ndarray | None,
         model: str = "predictive") -> str:
    cfg = MarginModelConfig(model=model, warmup=warm, side=side)  # type: ignore[arg-type]
    run = margin_backtest(s["r"], cfg, raw=raw)
    keep = s["ts"][run.index] + DAY_MS >= T22  # the move starts at bar t's close
    return _cell(run.rates[keep], run.exceptions[keep])


def _fold_windows(train: list[dict[str, Any]], cand: dict[str, Any], quantile: float
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation inside the training window: for each fold (2020H2, 2021H1, 2021H2),
    each side's model fitted on the data before it and each series, the posted rate and the
    position's loss over the days whose horizon ends inside the fold."""
    folds = ((_ms(2020, 7, 1), _ms(2021, 1, 1)), (_ms(2021, 1, 1), _ms(2021, 7, 1)),
             (_ms(2021, 7, 1), T22))
    for lo, hi in folds:
        for m in _fit(train, cand, quantile, lo):
            for s in train:
                rate = predictive_rate_series(s["X"], s["sigma"], m, warmup=GW)
                idx = np.arange(GW, s["r"].size)
                end = s["ts"][idx] + 2 * DAY_MS
                idx = idx[(end > lo) & (end <= hi)]
                yield rate[idx], position_loss(s["r"][idx], m.side)


def _cv(train: list[dict[str, Any]], cand: dict[str, Any], quantile: float) -> tuple[int, int]:
    exc = tot = 0
    for rate, loss in _fold_windows(train, cand, quantile):
        exc += int(np.sum(loss > rate))
        tot += rate.size
    return exc, tot


def _write_csv(bars: Ohlcv, path: Path) -> None:
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{int(t)},{float(o)!r},{float(h)!r},{float(lo)!r},{float(c)!r},{float(v)!r}"
              for t, o, h, lo, c, v in zip(bars.ts_ms, bars.open, bars.high, bars.low,
                                           bars.close, bars.volume, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--spliced-csv":
        _write_csv(_spliced(), Path(sys.argv[2]))
        return
    if not all(p.is_file() for p in (FUNDING, BTC, ETH, PERP, BYBTC, BYETH)):
        sys.exit(f"needs the shared data in {DATA}")
    print(describe())
    t0 = time.perf_counter()
    btc, eth = _series(_daily(BTC), "BTCUSDT"), _series(_daily(ETH), "ETHUSDT")
    tests = {"BTC spot long": (btc, 500, "long"), "BTC spot short": (btc, 500, "short"),
             "BTC perp long": (_series(_daily(PERP), "BTCUSDT"), 365, "long"),
             "BTC spliced long": (_series(_spliced(), "BTCUSDT"), 500, "long"),
             "Bybit BTC long": (_series(_daily(BYBTC), "BTCUSDT"), 250, "long"),
             "Bybit ETH long": (_series(_daily(BYETH), "ETHUSDT"), 250, "long")}
    print(f"features: {time.perf_counter() - t0:.1f} s")
    vol = ("har_w", "har_m", "range_w")
    base = {"scale": "garch", "form": "log", "pooled": True, "smoothing": 1.0,
            "features": ("ewma", *vol, "funding")}
    cands: dict[str, tuple[dict[str, Any], float]] = {
        "v1: linear, EWMA scale, per side": (
            {"scale": "ewma", "form": "linear", "pooled": False, "smoothing": 1.0,
             "features": (*vol, "garch", "funding")}, 0.99),
        "linear, GARCH scale, per side": (
            {**base, "form": "linear", "pooled": False}, 0.99),
        "log, GARCH scale, per side": ({**base, "pooled": False}, 0.99),
        "log, GARCH scale, pooled, no funding": ({**base, "features": ("ewma", *vol)}, 0.99),
        "log, GARCH scale, pooled, signed funding": (base, 0.99),
        "the same, smoothing 0.9 (shipped)": ({**base, "smoothing": 0.9}, 0.99),
        "the same, smoothing 0.8": ({**base, "smoothing": 0.8}, 0.99),
        "the same, smoothing 0.7": ({**base, "smoothing": 0.7}, 0.99),
        "smoothing 0.9, quantile 0.9875": ({**base, "smoothing": 0.9}, 0.9875),
    }
    print("\ncross-validation inside the training window (2020H2, 2021H1, 2021H2; BTC + ETH,"
          " both sides): exceptions / rows")
    print("| quantile | smoothing 1 | 0.9 | 0.8 | 0.7 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for q in (0.985, 0.9875, 0.99, 0.9925):
        cells = []
        for a in (1.0, 0.9, 0.8, 0.7):
            e, n = _cv([btc, eth], {**base, "smoothing": a}, q)
            cells.append(f"{e} / {n}")
        print(f"| {q} | {' | '.join(cells)} |")
    print("\nout of sample (moves from 2022-01-01): exceptions/expected, Kupiec p/"
          "Christoffersen p, zone, mean rate, largest one-step rise")
    print(f"| model | {' | '.join(tests)} |")
    print("| --- |" + " --- |" * len(tests))
    for name, (cand, q) in cands.items():
        t = time.perf_counter()
        models = {m.side: m for m in _fit([btc, eth], cand, q, T22)}
        cells = []
        for s, warm, side in tests.values():
            m = models[side]
            raw = predictive_rate_series(s["X"], s["sigma"], replace(m), warmup=warm)
            cells.append(_oos(s, warm, side, raw))
        print(f"| {name} | {' | '.join(cells)} |  ({time.perf_counter() - t:.1f} s)")
    for model in ("garch", "gjr", "fhs", "ewma"):
        cells = [_oos(s, warm, side, None, model) for s, warm, side in tests.values()]
        print(f"| {model} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
