"""Predictive margin (issue 19): which quantile model, measured (the first round: the v1
model, a linear multiple of the EWMA volatility per side; the second round, the model
forms against the goal, is bench/bench_predictive_candidates.py).

Run ``python bench/bench_predictive.py`` (needs ../shared/data). Builds the features of
``solvency train-margin`` on Binance BTC/USDT and ETH/USDT spot (daily, 99 %, funding from
Binance USDT-M, BTC's basis against the USDT-M perp 2019-09 .. 2022-07)
and compares, on the same rows:

* scikit-learn ``QuantileRegressor`` (linear quantile regression, Koenker and Bassett 1978,
  solved exactly by HiGHS): the shipped model's method;
* scikit-learn ``HistGradientBoostingRegressor(loss="quantile")`` (gradient-boosted trees,
  ``random_state=0``), which takes missing values natively;

each on the shipped features and on all eleven, and a regularized HGBR (depth 2, leaves
of at least 200 rows, 100 rounds of 0.05). Selection: fitted on moves ending by
2020-12-31, scored on 2021 by the pinball loss (lower is better) and the exception rate
(1 % expected). Out of sample: fitted on moves ending by 2021-12-31, BTC long from
2022-01 on, the backtest statistics of ``solvency backtest``. Prints each fit's time and
the machine.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from machine import describe
from solvency.adapters.ohlcv import read_ohlcv, resample_ohlcv
from solvency.adapters.predictive import feature_inputs
from solvency.core.backtest import backtest
from solvency.core.dynamic_margin import MarginModelConfig, margin_backtest
from solvency.core.predictive_margin import (
    DAY_MS,
    FEATURES,
    fit_predictive,
    predictive_features,
    training_rows,
)

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
FUNDING = DATA / "binance_um_funding_btcusdt_ethusdt_2020-01_2026-06.csv"
BTC_PERP = DATA / "btcusdt_binance_um_perp_1h_2019-09-08_2022-07-27.csv.gz"
SERIES = [(DATA / "btcusdt_binance_spot_1h_2017-08-17_2024-04-21.csv.gz", "BTCUSDT", BTC_PERP),
          (DATA / "ethusdt_binance_spot_1h_2017-08-17_2021-06-10.csv.gz", "ETHUSDT", None)]
Q, LAM, WARM = 0.99, 0.94, 250
# the v1 model's five features, and the eleven it could read (ewma is its scale)
DEFAULT_FEATURES = ("har_w", "har_m", "range_w", "garch", "funding")
ELEVEN = tuple(f for f in FEATURES if f != "ewma")


def _ms(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp() * 1000)


def _build() -> list[dict[str, Any]]:
    out = []
    for path, sym, perp in SERIES:
        bars = resample_ohlcv(read_ohlcv(path), DAY_MS)
        inp = feature_inputs(bars, funding=FUNDING, symbol=sym, perp=perp)
        X, sigma = predictive_features(inp, lam=LAM, garch_warmup=WARM)
        out.append({"X": X, "sigma": sigma, "r": np.diff(np.log(bars.close)),
                    "ts": bars.ts_ms, "name": sym})
    return out


def _rows(data: list[dict[str, Any]], side: str, lo_ms: int, hi_ms: int) -> tuple[Any, Any]:
    # Rows whose move ends in (lo_ms, hi_ms].
    xs, ys = [], []
    for s in data:
        Xr, y, idx = training_rows(s["X"], s["sigma"], s["r"], s["ts"], horizon_steps=1,
                                   side=side,  # type: ignore[arg-type]
                                   min_history=WARM, until_ms=hi_ms, interval_ms=DAY_MS)
        keep = s["ts"][idx] + 2 * DAY_MS > lo_ms
        xs.append(Xr[keep])
        ys.append(y[keep])
    return np.vstack(xs), np.concatenate(ys)


class _Linear:
    def __init__(self, feats: tuple[str, ...]) -> None:
        self.feats = feats

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Linear:
        self.coef, self.impute, _ = fit_predictive(X, y, features=self.feats, quantile=Q)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = X[:, [FEATURES.index(f) for f in self.feats]]
        Z = np.where(np.isnan(Z), np.asarray(self.impute), Z)
        return np.maximum(np.column_stack([np.ones(len(Z)), Z]) @ np.asarray(self.coef), 0.0)


class _Boosted:
    def __init__(self, feats: tuple[str, ...], **kw: Any) -> None:
        from sklearn.ensemble import HistGradientBoostingRegressor

        self.cols = [FEATURES.index(f) for f in feats]
        self.reg = HistGradientBoostingRegressor(loss="quantile", quantile=Q, random_state=0,
                                                 **kw)

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Boosted:
        self.reg.fit(X[:, self.cols], y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(self.reg.predict(X[:, self.cols]), 0.0)


def _pinball(y: np.ndarray, pred: np.ndarray) -> float:
    u = y - pred
    return float(np.mean(np.maximum(Q * u, (Q - 1.0) * u)))


def main() -> None:
    if not all(p.is_file() for p, _, _ in SERIES) or not FUNDING.is_file():
        sys.exit(f"needs the shared data in {DATA}")
    print(describe())
    t0 = time.perf_counter()
    data = _build()
    print(f"features of {len(data)} series: {time.perf_counter() - t0:.1f} s")
    makers = {"linear QR, the v1 five features": lambda: _Linear(DEFAULT_FEATURES),
              "linear QR, all 11 features": lambda: _Linear(ELEVEN),
              "HGBR quantile, the v1 five features": lambda: _Boosted(DEFAULT_FEATURES),
              "HGBR quantile, all 11 features": lambda: _Boosted(ELEVEN),
              # regularized for a 1 % tail from ~2,000 rows: shallow trees, large leaves
              "HGBR quantile, the v1 five, depth 2, leaves >= 200, 100 rounds of 0.05":
                  lambda: _Boosted(DEFAULT_FEATURES, max_depth=2, min_samples_leaf=200,
                                   learning_rate=0.05, max_iter=100)}
    print("\nselection: fit on moves ending by 2020-12-31, score 2021 (BTC + ETH to 2021-06)")
    print("| model | side | fit (s) | pinball 2021 | exceptions 2021 / rows (1 % expected) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, make in makers.items():
        for side in ("long", "short"):
            Xf, yf = _rows(data, side, 0, _ms(2021, 1, 1))
            Xv, yv = _rows(data, side, _ms(2021, 1, 1), _ms(2022, 1, 1))
            t = time.perf_counter()
            m = make().fit(Xf, yf)
            dt = time.perf_counter() - t
            p = m.predict(Xv)
            print(f"| {name} | {side} | {dt:.2f} | {_pinball(yv, p):.4f} | "
                  f"{int(np.sum(yv > p))} / {yv.size} |")
    print("\nout of sample: fit on moves ending by 2021-12-31, BTC long 2022-01 .. 2024-04")
    print("| model | obs | exceptions | Kupiec LR (p) | Christoffersen LR (p) | zone | "
          "mean rate | max 1-day increase |")
    print("| --- | ---: | ---: | --- | --- | --- | ---: | ---: |")
    btc = data[0]
    test_from = _ms(2022, 1, 1)
    for name, make in makers.items():
        Xf, yf = _rows(data, "long", 0, test_from)
        m = make().fit(Xf, yf)
        raw = np.full(btc["r"].size, np.nan)
        raw[WARM:] = m.predict(btc["X"][WARM:]) * btc["sigma"][WARM:]
        run = margin_backtest(btc["r"], MarginModelConfig(model="predictive", warmup=WARM),
                              raw=raw)
        keep = btc["ts"][1:][run.index] >= test_from
        res = backtest(run.exceptions[keep], 1.0 - Q)
        rates = run.rates[keep]
        inc = float(np.max(np.diff(rates), initial=0.0))
        print(f"| {name} | {res.observations} | {res.exceptions} | {res.kupiec_lr:.2f} "
              f"({res.kupiec_p:.3f}) | {res.christoffersen_lr:.2f} "
              f"({res.christoffersen_p:.3f}) | {res.zone} | {np.mean(rates):.2%} | "
              f"{inc:.2%} |")


if __name__ == "__main__":
    main()
