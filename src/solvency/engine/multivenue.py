"""One trader across venues (``solvency margin`` on a file with ``venues``).

A multi-venue portfolio file lists one trader's accounts on several venues, each a
single-venue portfolio (:class:`~solvency.engine.portfolio.PortfolioFile`) under its
venue's preset or venue file (read by the caller: the engine does no IO). Each venue
is loaded into its own :class:`~solvency.engine.engine.Engine` and reported as
``solvency margin`` reports one venue. The venues share no wallet and no
collateral: what happens on one leaves the others' accounts as they were.

The **liquidation ladder** moves the price of one underlying (``BTC``: every market of
the venues whose base asset it is, all by the same fraction of their own mark) down and
up. Each venue's margin rows are valued by the engine's own kernels
(``book.remargin_rows`` after ``book.set_mark``) at every point of a grid of moves
(``-range .. +range`` in steps of ``step``), the first point where a row is below
maintenance margin (the engine's trigger: collateral under a positive requirement) is
found, and the crossing is then refined by bisection on the move between the last point
above and the first below, to ``1e-12`` of the price. The ladder lists the venues in the
order the move liquidates them: the move and the prices then, what the liquidation costs
(the venue's liquidation fees, ``liquidator_fee_ppm + insurance_fee_ppm`` of its
policy, on the notional of every position the account holds at those prices, capped at
the account's margin equity then, the surplus over bankruptcy the fees come out of), and
what each other venue has left at that price: its margin ratio (maintenance / margin
equity) and the further move to its own liquidation.

Options held (priced from a vol) are re-marked at every point as the engine marks them
(Black-76 at the moved underlying, on the tick grid, with their requirements there). With
a correlation (``--corr``), the other underlyings move with the one scanned by their
conditional mean (:func:`_comove`); without, they keep their marks.

Simplifications, said where the output is documented (docs/contagion.md): the whole
account is taken as closed (a venue that liquidates partially, Binance's step down a
bracket or Hyperliquid's 20 % orders, closes less at first, so the cost is an upper
bound); an option's vol is held while its underlying moves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal, localcontext
from statistics import NormalDist
from typing import Any, Final, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from solvency.core.margin.kernels import (
    MK_IM_SLOPE,
    MK_LONG_IM,
    MK_LONG_MM,
    MK_MM_SLOPE,
    OUT_COLLATERAL,
    OUT_MM,
)
from solvency.core.model.presets import PRESETS, preset_names, venue_from_data
from solvency.core.model.venue import ConfigError
from solvency.core.schema import format_errors
from solvency.core.volatility import double_barrier_touch_probability
from solvency.engine.base import format_number
from solvency.engine.engine import Engine
from solvency.engine.joint import JointError, JointSpec, correlation_factor
from solvency.engine.options import option_price, set_option_requirements
from solvency.engine.portfolio import (
    ACCOUNT,
    PortfolioError,
    PortfolioFile,
    VenueFile,
    evaluate_portfolio,
    load_portfolio_engine,
)

__all__ = ["DEFAULT_CONFIDENCE", "DEFAULT_RANGE", "DEFAULT_STEP", "DelayMove",
           "MultiVenuePortfolio", "VenueEntry", "delay_moves", "evaluate_venues",
           "is_multi_venue", "option_liquidation_underlying", "rebalance_venues"]

DEFAULT_RANGE: Final = Decimal("0.5")
"""The ladder's scan: the price moves from -50 % to +50 % of the mark ..."""
DEFAULT_STEP: Final = Decimal("0.001")
"""... in steps of 0.1 % (1,001 points), then each crossing is refined by bisection."""
DEFAULT_CONFIDENCE: Final = 0.99
"""rebalance --delay: the move during the delay is the one touched with probability 1 %."""
_PPM: Final = Decimal(1_000_000)
_BISECT: Final = 60  # halvings of a 0.1 % bracket: far below 1e-12 of the price
# an option market's per-contract requirements in the kernel's market table
_OPTION_COLUMNS: Final = [MK_IM_SLOPE, MK_MM_SLOPE, MK_LONG_IM, MK_LONG_MM]


class VenueEntry(PortfolioFile):
    """One venue of a multi-venue portfolio: a single-venue portfolio whose ``venue`` is
    required (a preset, or a venue file's path), and an optional ``name`` (default the
    venue's name) naming it in the report."""

    venue: str = Field(description="Venue preset of this account, or a venue file (JSON "
                                   "or TOML, as solvency replay --venue FILE reads) by its "
                                   "path relative to the portfolio file (required).")
    name: str | None = Field(None, description="Name of this account in the report "
                                               "(default the venue's name; must be "
                                               "unique).")


