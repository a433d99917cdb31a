"""Liquidity for the stress lab: order-book depth, square-root impact, thinning books.

:class:`ImpactLiquidity` implements the engine's :class:`~solvency.engine.ports.Liquidity`
port. Per market it keeps three numbers of state, moved only by explicit calls (no wall
clock, no randomness, so runs replay exactly):

* ``depth_factor`` in ``(0, 1]`` -- the fraction of the calibrated book that is there.
  Liquidity providers pull quotes when volatility rises: with ``sigma`` the realized
  (annualized) volatility given to :meth:`ImpactLiquidity.advance`, the target factor is
  ``clip((vol_ref / sigma) ** depth_vol_elasticity, min_depth_fraction, 1)``. The
  factor drops to a lower target at once and recovers toward a higher one with the
  half-life ``depth_half_life_ms``: ``f <- f* - (f* - f) 2^(-dt / half_life)``.
* ``flow_base`` -- signed base quantity of liquidation flow executed recently (sells
  negative), decaying with ``impact_half_life_ms`` (the book's resilience).
* the volatility itself.

A separate, optional layer -- the market makers of :mod:`solvency.sim.agents` -- sets a
*withdrawn* fraction ``w`` in ``[0, 1)`` per market with :meth:`ImpactLiquidity.set_withdrawal`:
the book then holds ``(1 - w)`` of the vol-thinned depth and the impact of a given flow
grows by ``(1 - w) ** -0.5`` (the latent liquidity behind the square-root law is
proportional to the depth, and impact goes as ``sqrt(Q / L)``). Nobody sets it unless the
agent runs, and ``w = 0`` multiplies by exactly one: without market makers the model is
bit for bit what it was.

The *impact* of that flow on the venue's trade price follows the square-root law::

    impact = sign(Q) * Y * sigma_daily * sqrt(|Q| / V_daily)        (log price)

with ``Q`` the flow, ``V_daily`` the market's daily volume in base units and
``sigma_daily`` the current daily volatility. ``Y`` is of order one: Toth, Lemperiere,
Deremble, de Lataillade, Kockelkoren and Bouchaud, "Anomalous price impact and the
critical nature of liquidity in financial markets", Phys. Rev. X 1, 021006 (2011);
Bouchaud, Bonart, Donier and Gould, *Trades, Quotes and Prices* (CUP 2018), ch. 12;
for Bitcoin, Donier and Bonart, "A million metaorder analysis of market impact on the
Bitcoin", Market Microstructure and Liquidity 1(2) (2015), who find the square root on
BTC/USD with a prefactor of order one. Default ``Y = 1``.

The venue's trade price is ``index x exp(impact)``. How much of it reaches the venue's
index/mark is ``oracle_weight`` ``w`` in ``[0, 1]``: ``mark = index x exp(w x impact)``,
i.e. the geometric blend ``index^(1-w) x trade^w``. ``w = 0``: the index comes from other
venues only (Binance, Bybit style index of spot venues); ``w = 1``: the mark is this
book's own price (a perp DEX whose oracle reads its own trades).

:meth:`ImpactLiquidity.quote` walks the book around the trade mid, which it recovers
from the engine's ``mark`` as ``mark x exp((1 - w) x impact)``, in bands of
``band_bps``; each slice is priced at its band's far edge, rounded against the taker to
the tick grid. The book's depth is a :class:`DepthProfile` (cumulative base depth by
distance from mid, per side), uniform (:meth:`DepthProfile.uniform`) or read from
Binance's public ``bookDepth`` files (:func:`load_binance_book_depth`).
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Final, Literal, TextIO

import numpy as np

from solvency.adapters.csvarrays import file_bytes, first_row, read_columns
from solvency.core.model.venue import Venue
from solvency.core.typing import Float64Array1D, Int64Array1D
from solvency.engine.ports import Fill

__all__ = [
    "DAYS_PER_YEAR",
    "BookDepthError",
    "DepthProfile",
    "ImpactLiquidity",
    "LiquiditySpec",
    "MarketState",
    "load_binance_book_depth",
    "read_book_depth",
    "sqrt_impact",
]

DAYS_PER_YEAR: Final = 365.0
Side = Literal["bid", "ask"]


def sqrt_impact(flow_base: float, *, daily_volume_base: float, sigma_daily: float,
                y: float = 1.0) -> float:
    """Return the square-root-law log price impact ``sign(Q) Y sigma sqrt(|Q| / V)``.

    Parameters
    ----------
    flow_base : float
        Signed executed quantity ``Q`` in base units (buys positive).
    daily_volume_base : float
        Daily traded volume ``V`` in base units.
    sigma_daily : float
        Daily volatility (of log returns).
    y : float
        Prefactor ``Y`` (order one; Toth et al. 2011, Bouchaud et al. 2018).
    """
    if daily_volume_base <= 0:
        raise ValueError("daily_volume_base must be > 0")
    return math.copysign(y * sigma_daily * math.sqrt(abs(flow_base) / daily_volume_base),
                         flow_base) if flow_base else 0.0


# ============================================================================ depth


@dataclass(frozen=True, slots=True)
class DepthProfile:
    """Cumulative book depth by distance from mid, per side, in base units.

    ``bid_base[i]`` is the base quantity bid within ``distance_bps[i]`` below mid (and
    ``ask_base`` above). Between points depth is interpolated linearly (uniform within a
    band, zero at the mid); beyond the last point the book is empty.

    Parameters
    ----------
    distance_bps : tuple of float
        Increasing distances, > 0.
    bid_base, ask_base : tuple of float
        Non-decreasing cumulative depths, >= 0.
    """

    distance_bps: tuple[float, ...]
    bid_base: tuple[float, ...]
    ask_base: tuple[float, ...]

    def __post_init__(self) -> None:
        d = np.asarray(self.distance_bps, dtype=np.float64)
        n = d.shape[0]
        if n == 0 or len(self.bid_base) != n or len(self.ask_base) != n:
            raise ValueError("distance_bps, bid_base and ask_base must have one equal length")
        if d[0] <= 0 or (np.diff(d) <= 0).any() or d[-1] >= 10_000:
            raise ValueError("distance_bps must increase from > 0 to < 10,000")
        for side in (self.bid_base, self.ask_base):
            b = np.asarray(side, dtype=np.float64)
            if not np.isfinite(b).all() or (b < 0).any() or (np.diff(b) < 0).any():
                raise ValueError("cumulative depth must be finite, >= 0 and non-decreasing")

    @classmethod
    def uniform(cls, depth_per_bps_base: float, max_bps: float = 500.0) -> DepthProfile:
        """Return a book with ``depth_per_bps_base`` per basis point on each side.

        Binance BTCUSDT perpetual, median over 2025-10-10 of its ``bookDepth`` file:
        about 1,700 BTC bid and 2,000 BTC asked within 1 %, i.e. 17-20 BTC per bp.
        """
        if depth_per_bps_base <= 0 or not 0 < max_bps < 10_000:
            raise ValueError("need depth_per_bps_base > 0 and 0 < max_bps < 10,000")
        q = depth_per_bps_base * max_bps
        return cls(distance_bps=(max_bps,), bid_base=(q,), ask_base=(q,))

    @property
    def max_bps(self) -> float:
        """Return the farthest distance with depth."""
        return self.distance_bps[-1]

    def cumulative(self, side: Side, bps: Float64Array1D) -> Float64Array1D:
        """Return the cumulative base depth within ``bps`` of mid on ``side``."""
        d = np.concatenate([[0.0], np.asarray(self.distance_bps)])
        q = np.concatenate([[0.0], np.asarray(self.bid_base if side == "bid"
                                              else self.ask_base)])
        out: Float64Array1D = np.interp(bps, d, q, right=q[-1])
        return out

    def scaled(self, factor: float) -> DepthProfile:
        """Return the profile with every depth multiplied by ``factor``."""
        return DepthProfile(self.distance_bps, tuple(b * factor for b in self.bid_base),
                            tuple(a * factor for a in self.ask_base))


class BookDepthError(ValueError):
    """A ``bookDepth`` file that cannot be read (the message names the file and line)."""


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _parse_ms(text: str) -> int:
    """Epoch ms of ``text``: digits (epoch ms) or ISO-8601; a time without a zone is UTC.

    Binance's own bookDepth files write ``2025-10-10 00:00:07`` (UTC, no zone): read as
    local time it would move every snapshot by the machine's offset.
    """
    t = text.strip()
    if t.replace(".", "", 1).isdigit():
        return int(Decimal(t))  # epoch ms, a fraction truncated as before
    dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_DEPTH_COLUMNS: Final = ("timestamp", "percentage", "depth")


def _depth_layout(p: Path, header: list[str]) -> list[int]:
    names = [h.strip().lower() for h in header]
    missing = [c for c in _DEPTH_COLUMNS if c not in names]
    if missing:
        raise BookDepthError(f"{p}:1: missing column(s) {', '.join(missing)} (a bookDepth "
                             "file has timestamp, percentage, depth, notional)")
    return [names.index(c) for c in _DEPTH_COLUMNS]


def _depth_arrays(p: Path) -> tuple[Int64Array1D, Float64Array1D, Float64Array1D] | None:
    """The snapshots read by pyarrow and checked vectorised; None: read line by line."""
    data = file_bytes(p)
    header = None if data is None else first_row(data)
    if data is None or header is None:
        return None
    try:
        it, ip, idp = _depth_layout(p, header)
    except BookDepthError:
        return None
    got = read_columns(data, n_fields=len(header), skip_header=True, floats=[ip, idp], ts=it)
    if got is None or got[0].size == 0:
        return None
    ts, (pct, depth) = got
    ok = bool(np.isfinite(pct).all()) and bool(np.isfinite(depth).all())
    return (ts, pct, depth) if ok else None


def _depth_lines(p: Path) -> tuple[Int64Array1D, Float64Array1D, Float64Array1D]:
    """The per-line reader: the fallback of :func:`load_binance_book_depth`, naming the
    file and line of the first problem."""
    ts: list[int] = []
    pct: list[float] = []
    depth: list[float] = []
    try:
        with _open_text(p) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise BookDepthError(f"{p}: empty file")
            it, ip, idp = _depth_layout(p, header)
            for lineno, row in enumerate(reader, start=2):
                if row and any(c.strip() for c in row):
                    t, pc, dp = _depth_row(p, lineno, row, (it, ip, idp))
                    ts.append(t)
                    pct.append(pc)
                    depth.append(dp)
    except (UnicodeDecodeError, OSError, csv.Error, EOFError) as exc:
        raise BookDepthError(f"{p}: unreadable ({exc})") from None
    if not ts:
        raise BookDepthError(f"{p}: no data rows")
    return (np.asarray(ts, dtype=np.int64), np.asarray(pct, dtype=np.float64),
            np.asarray(depth, dtype=np.float64))


def _depth_row(p: Path, lineno: int, row: list[str],
               cols: tuple[int, int, int]) -> tuple[int, float, float]:
    where = f"{p}:{lineno}"
    if len(row) <= max(cols):
        raise BookDepthError(f"{where}: {len(row)} fields, expected at least {max(cols) + 1}")
    try:
        t = _parse_ms(row[cols[0]])
    except ValueError:
        raise BookDepthError(f"{where}: timestamp {row[cols[0]]!r} is neither epoch ms "
                             "nor ISO-8601") from None
    out: list[float] = []
    for name, c in (("percentage", cols[1]), ("depth", cols[2])):
        try:
            x = float(row[c])
        except ValueError:
            raise BookDepthError(f"{where}: {name} {row[c]!r} is not a number") from None
        if not math.isfinite(x):
            raise BookDepthError(f"{where}: {name} is {row[c]!r}; values must be finite")
        out.append(x)
    return t, out[0], out[1]


def read_book_depth(path: str | Path) -> tuple[Int64Array1D, Float64Array1D,
                                               Float64Array1D]:
    """Read a Binance ``bookDepth`` CSV (``.csv`` or ``.csv.gz``) into arrays.

    Read by ``pyarrow.csv`` and checked with vectorised numpy; where that finds a problem
    the per-line reader reads the file again and names the line. A timestamp without a
    zone (Binance writes ``2025-10-10 00:00:07``) is UTC, never local time.

    Returns
    -------
    tuple of arrays
        ``(ts_ms, percentage, depth)`` in file order: epoch ms (int64), the bucket's
        distance from the price in % (negative for bids) and its cumulative base depth.

    Raises
    ------
    BookDepthError
        No such file, a missing column, a short row, a value that is not a finite number
        or a timestamp that is neither epoch ms nor ISO-8601 (file and line named).
    """
    p = Path(path)
    if not p.is_file():
        raise BookDepthError(f"{p}: no such file")
    fast = _depth_arrays(p)
    return fast if fast is not None else _depth_lines(p)


def load_binance_book_depth(path: str | Path, *, at_ms: int | None = None,
                            quantile: float = 0.5) -> DepthProfile:
    """Build a depth profile from a Binance ``bookDepth`` file (data.binance.vision).

    Rows are ``timestamp, percentage, depth, notional[, ...]``: cumulative base depth
    within ``percentage`` % of the price, negative for bids. With ``at_ms`` the profile
    is the last snapshot at or before it (the first if none); otherwise the ``quantile``
    of each bucket over all snapshots (default the median), made non-decreasing. The file
    is read by :func:`read_book_depth` (times without a zone are UTC).

    Caveat (``../shared/data/README.md``): on 2025-10-10 the -1 % bid bucket reads a
    constant ~2.1 M USDT in about a third of the snapshots, a feed artifact; the median
    profile is robust to it, a single snapshot may not be. It is a stale bid at 121,363
    (the buckets' ``weighted_avg_price`` stays there) from which the bid buckets are then
    measured: the -1 % one from 15:30-17:00 UTC on, the -2 % one from 19:00, all five at
    times in the crash (the -5 % one at 21:24-21:32), so the ~18 BTC they read then is
    not the book. The ask buckets track the price all day.

    Raises
    ------
    BookDepthError
        See :func:`read_book_depth`.
    """
    t, pc, dp = read_book_depth(path)
    levels = np.unique(np.abs(pc))
    levels = levels[levels > 0]
    if at_ms is not None:
        snaps = np.unique(t)
        k = max(int(np.searchsorted(snaps, at_ms, side="right")) - 1, 0)
        keep = t == snaps[k]
        t, pc, dp = t[keep], pc[keep], dp[keep]
    bid = [float(np.quantile(dp[pc == -lv], quantile)) if (pc == -lv).any() else 0.0
           for lv in levels]
    ask = [float(np.quantile(dp[pc == lv], quantile)) if (pc == lv).any() else 0.0
           for lv in levels]
    return DepthProfile(
        distance_bps=tuple(float(lv) * 100.0 for lv in levels),
        bid_base=tuple(np.maximum.accumulate(bid).tolist()),
        ask_base=tuple(np.maximum.accumulate(ask).tolist()),
    )


# ============================================================================ model


@dataclass(frozen=True, slots=True)
class LiquiditySpec:
    """Depth and impact parameters of one market.

    Parameters
    ----------
    profile : DepthProfile
        Book depth in calm markets (at ``vol_ref_annual``).
    daily_volume_base : float
        Daily traded volume ``V`` in base units (Binance BTCUSDT perp 2025-10-08..13: of
        order 100,000-400,000 BTC a day).
    impact_y : float
        Square-root-law prefactor ``Y`` (default 1.0, order one in the literature).
    vol_ref_annual : float
        Annualized volatility at which the book is ``profile`` (default 0.5).
    depth_vol_elasticity : float
        ``depth ~ (vol_ref / vol) ** elasticity`` above ``vol_ref`` (default 1.0).
    min_depth_fraction : float
        Floor of the depth factor (default 0.05; on 2025-10-10 the Binance BTCUSDT ask
        depth within 2-5 % fell to about 0.2 of its calm median at its lowest minute).
    depth_half_life_ms : int
        Recovery half-life of the depth factor toward its target (default 15 min).
    impact_half_life_ms : int
        Decay half-life of the liquidation flow behind the impact (default 30 min).
    band_bps : float
        Width of each quoted slice (default 5 bps).
    oracle_weight : float
        Share ``w`` in ``[0, 1]`` of the impact the venue's index/mark sees (default 0).
    """

    profile: DepthProfile
    daily_volume_base: float
    impact_y: float = 1.0
    vol_ref_annual: float = 0.5
    depth_vol_elasticity: float = 1.0
    min_depth_fraction: float = 0.05
    depth_half_life_ms: int = 15 * 60_000
    impact_half_life_ms: int = 30 * 60_000
    band_bps: float = 5.0
    oracle_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("daily_volume_base", "vol_ref_annual", "band_bps"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v}")
        if self.impact_y < 0 or self.depth_vol_elasticity < 0:
            raise ValueError("impact_y and depth_vol_elasticity must be >= 0")
        if not 0 < self.min_depth_fraction <= 1:
            raise ValueError("min_depth_fraction must be in (0, 1]")
        if self.depth_half_life_ms <= 0 or self.impact_half_life_ms <= 0:
            raise ValueError("half-lives must be > 0")
        if not 0.0 <= self.oracle_weight <= 1.0:
            raise ValueError("oracle_weight must be in [0, 1]")


@dataclass(slots=True)
class MarketState:
    """Mutable liquidity state of one market (see the module docstring)."""

    depth_factor: float
    flow_base: float
    vol_annual: float


@dataclass(frozen=True, slots=True)
class _Grid:
    lot_base: float  # base units per lot (linear); quote units per lot (inverse)
    inverse: bool


class ImpactLiquidity:
    """Depth-and-impact liquidity model of a venue's books (a ``Liquidity`` port).

    Parameters
    ----------
    venue : Venue
        Gives each market's lot size and contract size.
    specs : Mapping[str, LiquiditySpec]
        Liquidity of each market (markets not named here quote nothing).
    start_ms : int
        Model time at creation (epoch ms).
    consume : bool
        When true (default), :meth:`quote` records the quoted lots as executed flow, as
        if the caller took everything it was quoted. When false, quotes are pure and the
        book moves by what the engine reports with :meth:`executed` (the engine's
        ``ExecutionListener`` call after each liquidation close): exact, since the
        waterfall declines slices below the bankruptcy price.
    """

    def __init__(self, venue: Venue, specs: Mapping[str, LiquiditySpec], *,
                 start_ms: int = 0, consume: bool = True) -> None:
        self.specs = dict(specs)
        self.consume = consume
        self.now_ms = start_ms
        self._grid: dict[str, _Grid] = {}
        self._settle_scale: dict[str, int] = {}
        self._bands: dict[tuple[str, str], tuple[Float64Array1D, Float64Array1D]] = {}
        self.state: dict[str, MarketState] = {}
        for name, spec in self.specs.items():
            inst = venue.markets.get(name)
            if inst is None:
                raise ValueError(f"market {name!r} is not in venue {venue.name!r}")
            self._grid[name] = _Grid(float(inst.lot_size * inst.contract_size),
                                     inst.is_inverse)
            self._settle_scale[name] = 10 ** venue.assets[inst.settle].decimals
            self.state[name] = MarketState(1.0, 0.0, spec.vol_ref_annual)
        self.withdrawn: dict[str, float] = {}

    # ------------------------------------------------------------------ state

    def advance(self, now_ms: int, realized_vol_annual: float | Mapping[str, float]) -> None:
        """Move model time to ``now_ms`` and update depth and flow.

        Parameters
        ----------
        now_ms : int
            New model time (epoch ms), not before the current one.
        realized_vol_annual : float or Mapping[str, float]
            Current annualized volatility, for every market or per market (markets not
            in the mapping keep their last value).
        """
        dt = now_ms - self.now_ms
        if dt < 0:
            raise ValueError(f"time went backwards: {now_ms} < {self.now_ms}")
        for name, spec in self.specs.items():
            st = self.state[name]
            vol = realized_vol_annual if isinstance(realized_vol_annual, float | int) \
                else realized_vol_annual.get(name, st.vol_annual)
            if not (math.isfinite(vol) and vol >= 0):
                raise ValueError(f"{name}: realized volatility {vol} is not >= 0")
            st.vol_annual = float(vol)
            st.flow_base *= 2.0 ** (-dt / spec.impact_half_life_ms)
            target = self._target_depth(spec, st.vol_annual)
            if target < st.depth_factor:
                st.depth_factor = target
            else:
                st.depth_factor = target - (target - st.depth_factor) * 2.0 ** (
                    -dt / spec.depth_half_life_ms)
        self.now_ms = now_ms

    @staticmethod
    def _target_depth(spec: LiquiditySpec, vol: float) -> float:
        if vol <= spec.vol_ref_annual:
            return 1.0
        f = float((spec.vol_ref_annual / vol) ** spec.depth_vol_elasticity)
        return min(max(f, spec.min_depth_fraction), 1.0)

    def set_withdrawal(self, market: str, fraction: float) -> None:
        """Set the fraction ``w`` of the book market makers have withdrawn, ``0 <= w < 1``.

        Depth becomes ``(1 - w)`` of the vol-thinned book and impact grows by
        ``(1 - w) ** -0.5`` (see the module docstring).
        """
        if market not in self.specs:
            raise ValueError(f"market {market!r} has no liquidity model")
        if not (math.isfinite(fraction) and 0.0 <= fraction < 1.0):
            raise ValueError(f"withdrawn fraction must be in [0, 1), got {fraction}")
        self.withdrawn[market] = float(fraction)

    def withdrawal(self, market: str) -> float:
        """Return the fraction of the book market makers have withdrawn (0 by default)."""
        return self.withdrawn.get(market, 0.0)

    def executed(self, market: str, lots: int, quote_quanta: int) -> None:
        """Move the book by an execution the engine reports (``consume=False`` only;
        with ``consume=True`` the quote already counted it)."""
        if self.consume or market not in self.specs or lots == 0:
            return
        grid = self._grid[market]
        if grid.inverse:
            # inverse: lots of lot_base USD each, traded for quote_quanta of coin: the
            # base (coin) quantity is that coin amount
            base = abs(quote_quanta) / self._settle_scale[market]
        else:
            base = abs(lots) * grid.lot_base
        self.record_flow(market, base if lots > 0 else -base)

    def record_flow(self, market: str, flow_base: float) -> None:
        """Add executed flow (base units, buys positive) to a market's impact state."""
        self.state[market].flow_base += flow_base

    def impact(self, market: str) -> float:
        """Return the market's current log price impact (square-root law)."""
        spec, st = self.specs[market], self.state[market]
        sigma_daily = st.vol_annual / math.sqrt(DAYS_PER_YEAR)
        base = sqrt_impact(st.flow_base, daily_volume_base=spec.daily_volume_base,
                           sigma_daily=sigma_daily, y=spec.impact_y)
        w = self.withdrawn.get(market, 0.0)
        return base if w == 0.0 else base / math.sqrt(1.0 - w)

    def trade_price(self, market: str, index_price: float) -> float:
        """Return the venue's trade price: ``index x exp(impact)``."""
        return index_price * math.exp(self.impact(market))

    def oracle_price(self, market: str, index_price: float) -> float:
        """Return the venue's index/mark: ``index x exp(oracle_weight x impact)``."""
        return index_price * math.exp(self.specs[market].oracle_weight * self.impact(market))

    def depth_factor(self, market: str) -> float:
        """Return the fraction of the calibrated book currently there (vol thinning
        times what market makers left, ``1 - w``)."""
        return self.state[market].depth_factor * (1.0 - self.withdrawn.get(market, 0.0))

    # ------------------------------------------------------------------ quotes

    def peek(self, market: str, lots: int, mark: Decimal, tick: Decimal) -> list[Fill]:
        """Return :meth:`quote`'s slices without recording them as flow (the engine
        values the insurance fund's positions at depth with it; issue 27)."""
        consume, self.consume = self.consume, False
        try:
            return self.quote(market, lots, mark, tick)
        finally:
            self.consume = consume

    def quote(self, market: str, lots: int, mark: Decimal, tick: Decimal) -> list[Fill]:
        """Return slices at successively worse prices for closing ``lots`` (+buy, -sell).

        The book is centred on the trade mid ``mark x exp((1 - oracle_weight) x
        impact)``; band ``k`` (``k = 1, 2, ...``) holds the depth between ``(k - 1) b``
        and ``k b`` bps from mid (``b = band_bps``) times the depth factor, in whole lots
        (cumulative depth floored to lots, so no lot is promised twice), priced at
        ``mid x (1 +/- k b / 10,000)`` rounded up for buys and down for sells to the
        tick grid. Slices at equal prices are merged; a sell stops before a price below
        one tick. The lots sum to at most ``|lots|`` (less when the book runs out).
        """
        spec = self.specs.get(market)
        if spec is None or lots == 0:
            return []
        if mark <= 0 or tick <= 0:
            raise ValueError("mark and tick must be > 0")
        w = spec.oracle_weight
        mid = float(mark) * math.exp((1.0 - w) * self.impact(market))
        buy = lots > 0
        side: Side = "ask" if buy else "bid"
        cached = self._bands.get((market, side))
        if cached is None:
            # the profile at the band edges never changes: computed once per market and
            # side (~10 us of the ~40 us of a quote, measured on the 2025-10-10 replay)
            n_bands = math.ceil(spec.profile.max_bps / spec.band_bps)
            edges = spec.band_bps * np.arange(1, n_bands + 1, dtype=np.float64)
            cached = (edges, spec.profile.cumulative(side, edges))
            self._bands[(market, side)] = cached
        edges, profile_cum = cached
        cum_base = profile_cum * self.depth_factor(market)
        grid = self._grid[market]
        prices = mid * (1.0 + (1.0 if buy else -1.0) * edges / 10_000.0)
        per_lot = grid.lot_base / prices if grid.inverse else np.full_like(prices,
                                                                           grid.lot_base)
        cum_lots = np.maximum.accumulate(np.floor(cum_base / per_lot + 1e-9))
        take = np.diff(np.minimum(cum_lots, abs(lots)), prepend=0.0).astype(np.int64)
        fills = self._fills(take, prices, tick, buy)
        if self.consume and fills:
            executed = sum(f.lots for f in fills)
            base = executed * grid.lot_base / float(mark) if grid.inverse \
                else executed * grid.lot_base
            self.record_flow(market, base if buy else -base)
        return fills

    @staticmethod
    def _fills(take: np.ndarray, prices: Float64Array1D, tick: Decimal, buy: bool
               ) -> list[Fill]:
        out: list[Fill] = []
        tick_f = float(tick)
        for k in np.flatnonzero(take > 0).tolist():
            steps = math.ceil(prices[k] / tick_f - 1e-9) if buy \
                else math.floor(prices[k] / tick_f + 1e-9)
            if steps < 1:
                break
            price = Decimal(steps) * tick
            n = int(take[k])
            if out and out[-1].price == price:
                out[-1] = Fill(out[-1].lots + n, price)
            else:
                out.append(Fill(n, price))
        return out

    def snapshot(self) -> dict[str, object]:
        """Return the state as JSON-able data (model time, each market's state and, once
        market makers set any, their withdrawn fractions)."""
        out: dict[str, object] = {
            "now_ms": self.now_ms,
            "markets": {k: [v.depth_factor.hex(), v.flow_base.hex(), v.vol_annual.hex()]
                        for k, v in sorted(self.state.items())}}
        if self.withdrawn:
            out["withdrawn"] = {k: v.hex() for k, v in sorted(self.withdrawn.items())}
        return out
