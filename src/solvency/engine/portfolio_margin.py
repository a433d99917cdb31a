"""Portfolio margin in the engine: scenario-grid requirements of portfolio-margined rows.

A row in ``portfolio`` mode is margined by the worst loss of its whole portfolio over a
scenario grid (``core/portfolio``) instead of per position: every option is revalued with
Black-76 at its mark volatility and the engine clock (rate 0), futures and perpetuals
linearly; per-underlying worst losses are summed, or combined with the venue's
correlations (``portfolio_margin.combine = "correlation"``). The book keeps the result in
``Book.pm`` (USD, NaN for rows not in portfolio mode), where the margin kernels read it.

:class:`PortfolioMargin` holds the venue's grid and combination rule and computes; the
engine decides when (after a valuation, before a trade or a withdrawal).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from solvency.core.margin.kernels import S_LOTS
from solvency.core.model.venue import ConfigError
from solvency.core.portfolio import (
    KIND_CALL,
    KIND_FUTURE,
    KIND_PUT,
    ScenarioGrid,
    portfolio_margin,
)
from solvency.core.typing import Float64Array1D, Int64Array1D
from solvency.engine.option_book import MS_PER_YEAR
from solvency.engine.state import Book

__all__ = ["PortfolioMargin", "underlying_usd"]


class PortfolioMargin:
    """The venue's portfolio-margin rule: a scenario grid and how underlyings combine.

    Parameters
    ----------
    grid
        The scenario grid; None when the engine offers no portfolio mode.
    config
        The venue's ``portfolio_margin`` section: ``combine`` (``"sum"`` or
        ``"correlation"``) and ``correlation`` (``{"BTC/ETH": 0.8}``).
    default_vol
        Volatility of an option market before its first mark implied volatility.
    """

    def __init__(self, grid: ScenarioGrid | None, config: Mapping[str, Any],
                 default_vol: float) -> None:
        self.grid = grid
        section = dict(config)
        unknown_pm = set(section) - {"combine", "correlation"}
        if unknown_pm:
            raise ConfigError(f"portfolio_margin: unknown keys {sorted(unknown_pm)}")
        self.combine = str(section.get("combine", "sum"))
        if self.combine not in ("sum", "correlation"):
            raise ConfigError("portfolio_margin.combine: 'sum' or 'correlation'")
        # {"BTC/ETH": 0.8}: correlation of per-underlying requirements (default 1: sum)
        self.correlation = {tuple(sorted(str(k).split("/"))): float(v)
                            for k, v in dict(section.get("correlation", {})).items()}
        self.default_vol = default_vol

    def requirements(self, book: Book, ivs: Mapping[int, Decimal], now_ms: int,
                     rows: Int64Array1D, extra: tuple[int, int] | None = None
                     ) -> tuple[Float64Array1D, Float64Array1D]:
        """Scenario-grid (IM, MM) in USD of ``rows``, optionally with ``extra`` =
        (market, lots) added to the first row (a what-if for a trade).

        Every option is fully revalued on the grid (Black-76 at its mark volatility
        ``ivs``, time to expiry from ``now_ms``, rate 0), futures and perpetuals linearly
        (``core/portfolio/kernel.py``); per underlying worst losses are summed.
        """
        assert self.grid is not None
        symbols: list[str] = []  # the underlyings these rows hold, in first-seen order
        u_of: dict[str, int] = {}
        acc: list[int] = []
        und: list[int] = []
        kind: list[int] = []
        strike: list[float] = []
        expiry: list[float] = []
        size: list[float] = []
        vol: list[float] = []
        default_iv = Decimal(str(self.default_vol))

        def add(i: int, m: int, lots: int) -> None:
            inst = book.instruments[m]
            contracts = lots * book.lot_size[m] * float(inst.contract_size)
            if inst.base not in u_of:
                u_of[inst.base] = len(symbols)
                symbols.append(inst.base)
            u = u_of[inst.base]
            if inst.is_option:
                acc.append(i)
                und.append(u)
                kind.append(KIND_CALL if inst.option_kind == "call" else KIND_PUT)
                strike.append(float(inst.strike or 0))
                expiry.append(max((inst.expiry_ms or 0) - now_ms, 1) / MS_PER_YEAR)
                size.append(contracts)
                vol.append(float(ivs.get(m, default_iv)))
                return
            mark = float(book.mk[m, 3])
            acc.append(i)
            und.append(u)
            kind.append(KIND_FUTURE)
            strike.append(0.0)
            expiry.append(0.0)
            size.append(contracts / mark if inst.is_inverse else contracts)
            vol.append(float("nan"))

        for i, r in enumerate(rows.tolist()):
            for s in book.row_slots(r):
                lots = int(book.st[s, S_LOTS])
                m = int(book.st[s, 0])
                if extra is not None and i == 0 and m == extra[0]:
                    lots += extra[1]
                if lots:
                    add(i, m, lots)
            if extra is not None and i == 0 and book.slot_of(r, extra[0]) < 0 and extra[1]:
                add(i, extra[0], extra[1])
        n = rows.shape[0]
        if not acc:
            return np.zeros(n), np.zeros(n)
        prices = np.array([underlying_usd(book, u) for u in symbols])
        corr = None
        if self.combine == "correlation":
            corr = np.array([[1.0 if a == b else self.correlation.get(
                tuple(sorted((a, b))), 1.0) for b in symbols] for a in symbols])
        res = portfolio_margin(account=np.array(acc), underlying=np.array(und),
                               kind=np.array(kind, dtype=np.int8), strike=np.array(strike),
                               expiry_yr=np.array(expiry), size=np.array(size),
                               vol=np.array(vol), underlying_price=prices, rate=0.0,
                               grid=self.grid, n_accounts=n,
                               combine="correlation" if corr is not None else "sum",
                               correlation=corr)
        return np.asarray(res.im, dtype=np.float64), np.asarray(res.mm, dtype=np.float64)


def underlying_usd(book: Book, symbol: str) -> float:
    """USD price of an underlying coin: its asset price, else a futures market's mark."""
    a = book.asset_index.get(symbol)
    if a is not None and np.isfinite(book.asset_price[a]):
        return float(book.asset_price[a])
    for m, inst in enumerate(book.instruments):
        if inst.base == symbol and not inst.is_option and book.marks[m] is not None:
            return float(book.marks[m] or 0)
    return float("nan")