class MultiVenuePortfolio(BaseModel):
    """A portfolio file of one trader on several venues (``solvency margin``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    venues: list[VenueEntry] = Field(min_length=1, description="One account per venue.")


def is_multi_venue(data: object) -> bool:
    """Whether a parsed portfolio file is the multi-venue form (a top-level ``venues``)."""
    return isinstance(data, Mapping) and "venues" in data


def _validate(data: object, source: str) -> MultiVenuePortfolio:
    try:
        return MultiVenuePortfolio.model_validate(data)
    except ValidationError as exc:
        raise PortfolioError(format_errors(source, exc, MultiVenuePortfolio)) from None


def _in_entry(exc: PortfolioError, source: str, i: int) -> PortfolioError:
    """Re-key a single-venue error (``source: key: ...``) under ``venues[i].``."""
    text = str(exc).removeprefix(f"{source}: ")
    return PortfolioError(f"{source}: venues[{i}].{text}")


class _Venue:
    """A venue's engine and the markets of each underlying it holds positions in."""

    def __init__(self, name: str, engine: Engine, source: str, i: int) -> None:
        self.name = name
        self.engine = engine
        book = engine.book
        self.rows = np.array(engine.rows_of(ACCOUNT), dtype=np.int64)
        self.marks: dict[int, Decimal] = {m: p for m, p in enumerate(book.marks)
                                          if p is not None}
        self.base: dict[str, list[int]] = {}
        policy = engine.venue.policy
        self.fee_rate = (Decimal(0) if policy is None else
                         Decimal(policy.liquidator_fee_ppm + policy.insurance_fee_ppm) / _PPM)
        self.held: list[tuple[int, Decimal]] = []  # (market, notional at the mark, USD)
        # option markets held: (market, its underlying market, contracts x contract size)
        self.options: list[tuple[int, int, Decimal]] = []
        self.vol: dict[str, float] = {}  # base -> the largest volatility of its positions
        # base -> other base -> the fraction of the base's move that the other moves by
        self.comove: dict[str, dict[str, Decimal]] = {}
        for pos in engine.account_view(ACCOUNT)["positions"]:
            inst = engine.venue.markets[pos["market"]]
            m = book.market_index[inst.name]
            if inst.is_option:
                if m not in engine.ivs:
                    raise PortfolioError(
                        f"{source}: venues[{i}].prices.{pos['market']}: the ladder re-prices "
                        "an option from its vol at each move; give its vol in 'vols' "
                        "(and 'now') instead of a price")
                u = book.market_index[str(inst.underlying)]
                self.options.append((m, u, abs(Decimal(pos["size"])) * inst.contract_size))
                m = u  # the option's underlying is what moves
            else:
                self.held.append((m, abs(Decimal(pos["notional"]))))
            base = book.instruments[m].base
            if m not in self.base.setdefault(base, []):
                self.base[base].append(m)
            self.vol[base] = max(self.vol.get(base, 0.0), float(pos["volatility"]))
        for ms in self.base.values():  # every market of that base with a mark moves
            ms.extend(m for m in self.marks if m not in ms and not book.instruments[m].is_option
                      and book.instruments[m].base == book.instruments[ms[0]].base)

    def moves(self, base: str, move: Decimal) -> dict[str, Decimal]:
        """Each underlying's move when ``base`` moves by ``move``: another's log move is
        its ``comove`` beta times the base's, ``(1 + move) ** beta - 1`` (none without a
        correlation)."""
        out = {b: (1 + move) ** beta - 1 for b, beta in self.comove.get(base, {}).items()
               if b in self.base}
        out[base] = move
        return out

    @contextmanager
    def moved(self, moves: Mapping[str, Decimal]) -> Iterator[None]:
        """Move the markets of each underlying by its fraction, re-price the options held
        on them as the engine does (Black-76 at the moved underlying, on the tick grid,
        and their per-contract requirements there), then restore every mark and
        requirement exactly."""
        engine = self.engine
        book = engine.book
        shifted = {m: mv for b, mv in moves.items() for m in self.base.get(b, [])}
        opts = [(o, book.mk[o, _OPTION_COLUMNS].copy()) for o, u, _ in self.options
                if u in shifted]
        try:
            for m, mv in shifted.items():
                book.set_mark(m, self.marks[m] * (1 + mv))
            for o, _ in opts:
                premium = option_price(engine, o)
                assert premium is not None  # a vol and a mark: checked at construction
                tick = book.instruments[o].tick_size
                mark = Decimal(max(1, round(premium / float(tick)))) * tick
                set_option_requirements(engine, o, float(mark))
                book.set_mark(o, mark)
            yield
        finally:
            for m in shifted:
                book.set_mark(m, self.marks[m])
            for o, saved in opts:
                book.set_mark(o, self.marks[o])
                book.mk[o, _OPTION_COLUMNS] = saved

    def state(self, base: str, move: Decimal) -> tuple[float, float]:
        """(margin equity, maintenance margin) summed over the account's rows with the
        markets of ``base`` moved by ``move`` (:meth:`moved`); the marks are restored
        after."""
        with self.moved(self.moves(base, move)):
            out = self.engine.book.remargin_rows(self.rows)
        self.below_rows = bool(np.any((out[:, OUT_MM] > 0) & (out[:, OUT_COLLATERAL]
                                                              < out[:, OUT_MM])))
        return float(out[:, OUT_COLLATERAL].sum()), float(out[:, OUT_MM].sum())

    def below(self, base: str, move: Decimal) -> bool:
        self.state(base, move)
        return self.below_rows

    def crossing(self, base: str, sign: int, rng: Decimal, step: Decimal) -> Decimal | None:
        """The move (signed) at which a row first falls below maintenance as the price of
        ``base`` moves in direction ``sign``, within ``rng``; None if none, 0 if a row is
        below maintenance already (liquidatable now: the first rung, distance 0)."""
        if not set(self.moves(base, Decimal(0))) & set(self.base):
            return None  # nothing of this venue moves with ``base``
        if self.below(base, Decimal(0)):
            return Decimal(0)
        n = int(rng / step)
        lo = Decimal(0)
        for k in range(1, n + 1):
            hi = sign * step * k
            if self.below(base, hi):
                break
            lo = hi
        else:
            return None
        with localcontext() as ctx:
            ctx.prec = 34
            for _ in range(_BISECT):
                mid = (lo + hi) / 2
                if self.below(base, mid):
                    hi = mid
                else:
                    lo = mid
        return hi

    def prices(self, base: str, move: Decimal) -> dict[str, str]:
        """Market -> price at ``move``: the moved markets, and the options' marks then."""
        book = self.engine.book
        moves = self.moves(base, move)
        out = {book.market_names[m]: _px(self.marks[m] * (1 + mv))
               for b, mv in moves.items() for m in self.base.get(b, [])}
        with self.moved(moves):
            out.update({book.market_names[o]: str(book.marks[o]) for o, _, _ in self.options})
        return dict(sorted(out.items()))

    def cost(self, base: str, move: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        """(closed notional, fee before the cap, fee charged) at ``move``: a linear
        contract's USD notional moves with its price, an inverse one's is fixed, an
        option's is its premium then (contracts x the engine's mark x the settlement
        asset's USD price)."""
        moves = self.moves(base, move)
        insts = self.engine.book.instruments
        moved_by = {m: mv for b, mv in moves.items() for m in self.base.get(b, [])}
        notional = sum((n * (1 if insts[m].is_inverse else 1 + moved_by.get(m, Decimal(0)))
                        for m, n in self.held), Decimal(0))
        book = self.engine.book
        with self.moved(moves):
            for o, _, contracts in self.options:
                mark = book.marks[o]
                assert mark is not None
                usd = book.usd_price_exact(self.engine.settle_asset[o])
                notional += contracts * mark * (Decimal(1) if usd is None else usd)
        equity, _ = self.state(base, move)
        fee = notional * self.fee_rate
        charged = min(fee, max(Decimal(0), Decimal(repr(equity))))
        return notional, fee, charged


def _px(value: Decimal) -> str:
    return format_number(float(value))


def _ratio(coll: float, mm: float) -> str | None:
    if mm <= 0.0:
        return "0"
    return format_number(mm / coll) if coll > 0.0 else None


def _ladder(venues: list[_Venue], base: str, sign: int, rng: Decimal,
            step: Decimal) -> list[dict[str, Any]]:
    crossings = [(v, v.crossing(base, sign, rng, step)) for v in venues]
    hit = sorted(((v, c) for v, c in crossings if c is not None), key=lambda vc: abs(vc[1]))
    out = []
    for v, move in hit:
        notional, fee, charged = v.cost(base, move)
        others = []
        for w, c in crossings:
            if w is v:
                continue
            coll, mm = w.state(base, move)
            gone = c is not None and abs(c) <= abs(move)
            others.append({
                "venue": w.name, "margin_ratio": _ratio(coll, mm),
                "liquidated": gone,
                "distance": None if c is None or gone else
                format_number(float((c - move) / (1 + move)))})
        out.append({"venue": v.name, "move": format_number(float(move)),
                    "prices": v.prices(base, move),
                    "liquidation_fee_rate": str(v.fee_rate),
                    "closed_notional": format_number(float(notional)),
                    "fee": format_number(float(fee)),
                    "cost": format_number(float(charged)),
                    "others": others})
    return out


def _venue_file(entry: VenueEntry, i: int, source: str,
                venue_files: Mapping[int, VenueFile]) -> VenueFile | None:
    """Entry ``i``'s venue file (``None``: a preset), checked by the venue file's rules;
    errors are keyed ``venues[i].venue``."""
    vf = venue_files.get(i)
    key = f"{source}: venues[{i}].venue"
    if vf is None:
        if entry.venue not in PRESETS:
            raise PortfolioError(f"{key}: {entry.venue!r} is neither a preset "
                                 f"({', '.join(preset_names())}) nor a venue file read "
                                 "with the portfolio")
        return None
    try:
        venue_from_data(dict(vf.data), source=vf.path)
    except ConfigError as exc:
        raise PortfolioError(f"{key}: {exc}") from None
    return vf


def _single(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An entry as a single-venue portfolio (without its ``name``)."""
    return {k: v for k, v in raw.items() if k != "name"}


def _comove(venues: list[_Venue], corr: JointSpec, source: str
            ) -> dict[str, dict[str, Decimal]]:
    """base -> other base -> ``beta = rho sigma_other / sigma_base``: the other's log
    move is ``beta`` times the base's, its conditional mean given the base's move when
    the log returns are jointly normal with correlation ``rho`` (``E[x_j | x_b] =
    rho_jb sigma_j / sigma_b x_b``). Each underlying held must have one market in
    ``corr``; sigma is the largest volatility the venues give its positions."""
    try:
        correlation_factor(corr.matrix, corr.names)
    except JointError as exc:
        raise PortfolioError(f"--corr: {exc}") from None
    index: dict[str, int] = {}
    for k, name in enumerate(corr.names):
        inst = next((i for v in venues if (i := v.engine.venue.resolve(name)) is not None),
                    None)
        if inst is None:
            raise PortfolioError(f"--corr: {name!r} is not a market of any venue")
        base = inst.base
        if base in index:
            raise PortfolioError(f"--corr: {name!r} and {corr.names[index[base]]!r} are "
                                 f"both {base}; give one market per underlying")
        index[base] = k
    sigma: dict[str, float] = {}
    for v in venues:
        for b, vol in v.vol.items():
            sigma[b] = max(sigma.get(b, 0.0), vol)
    missing = sorted(set(sigma) - set(index))
    if missing:
        raise PortfolioError(f"--corr: no market of {', '.join(missing)} in "
                             f"{corr.source} (markets: {', '.join(corr.names)})")
    return {b: {o: Decimal(repr(corr.matrix[index[o]][index[b]] * sigma[o] / sigma[b]))
                for o in sorted(sigma) if o != b} for b in sorted(sigma)}


def option_liquidation_underlying(report: dict[str, Any], engine: Engine, *,
                                  rng: Decimal = DEFAULT_RANGE,
                                  step: Decimal = DEFAULT_STEP) -> None:
    """Give each option position of a one-venue report the underlying's price of its
    liquidation (in place): the ladder's search on a ladder of one venue.

    ``report`` is :func:`~solvency.engine.portfolio.evaluate_portfolio`'s object of the
    account that ``engine`` holds. The engine's own ``liquidation_price`` of an option
    is the option's premium at which its margin row is liquidated with the row's
    requirement held, not a price of the underlying; each option position instead gets
    ``liquidation_price: null``, ``liquidation_underlying`` (the underlying market),
    ``liquidation_underlying_price`` (where the underlying, moved alone with every market
    of its base, puts the option's margin row below maintenance: :meth:`_Venue.crossing`
    down and up, the options re-marked by Black-76 from their vol at each move; the
    nearer crossing; ``null`` if none within ``rng``) and ``liquidation_premium`` (the
    option's mark there), ``liquidation_underlying_prices`` (``down`` and ``up``: both
    crossings, ``null`` for a side with none). ``volatility`` becomes the underlying's
    and ``liquidation_probability`` the chance that the underlying touches either
    crossing within the report's horizon (driftless two-barrier first passage,
    :func:`~solvency.core.volatility.double_barrier_touch_probability`: a short
    strangle's row is liquidated by a fall or a rise). A position
    liquidatable now gets ``recovery_price: null`` (a premium, not a price of the
    underlying). Options priced without a vol cannot be re-marked: their
    ``liquidation_underlying_price`` is ``null``.
    """
    book = engine.book
    opts = [p for p in report["positions"] if engine.venue.markets[p["market"]].is_option]
    if not opts:
        return
    try:
        venue = _Venue("", engine, "", 0)
    except PortfolioError:
        venue = None  # an option priced without a vol: no re-marking, no search
    row_of = {p["market"]: book.row_index[p["row"]]
              for p in engine.account_view(ACCOUNT)["positions"]}
    horizon_yr = float(report["horizon_days"]) / 365.0
    for p in opts:
        inst = engine.venue.markets[p["market"]]
        u = book.market_index[str(inst.underlying)]
        p["liquidation_price"] = None
        p["liquidation_underlying"] = book.market_names[u]
        p["liquidation_underlying_price"] = None
        p["liquidation_underlying_prices"] = {"down": None, "up": None}
        p["liquidation_premium"] = None
        sigma = engine.volatility(u)
        p["volatility"] = format_number(sigma)
        if p["liquidatable"]:
            p["recovery_price"] = None
            continue
        if venue is None:
            p["liquidation_probability"] = None
            continue
        venue.rows = np.array([row_of[p["market"]]], dtype=np.int64)
        base = book.instruments[u].base
        found = [c for c in (venue.crossing(base, -1, rng, step),
                             venue.crossing(base, 1, rng, step)) if c is not None]
        if not found:
            p["liquidation_probability"] = "0"
            continue
        move = min(found, key=abs)
        price = venue.marks[u] * (1 + move)
        with venue.moved(venue.moves(base, move)):
            p["liquidation_premium"] = str(book.marks[book.market_index[inst.name]])
        p["liquidation_underlying_price"] = _px(price)
        # a row liquidated on either side (a short strangle) is liquidated when the
        # underlying touches either crossing first: the two-barrier first passage
        side_price = {side: next((venue.marks[u] * (1 + c) for c in found
                                  if (c < 0) == (side == "down")), None)
                      for side in ("down", "up")}
        p["liquidation_underlying_prices"] = {
            side: None if px is None else _px(px) for side, px in side_price.items()}
        mark_u = float(venue.marks[u])
        lower, upper = side_price["down"], side_price["up"]
        prob = double_barrier_touch_probability(
            np.array([mark_u]), np.array([math.nan if lower is None else float(lower)]),
            np.array([math.inf if upper is None else float(upper)]), np.array([sigma]),
            horizon_yr)
        p["liquidation_probability"] = format_number(float(prob[0]))


def evaluate_venues(data: Mapping[str, Any], *, source: str = "portfolio",
                    horizon: str | None = None, rng: Decimal = DEFAULT_RANGE,
                    step: Decimal = DEFAULT_STEP,
                    venue_files: Mapping[int, VenueFile] | None = None,
                    corr: JointSpec | None = None) -> dict[str, Any]:
    """The ``solvency margin --json`` object of a multi-venue portfolio.

    ``venues``: per venue its ``name`` and the single-venue report
    (:func:`~solvency.engine.portfolio.evaluate_portfolio`); ``liquidatable``: any venue
    is; ``ladder``: per underlying, ``down`` and ``up``, the venues in the order the move
    liquidates them (see the module docstring for each key); ``ladder_range`` and
    ``ladder_step``: the scan's grid (fractions of the mark). ``venue_files`` (entry
    index -> :class:`~solvency.engine.portfolio.VenueFile`) holds the venue files that
    the caller read for the entries whose ``venue`` is not a preset. With ``corr`` (the
    correlation of one market per underlying), the ladder of each underlying moves the
    others with it by their conditional mean (:func:`_comove`), and the report adds
    ``ladder_comove`` (base -> other -> beta) and ``correlation_source``.

    Raises
    ------
    PortfolioError
        ``source: venues[i].dotted.key: what was wrong``.
    """
    if not (0 < step <= rng < 1):
        raise PortfolioError(f"{source}: the ladder needs 0 < step <= range < 1")
    m = _validate(data, source)
    raw = data["venues"]
    files = venue_files or {}
    names: dict[str, int] = {}
    reports = []
    venues = []
    for i, entry in enumerate(m.venues):
        vf = _venue_file(entry, i, source, files)
        single = _single(raw[i])
        try:
            report = evaluate_portfolio(single, source=source, horizon=horizon,
                                        venue_file=vf)
            engine = load_portfolio_engine(single, source=source, venue_file=vf)
        except PortfolioError as exc:
            raise _in_entry(exc, source, i) from None
        name = entry.name or (entry.venue if vf is None else engine.venue.name)
        if name in names:
            raise PortfolioError(f"{source}: venues[{i}].name: {name!r} already names "
                                 f"venues[{names[name]}]; give each account a unique name")
        names[name] = i
        venues.append(_Venue(name, engine, source, i))
        option_liquidation_underlying(report, engine, rng=rng, step=step)
        reports.append({"name": name, **report})
    bases = sorted({b for v in venues for b in v.base})
    comove = {} if corr is None else _comove(venues, corr, source)
    for v in venues:
        v.comove = comove
    return {
        "liquidatable": any(r["liquidatable"] for r in reports),
        "venues": reports,
        "ladder_range": str(rng), "ladder_step": str(step),
        **({} if corr is None else {
            "ladder_comove": {b: {o: format_number(float(beta)) for o, beta in bs.items()}
                              for b, bs in comove.items()},
            "correlation_source": corr.source}),
        "ladder": {b: {"down": _ladder(venues, b, -1, rng, step),
                       "up": _ladder(venues, b, 1, rng, step)} for b in bases},
    }


# ============================================================================ rebalance

_T_BISECT: Final = 40


class _Pool:
    """A venue's part in a rebalance: its transfer asset, what it may withdraw (the
    engine's rule: what leaves initial margin, and the balance) and, per point of the
    scan, the collateral it lacks there (maintenance less margin equity)."""

    def __init__(self, v: _Venue, entry: VenueEntry, free: Decimal, source: str, i: int,
                 rng: Decimal, step: Decimal, bases: list[str]) -> None:
        self.v = v
        if entry.account.mode == "isolated":
            raise PortfolioError(f"{source}: venues[{i}].account.mode: rebalance moves an "
                                 "account's cross collateral; isolated is not supported")
        venue = v.engine.venue
        fixed = sorted(a for a, q in entry.account.collateral.items()
                       if q > 0 and venue.assets[a].price_usd == 1)
        if not fixed:
            raise PortfolioError(f"{source}: venues[{i}].account.collateral: no "
                                 "stablecoin (fixed USD price 1) to move")
        self.asset = fixed[0]
        self.quantum = Decimal(1).scaleb(-venue.assets[self.asset].decimals)
        balance = entry.account.collateral[self.asset]
        self.withdrawable = max(Decimal(0), min(balance, free.quantize(self.quantum,
                                                                     rounding="ROUND_DOWN")))
        self.rng, self.step = rng, step
        n = int(rng / step)
        self.grid: list[tuple[str, int, Decimal]] = []  # (base, sign, move)
        # the underlyings whose ladder moves something of this venue (its own, and with a
        # correlation those that move its own)
        self.bases = [b for b in bases if set(v.moves(b, Decimal(0))) & set(v.base)]
        lack = []
        # the points: down k step, and up the mirror in log price, 1 / (1 - k step) - 1
        # (k = 0..rng / step), so that both sides reach the same log distance
        # |ln(1 + move)| = -ln(1 - k step), the scale the rebalance compares them on
        for base in self.bases:
            for sign in (-1, 1):
                for k in range(n + 1):
                    move = -step * k if sign < 0 else 1 / (1 - step * k) - 1
                    self.grid.append((base, sign, move))
                    lack.append(self._lack(base, move))
        self.lack = np.array(lack)
        self.logmove = np.abs(np.log1p(np.array([float(g[2]) for g in self.grid])))
        self.flight = -np.inf  # the largest lack within the delay's move (set_flight)

    def _lack(self, base: str, move: Decimal) -> float:
        coll, mm = self.v.state(base, move)
        return mm - coll if mm > 0 else -np.inf

    def set_flight(self, moves: Mapping[str, DelayMove]) -> None:
        """Keep every move within the delay's (``down`` to ``up``, each underlying that
        moves this venue), and one scan step (0.1 %) beyond each end, covered whatever
        ``t`` is: a donor's withdrawal leaves at once, so it must not bring the donor
        within the move (nor to its edge) while the money travels. This only bounds what
        a venue gives: it adds no need (a recipient is kept only if the move does not
        reach it before; its deposit lands after the move)."""
        worst = -np.inf
        for k, (base, _, move) in enumerate(self.grid):
            dm = moves.get(base)
            if dm is not None and dm.down <= move <= dm.up:
                worst = max(worst, float(self.lack[k]))
        for base in self.bases:
            if base in moves:
                worst = max(worst, self._lack(base, moves[base].down - self.step),
                            self._lack(base, moves[base].up + self.step))
        self.flight = worst

    def need(self, t: Decimal) -> Decimal:
        """Collateral to add (negative: that may be taken out) so that no move of any
        underlying's log price of up to ``t`` either way (``exp(-t) - 1`` down to
        ``exp(t) - 1``; nor, with a delay, any move within the delay's) liquidates the
        account: the largest lack over the scan's points within it and at its ends."""
        worst = max(min(self.flight, 0.0),
                    float(self.lack[self.logmove <= float(t)].max(initial=-np.inf)))
        with localcontext() as ctx:
            ctx.prec = 34
            ends = ((-t).exp() - 1, t.exp() - 1)
        for base in self.bases:
            for move in ends:
                worst = max(worst, self._lack(base, move))
        if worst == -np.inf:
            return -self.withdrawable
        q = Decimal(repr(worst))
        return q.quantize(self.quantum, rounding="ROUND_CEILING")


