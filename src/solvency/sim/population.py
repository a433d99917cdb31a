"""Synthetic books of accounts from a few summary parameters.

A venue rarely publishes its book, but it (or a data vendor) publishes summaries: open
interest per market, the long/short ratio, typical leverage. :func:`generate_population`
turns such a summary (:class:`PopulationSpec`) into a concrete, seeded book whose totals
match it exactly in lots, and :func:`load_population` loads that book into a real
:class:`~solvency.engine.engine.Engine` (bulk through ``Engine.load_book`` for cross
accounts, event by event for isolated ones and for non-settlement collateral).

How a book is drawn
-------------------
1. **Markets per account.** Each account holds its *primary* market, drawn with
   probability proportional to the market's open-interest notional, plus each other
   market with probability ``extra_market_probability``.
2. **Sides.** Each position is long with probability ``long_account_fraction`` (by
   default ``ratio / (1 + ratio)``, so the count of longs and shorts follows the ratio).
3. **Totals in lots.** Per market, ``OI_lots = round(open_interest_base / (lot_size x
   contract_size))`` (half to even). With ``r = long_short_ratio``: if ``r >= 1`` the
   population is long ``L = OI_lots`` and short ``S = round(OI_lots / r)`` lots, else
   short ``S = OI_lots`` and long ``L = round(OI_lots x r)``. The venue's counterparty
   (``Engine``'s street account) holds the difference ``S - L``, so the market's open
   interest (one side) is exactly ``OI_lots`` and the population's ``L / S`` is ``r`` up
   to one lot of rounding.
4. **Sizes.** Heavy-tailed weights (Pareto with tail index ``size_pareto_alpha``, or
   lognormal with ``size_lognormal_sigma``) split each side's lot total: every position
   gets one lot, the rest goes by the largest-remainder method, so the sum is exact.
5. **Entries.** Entry prices are drawn from the recent path of the market when one is
   given (traders opened at different times of it), else log-normally around the
   current price with ``entry_spread``; then rounded to the tick grid (half to even).
6. **Leverage and collateral.** Each account draws a leverage from a lognormal mixture
   (:class:`LeverageComponent`), clipped to ``[leverage_min, leverage_max]``; its
   collateral is its positions' notional at the current price divided by that leverage,
   in the collateral asset drawn from ``collateral_mix``, rounded *up* to whole quanta
   (an account never starts above its drawn leverage).

Path-consistent entries (issue 17 item 2)
-----------------------------------------
With ``entry_history_ms`` and each market's preceding bars (:class:`EntryHistory`: the
bars of the last ``entry_history_ms`` before the first price, on one time grid), steps 5
and 6 become:

5'. Each account opens all its positions at one bar ``j`` drawn uniformly from the
    history; each position's entry is drawn uniformly between that bar's low and high
    (then rounded to the tick). Its leverage is drawn from the mixture as in step 6 and
    its collateral is its notional *at entry* over that leverage (rounded up).
6'. The account is then walked along the bars from ``j`` to the first price: with
    ``q`` the signed base size, ``e`` the entry and ``r`` the market's maintenance rate at
    the largest notional the position reaches (``requirement(n) / n``, non-decreasing in
    ``n`` for every margin model), its equity less maintenance at price ``p`` is
    ``C - q e + (q - r |q|) p``, lowest at the lowest low after ``j`` for a long and at
    the highest high for a short (the first price included). An account for which the
    sum of these lows over its positions is not above zero would have been liquidated
    before the window: it is not in the book. It is redrawn (bar, entries, leverage) up
    to ``REDRAWS`` times, keeping the sizes, so the open interest stays exact; one still
    liquidated after that opens at the first price with its leverage capped below
    maintenance (``Population.entry_fallbacks`` counts them). The sum of per-market
    lows is a lower bound of a multi-market account's path, so survivors are certain
    survivors.

Everything depends only on the spec, the venue, the prices and the seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Final, Literal

import numpy as np

from solvency.core.model.events import AccountMode, Deposit, Price
from solvency.core.model.instruments import Instrument
from solvency.core.model.venue import Venue
from solvency.core.oracle import OracleReport
from solvency.core.oracle.collateral import PRICE_QUANTUM
from solvency.core.typing import BoolArray1D, Float64Array1D, Int64Array1D
from solvency.engine.engine import STREET, Engine

__all__ = [
    "REDRAWS",
    "BookArrays",
    "EntryHistory",
    "LeverageComponent",
    "Population",
    "PopulationSpec",
    "generate_population",
    "load_population",
    "split_lots",
]

SizeDistribution = Literal["pareto", "lognormal"]
REDRAWS: Final = 30
"""Redraws of an account the preceding path liquidated before it opens at the first price."""


@dataclass(frozen=True, slots=True)
class EntryHistory:
    """One market's bars before the window, on the grid shared by the population's markets.

    ``ts_ms`` (bar open times, increasing), ``low`` and ``high`` (price per bar).
    """

    ts_ms: Int64Array1D
    low: Float64Array1D
    high: Float64Array1D

    def __post_init__(self) -> None:
        n = self.ts_ms.shape[0]
        if n == 0 or self.low.shape[0] != n or self.high.shape[0] != n:
            raise ValueError("entry history needs at least one bar, low and high per bar")
        if not (np.all(self.low > 0) and np.all(self.high >= self.low)):
            raise ValueError("entry history needs 0 < low <= high")


@dataclass(frozen=True, slots=True)
class LeverageComponent:
    """One lognormal component of the leverage mixture.

    Parameters
    ----------
    weight : float
        Relative weight (> 0); weights are normalized over the mixture.
    median : float
        Median leverage of the component (notional / collateral), > 0.
    sigma : float
        Standard deviation of log leverage, >= 0.
    """

    weight: float
    median: float
    sigma: float

    def __post_init__(self) -> None:
        if not (self.weight > 0 and self.median > 0 and self.sigma >= 0):
            raise ValueError("leverage component needs weight > 0, median > 0, sigma >= 0")


def _default_leverage() -> tuple[LeverageComponent, ...]:
    return (LeverageComponent(weight=1.0, median=10.0, sigma=0.6),)


@dataclass(frozen=True, slots=True)
class PopulationSpec:
    """Summary of a book, from which :func:`generate_population` draws one.

    Parameters
    ----------
    n_accounts : int
        Number of accounts (default 1,000).
    open_interest_base : Mapping[str, float]
        Market -> open interest (one side) in base units, e.g. ``{"BTC-PERP": 500.0}``.
        Rounded to whole lots (half to even).
    long_short_ratio : float
        Population long lots / short lots per market (default 1.0). The counterparty
        takes the imbalance.
    long_account_fraction : float or None
        Probability that a position is long; ``None``: ``ratio / (1 + ratio)``.
    leverage : tuple of LeverageComponent
        Leverage mixture (default one lognormal, median 10x, sigma 0.6: about 68 % of
        accounts between 5.5x and 18x).
    leverage_min, leverage_max : float
        Clip of the drawn leverage (defaults 1x and 100x).
    size_distribution : {"pareto", "lognormal"}
        Shape of position size weights (default Pareto: a few whales hold much of the OI).
    size_pareto_alpha : float
        Pareto tail index (default 1.5; lower is heavier; below 1 the mean is infinite).
    size_lognormal_sigma : float
        Lognormal sigma of sizes (default 1.5).
    extra_market_probability : float
        Probability that an account also holds each non-primary market (default 0.2).
    entry_spread : float
        Lognormal sigma of entry prices around the current price when no recent path is
        given (default 0.02).
    isolated_fraction : float
        Fraction of accounts in isolated margin (default 0). Isolated accounts post
        settlement-asset collateral, split over their positions by notional.
    collateral_mix : Mapping[str, float]
        Collateral asset -> weight over cross accounts (e.g. ``{"USDT": 0.8, "BTC":
        0.2}``); empty (default) means all in the markets' settlement asset.
    account_prefix : str
        Account names are ``f"{prefix}{i:0{w}d}"`` (default ``"acct"``).
    entry_history_ms : int or None
        With preceding bars given (``generate_population(history=...)``), positions are
        opened along the last ``entry_history_ms`` of them and the accounts that path
        would have liquidated are replaced (see "Path-consistent entries" above);
        ``None`` (default): entries around the current price.
    collateral_prices : Mapping[str, float]
        Start USD price of collateral assets valued by rule (``assets.X.valuation``) in
        ``collateral_mix`` whose rule has no redemption source (e.g. ``{"USDE": 1.0}``:
        Binance valued USDe from its own book alone); an asset with a redemption source
        starts at ``rate x`` its underlying's price unless listed here. The population's
        deposits are sized at these prices; ``load_population`` reports them as the
        rule's book and index sources.
    """

    n_accounts: int = 1000
    open_interest_base: Mapping[str, float] = field(default_factory=dict)
    long_short_ratio: float = 1.0
    long_account_fraction: float | None = None
    leverage: tuple[LeverageComponent, ...] = field(default_factory=_default_leverage)
    leverage_min: float = 1.0
    leverage_max: float = 100.0
    size_distribution: SizeDistribution = "pareto"
    size_pareto_alpha: float = 1.5
    size_lognormal_sigma: float = 1.5
    extra_market_probability: float = 0.2
    entry_spread: float = 0.02
    isolated_fraction: float = 0.0
    collateral_mix: Mapping[str, float] = field(default_factory=dict)
    account_prefix: str = "acct"
    entry_history_ms: int | None = None
    collateral_prices: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_accounts < 1:
            raise ValueError("n_accounts must be >= 1")
        if not self.open_interest_base:
            raise ValueError("open_interest_base must name at least one market")
        if any(not (v > 0 and math.isfinite(v)) for v in self.open_interest_base.values()):
            raise ValueError("open interest must be positive")
        if not (self.long_short_ratio > 0 and math.isfinite(self.long_short_ratio)):
            raise ValueError("long_short_ratio must be positive")
        for name in ("long_account_fraction", "extra_market_probability",
                     "isolated_fraction"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if not self.leverage:
            raise ValueError("leverage mixture must not be empty")
        if not 0 < self.leverage_min <= self.leverage_max:
            raise ValueError("need 0 < leverage_min <= leverage_max")
        if self.size_distribution not in ("pareto", "lognormal"):
            raise ValueError(f"size_distribution {self.size_distribution!r}")
        if self.size_pareto_alpha <= 0 or self.size_lognormal_sigma < 0:
            raise ValueError("size parameters must be positive")
        if self.entry_spread < 0:
            raise ValueError("entry_spread must be >= 0")
        if self.entry_history_ms is not None and self.entry_history_ms <= 0:
            raise ValueError("entry_history must be positive")
        if any(w < 0 for w in self.collateral_mix.values()) or (
                self.collateral_mix and sum(self.collateral_mix.values()) <= 0):
            raise ValueError("collateral_mix weights must be >= 0 with a positive sum")
        if any(not (v > 0 and math.isfinite(v)) for v in self.collateral_prices.values()):
            raise ValueError("collateral_prices must be positive")


@dataclass(frozen=True, slots=True)
class BookArrays:
    """The arguments of ``Engine.load_book`` for a population's cross accounts.

    ``pos_market`` indexes the engine's markets (``engine.book.market_names``).
    """

    accounts: list[str]
    asset: str
    collateral_quanta: Int64Array1D
    pos_account: Int64Array1D
    pos_market: Int64Array1D
    pos_lots: Int64Array1D
    entry_ticks: Int64Array1D


@dataclass(frozen=True, slots=True)
class Population:
    """A drawn book: accounts (struct of arrays) and positions on the venue's grids.

    Attributes
    ----------
    accounts : tuple of str
        Account names.
    markets : tuple of str
        Markets of the book; ``pos_market`` indexes this tuple.
    settle_asset : str
        Settlement asset of every market.
    collateral_assets : tuple of str
        Collateral assets; ``collateral_asset`` indexes this tuple.
    collateral_asset : Int64Array1D
        Per account, the collateral asset index.
    collateral_quanta : Int64Array1D
        Per account, collateral in quanta of its collateral asset.
    isolated : BoolArray1D
        Per account, isolated margin mode.
    leverage : Float64Array1D
        Per account, drawn leverage (notional at ``marks`` / collateral value).
    pos_account, pos_market, pos_lots, entry_ticks : Int64Array1D
        Positions: account index, market index, signed lots, entry price in ticks.
    marks : Mapping[str, Decimal]
        Current price per market on the tick grid (population markets and the markets
        that price non-settlement collateral).
    entry_fallbacks : int
        Accounts opened at the first price after ``REDRAWS`` redraws.
    holder_draw : Float64Array1D
        Per account, a uniform on [0, 1): the account writes options when it is below
        ``population.options.holder_fraction`` (:mod:`solvency.sim.option_holders`).
    collateral_prices : Mapping[str, Decimal]
        Start USD price of each collateral asset valued by rule that the book holds
        (``_valued_start``); :func:`load_population` reports it as each of the rule's
        book and index sources before the deposits.
    """

    accounts: tuple[str, ...]
    markets: tuple[str, ...]
    settle_asset: str
    collateral_assets: tuple[str, ...]
    collateral_asset: Int64Array1D
    collateral_quanta: Int64Array1D
    isolated: BoolArray1D
    leverage: Float64Array1D
    pos_account: Int64Array1D
    pos_market: Int64Array1D
    pos_lots: Int64Array1D
    entry_ticks: Int64Array1D
    marks: Mapping[str, Decimal]
    entry_fallbacks: int = 0
    holder_draw: Float64Array1D = field(default_factory=lambda: np.ones(0))
    collateral_prices: Mapping[str, Decimal] = field(default_factory=dict)

    def side_lots(self, market: str) -> tuple[int, int]:
        """Return ``(long_lots, short_lots)`` held by the population in ``market``."""
        sel = self.pos_market == self.markets.index(market)
        lots = self.pos_lots[sel]
        return int(lots[lots > 0].sum()), int(-lots[lots < 0].sum())

    def book_arrays(self, market_index: Mapping[str, int],
                    exclude: Int64Array1D | None = None) -> BookArrays:
        """Return ``Engine.load_book`` arguments for the cross accounts (less the account
        indices ``exclude``: :func:`load_population` loads those one event at a time).

        Accounts whose collateral is not the settlement asset get zero collateral here
        (:func:`load_population` deposits it separately).
        """
        bulk = ~self.isolated
        if exclude is not None:
            bulk = bulk.copy()
            bulk[exclude] = False
        cross = np.flatnonzero(bulk)
        new_index = np.full(len(self.accounts), -1, dtype=np.int64)
        new_index[cross] = np.arange(cross.shape[0], dtype=np.int64)
        keep = bulk[self.pos_account]
        settle = self.collateral_assets.index(self.settle_asset) \
            if self.settle_asset in self.collateral_assets else -1
        coll = np.where(self.collateral_asset[cross] == settle,
                        self.collateral_quanta[cross], 0).astype(np.int64)
        remap = np.array([market_index[m] for m in self.markets], dtype=np.int64)
        return BookArrays(
            accounts=[self.accounts[i] for i in cross.tolist()], asset=self.settle_asset,
            collateral_quanta=coll, pos_account=new_index[self.pos_account[keep]],
            pos_market=remap[self.pos_market[keep]], pos_lots=self.pos_lots[keep].copy(),
            entry_ticks=self.entry_ticks[keep].copy(),
        )


# ============================================================================ drawing


def _rng(seed: np.random.Generator | int) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _instruments(spec: PopulationSpec, venue: Venue) -> list[Instrument]:
    insts = []
    for name in spec.open_interest_base:
        inst = venue.markets.get(name)
        if inst is None:
            raise ValueError(f"market {name!r} is not in venue {venue.name!r}")
        if inst.is_inverse:
            raise ValueError(f"market {name}: inverse markets are not supported yet")
        insts.append(inst)
    settles = {i.settle for i in insts}
    if len(settles) != 1:
        raise ValueError(f"markets must share one settlement asset, got {sorted(settles)}")
    return insts


def _lots_of(base: float, inst: Instrument) -> int:
    lot_base = inst.lot_size * inst.contract_size
    lots = int((Decimal(repr(base)) / lot_base).to_integral_value(ROUND_HALF_EVEN))
    if lots < 1:
        raise ValueError(f"market {inst.name}: open interest {base} is below one lot")
    return lots


def _side_targets(oi_lots: int, ratio: float) -> tuple[int, int]:
    r = Fraction(repr(ratio))
    if r >= 1:
        return oi_lots, round(Fraction(oi_lots) / r)
    return round(oi_lots * r), oi_lots


def _ticks(price: float, tick: Decimal) -> int:
    t = int((Decimal(repr(price)) / tick).to_integral_value(ROUND_HALF_EVEN))
    return max(t, 1)


def _positions(spec: PopulationSpec, notional: Float64Array1D, g: np.random.Generator
               ) -> tuple[Int64Array1D, Int64Array1D]:
    n, k = spec.n_accounts, notional.shape[0]
    primary = g.choice(k, size=n, p=notional / notional.sum())
    held = g.random((n, k)) < spec.extra_market_probability
    held[np.arange(n), primary] = True
    acc, mkt = np.nonzero(held)  # row-major: sorted by account, then market
    return acc.astype(np.int64), mkt.astype(np.int64)


def _fix_sides(long: BoolArray1D, sel: Int64Array1D, targets: tuple[int, int],
               market: str) -> None:
    # each side with lots to hold needs a position, and no more positions than lots
    for side, want in ((True, targets[0]), (False, targets[1])):
        idx = sel[long[sel] == side]
        other = sel[long[sel] != side]
        if want > 0 and idx.shape[0] == 0:
            if other.shape[0] < 2:
                raise ValueError(f"market {market}: too few positions for both sides")
            long[other[-1]] = side
        elif want == 0 and idx.shape[0] > 0:
            long[idx] = not side
    for want, side in ((targets[0], True), (targets[1], False)):
        if (long[sel] == side).sum() > want:
            raise ValueError(f"market {market}: {want} lots cannot cover every position on "
                             "its side; raise open interest or lower n_accounts")


def split_lots(total: int, weights: Float64Array1D) -> Int64Array1D:
    """Split ``total`` lots, one at least each, by the largest-remainder method."""
    n = weights.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    extra = total - n
    share = weights / weights.sum() * extra
    base = np.floor(share).astype(np.int64)
    left = extra - int(base.sum())
    order = np.argsort(-(share - base), kind="stable")
    base[order[:left]] += 1
    out: Int64Array1D = base + 1
    return out


def _size_weights(spec: PopulationSpec, n: int, g: np.random.Generator) -> Float64Array1D:
    if spec.size_distribution == "pareto":
        w: Float64Array1D = g.pareto(spec.size_pareto_alpha, n) + 1.0
        return w
    out: Float64Array1D = np.exp(spec.size_lognormal_sigma * g.standard_normal(n))
    return out


def _leverage(spec: PopulationSpec, n: int, g: np.random.Generator) -> Float64Array1D:
    comps = spec.leverage
    w = np.array([c.weight for c in comps], dtype=np.float64)
    pick = g.choice(len(comps), size=n, p=w / w.sum())
    med = np.array([c.median for c in comps])[pick]
    sig = np.array([c.sigma for c in comps])[pick]
    lev: Float64Array1D = np.clip(med * np.exp(sig * g.standard_normal(n)),
                                  spec.leverage_min, spec.leverage_max)
    return lev


def _entries(inst: Instrument, price: float, n: int, spec: PopulationSpec,
             recent: Float64Array1D | None, g: np.random.Generator) -> Int64Array1D:
    if recent is not None and recent.shape[0] > 0:
        drawn = np.asarray(recent, dtype=np.float64)[g.integers(0, recent.shape[0], n)]
    else:
        drawn = price * np.exp(spec.entry_spread * g.standard_normal(n))
    tick = float(inst.tick_size)
    # half to even in float: ticks are small integers relative to 2**53, so exact
    ticks = np.maximum(np.rint(drawn / tick), 1).astype(np.int64)
    return ticks


def _asset_price(venue: Venue, symbol: str, prices: Mapping[str, float]) -> tuple[float, str]:
    asset = venue.assets[symbol]
    if asset.price_usd is not None:
        return float(asset.price_usd), ""
    market = asset.price_market or ""
    if market not in prices:
        raise ValueError(f"collateral {symbol} needs a price for market {market!r}")
    return float(prices[market]), market


def _valued_start(venue: Venue, symbol: str, starts: Mapping[str, float],
                  prices: Mapping[str, float], marks: dict[str, Decimal]) -> Decimal:
    """Start USD price of a collateral asset valued by rule (``assets.X.valuation``).

    ``starts[symbol]`` (``PopulationSpec.collateral_prices``) or ``prices[symbol]`` when
    given (the asset's USD price before the window, e.g. USDe's 1.0); else the rule's
    redemption sources at the underlying's mark, every book and index source assumed to
    trade at that redemption value (at peg: the weighted mean of equal values is that
    value). The underlying's market joins ``marks``. Exact.
    """
    rule = venue.assets[symbol].valuation
    assert rule is not None
    given = starts.get(symbol, prices.get(symbol))
    if given is not None:
        value = Decimal(repr(float(given)))
        if not value > 0:
            raise ValueError(f"start price of {symbol} must be positive, got {value}")
        return value
    num = Decimal(0)
    den = Decimal(0)
    for src in rule.sources:
        if src.kind != "redemption" or src.weight == 0:
            continue
        under = venue.assets[str(src.underlying)]
        if under.price_usd is not None:
            px = under.price_usd
        else:
            market = under.price_market or ""
            if market not in prices:
                raise ValueError(f"collateral {symbol} is redeemed into {src.underlying}: "
                                 f"it needs a price for market {market!r}")
            inst = venue.markets[market]
            px = marks.setdefault(market, Decimal(_ticks(float(prices[market]),
                                                         inst.tick_size)) * inst.tick_size)
        assert src.rate is not None
        num += src.weight * src.rate * px
        den += src.weight
    if den == 0:
        raise ValueError(f"collateral {symbol} is valued by rule from its book or index "
                         f"only: give its start price (population.collateral_prices.{symbol})")
    return (num / den).quantize(PRICE_QUANTUM, rounding=ROUND_FLOOR)


def generate_population(spec: PopulationSpec, venue: Venue, prices: Mapping[str, float],
                        rng: np.random.Generator | int, *,
                        recent_prices: Mapping[str, Float64Array1D] | None = None,
                        history: Mapping[str, EntryHistory] | None = None
                        ) -> Population:
    """Draw a book of accounts matching ``spec`` on ``venue``'s grids.

    Parameters
    ----------
    spec : PopulationSpec
        The summary to match (see the module docstring for the method).
    venue : Venue
        Markets (linear, one settlement asset) and assets.
    prices : Mapping[str, float]
        Current price per market: every population market, and the market pricing each
        non-stable collateral asset (e.g. ``BTC-PERP`` for BTC).
    rng : numpy.random.Generator or int
        Randomness source or seed.
    recent_prices : Mapping[str, Float64Array1D] or None
        Recent path per market (e.g. a replayed day); entries are drawn from it.
    history : Mapping[str, EntryHistory] or None
        Each market's bars before the window, on one grid: with
        ``spec.entry_history_ms``, path-consistent entries (module docstring).

    Raises
    ------
    ValueError
        If a market is unknown, inverse, or too small for its positions, or a collateral
        asset cannot be priced.
    """
    g = _rng(rng)
    insts = _instruments(spec, venue)
    settle = insts[0].settle
    path = _history(spec, insts, history)
    px = np.array([float(prices[i.name]) for i in insts])
    oi = [_lots_of(spec.open_interest_base[i.name], i) for i in insts]
    lot_base = np.array([float(i.lot_size * i.contract_size) for i in insts])
    pos_acc, pos_mkt = _positions(spec, np.array(oi) * lot_base * px, g)
    ratio = spec.long_short_ratio
    q = spec.long_account_fraction if spec.long_account_fraction is not None \
        else ratio / (1.0 + ratio)
    long = g.random(pos_acc.shape[0]) < q
    weights = _size_weights(spec, pos_acc.shape[0], g)
    lots = np.zeros(pos_acc.shape[0], dtype=np.int64)
    ticks = np.zeros(pos_acc.shape[0], dtype=np.int64)
    for m, inst in enumerate(insts):
        sel = np.flatnonzero(pos_mkt == m)
        targets = _side_targets(oi[m], ratio)
        _fix_sides(long, sel, targets, inst.name)
        for side, total in ((True, targets[0]), (False, targets[1])):
            idx = sel[long[sel] == side]
            lots[idx] = split_lots(total, weights[idx]) * (1 if side else -1)
        if path is None:
            recent = None if recent_prices is None else recent_prices.get(inst.name)
            ticks[sel] = _entries(inst, float(px[m]), sel.shape[0], spec, recent, g)
    return _finish(spec, venue, prices, insts, settle, pos_acc, pos_mkt, lots, ticks, g,
                   path)


def _finish(spec: PopulationSpec, venue: Venue, prices: Mapping[str, float],
            insts: list[Instrument], settle: str, pos_acc: Int64Array1D,
            pos_mkt: Int64Array1D, lots: Int64Array1D, ticks: Int64Array1D,
            g: np.random.Generator,
            path: tuple[EntryHistory, ...] | None = None) -> Population:
    n = spec.n_accounts
    px = np.array([float(prices[i.name]) for i in insts])
    lot_base = np.array([float(i.lot_size * i.contract_size) for i in insts])
    notional: Float64Array1D = np.asarray(np.bincount(
        pos_acc, weights=np.abs(lots) * lot_base[pos_mkt] * px[pos_mkt], minlength=n),
        dtype=np.float64)
    lev = _leverage(spec, n, g)
    fallbacks = 0
    if path is not None:
        ticks, lev, notional, fallbacks = _path_entries(
            spec, insts, px, path, pos_acc, pos_mkt, lots, lev, g)
    isolated = g.random(n) < spec.isolated_fraction
    # One uniform per account, drawn where the option-holder placeholder flag drew it
    # (so every population, and the golden hashes of every scenario, stay bit for bit
    # what they were): an account writes options when it is below the scenario's
    # population.options.holder_fraction (sim/option_holders.py).
    holder_draw = g.random(n)
    mix = dict(spec.collateral_mix) or {settle: 1.0}
    assets = tuple(mix)
    for a in assets:
        if a not in venue.assets:
            raise ValueError(f"collateral asset {a!r} is not in venue {venue.name!r}")
    w = np.array([mix[a] for a in assets], dtype=np.float64)
    coll_asset = g.choice(len(assets), size=n, p=w / w.sum()).astype(np.int64)
    if settle not in assets:
        assets += (settle,)
    coll_asset[isolated] = assets.index(settle)
    marks = {i.name: Decimal(_ticks(float(prices[i.name]), i.tick_size)) * i.tick_size
             for i in insts}
    quanta = np.zeros(n, dtype=np.int64)
    value_settle = notional / lev  # in the settlement asset (quote) units
    settle_usd, _ = _asset_price(venue, settle, prices)
    valued: dict[str, Decimal] = {}
    for k, sym in enumerate(assets):
        sel = coll_asset == k
        if venue.assets[sym].valuation is not None:
            valued[sym] = _valued_start(venue, sym, spec.collateral_prices, prices, marks)
            price, market = float(valued[sym]), ""
        else:
            price, market = _asset_price(venue, sym, prices)
        if market and market not in marks:
            inst = venue.markets[market]
            marks[market] = Decimal(_ticks(price, inst.tick_size)) * inst.tick_size
        scale = settle_usd / price * 10 ** venue.assets[sym].decimals
        if sym in valued:
            # a valued asset takes one collateral tier (build_venue): post enough that its
            # margin value after the venue's haircut is the drawn collateral, so the
            # account starts at the leverage it drew instead of below maintenance (USDe at
            # weight 0.9 and 200x was liquidated while loading, before the run counted)
            weight = float(venue.assets[sym].collateral[0].weight)
            if weight <= 0:
                raise ValueError(f"collateral {sym} counts at weight 0 on {venue.name}: "
                                 "no amount of it can margin a position "
                                 "(population.collateral_mix)")
            scale /= weight
        quanta[sel] = np.ceil(value_settle[sel] * scale).astype(np.int64)
    width = len(str(n - 1))
    return Population(
        accounts=tuple(f"{spec.account_prefix}{i:0{width}d}" for i in range(n)),
        markets=tuple(i.name for i in insts), settle_asset=settle, collateral_assets=assets,
        collateral_asset=coll_asset, collateral_quanta=quanta, isolated=isolated,
        leverage=lev, pos_account=pos_acc, pos_market=pos_mkt,
        pos_lots=lots, entry_ticks=ticks, marks=marks, entry_fallbacks=fallbacks,
        holder_draw=holder_draw, collateral_prices=valued,
    )


def _history(spec: PopulationSpec, insts: list[Instrument],
             history: Mapping[str, EntryHistory] | None) -> tuple[EntryHistory, ...] | None:
    if spec.entry_history_ms is None or history is None:
        return None
    missing = [i.name for i in insts if i.name not in history]
    if missing:
        raise ValueError(f"entry history: no preceding bars for {', '.join(missing)}")
    out = tuple(history[i.name] for i in insts)
    if any(not np.array_equal(h.ts_ms, out[0].ts_ms) for h in out[1:]):
        raise ValueError("entry history: the markets' bars must share one time grid")
    return out


def _max_rates(insts: list[Instrument], top: Float64Array1D, base: Float64Array1D,
               pos_mkt: Int64Array1D) -> Float64Array1D:
    """Maintenance rate of each position at the largest notional it can reach.

    ``requirement(n) / n`` is non-decreasing in ``n`` for every margin model (tiers: the
    cumulative amounts keep it continuous and convex from 0), so this rate bounds the
    position's maintenance anywhere on the path. Evaluated once per distinct size (a
    draw-time loop over sizes, not an engine path).
    """
    rate = np.zeros(base.shape[0], dtype=np.float64)
    oi = float(np.sum(np.abs(base) * top[pos_mkt]))
    for m, inst in enumerate(insts):
        sel = np.flatnonzero(pos_mkt == m)
        sizes, inv = np.unique(np.abs(base[sel]), return_inverse=True)
        r = np.array([inst.margin.requirement(float(z) * float(top[m]), float(z), oi)[1]
                      / (float(z) * float(top[m])) for z in sizes.tolist()])
        rate[sel] = r[inv]
    return rate


def _path_entries(spec: PopulationSpec, insts: list[Instrument], px: Float64Array1D,
                  path: tuple[EntryHistory, ...], pos_acc: Int64Array1D,
                  pos_mkt: Int64Array1D, lots: Int64Array1D, lev: Float64Array1D,
                  g: np.random.Generator
                  ) -> tuple[Int64Array1D, Float64Array1D, Float64Array1D, int]:
    """Entries opened along the preceding bars, survivors only (module docstring, 5'-6').

    Returns the entry ticks, the leverage at entry, the notional at entry per account
    (collateral = notional / leverage) and the number of fallbacks to the first price.
    """
    n = spec.n_accounts
    lo = np.stack([h.low for h in path])
    hi = np.stack([h.high for h in path])
    nb = lo.shape[1]
    sufmin = np.minimum(np.minimum.accumulate(lo[:, ::-1], axis=1)[:, ::-1], px[:, None])
    sufmax = np.maximum(np.maximum.accumulate(hi[:, ::-1], axis=1)[:, ::-1], px[:, None])
    tick = np.array([float(i.tick_size) for i in insts])
    base = lots * np.array([float(i.lot_size * i.contract_size) for i in insts])[pos_mkt]
    rate = _max_rates(insts, np.maximum(hi.max(axis=1), px), base, pos_mkt)
    entry = np.zeros(lots.shape[0], dtype=np.float64)
    bar = np.zeros(n, dtype=np.int64)
    lev = lev.copy()
    todo = np.arange(n, dtype=np.int64)
    for attempt in range(REDRAWS + 1):
        if todo.shape[0] == 0:
            break
        bar[todo] = g.integers(0, nb, todo.shape[0])
        if attempt > 0:
            lev[todo] = _leverage(spec, todo.shape[0], g)
        redo = np.zeros(n, dtype=np.bool_)
        redo[todo] = True
        sel = np.flatnonzero(redo[pos_acc])
        pm, pj = pos_mkt[sel], bar[pos_acc[sel]]
        e = lo[pm, pj] + g.random(sel.shape[0]) * (hi[pm, pj] - lo[pm, pj])
        e = np.maximum(np.rint(e / tick[pm]), 1.0) * tick[pm]
        entry[sel] = e
        q = base[sel]
        worst = np.where(q > 0, sufmin[pm, pj], sufmax[pm, pj])
        low = q * (worst - e) - rate[sel] * np.abs(q) * worst
        coll = np.bincount(pos_acc[sel], weights=np.abs(q) * e, minlength=n) / lev
        slack = coll + np.bincount(pos_acc[sel], weights=low, minlength=n)
        todo = todo[slack[todo] <= 0]
    fallbacks = int(todo.shape[0])
    if fallbacks:
        redo = np.zeros(n, dtype=np.bool_)
        redo[todo] = True
        sel = np.flatnonzero(redo[pos_acc])
        pm = pos_mkt[sel]
        entry[sel] = np.maximum(np.rint(px[pm] / tick[pm]), 1.0) * tick[pm]
        n0 = np.bincount(pos_acc[sel], weights=np.abs(base[sel]) * entry[sel], minlength=n)
        mm0 = np.bincount(pos_acc[sel], weights=rate[sel] * np.abs(base[sel]) * entry[sel],
                          minlength=n)
        lev[todo] = np.minimum(lev[todo], 0.9 * n0[todo] / mm0[todo])
    ticks: Int64Array1D = np.maximum(np.rint(entry / tick[pos_mkt]), 1).astype(np.int64)
    notional: Float64Array1D = np.asarray(
        np.bincount(pos_acc, weights=np.abs(base) * entry, minlength=n), dtype=np.float64)
    return ticks, lev, notional, fallbacks


# ============================================================================ loading


def load_population(engine: Engine, pop: Population, *, set_marks: bool = True,
                    counterparty: str = STREET, id_prefix: str = "pop",
                    portfolio: Int64Array1D | None = None, ts_ms: int = 0) -> None:
    """Load a population into an engine: marks, cross accounts in bulk, the rest by event.

    1. With ``set_marks``, a ``Price`` event per entry of ``pop.marks`` (the margin of
       the loaded book is computed at these prices).
    2. Cross accounts through ``Engine.load_book`` (settlement-asset collateral and
       positions); ``counterparty`` takes the other side of every position.
    3. Other collateral (e.g. BTC) as ``Deposit`` events; before them, each collateral
       asset valued by rule (``pop.collateral_prices``) gets one ``OracleReport`` at its
       start price per book or index source of its rule, at ``ts_ms`` (the engine then
       values it by the venue's rule: later reports move it).
    4. Isolated accounts: ``AccountMode``, a ``Deposit`` of their collateral, then per
       position ``Engine.seed_position`` and ``Engine.transfer_isolated`` of a share of
       the collateral proportional to the position's notional at entry (the last
       position takes the remainder, so no quantum is lost).
    5. The cross accounts of ``portfolio`` (population indices; the engine needs a
       portfolio-margin grid): left out of the bulk load, each is switched to portfolio
       margin by an ``AccountMode`` event before it holds anything (the engine refuses a
       switch with open positions), then its collateral is deposited and its positions
       seeded (``Engine.seed_position``). The other accounts load as without it.

    Event ids are ``f"{id_prefix}:..."`` and must be new to the engine.
    """
    if set_marks:
        for market, price in pop.marks.items():
            engine.apply(Price(id=f"{id_prefix}:mark:{market}", market=market, price=price))
    arrays = pop.book_arrays(engine.book.market_index, exclude=portfolio)
    engine.load_book(arrays.accounts, arrays.asset, arrays.collateral_quanta,
                     arrays.pos_account, arrays.pos_market, arrays.pos_lots,
                     arrays.entry_ticks, counterparty=counterparty)
    for sym, start in pop.collateral_prices.items():
        rule = engine.venue.assets[sym].valuation
        assert rule is not None
        for src in rule.sources:
            if src.kind != "redemption":
                engine.apply(OracleReport(id=f"{id_prefix}:start:{sym}:{src.source}",
                                          source=src.source, price=start, ts_ms=ts_ms,
                                          asset=sym))
    settle = pop.collateral_assets.index(pop.settle_asset)
    pm = np.zeros(len(pop.accounts), dtype=np.bool_)
    if portfolio is not None:
        pm[portfolio] = True
        if (pm & pop.isolated).any():
            raise ValueError("portfolio: an isolated account cannot be portfolio-margined")
    other = np.flatnonzero(~pop.isolated & ~pm & (pop.collateral_asset != settle)
                           & (pop.collateral_quanta > 0))
    for i in other.tolist():
        sym = pop.collateral_assets[int(pop.collateral_asset[i])]
        _deposit(engine, f"{id_prefix}:dep:{pop.accounts[i]}", pop.accounts[i], sym,
                 int(pop.collateral_quanta[i]))
    for i in np.flatnonzero(pop.isolated).tolist():
        _load_isolated(engine, pop, i, id_prefix, counterparty)
    for i in np.flatnonzero(pm).tolist():
        _load_portfolio(engine, pop, i, id_prefix, counterparty)


def _deposit(engine: Engine, event_id: str, account: str, asset: str, quanta: int) -> None:
    amount = Decimal(quanta).scaleb(-engine.venue.assets[asset].decimals)
    engine.apply(Deposit(id=event_id, account=account, asset=asset, amount=amount))


def _load_portfolio(engine: Engine, pop: Population, i: int, id_prefix: str,
                    counterparty: str) -> None:
    name = pop.accounts[i]
    engine.apply(AccountMode(id=f"{id_prefix}:mode:{name}", account=name, mode="portfolio"))
    if int(pop.collateral_quanta[i]) > 0:
        _deposit(engine, f"{id_prefix}:dep:{name}", name,
                 pop.collateral_assets[int(pop.collateral_asset[i])],
                 int(pop.collateral_quanta[i]))
    for r in np.flatnonzero(pop.pos_account == i).tolist():
        inst = engine.venue.markets[pop.markets[int(pop.pos_market[r])]]
        engine.seed_position(name, inst.name, int(pop.pos_lots[r]) * inst.lot_size,
                             int(pop.entry_ticks[r]) * inst.tick_size,
                             counterparty=counterparty)


def _load_isolated(engine: Engine, pop: Population, i: int, id_prefix: str,
                   counterparty: str) -> None:
    name = pop.accounts[i]
    engine.apply(AccountMode(id=f"{id_prefix}:mode:{name}", account=name, mode="isolated"))
    total = int(pop.collateral_quanta[i])
    if total > 0:
        _deposit(engine, f"{id_prefix}:dep:{name}", name, pop.settle_asset, total)
    rows = np.flatnonzero(pop.pos_account == i)
    insts = [engine.venue.markets[pop.markets[int(pop.pos_market[r])]] for r in rows]
    weight = [abs(int(pop.pos_lots[r])) * int(pop.entry_ticks[r])
              * inst.lot_size * inst.tick_size for r, inst in zip(rows, insts, strict=True)]
    decimals = engine.venue.assets[pop.settle_asset].decimals
    left = total
    for k, (r, inst) in enumerate(zip(rows.tolist(), insts, strict=True)):
        size = int(pop.pos_lots[r]) * inst.lot_size
        entry = int(pop.entry_ticks[r]) * inst.tick_size
        engine.seed_position(name, inst.name, size, entry, counterparty=counterparty)
        share = left if k == len(insts) - 1 else int(total * weight[k] / sum(weight))
        left -= share
        if share > 0:
            engine.transfer_isolated(name, inst.name, Decimal(share).scaleb(-decimals))
