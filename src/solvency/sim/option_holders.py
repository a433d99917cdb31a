"""Option holders in the stress lab: a share of accounts short listed options, hedged.

A scenario's ``[population.options]`` table (docs/stress_lab.md, "Option holders") lists
option series on one of the path's markets (the *underlying*, a linear perp): strikes at
``S0 x (1 + m)`` for each moneyness ``m`` (``S0`` the underlying's first mark, rounded
half-even to the underlying's tick), each of ``kinds`` (call, put) and each expiry
(``start + d`` for each duration ``d``). The run lists them on the venue as option markets
(:func:`option_market_entries`: cash-settled in the underlying's settlement asset, the
venue's option margin rule: the settings of the venue's own option market on the same
coin and quote where it has one, else Deribit's standard rule).

How the holders are drawn (:func:`draw_option_holders`)
-------------------------------------------------------
1. **Who.** A cross account of the population is a holder when the uniform the population
   drew for it (``Population.holder_draw``) is below ``holder_fraction``: the same draw
   with or without options, so the perp book is the same book.
2. **Sizes.** Each series' open interest (``open_interest_base`` contracts of one coin,
   rounded to the series' lots half-even) is split over the holders by the population's
   size weights (Pareto or lognormal, one lot at least each, largest remainder): every
   holder writes every series, so each is short a strip of calls and puts.
3. **Entries.** Every series opens at its Black-76 premium at ``S0``, the opening vol and
   the time to expiry (the engine's deterministic premium, ACT/365, rate 0), rounded
   half-even to the series' tick (one tick at least); the venue's street account is long.
4. **Hedge.** Each holder buys (sells) the underlying perp at ``S0`` for the options'
   delta: ``round_half_even(sum over series of delta_s x q_s / lot)`` lots with ``q_s``
   its signed contracts and ``delta_s`` Black-76's ``N(d1)`` (call) or ``N(d1) - 1``
   (put) at the opening, so the strip is delta-neutral at the start to one lot.
5. **Collateral.** Each holder deposits ``margin_multiple`` times its options' initial
   margin under the venue's rule at the opening (rounded up to the quantum) on top of the
   collateral its perp book drew.

During a run (:class:`OptionVols`) the options' mark vol is ``min(vol_max, max(vol,
vol_realized_multiple x RV))`` (``RV`` the underlying's rolling realized volatility, the
same series the liquidity model reads), rounded half-even to 4 decimals and sent as a
``vol`` event before the underlying's mark whenever it changes; the engine re-prices the
options on every mark of the underlying and at every clock step (time decay), margins
their holders by the venue's rule and liquidates them like any position: through the
liquidity port when ``[population.options.liquidity]`` gives the options a book, else by
the insurance fund, the backstop or ADL as the venue's waterfall says. Every step works
on arrays or on the few option series; nothing loops over holders.

With ``margin = "portfolio"`` the holders are portfolio-margined: the run's engine gets
the grid (``pm_grid``), :func:`~solvency.sim.population.load_population` loads them one
event at a time in portfolio mode instead of in bulk, and the engine margins each
holder's whole book (options and perp) by the grid's worst-scenario loss at every
valuation. Every draw above is the same in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final, Literal

import numpy as np

from solvency.core.margin.kernels import S_LOTS, S_MARKET, S_ROW
from solvency.core.model.events import Deposit, OutEvent, Price, Vol
from solvency.core.model.instruments import Instrument
from solvency.core.model.venue import Venue
from solvency.core.options.black76 import black76_premium_deterministic
from solvency.core.options.margin import option_margin
from solvency.core.portfolio import ScenarioGrid
from solvency.core.typing import Float64Array1D, Int64Array1D
from solvency.engine.engine import STREET, Engine
from solvency.engine.options import option_params
from solvency.sim.option_hedge import OptionHedgeSpec
from solvency.sim.population import Population, split_lots

__all__ = [
    "OptionHolders",
    "OptionHoldersSpec",
    "OptionSeries",
    "OptionVols",
    "OptionWatch",
    "draw_option_holders",
    "holder_sides",
    "load_option_holders",
    "option_market_entries",
    "option_series",
]

MS_PER_YEAR: Final = 365 * 86_400_000
_MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                  "NOV", "DEC")
_LISTING_KEYS: Final = frozenset({"kind", "option_kind", "strike", "underlying", "expiry",
                                  "base", "quote", "aliases", "tick_size", "lot_size",
                                  "contract_size"})
OptionKindName = Literal["call", "put"]


@dataclass(frozen=True, slots=True)
class OptionHoldersSpec:
    """``[population.options]``: the option series and the accounts that write them.

    Attributes
    ----------
    underlying : str
        The path's market the options are on (a linear perp of the scenario).
    holder_fraction : float
        Share of the population's cross accounts that write options, in (0, 1].
    open_interest_base : float
        Contracts of one coin written per series, in total over the holders (> 0).
    moneyness : tuple of float
        Strikes at ``S0 x (1 + m)``, each ``m`` in (-1, 1).
    kinds : tuple of {"call", "put"}
        Option kinds listed at each strike.
    expiries_ms : tuple of int
        Expiries after the scenario's start (each after the run's end).
    vol : float
        Mark implied volatility at the opening and its floor during the run, in
        [0.0001, 10] (marks carry it at 4 decimals).
    vol_realized_multiple : float
        With ``> 0``, the mark vol is ``min(vol_max, max(vol, multiple x realized
        vol))``; 0: constant.
    vol_max : float
        The mark vol's cap (>= ``vol``).
    vol_source : str
        Where ``vol`` comes from ("assumed" unless the file says otherwise).
    margin_multiple : float
        Collateral each holder posts for its options, in multiples of their initial
        margin at the opening (>= 1).
    tick_size, lot_size : Decimal or None
        The series' grids (default: the venue's option market on the same coin, else
        the underlying's).
    liquidity : Mapping or None
        A ``[liquidity.X]`` table for every series (the options' book), or None.
    hedge : OptionHedgeSpec or None
        ``[population.options.hedge]``: re-hedging during the run
        (:mod:`solvency.sim.option_hedge`); None: the opening hedge only.
    margin : {"standard", "portfolio"}
        How the writers are margined: the venue's per-position rules, or the
        portfolio-margin scenario grid ``pm_grid`` over each writer's whole book (perp
        and options; :func:`load_option_holders` with ``portfolio``).
    pm_grid : ScenarioGrid or None
        The grid of ``margin = "portfolio"`` (None with "standard").
    """

    underlying: str
    holder_fraction: float
    open_interest_base: float
    moneyness: tuple[float, ...] = (-0.1, 0.0, 0.1)
    kinds: tuple[OptionKindName, ...] = ("call", "put")
    expiries_ms: tuple[int, ...] = (7 * 86_400_000,)
    vol: float = 0.8
    vol_realized_multiple: float = 0.0
    vol_max: float = 3.0
    vol_source: str = "assumed"
    margin_multiple: float = 1.5
    tick_size: Decimal | None = None
    lot_size: Decimal | None = None
    liquidity: Mapping[str, Any] | None = field(default=None)
    hedge: OptionHedgeSpec | None = None
    margin: Literal["standard", "portfolio"] = "standard"
    pm_grid: ScenarioGrid | None = None

    def __post_init__(self) -> None:
        checks = (
            ("holder_fraction", 0.0 < self.holder_fraction <= 1.0, "must be in (0, 1]"),
            ("open_interest_base", self.open_interest_base > 0, "must be > 0"),
            ("moneyness", bool(self.moneyness) and all(-1 < m < 1 for m in self.moneyness)
             and len(set(self.moneyness)) == len(self.moneyness),
             "must list distinct values in (-1, 1)"),
            ("kinds", bool(self.kinds) and len(set(self.kinds)) == len(self.kinds),
             "must list call and/or put once each"),
            ("expiries", bool(self.expiries_ms) and all(e > 0 for e in self.expiries_ms)
             and len(set(self.expiries_ms)) == len(self.expiries_ms),
             "must list distinct positive durations"),
            # marks carry the vol at 4 decimals (_vol_decimal): below 0.0001 it is 0
            ("vol", 0.0001 <= self.vol <= 10.0, "must be in [0.0001, 10]"),
            ("vol_realized_multiple", 0.0 <= self.vol_realized_multiple <= 10.0,
             "must be in [0, 10]"),
            ("vol_max", self.vol <= self.vol_max <= 10.0, "must be in [vol, 10]"),
            ("margin_multiple", 1.0 <= self.margin_multiple <= 100.0, "must be in [1, 100]"),
            ("tick_size", self.tick_size is None
             or (self.tick_size.is_finite() and self.tick_size > 0),
             "must be a finite number > 0"),
            ("lot_size", self.lot_size is None
             or (self.lot_size.is_finite() and self.lot_size > 0),
             "must be a finite number > 0"),
            ("margin", self.margin in ("standard", "portfolio"),
             "must be \"standard\" or \"portfolio\""),
            ("pm_grid", (self.pm_grid is None) == (self.margin == "standard"),
             "a grid with margin = \"portfolio\" and only then"),
        )
        for key, ok, why in checks:
            if not ok:
                raise ValueError(f"{key}: {why}")


@dataclass(frozen=True, slots=True)
class OptionSeries:
    """One listed option: its market name, kind, strike and expiry (epoch ms)."""

    name: str
    kind: OptionKindName
    strike: Decimal
    expiry_ms: int


def _expiry_code(ms: int) -> str:
    d = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return f"{d.day}{_MONTHS[d.month - 1]}{d.year % 100:02d}"


def option_series(spec: OptionHoldersSpec, underlying: Instrument, s0: Decimal,
                  start_ms: int) -> tuple[OptionSeries, ...]:
    """Return the listed series: each expiry, strike (``S0 x (1 + m)`` rounded half-even
    to the underlying's tick) and kind, named ``BASE_QUOTE-DMMMYY-STRIKE-C|P``.

    Raises
    ------
    ValueError
        If two moneyness values round to one strike.
    """
    tick = underlying.tick_size
    strikes = [((s0 * (1 + Decimal(repr(m)))) / tick).to_integral_value(ROUND_HALF_EVEN)
               * tick for m in spec.moneyness]
    if len(set(strikes)) != len(strikes):
        raise ValueError("moneyness: two values give one strike at the first mark")
    out = []
    for dt in spec.expiries_ms:
        exp = start_ms + dt
        for k in strikes:
            for kind in spec.kinds:
                name = (f"{underlying.base}_{underlying.quote}-{_expiry_code(exp)}-"
                        f"{k.normalize():f}-{'C' if kind == 'call' else 'P'}")
                out.append(OptionSeries(name, kind, k.normalize(), exp))
    return tuple(out)


def _template(venue_data: Mapping[str, Any], underlying: Instrument) -> dict[str, Any]:
    for entry in venue_data.get("markets", {}).values():
        if (isinstance(entry, Mapping) and entry.get("kind") == "option"
                and entry.get("base") == str(underlying.base)
                and entry.get("quote") == str(underlying.quote)):
            return dict(entry)
    return {}


def option_market_entries(spec: OptionHoldersSpec, series: Sequence[OptionSeries],
                          underlying: Instrument,
                          venue_data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return venue-file market entries listing ``series`` (``venue_data``: the venue's
    data with its preset's markets merged in, to find its own option market's rule)."""
    tpl = _template(venue_data, underlying)
    rule = {k: v for k, v in tpl.items() if k not in _LISTING_KEYS} or {
        "model": "option_standard"}
    tick = spec.tick_size or Decimal(str(tpl.get("tick_size", underlying.tick_size)))
    lot = spec.lot_size or Decimal(str(tpl.get("lot_size", underlying.lot_size)))
    out: dict[str, dict[str, Any]] = {}
    for s in series:
        out[s.name] = {
            "kind": "option", "option_kind": s.kind, "strike": f"{s.strike:f}",
            "underlying": underlying.name,
            "expiry": datetime.fromtimestamp(s.expiry_ms / 1000, tz=UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "base": str(underlying.base), "quote": str(underlying.quote),
            "tick_size": str(tick), "lot_size": str(lot), **rule}
    return out


@dataclass(frozen=True, slots=True)
class OptionHolders:
    """The drawn option book: who writes what, the hedges and the collateral.

    ``pos_holder`` indexes ``holders`` (population account indices), ``pos_series``
    indexes ``series``; ``lots`` are signed (short: negative), ``entry_ticks`` the
    premiums on each series' tick grid; ``hedge_lots`` the perp lots per holder;
    ``collateral_quanta`` the settlement-asset deposit per holder.
    """

    underlying: str
    series: tuple[OptionSeries, ...]
    holders: Int64Array1D
    pos_holder: Int64Array1D
    pos_series: Int64Array1D
    lots: Int64Array1D
    entry_ticks: Int64Array1D
    hedge_lots: Int64Array1D
    collateral_quanta: Int64Array1D
    vol0: Decimal


def _vol_decimal(x: float) -> Decimal:
    return Decimal(repr(x)).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)


def _premium_delta(f: float, k: float, t: float, iv: float, call: bool) -> tuple[float, float]:
    # delta by a central difference of the engine's deterministic premium: the same bits
    # on every machine, so the hedge lots drawn from it are too
    h = f * 1e-6
    up = black76_premium_deterministic(f + h, k, t, iv, 0.0, call)
    dn = black76_premium_deterministic(f - h, k, t, iv, 0.0, call)
    return black76_premium_deterministic(f, k, t, iv, 0.0, call), (up - dn) / (2.0 * h)


def draw_option_holders(spec: OptionHoldersSpec, venue: Venue, pop: Population,
                        series: Sequence[OptionSeries], start_ms: int,
                        weights: Float64Array1D | None = None) -> OptionHolders:
    """Draw the holders, their sizes, entries, hedges and collateral (module docstring).

    ``weights`` (per population account) split each series' open interest; default the
    holders' perp notional share (their drawn sizes), so whales write more.

    Raises
    ------
    ValueError
        If no account is drawn as a holder, or a series has fewer lots than holders.
    """
    under = venue.markets[spec.underlying]
    s0 = float(pop.marks[spec.underlying])
    holders = np.flatnonzero((pop.holder_draw < spec.holder_fraction) & ~pop.isolated)
    if holders.shape[0] == 0:
        raise ValueError("holder_fraction: no account of the population is drawn as a "
                         "holder; raise it or the population's n_accounts")
    if weights is None:
        w_all = np.bincount(pop.pos_account, weights=np.abs(pop.pos_lots).astype(
            np.float64), minlength=len(pop.accounts))
        weights = np.maximum(w_all, 1.0)
    w = np.asarray(weights, dtype=np.float64)[holders]
    n_h, n_s = holders.shape[0], len(series)
    lots = np.zeros(n_h * n_s, dtype=np.int64)
    ticks = np.zeros(n_s, dtype=np.int64)
    delta = np.zeros(n_s, dtype=np.float64)
    iv0 = float(_vol_decimal(spec.vol))
    im_per = np.zeros(n_s, dtype=np.float64)
    lot_base = np.zeros(n_s, dtype=np.float64)
    for j, s in enumerate(series):  # a loop over the few series, not over accounts
        inst = venue.markets[s.name]
        total = int((Decimal(repr(spec.open_interest_base)) / inst.lot_size)
                    .to_integral_value(ROUND_HALF_EVEN))
        if total < n_h:
            raise ValueError(f"open_interest_base: {spec.open_interest_base} is fewer "
                             f"lots of {s.name} ({total}) than holders ({n_h})")
        lots[j::n_s] = -split_lots(total, w)
        t = (s.expiry_ms - start_ms) / MS_PER_YEAR
        prem, delta[j] = _premium_delta(s0, float(s.strike), t, iv0, s.kind == "call")
        ticks[j] = max(int((Decimal(repr(prem)) / inst.tick_size)
                           .to_integral_value(ROUND_HALF_EVEN)), 1)
        mark = float(ticks[j] * inst.tick_size)
        m = option_margin(underlying_price=s0, strike=float(s.strike), mark_price=mark,
                          size=-1.0, is_call=s.kind == "call", settlement="linear",
                          params=option_params(inst.margin))
        lot_base[j] = float(inst.lot_size * inst.contract_size)
        im_per[j] = float(m.im[0])
    pos_series = np.tile(np.arange(n_s, dtype=np.int64), n_h)
    pos_holder = np.repeat(np.arange(n_h, dtype=np.int64), n_s)
    q = lots * lot_base[pos_series]  # signed contracts of one coin
    net_delta = np.bincount(pos_holder, weights=q * delta[pos_series], minlength=n_h)
    hedge = -net_delta / float(under.lot_size * under.contract_size)
    hedge_lots = np.rint(hedge).astype(np.int64)  # half to even
    im = np.bincount(pos_holder, weights=np.abs(q) * im_per[pos_series], minlength=n_h)
    scale = 10 ** venue.assets[str(under.settle)].decimals
    coll = np.ceil(im * spec.margin_multiple * scale).astype(np.int64)
    return OptionHolders(
        underlying=spec.underlying, series=tuple(series), holders=holders,
        pos_holder=pos_holder, pos_series=pos_series, lots=lots,
        entry_ticks=ticks[pos_series], hedge_lots=hedge_lots, collateral_quanta=coll,
        vol0=_vol_decimal(spec.vol))


def load_option_holders(engine: Engine, pop: Population, book: OptionHolders, *,
                        ts_ms: int, counterparty: str = STREET,
                        id_prefix: str = "opt") -> None:
    """Load the option book into ``engine`` after :func:`load_population`.

    The underlying's mark again at ``ts_ms`` (the population's marks carry no time: the
    options' time to expiry counts from the engine clock), the series' mark vol
    (``vol`` events at ``ts_ms``), each holder's collateral
    (``Deposit``), its short options at their premiums and its hedge at the underlying's
    mark (``Engine.seed_position``, ``counterparty`` on the other side). Loading is
    event by event, once, before the first step.
    """
    engine.apply(Price(id=f"{id_prefix}:mark:{book.underlying}", market=book.underlying,
                       price=pop.marks[book.underlying], ts_ms=ts_ms))
    for s in book.series:
        engine.apply(Vol(id=f"{id_prefix}:vol0:{s.name}", market=s.name, iv=book.vol0,
                         ts_ms=ts_ms))
    settle = str(engine.venue.markets[book.underlying].settle)
    dec = engine.venue.assets[settle].decimals
    s0 = pop.marks[book.underlying]
    under = engine.venue.markets[book.underlying]
    for h, acct in enumerate(book.holders.tolist()):
        name = pop.accounts[acct]
        engine.apply(Deposit(id=f"{id_prefix}:dep:{name}", account=name, asset=settle,
                             amount=Decimal(int(book.collateral_quanta[h])).scaleb(-dec)))
    for r in range(book.lots.shape[0]):
        s = book.series[int(book.pos_series[r])]
        inst = engine.venue.markets[s.name]
        name = pop.accounts[int(book.holders[int(book.pos_holder[r])])]
        engine.seed_position(name, s.name, int(book.lots[r]) * inst.lot_size,
                             int(book.entry_ticks[r]) * inst.tick_size,
                             counterparty=counterparty)
    for h in np.flatnonzero(book.hedge_lots).tolist():
        name = pop.accounts[int(book.holders[h])]
        engine.seed_position(name, book.underlying, int(book.hedge_lots[h]) * under.lot_size,
                             s0, counterparty=counterparty)
    if engine.n_pm_rows:
        # portfolio-margined writers (load_population's ``portfolio``): seeding skips
        # margin, so their grid requirements are computed once the book is in
        rows = np.array([engine.book.row_index[pop.accounts[i]]
                         for i in book.holders.tolist()], dtype=np.int64)
        engine.refresh_pm(rows[~np.isnan(engine.book.pm[rows, 0])])


def holder_sides(engine: Engine, pop: Population, book: OptionHolders
                 ) -> dict[tuple[str, str], int]:
    """The side (+1 long, -1 short) of each holder's perp position in the underlying once
    its hedge is in: the hedge may turn a drawn short into a long (the run's records
    attribute long liquidations and ADL by side)."""
    b = engine.book
    m = b.market_index[book.underlying]
    live = b.st[: b.n_slots]
    live = live[(live[:, S_ROW] >= 0) & (live[:, S_MARKET] == m)]
    names = [pop.accounts[i] for i in book.holders.tolist()]
    rows = np.array([b.row_index[n] for n in names], dtype=np.int64)
    keep = np.isin(live[:, S_ROW], rows)
    side = dict(zip(live[keep, S_ROW].astype(np.int64).tolist(),
                    np.sign(live[keep, S_LOTS]).astype(np.int64).tolist(), strict=True))
    return {(n, book.underlying): int(side[int(r)]) for n, r in
            zip(names, rows.tolist(), strict=True) if side.get(int(r), 0) != 0}


class OptionVols:
    """The series' mark vol along the path: ``min(cap, max(vol, multiple x RV))``."""

    def __init__(self, spec: OptionHoldersSpec, book: OptionHolders,
                 realized: Float64Array1D) -> None:
        self.names = tuple(s.name for s in book.series)
        self.floor = spec.vol
        self.multiple = spec.vol_realized_multiple
        self.cap = spec.vol_max
        self.realized = realized
        self.current = book.vol0
        self.path: list[float] = []

    def events(self, k: int, now_ms: int) -> list[Vol]:
        """The ``vol`` events of step ``k`` (none while the vol is unchanged)."""
        iv = _vol_decimal(min(self.cap, max(self.floor,
                                            self.multiple * float(self.realized[k]))))
        self.path.append(float(iv))
        if iv == self.current:
            return []
        self.current = iv
        return [Vol(id=f"optvol:{k}:{n}", market=n, iv=iv, ts_ms=now_ms)
                for n in self.names]


class OptionWatch:
    """Reads the out-events for what the option book cost (:meth:`metrics`)."""

    def __init__(self, engine: Engine, pop: Population, book: OptionHolders,
                 spec: OptionHoldersSpec) -> None:
        self.engine = engine
        self.book = book
        self.spec = spec
        self.holders = {pop.accounts[i] for i in book.holders.tolist()}
        self.series = {s.name for s in book.series}
        self.under_m = engine.book.market_index[book.underlying]
        self.called: set[str] = set()
        self.liquidated: set[str] = set()
        self.unresolved: set[str] = set()  # a liquidation nobody took (no options book)
        self.n_liq = 0
        self.contracts = 0.0
        self.notional = 0.0
        self.premium = 0.0
        self.hedge_notional = 0.0
        self.fund_delta = 0.0
        self.adl_notional = 0.0
        inst = engine.venue.markets
        per_series = np.bincount(book.pos_series, weights=np.abs(book.lots),
                                 minlength=len(book.series)).astype(np.int64)
        contracts = sum((int(n) * inst[s.name].lot_size for n, s in
                         zip(per_series.tolist(), book.series, strict=True)), Decimal(0))
        self.contracts_start = float(contracts)
        self.notional_start = float(contracts * pop.marks[book.underlying])

    def event(self, e: OutEvent) -> None:
        """Note one out-event."""
        kind = e.type
        if kind == "margin_call" and getattr(e, "account", "") in self.holders:
            self.called.add(e.account)  # type: ignore[union-attr]
            return
        if kind == "adl" and getattr(e, "market", "") in self.series:
            self.adl_notional += float(e.size) * float(  # type: ignore[union-attr]
                self.engine.book.marks[self.under_m] or 0)
            return
        if kind != "liquidation" or e.account.split("/")[0] not in self.holders:  # type: ignore[union-attr]
            return
        if e.via == "unresolved" or not e.price:  # type: ignore[union-attr]
            self.unresolved.add(e.account.split("/")[0])  # type: ignore[union-attr]
            return
        self.liquidated.add(e.account.split("/")[0])  # type: ignore[union-attr]
        self.fund_delta += float(e.insurance_fund_delta)  # type: ignore[union-attr]
        size, price = float(e.size), float(e.price)  # type: ignore[union-attr]
        if e.market in self.series:  # type: ignore[union-attr]
            self.n_liq += 1
            self.contracts += size
            self.premium += size * price
            self.notional += size * float(self.engine.book.marks[self.under_m] or 0)
        else:
            self.hedge_notional += size * price

    def metrics(self, vol_path: Sequence[float]) -> dict[str, Any]:
        """The option book's metrics (docs/stress_lab.md, "Option holders")."""
        return {
            "holders": len(self.holders), "series": len(self.series),
            "contracts_start": self.contracts_start, "notional_start": self.notional_start,
            "holders_called": len(self.called), "holders_liquidated": len(self.liquidated),
            "holders_unresolved": len(self.unresolved - self.liquidated),
            "option_liquidations": self.n_liq, "contracts_liquidated": self.contracts,
            "notional_liquidated": self.notional, "premium_liquidated": self.premium,
            "hedge_notional_liquidated": self.hedge_notional,
            "fund_delta": self.fund_delta, "fund_used": max(0.0, -self.fund_delta),
            "adl_notional": self.adl_notional,
            "vol_start": float(self.book.vol0),
            "vol_max": max([float(self.book.vol0), *vol_path]),
            "vol_source": self.spec.vol_source,
        }