def _feasible(pools: list[_Pool], t: Decimal) -> tuple[bool, list[Decimal]]:
    needs = [p.need(t) for p in pools]
    give = sum((min(p.withdrawable, -n) for p, n in zip(pools, needs, strict=True) if n < 0),
               Decimal(0))
    take = sum((n for n in needs if n > 0), Decimal(0))
    return take <= give, needs


def _log_distance(k: int, step: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 34
        return -(1 - k * step).ln()


def _best(pools: list[_Pool], rng: Decimal, step: Decimal) -> tuple[Decimal, list[Decimal]]:
    """The largest t (smallest distance to liquidation over the venues, in log price:
    ``|ln(1 + move)|``, so that a fall and a rise that a driftless log price reaches
    equally often weigh the same) that transfers can reach: bisection over the scan's
    points (``-ln(1 - k step)``, up to ``-ln(1 - rng)``), then within the step."""
    ok0, needs0 = _feasible(pools, Decimal(0))
    if not ok0:
        return Decimal(0), needs0
    lo, hi = 0, int(rng / step)
    if _feasible(pools, _log_distance(hi, step))[0]:
        return _log_distance(hi, step), _feasible(pools, _log_distance(hi, step))[1]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _feasible(pools, _log_distance(mid, step))[0]:
            lo = mid
        else:
            hi = mid
    a, b = _log_distance(lo, step), _log_distance(hi, step)
    with localcontext() as ctx:
        ctx.prec = 34
        for _ in range(_T_BISECT):
            half = (a + b) / 2
            if _feasible(pools, half)[0]:
                a = half
            else:
                b = half
    return a, _feasible(pools, a)[1]


def _transfers(pools: list[_Pool], needs: list[Decimal]) -> list[dict[str, str]]:
    """Donors (largest room first) pay the recipients (largest need first)."""
    donors = sorted(((min(p.withdrawable, -n), p) for p, n in zip(pools, needs, strict=True)
                     if n < 0 and p.withdrawable > 0), key=lambda dp: (-dp[0], dp[1].v.name))
    room = [d for d, _ in donors]
    out = []
    for n, p in sorted(((n, p) for p, n in zip(pools, needs, strict=True) if n > 0),
                       key=lambda np_: (-np_[0], np_[1].v.name)):
        left = n
        for k, (_, donor) in enumerate(donors):
            if left <= 0:
                break
            amount = min(left, room[k])
            if amount <= 0:
                continue
            room[k] -= amount
            left -= amount
            out.append({"from": donor.v.name, "from_asset": donor.asset,
                        "to": p.v.name, "to_asset": p.asset, "amount": str(amount)})
    return out


def _min_distance(report: dict[str, Any], rng: Decimal) -> tuple[Decimal, dict[str, str]]:
    """Per venue its distance (the smallest |move| that liquidates it, the range where
    none does) and the smallest."""
    dist = {v["name"]: rng for v in report["venues"]}
    for sides in report["ladder"].values():
        for steps in sides.values():
            for s in steps:
                dist[s["venue"]] = min(dist[s["venue"]], abs(Decimal(s["move"])))
    return min(dist.values(), default=rng), {k: str(d) for k, d in dist.items()}


class DelayMove(NamedTuple):
    """The price move a transfer's delay allows, per underlying: ``down`` (< 0) and
    ``up`` (> 0) fractions of the mark, and how they were set."""

    down: Decimal
    up: Decimal
    source: str


def delay_moves(sigmas: Mapping[str, float], delay_days: float, *,
                move: Decimal | None = None, confidence: float = DEFAULT_CONFIDENCE
                ) -> dict[str, DelayMove]:
    """The move of each underlying while a transfer travels for ``delay_days``.

    ``move`` given: ``-move`` and ``+move`` for every underlying. Otherwise the
    first-passage move at ``confidence`` ``q``: the log price a driftless Brownian motion
    with the underlying's volatility ``sigma`` (per sqrt(year)) touches within
    ``T = delay_days / 365`` with probability ``1 - q`` is ``b = sigma sqrt(T)
    Phi^-1((1 + q) / 2)`` (reflection principle, ``P(touch) = 2 Phi(-b / (sigma sqrt T))``,
    the engine's own liquidation probability, :func:`solvency.core.volatility.
    liquidation_probability`; Karatzas and Shreve 1991, sec. 2.6), so ``down = exp(-b) -
    1`` and ``up = exp(b) - 1``. ``sigmas``: underlying -> ``sigma``.
    """
    if move is not None:
        return {b: DelayMove(-move, move, "given") for b in sigmas}
    z = NormalDist().inv_cdf((1.0 + confidence) / 2.0)
    out = {}
    for base, sigma in sigmas.items():
        b = sigma * math.sqrt(delay_days / 365.0) * z
        out[base] = DelayMove(Decimal(repr(math.expm1(-b))), Decimal(repr(math.expm1(b))),
                              f"volatility {format_number(sigma)}, confidence "
                              f"{format_number(confidence)} (z {format_number(z)})")
    return out


def _lost_in_flight(report: dict[str, Any], moves: Mapping[str, DelayMove]
                    ) -> dict[str, list[str]]:
    """Venue -> the underlyings' sides (``BTC down``) whose move during the delay reaches
    its liquidation in ``report``'s ladder."""
    lost: dict[str, list[str]] = {}
    for base, dm in moves.items():
        for side, limit in (("down", dm.down), ("up", dm.up)):
            for st in report["ladder"].get(base, {}).get(side, []):
                if abs(Decimal(st["move"])) <= abs(limit):
                    lost.setdefault(st["venue"], []).append(f"{base} {side}")
    return lost


def _landing(after: dict[str, Any], flight: dict[str, Any],
             moves: Mapping[str, DelayMove]) -> dict[str, Any]:
    """The ladder when the transfers land after the delay's move, per underlying and
    side: the venues the move liquidated in flight, then the after ladder's other
    venues with their further move from the landed price."""
    out: dict[str, Any] = {}
    for base, dm in moves.items():
        sides = {}
        for side, limit in (("down", dm.down), ("up", dm.up)):
            gone = [st["venue"] for st in flight["ladder"].get(base, {}).get(side, [])
                    if abs(Decimal(st["move"])) <= abs(limit)]
            rest = [{"venue": st["venue"], "move": st["move"], "prices": st["prices"],
                     "from_landing": format_number(float(
                         (1 + Decimal(st["move"])) / (1 + limit) - 1))}
                    for st in after["ladder"].get(base, {}).get(side, [])
                    if st["venue"] not in gone]
            sides[side] = {"move": format_number(float(limit)),
                           "liquidated_in_flight": gone, "ladder": rest}
        out[base] = {"source": dm.source, **sides}
    return out


def _with_moves(raw: list[Any], moved: Mapping[int, Decimal], pools: list[_Pool],
                *, deposits: bool) -> dict[str, Any]:
    """The file with the moved amounts (withdrawals, and deposits if ``deposits``)."""
    out = {"venues": [dict(e) for e in raw]}
    for i, q in moved.items():
        if q > 0 and not deposits:
            continue
        e = out["venues"][i]
        acct = dict(e["account"])
        coll = dict(acct.get("collateral", {}))
        coll[pools[i].asset] = str(Decimal(str(coll[pools[i].asset])) + q)
        acct["collateral"] = coll
        e["account"] = acct
    return out


def rebalance_venues(data: Mapping[str, Any], *, source: str = "portfolio",
                     delay_days: float | None = None, move_during_delay: Decimal | None = None,
                     confidence: float = DEFAULT_CONFIDENCE, rng: Decimal = DEFAULT_RANGE,
                     step: Decimal = DEFAULT_STEP,
                     venue_files: Mapping[int, VenueFile] | None = None,
                     corr: JointSpec | None = None) -> dict[str, Any]:
    """The ``solvency rebalance --json`` object: the stablecoin transfers between the
    venues that maximize the smallest distance to liquidation (the fraction of the mark
    by which one underlying's price must move, either way, to liquidate a venue;
    optimized in log price, ``|ln(1 + move)|``, so that falls and rises compare), each
    withdrawal at most what the venue lets go (it must leave initial margin: the
    engine's withdrawal check, which the transfers are replayed through), and the ladder
    before and after (docs/contagion.md).

    Keys: ``transfers`` (``from``, ``from_asset``, ``to``, ``to_asset``, ``amount``),
    ``min_distance_before``/``min_distance_after`` and ``distance_before``/
    ``distance_after`` (venue -> fraction), ``before``/``after`` (the margin reports).

    With a delay (the withdrawal leaves at once, the deposit lands ``delay_days`` later)
    the price may move meanwhile by the move of :func:`delay_moves` (``move_during_delay``
    given, or the first-passage move at ``confidence``). A venue whose liquidation,
    before any transfer, lies within that move is liquidated before a transfer to it
    could land: it is left out of the rebalance (it neither receives nor gives, and the
    smallest distance is maximized over the others; a donor gives only what keeps it
    alive through the move, :meth:`_Pool.set_flight`) and listed in ``lost_in_flight``
    (venue -> the sides that reach it). Added keys: ``delay_days``, ``delay_move``
    (underlying -> ``down``, ``up``, ``source``), ``min_distance_during`` (the smallest
    distance while the money is in flight), ``min_distance_kept`` (the smallest distance
    after, over the venues not lost; None when every venue is lost) and ``landing``
    (:func:`_landing`). With ``corr`` every ladder moves the other underlyings as
    :func:`evaluate_venues` does, and the rebalance covers each venue against every
    underlying that moves it.
    """
    files = venue_files or {}
    before = evaluate_venues(data, source=source, rng=rng, step=step, venue_files=files,
                             corr=corr)
    m = _validate(data, source)
    raw = data["venues"]
    venues = []
    for i, entry in enumerate(m.venues):
        vf = _venue_file(entry, i, source, files)
        engine = load_portfolio_engine(_single(raw[i]), source=source, venue_file=vf)
        venues.append(_Venue(before["venues"][i]["name"], engine, source, i))
    comove = {} if corr is None else _comove(venues, corr, source)
    pools = []
    for i, (entry, v) in enumerate(zip(m.venues, venues, strict=True)):
        v.comove = comove
        free = Decimal(before["venues"][i]["free_collateral"])
        pools.append(_Pool(v, entry, free, source, i, rng, step, sorted(before["ladder"])))
    moves: dict[str, DelayMove] = {}
    lost: dict[str, list[str]] = {}
    if delay_days is not None:
        # each underlying's volatility: the largest the venues' positions in it give
        sigmas: dict[str, float] = {}
        for p in pools:
            for base, sigma in p.v.vol.items():
                sigmas[base] = max(sigmas.get(base, 0.0), sigma)
        moves = delay_moves(dict(sorted(sigmas.items())), delay_days,
                            move=move_during_delay, confidence=confidence)
        lost = _lost_in_flight(before, moves)
        for p in pools:
            p.set_flight(moves)
    kept = [p for p in pools if p.v.name not in lost]
    transfers = []
    if kept:
        _, needs = _best(kept, rng, step)
        transfers = _transfers(kept, needs)
    moved: dict[int, Decimal] = {}
    index = {p.v.name: i for i, p in enumerate(pools)}
    for t in transfers:
        moved[index[t["from"]]] = moved.get(index[t["from"]], Decimal(0)) - Decimal(t["amount"])
        moved[index[t["to"]]] = moved.get(index[t["to"]], Decimal(0)) + Decimal(t["amount"])
    for i, q in moved.items():  # the engine's own withdrawal check on each donor
        if q < 0:
            try:
                evaluate_portfolio(_single(raw[i]), source=source,
                                   moves=[(pools[i].asset, q)], venue_file=files.get(i))
            except PortfolioError as exc:
                raise PortfolioError(f"{source}: venues[{i}]: the engine refused the "
                                     f"withdrawal: {exc}") from None
    after = evaluate_venues(_with_moves(raw, moved, pools, deposits=True), source=source,
                            rng=rng, step=step, venue_files=files, corr=corr)
    min_before, dist_before = _min_distance(before, rng)
    min_after, dist_after = _min_distance(after, rng)
    out: dict[str, Any] = {
        "transfers": transfers,
        "min_distance_before": str(min_before), "min_distance_after": str(min_after),
        "distance_before": dist_before, "distance_after": dist_after,
    }
    if delay_days is not None:
        flight = evaluate_venues(_with_moves(raw, moved, pools, deposits=False),
                                 source=source, rng=rng, step=step, venue_files=files,
                                 corr=corr)
        out["delay_days"] = delay_days
        out["delay_move"] = {b: {"down": str(dm.down), "up": str(dm.up), "source": dm.source}
                             for b, dm in moves.items()}
        out["min_distance_during"] = str(_min_distance(flight, rng)[0])
        out["lost_in_flight"] = lost
        kept_after = [Decimal(d) for n, d in dist_after.items() if n not in lost]
        # None when every venue is lost in flight: no distance is kept (the scan's range
        # would read as "safe to 50 %")
        out["min_distance_kept"] = str(min(kept_after)) if kept_after else None
        out["landing"] = _landing(after, flight, moves)
    out["before"] = before
    out["after"] = after
    return out
