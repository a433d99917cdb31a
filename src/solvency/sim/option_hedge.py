"""Re-hedging the stress lab's option writers during a run (``[population.options.hedge]``).

Every ``interval`` of event time (on the steps' clock, after the step's marks), each
writer's net delta in the underlying, in base units (coin), is

    net = sum over its option positions of q x delta_s  +  its perp position (base)

with ``q`` its signed contracts of series ``s`` as the engine's book holds them now (a
liquidated series is gone) and ``delta_s`` Black-76's ``N(d1)`` (call) or ``N(d1) - 1``
(put) at the underlying's mark, the series' current mark vol and its time to expiry
(ACT/365, rate 0; the same central difference of the engine's deterministic premium as
the opening hedge, :func:`solvency.sim.option_holders.draw_option_holders`). A writer
whose ``|net|`` exceeds its band, ``max(band_base, band_share x |option delta|)``, trades
``round_half_even(hedge_ratio x |net| / lot)`` lots of the perp against ``net`` (the
rules of :class:`solvency.engine.hedging.Hedger`: band, ratio, half-even lots, centre 0).

Each hedge is a market order through ``Engine.apply`` (the venue's pre-trade checks), then
a fill against the book's makers (the engine's ``__market__`` row, the counterparty of the
lab's arbitrageur and liquidations) at the volume-weighted price of the slices the
liquidity model quotes for its size (:meth:`ImpactLiquidity.peek`), rounded against the
writer to the tick, with a taker fee of ``fee_taker_ppm`` of its notional (rounded up to
the quantum). The fill goes through ``Engine.apply`` too, whose initial-margin check of
both sides applies; a refused order or fill is counted by its reason, never forced. An
executed hedge moves the book (:meth:`ImpactLiquidity.record_flow`) as every other flow.
Slippage is ``|price - mark| x contracts`` against the underlying's mark.

Why not one :class:`~solvency.engine.hedging.Hedger` per writer: that class values an
external option book per account in Python and reads one account's positions at a time;
a run has hundreds to thousands of writers and few series, so the deltas are computed once
per series and the net deltas in one pass over the book's position arrays. Only the writers
that trade are visited one by one (each trade is an event the engine must apply).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Final

import numpy as np

from solvency.core.margin.kernels import S_LOTS, S_MARKET, S_ROW
from solvency.core.model.events import Deposit, Fill
from solvency.core.typing import Float64Array1D, Int64Array1D
from solvency.engine.engine import Engine
from solvency.engine.liquidation import MARKET
from solvency.engine.pretrade import Order
from solvency.sim.market import ImpactLiquidity

__all__ = ["OptionHedgeSpec", "OptionHedger", "series_deltas"]

MS_PER_YEAR: Final = 365 * 86_400_000
PPM: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class OptionHedgeSpec:
    """``[population.options.hedge]``: how the writers re-hedge during the run.

    Attributes
    ----------
    interval_ms : int
        Event time between two re-hedges (> 0); the first comes one interval after the
        start.
    band_base : float
        No-trade band, base units (>= 0).
    band_share : float
        No-trade band as a share of the writer's option delta ``|sum q x delta|``, in
        [0, 1]; the band is the larger of the two.
    hedge_ratio : float
        Share of the net delta traded, in (0, 1].
    fee_taker_ppm : int
        Taker fee of a hedge, ppm of its notional (Deribit's BTC perpetual: 500 ppm,
        0.05 %, https://www.deribit.com/kb/fees; the preset carries no fees).
    maker_capital : float
        Collateral the book's makers (``__market__``) post for the hedges they take, in
        the settlement asset (>= 0; deposited when the hedger starts). With 0 the makers
        take a hedge only where it reduces what they hold, as the lab's arbitrageur.
    source : str
        Where these values come from ("assumed" unless the file says otherwise).
    """

    interval_ms: int
    band_base: float = 0.0
    band_share: float = 0.0
    hedge_ratio: float = 1.0
    fee_taker_ppm: int = 500
    maker_capital: float = 0.0
    source: str = "assumed"

    def __post_init__(self) -> None:
        checks = (
            ("interval", self.interval_ms > 0, "must be > 0"),
            ("band_base", 0.0 <= self.band_base < float("inf"), "must be finite and >= 0"),
            ("band_share", 0.0 <= self.band_share <= 1.0, "must be in [0, 1]"),
            ("hedge_ratio", 0.0 < self.hedge_ratio <= 1.0, "must be in (0, 1]"),
            ("fee_taker_ppm", 0 <= self.fee_taker_ppm <= 100_000, "must be in [0, 100000]"),
            ("maker_capital", 0.0 <= self.maker_capital < 1e15, "must be in [0, 1e15)"),
        )
        for key, ok, why in checks:
            if not ok:
                raise ValueError(f"hedge.{key}: {why}")


def series_deltas(f: float, strikes: Float64Array1D, t_yr: Float64Array1D, iv: float,
                  calls: np.ndarray, premium_delta: Callable[..., tuple[float, float]]
                  ) -> Float64Array1D:
    """Black-76 delta of each series at forward ``f`` (a loop over the few series)."""
    out = np.zeros(strikes.shape[0], dtype=np.float64)
    for j in range(strikes.shape[0]):
        if t_yr[j] > 0.0:
            out[j] = premium_delta(f, float(strikes[j]), float(t_yr[j]), iv,
                                   bool(calls[j]))[1]
    return out


class OptionHedger:
    """Re-hedges every writer of an option book at each interval (module docstring).

    ``apply`` is the run's path for agents' events (``Agents.apply``); ``book`` the
    liquidity model of the run; ``names`` the writers' account names.
    """

    def __init__(self, spec: OptionHedgeSpec, engine: Engine, book: ImpactLiquidity, *,
                 underlying: str, series: Sequence[Any], names: Sequence[str],
                 start_ms: int, apply: Callable[[Any], list[Any]]) -> None:
        from solvency.sim.option_holders import _premium_delta  # the opening's delta

        self.spec = spec
        self.engine = engine
        self.liq = book
        self.apply = apply
        self.underlying = underlying
        self.names = tuple(names)
        self._delta = _premium_delta
        b = engine.book
        engine.system_row(MARKET)
        self.m_under = b.market_index[underlying]
        self.inst = engine.venue.markets[underlying]
        self.lot_base = float(self.inst.lot_size * self.inst.contract_size)
        self.rows: Int64Array1D = np.array([b.row_index[n] for n in names], dtype=np.int64)
        self.series_m = np.array([b.market_index[s.name] for s in series], dtype=np.int64)
        self.series_lot_base = np.array(
            [float(engine.venue.markets[s.name].lot_size
                   * engine.venue.markets[s.name].contract_size) for s in series])
        self.strikes = np.array([float(s.strike) for s in series], dtype=np.float64)
        self.expiry_ms = np.array([s.expiry_ms for s in series], dtype=np.int64)
        self.calls = np.array([s.kind == "call" for s in series], dtype=bool)
        self.next_ms = start_ms + spec.interval_ms
        self.settle = str(self.inst.settle)
        self.quantum = engine.venue.assets[self.settle].quantum
        self.trades = 0
        self.contracts = 0.0  # base units (coin) traded
        self.notional = 0.0
        self.slippage = Decimal(0)
        self.fees = Decimal(0)
        self.refused: Counter[str] = Counter()
        self.rounds = 0
        self.sides: dict[str, int] = {}  # the perp side of writers that traded
        if spec.maker_capital > 0:
            amount = Decimal(repr(spec.maker_capital)).quantize(self.quantum, ROUND_FLOOR)
            apply(Deposit(id="hedge:makers:capital", account=MARKET, asset=self.settle,
                          amount=amount))

    # ------------------------------------------------------------------ deltas

    def net_deltas(self, iv: float, now_ms: int) -> tuple[Float64Array1D, Float64Array1D]:
        """Each writer's net and option delta (base units), one pass over the book."""
        b = self.engine.book
        st = b.st[: b.n_slots]
        st = st[st[:, S_ROW] >= 0]
        size = int(max(int(self.rows.max()), int(st[:, S_ROW].max(initial=0)))) + 1
        writer_of = np.full(size, -1, dtype=np.int64)
        writer_of[self.rows] = np.arange(self.rows.shape[0], dtype=np.int64)
        w = writer_of[st[:, S_ROW]]
        st, w = st[w >= 0], w[w >= 0]
        mark = b.marks[self.m_under]
        f = float(mark) if mark is not None else 0.0
        t_yr = (self.expiry_ms - now_ms) / MS_PER_YEAR
        delta = series_deltas(f, self.strikes, t_yr, iv, self.calls, self._delta)
        n_m = max(int(st[:, S_MARKET].max(initial=0)), int(self.series_m.max())) + 1
        per_lot = np.zeros(n_m, dtype=np.float64)
        per_lot[self.series_m] = self.series_lot_base * delta
        lots = st[:, S_LOTS].astype(np.float64)
        markets = st[:, S_MARKET]
        n_w = self.rows.shape[0]
        opt: Float64Array1D = np.bincount(w, weights=lots * per_lot[markets],
                                          minlength=n_w).astype(np.float64)
        perp: Float64Array1D = np.bincount(
            w, weights=np.where(markets == self.m_under, lots, 0.0),
            minlength=n_w).astype(np.float64) * self.lot_base
        return opt + perp, opt

    def orders(self, iv: float, now_ms: int) -> Int64Array1D:
        """Signed perp lots each writer trades now (0: in its band or below one lot)."""
        net, opt = self.net_deltas(iv, now_ms)
        band = np.maximum(self.spec.band_base, self.spec.band_share * np.abs(opt))
        lots = np.rint(self.spec.hedge_ratio * np.abs(net) / self.lot_base)  # half even
        lots = np.where(np.abs(net) > band, lots, 0.0).astype(np.int64)
        return -np.sign(net).astype(np.int64) * lots

    # ------------------------------------------------------------------ trading

    def step(self, iv: float, now_ms: int) -> list[Any]:
        """Re-hedge when an interval has passed; return the out-events."""
        if now_ms < self.next_ms:
            return []
        while self.next_ms <= now_ms:
            self.next_ms += self.spec.interval_ms
        self.rounds += 1
        want = self.orders(iv, now_ms)
        out: list[Any] = []
        for i in np.flatnonzero(want).tolist():  # only the writers that trade
            out.extend(self._hedge(self.names[i], int(want[i]), now_ms))
        return out

    def _price(self, lots: int) -> tuple[int, Decimal, Decimal] | None:
        """Executed lots, fill price (VWAP rounded against the taker) and the mark."""
        mark = self.engine.book.marks[self.m_under]
        assert mark is not None
        tick = self.inst.tick_size
        buy = lots > 0
        if self.underlying not in self.liq.specs:
            return abs(lots), mark, mark  # no book modelled: at the mark
        slices = self.liq.peek(self.underlying, lots, mark, tick)
        done = sum(s.lots for s in slices)
        if done == 0:
            return None
        vwap = sum((s.lots * s.price for s in slices), Decimal(0)) / done
        price = (vwap / tick).to_integral_value(ROUND_CEILING if buy else ROUND_FLOOR) * tick
        return done, price, mark

    def _hedge(self, name: str, lots: int, now_ms: int) -> list[Any]:
        inst = self.inst
        buy = lots > 0
        oid = f"hedge:{now_ms}:{name}"
        order = Order(id=oid, account=name, market=self.underlying,
                      side="buy" if buy else "sell", size=abs(lots) * inst.lot_size,
                      ts_ms=now_ms)
        res = self.apply(order)
        answer = [o for o in res if getattr(o, "event", None) == oid]
        if not answer or getattr(answer[0], "status", "") != "accepted":
            self.refused[str(getattr(answer[0], "reason", "no_answer")) if answer
                         else "no_answer"] += 1
            return res
        priced = self._price(lots)
        if priced is None:
            self.refused["no_liquidity"] += 1
            return res
        done, price, mark = priced
        units = done * inst.lot_size * inst.contract_size
        fee = (units * price * self.spec.fee_taker_ppm / PPM / self.quantum).to_integral_value(
            ROUND_CEILING) * self.quantum
        buyer, seller = (name, MARKET) if buy else (MARKET, name)
        fill = Fill(id=f"{oid}:fill", market=self.underlying, buyer=buyer, seller=seller,
                    size=done * inst.lot_size, price=price,
                    fee_buyer=fee if buy else Decimal(0),
                    fee_seller=Decimal(0) if buy else fee, ts_ms=now_ms)
        out = self.apply(fill)
        rej = self._rejected(out, fill.id)
        if rej is not None and rej[1]:
            # the makers' equity does not carry a larger position: they take only what
            # they hold on the other side (a trade that reduces theirs is not refused)
            b = self.engine.book
            s = b.slot_of(b.row_index[MARKET], self.m_under)
            held = int(b.slot_lots[s]) if s >= 0 else 0
            done = min(done, held if buy else -held)
            if done > 0:
                units = done * inst.lot_size * inst.contract_size
                fee = (units * price * self.spec.fee_taker_ppm / PPM
                       / self.quantum).to_integral_value(ROUND_CEILING) * self.quantum
                fill = replace(fill, id=f"{oid}:held", size=done * inst.lot_size,
                               fee_buyer=fee if buy else Decimal(0),
                               fee_seller=Decimal(0) if buy else fee)
                out = out + self.apply(fill)
                rej = self._rejected(out, fill.id)
        if rej is not None:
            self.refused[rej[0]] += 1
            return res + out
        if self.underlying in self.liq.specs:
            base = done * self.lot_base
            self.liq.record_flow(self.underlying, base if buy else -base)
        self.trades += 1
        self.contracts += float(units)
        self.notional += float(units * price)
        self.slippage += units * abs(price - mark)
        self.fees += fee
        b = self.engine.book
        s = b.slot_of(b.row_index[name], self.m_under)
        self.sides[name] = int(np.sign(b.slot_lots[s])) if s >= 0 else 0
        return res + out

    @staticmethod
    def _rejected(out: Sequence[Any], fill_id: str) -> tuple[str, bool] | None:
        """The fill's rejection (``makers_`` before the reason when the makers' side
        was refused) and whether it was theirs; None when it was applied."""
        rej = [o for o in out if o.type == "rejected" and getattr(o, "event", None) == fill_id]
        if not rej:
            return None
        makers = str(getattr(rej[0], "detail", "")).startswith(MARKET)
        return ("makers_" if makers else "") + str(getattr(rej[0], "reason", "")), makers

    def metrics(self) -> dict[str, Any]:
        """The re-hedging's metrics (docs/stress_lab.md, "Option holders")."""
        return {
            "interval_ms": self.spec.interval_ms, "rounds": self.rounds,
            "trades": self.trades, "contracts": self.contracts, "notional": self.notional,
            "cost_slippage": float(self.slippage), "cost_fees": float(self.fees),
            "cost": float(self.slippage + self.fees),
            "refused": sum(self.refused.values()),
            "refused_reasons": dict(sorted(self.refused.items())),
            "source": self.spec.source,
        }
