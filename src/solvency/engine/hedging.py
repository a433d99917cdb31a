"""Automated delta hedging of an account through the engine, and collateral rebalancing.

A :class:`Hedger` watches one account. Its net delta per underlying is

    net = perp delta (its positions in the engine's perpetuals and futures on that base)
        + option delta (an external :class:`~solvency.engine.option_book.OptionBook`)

in base units (coin), with Deribit's conventions: a linear contract counts
``contracts x contract_size``, an inverse one ``contracts x contract_size / F`` (its coin
value), an inverse option its net transaction delta. When ``|net - center|`` exceeds
``band_base``, the hedger emits a market ``order`` in the underlying's perpetual for
``hedge_ratio x (net - center)`` (back toward the band's center), rounded to the lot
grid, and sends it through :meth:`Engine.apply` for the pre-trade checks. It never trades
again on an underlying sooner than ``min_interval_ms`` after its last order there, on the
event clock (``now_ms`` passed in; there is no wall clock).

The engine checks orders but does not match them: the caller turns an accepted order into
a ``fill`` against a counterparty. :func:`fill_order` does that against a market maker's
account at the mark moved by ``slippage_rate`` with a taker fee of ``fee_rate``, and
returns the cost it charged, so a simulation can measure what hedging costs.

:func:`propose_rebalance` proposes collateral swaps toward a target mix of *weighted*
collateral value. It returns the swaps as data: the engine has no swap (convert) event
yet, so nothing is moved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from solvency.core.model.events import Fill
from solvency.core.model.instruments import Instrument
from solvency.engine.engine import Engine
from solvency.engine.feeds import EngineView
from solvency.engine.option_book import OptionBook
from solvency.engine.pretrade import Order

__all__ = [
    "HedgeConfig",
    "HedgeDecision",
    "HedgeFill",
    "Hedger",
    "RebalanceTransfer",
    "engine_collateral",
    "fill_order",
    "perp_delta",
    "propose_rebalance",
]

_DELTA_ONE = ("linear_perp", "inverse_perp", "linear_future")
"""Instrument kinds counted as delta-one (engine option markets are not, yet)."""


@dataclass(frozen=True, slots=True)
class HedgeConfig:
    """What and how to hedge.

    Attributes
    ----------
    account
        The engine account that holds the hedge (and, outside, the option book).
    perp_markets
        Hedge instrument per underlying, e.g. ``{"BTC": "BTC-PERP"}``.
    band_base
        Half-width of the no-trade band around ``center_base``, base units (>= 0).
    hedge_ratio
        Fraction of the excess ``net - center`` traded, in ``(0, 1]``.
    min_interval_ms
        Least event time between two orders on one underlying.
    center_base
        Target net delta, base units.
    """

    account: str
    perp_markets: Mapping[str, str]
    band_base: float
    hedge_ratio: float = 1.0
    min_interval_ms: int = 0
    center_base: float = 0.0

    def __post_init__(self) -> None:
        if not (self.band_base >= 0.0 and math.isfinite(self.band_base)):
            raise ValueError(f"band_base: {self.band_base} must be finite and >= 0")
        if not 0.0 < self.hedge_ratio <= 1.0:
            raise ValueError(f"hedge_ratio: {self.hedge_ratio} must be in (0, 1]")
        if self.min_interval_ms < 0:
            raise ValueError("min_interval_ms: must be >= 0")
        if not math.isfinite(self.center_base):
            raise ValueError("center_base: must be finite")


@dataclass(frozen=True, slots=True)
class HedgeDecision:
    """What the hedger saw and did for one underlying at one step.

    ``reason`` is ``"in_band"``, ``"interval"`` (too soon after the last order),
    ``"below_lot"`` (the order rounds to zero lots), ``"accepted"`` or the engine's
    rejection reason (e.g. ``insufficient_initial_margin``).
    """

    underlying: str
    perp_delta_base: float
    option_delta_base: float
    net_delta_base: float
    order: Order | None
    accepted: bool
    reason: str


@dataclass(frozen=True, slots=True)
class HedgeFill:
    """A fill made by :func:`fill_order` and what it cost the taker (settle asset)."""

    fill: Fill
    accepted: bool
    out: list[Any] = field(default_factory=list)
    fee_settle: Decimal = Decimal(0)
    slippage_settle: Decimal = Decimal(0)

    @property
    def cost_settle(self) -> Decimal:
        """Fee plus slippage against the mark, in the settlement asset."""
        return self.fee_settle + self.slippage_settle


def _instrument(engine: Engine, market: str) -> tuple[int, Instrument]:
    inst = engine.venue.resolve(market)
    if inst is None:
        raise ValueError(f"unknown market {market!r}")
    return engine.book.market_index[inst.name], inst


def _mark(engine: Engine, m: int) -> float:
    px = engine.book.marks[m]
    if px is None:
        raise ValueError(f"market {engine.book.market_names[m]} has no mark price")
    return float(px)


def perp_delta(engine: Engine, account: str, underlying: str) -> float:
    """Return the account's delta from the engine's perpetuals and futures on ``underlying``.

    Linear contracts count ``contracts x contract_size`` base units; inverse contracts
    (quote-valued) ``contracts x contract_size / mark``, their coin value, as Deribit's
    ``delta_total`` counts a future's "BTC position".
    """
    view = EngineView(engine, engine.feeds)
    total = 0.0
    for m, inst in enumerate(engine.book.instruments):
        if (inst.base != underlying or inst.kind not in _DELTA_ONE
                or engine.book.marks[m] is None):
            continue
        contracts = view.position(account, inst.name)
        if contracts:
            per = float(inst.contract_size)
            total += contracts * (per / _mark(engine, m) if inst.is_inverse else per)
    return total


class Hedger:
    """Keep an account's net delta per underlying inside a band (see module docstring).

    Parameters
    ----------
    config
        Account, hedge markets and band.
    options
        The account's external option book.
    """

    def __init__(self, config: HedgeConfig, options: OptionBook) -> None:
        self.config = config
        self.options = options
        self.last_order_ms: dict[str, int] = {}
        self.seq = 0

    def step(self, engine: Engine, *, vols: Mapping[str, float], now_ms: int,
             rate: float = 0.0) -> list[HedgeDecision]:
        """Look at every hedged underlying once; send the orders the band calls for.

        Parameters
        ----------
        engine
            The engine holding the account; the underlying price is the mark of the hedge
            market.
        vols
            Mark volatility per option market (per 1.00).
        now_ms
            Event time of this step (the orders carry it).
        rate
            Discount rate of the option valuation.

        Returns
        -------
        list of HedgeDecision
            One per underlying in ``config.perp_markets``, sorted by underlying.
        """
        cfg = self.config
        prices = {u: _mark(engine, _instrument(engine, mk)[0])
                  for u, mk in cfg.perp_markets.items()}
        option_delta = self.options.delta(prices, vols, now_ms, rate)
        decisions = []
        for u in sorted(cfg.perp_markets):
            perp = perp_delta(engine, cfg.account, u)
            opt = option_delta.get(u, 0.0)
            decisions.append(self._decide(engine, u, perp, opt, prices[u], now_ms))
        return decisions

    def _decide(self, engine: Engine, u: str, perp: float, opt: float, price: float,
                now_ms: int) -> HedgeDecision:
        cfg = self.config
        net = perp + opt
        excess = net - cfg.center_base
        if abs(excess) <= cfg.band_base:
            return HedgeDecision(u, perp, opt, net, None, False, "in_band")
        last = self.last_order_ms.get(u)
        if last is not None and now_ms - last < cfg.min_interval_ms:
            return HedgeDecision(u, perp, opt, net, None, False, "interval")
        _, inst = _instrument(engine, cfg.perp_markets[u])
        per_contract = float(inst.contract_size) / price if inst.is_inverse else float(
            inst.contract_size)
        contracts = Decimal(repr(abs(excess) * cfg.hedge_ratio / per_contract))
        size = (contracts / inst.lot_size).quantize(Decimal(1), ROUND_HALF_EVEN) * inst.lot_size
        if size == 0:
            return HedgeDecision(u, perp, opt, net, None, False, "below_lot")
        self.seq += 1
        order = Order(id=f"hedge:{cfg.account}:{u}:{self.seq}", account=cfg.account,
                      market=inst.name, side="sell" if excess > 0 else "buy", size=size,
                      ts_ms=now_ms)
        self.last_order_ms[u] = now_ms
        answer = [o for o in engine.apply(order) if getattr(o, "event", None) == order.id]
        reason = str(getattr(answer[0], "reason", "")) if answer else "no_answer"
        status = str(getattr(answer[0], "status", "rejected")) if answer else "rejected"
        accepted = status == "accepted"
        return HedgeDecision(u, perp, opt, net, order, accepted,
                             "accepted" if accepted else reason)


def fill_order(engine: Engine, order: Order, *, counterparty: str, fee_rate: float,
               slippage_rate: float) -> HedgeFill:
    """Fill an accepted order against ``counterparty`` at the mark plus slippage, with a fee.

    The fill price is the mark moved against the taker by ``slippage_rate`` and rounded
    to the tick away from the taker (buys up, sells down). The taker pays
    ``fee_rate x notional`` in the settlement asset, rounded up to its quantum; the
    counterparty pays no fee. Slippage cost is ``|price - mark| x contracts x
    contract_size`` for linear markets and ``contracts x contract_size x |1/mark -
    1/price|`` (coin) for inverse ones.

    Parameters
    ----------
    engine
        The engine (the fill goes through :meth:`Engine.apply`).
    order
        The accepted order (its ``ts_ms`` stamps the fill).
    counterparty
        The market maker's account (it needs collateral for its side).
    fee_rate, slippage_rate
        Taker fee and slippage as fractions (e.g. ``0.0005`` for 5 bps).

    Returns
    -------
    HedgeFill
        The fill, whether the engine applied it, its out-events and the taker's cost.
    """
    m, inst = _instrument(engine, order.market)
    mark = engine.book.marks[m]
    if mark is None:
        raise ValueError(f"market {inst.name} has no mark price")
    buy = order.side == "buy"
    raw = mark * (1 + Decimal(repr(slippage_rate)) * (1 if buy else -1))
    price = (raw / inst.tick_size).quantize(
        Decimal(1), ROUND_CEILING if buy else ROUND_FLOOR) * inst.tick_size
    if price <= 0:
        price = inst.tick_size
    units = order.size * inst.contract_size
    if inst.is_inverse:
        notional = units / price
        slip = units * abs(1 / mark - 1 / price)
    else:
        notional = units * price
        slip = units * abs(price - mark)
    quantum = engine.venue.assets[inst.settle].quantum
    fee = (notional * Decimal(repr(fee_rate)) / quantum).quantize(
        Decimal(1), ROUND_CEILING) * quantum
    buyer, seller = (order.account, counterparty) if buy else (counterparty, order.account)
    fill = Fill(id=f"fill:{order.id}", market=inst.name, buyer=buyer, seller=seller,
                size=order.size, price=price, fee_buyer=fee if buy else Decimal(0),
                fee_seller=Decimal(0) if buy else fee, ts_ms=order.ts_ms)
    out = engine.apply(fill)
    rejected = any(o.type == "rejected" and getattr(o, "event", None) == fill.id for o in out)
    if rejected:
        return HedgeFill(fill, False, out)
    return HedgeFill(fill, True, out, fee, slip)


# ---------------------------------------------------------------- collateral


@dataclass(frozen=True, slots=True)
class RebalanceTransfer:
    """A proposed swap of collateral (the engine has no swap event: data only)."""

    from_asset: str
    to_asset: str
    amount_from: float
    amount_to: float
    value_usd: float


def engine_collateral(engine: Engine, account: str) -> tuple[
        dict[str, float], dict[str, float], dict[str, float]]:
    """Read an account's balances, USD prices and effective collateral weights.

    The effective weight of an asset is its weighted value over its value under the
    venue's tiered weights (the first tier's weight for an empty balance).

    Returns
    -------
    tuple of dict
        ``(balances, prices_usd, weights)`` keyed by asset symbol; assets without a USD
        price yet are left out.
    """
    book = engine.book
    balances, prices, weights = {}, {}, {}
    for a, sym in enumerate(book.asset_names):
        px = float(book.asset_price[a])
        if math.isnan(px):
            continue
        q = engine.ledger.balance(f"u:{account}", sym) / book.asset_scale[a]
        asset = engine.venue.assets[sym]
        value = max(q, 0.0) * px
        weighted = 0.0
        tiers = list(asset.collateral)
        for i, tier in enumerate(tiers):
            hi = float(tiers[i + 1].floor_usd) if i + 1 < len(tiers) else math.inf
            lo = float(tier.floor_usd)
            weighted += max(min(value, hi) - lo, 0.0) * float(tier.weight)
        balances[sym] = float(q)
        prices[sym] = px
        weights[sym] = weighted / value if value > 0 else float(tiers[0].weight)
    return balances, prices, weights


def propose_rebalance(*, balances: Mapping[str, float], prices_usd: Mapping[str, float],
                      weights: Mapping[str, float], target: Mapping[str, float],
                      tolerance: float) -> list[RebalanceTransfer]:
    """Propose swaps that bring the weighted collateral mix to ``target``.

    With value ``v_i = balance_i x price_i``, weighted value ``w_i v_i`` and weighted
    shares ``s_i = w_i v_i / sum_j w_j v_j``: nothing is proposed while
    ``max_i |s_i - target_i| <= tolerance``. Otherwise the mix that meets the target and
    keeps the market value ``V = sum v_i`` (swaps at the price, no cost) is
    ``v'_i = target_i W' / w_i`` with ``W' = V / sum_i target_i / w_i``, and the
    differences are paired greedily (assets sold and bought in name order).

    Parameters
    ----------
    balances, prices_usd, weights
        Per asset: units held (negative balances are liabilities: left out of the mix),
        USD price (> 0), collateral weight in ``[0, 1]``.
    target
        Weighted-value share per asset, >= 0, summing to 1; an asset with a positive
        target needs a positive weight.
    tolerance
        Allowed drift of any share (0..1).

    Returns
    -------
    list of RebalanceTransfer
        The swaps (empty when the mix is within tolerance).

    Raises
    ------
    ValueError
        On a target that does not sum to 1, an unknown or unpriced asset, or a positive
        target on a zero-weight asset.
    """
    if abs(sum(target.values()) - 1.0) > 1e-9 or any(t < 0 for t in target.values()):
        raise ValueError("target: shares must be >= 0 and sum to 1")
    assets = sorted(set(balances) | set(target))
    for a in assets:
        if not (prices_usd.get(a, 0.0) > 0.0) or not 0.0 <= weights.get(a, -1.0) <= 1.0:
            raise ValueError(f"{a}: needs a positive USD price and a weight in [0, 1]")
        if target.get(a, 0.0) > 0.0 and weights[a] == 0.0:
            raise ValueError(f"target.{a}: a zero-weight asset cannot hold weighted value")
    value = {a: max(balances.get(a, 0.0), 0.0) * prices_usd[a] for a in assets}
    weighted_total = sum(weights[a] * value[a] for a in assets)
    if weighted_total <= 0.0:
        return []
    drift = max(abs(weights[a] * value[a] / weighted_total - target.get(a, 0.0))
                for a in assets)
    if drift <= tolerance:
        return []
    w_new = sum(value.values()) / sum(target[a] / weights[a] for a in target if target[a] > 0)
    diff = {a: target.get(a, 0.0) * w_new / weights[a] - value[a] if target.get(a, 0.0) > 0
            else -value[a] for a in assets}
    return _pair(diff, prices_usd)


def _pair(diff: Mapping[str, float], prices_usd: Mapping[str, float]) -> list[RebalanceTransfer]:
    sells = [(a, -d) for a, d in sorted(diff.items()) if d < 0.0]
    buys = [(a, d) for a, d in sorted(diff.items()) if d > 0.0]
    out: list[RebalanceTransfer] = []
    i = j = 0
    left_sell = sells[0][1] if sells else 0.0
    left_buy = buys[0][1] if buys else 0.0
    while i < len(sells) and j < len(buys):
        usd = min(left_sell, left_buy)
        src, dst = sells[i][0], buys[j][0]
        out.append(RebalanceTransfer(src, dst, usd / prices_usd[src], usd / prices_usd[dst],
                                     usd))
        left_sell -= usd
        left_buy -= usd
        # a remainder below 1e-12 of the amount is float noise, not a transfer
        if left_sell <= 1e-12 * usd:
            i += 1
            left_sell = sells[i][1] if i < len(sells) else 0.0
        if left_buy <= 1e-12 * usd:
            j += 1
            left_buy = buys[j][1] if j < len(buys) else 0.0
    return out
