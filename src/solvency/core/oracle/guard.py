"""The oracle guard: source reports in, a guarded index per market out.

Pure and deterministic: time arrives as ``ts_ms`` / ``now_ms`` arguments (the engine's
event clock), never from a wall clock. Per market and source the guard keeps the latest
report and a short history; every report re-aggregates its market with the vectorized
kernel (:func:`solvency.core.oracle.kernels.aggregate`), and :meth:`OracleGuard.tick`
re-aggregates all markets at once when time alone changes things (a source going stale).

The index is the weighted median of the sources that are fresh, not jumping against their
own recent history, and within ``band`` of the median of those candidates. When fewer
than ``quorum`` survive, the index is *unreliable*: the update carries the last reliable
price (``held=True``) and ``reliable=False``, which the breakers turn into "liquidations
paused". An optional dYdX-style publication rule (``acceptance="dydx"``) moves the
published index only by updates that pass :func:`solvency.core.oracle.dydx.validate_price_accuracy`
and the minimum price change.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

import numpy as np

from solvency.core.oracle import dydx
from solvency.core.oracle.kernels import CODE_NAMES, CODE_OK, aggregate

__all__ = [
    "IndexUpdate",
    "OracleConfig",
    "OracleConfigError",
    "OracleGuard",
    "SourceRejected",
    "price_to_decimal",
]

Acceptance = Literal["none", "dydx"]


class OracleConfigError(ValueError):
    """An oracle configuration that cannot be used, naming the bad key."""


@dataclass(frozen=True, slots=True)
class OracleConfig:
    """Guard settings (defaults documented in ``docs/oracle.md``).

    Parameters
    ----------
    stale_ms
        A source whose latest report is older than this is left out.
    max_future_ms
        A report stamped more than this ahead of the guard's clock is refused.
    band
        A source farther than this fraction from the candidates' median is left out
        (Binance index: 5 %).
    jump_limit
        A report moving more than this fraction from the median of the same source's
        reports over the last ``jump_window_ms`` is flagged as a jump and left out.
    jump_window_ms
        History window of the jump rule.
    quorum
        Sources that must survive for the index to be reliable.
    acceptance
        ``"dydx"`` publishes the index through dYdX v4's acceptance rule.
    min_price_change_ppm
        dYdX minimum price change (ppm of the published price), also its tick.
    smoothing
        Weight of a new raw index in the smoothed price (dYdX mode), in (0, 1].
    price_decimals
        Decimal places kept when the dYdX rule scales prices to integers.
    weights
        Weight per source name (default 1 each).
    """

    stale_ms: int = 30_000
    max_future_ms: int = 5_000
    band: float = 0.05
    jump_limit: float = 0.20
    jump_window_ms: int = 60_000
    quorum: int = 2
    acceptance: Acceptance = "none"
    min_price_change_ppm: int = 50
    smoothing: float = 0.3
    price_decimals: int = 8
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.stale_ms > 0, "stale_ms", "must be > 0")
        _check(self.max_future_ms >= 0, "max_future_ms", "must be >= 0")
        _check(0.0 < self.band < 1.0, "band", "must be in (0, 1)")
        _check(self.jump_limit > 0.0, "jump_limit", "must be > 0")
        _check(self.jump_window_ms > 0, "jump_window_ms", "must be > 0")
        _check(self.quorum >= 1, "quorum", "must be >= 1")
        _check(self.acceptance in ("none", "dydx"), "acceptance", "must be none or dydx")
        _check(0 < self.min_price_change_ppm <= dydx.ONE_MILLION, "min_price_change_ppm",
               "must be in (0, 1e6]")
        _check(0.0 < self.smoothing <= 1.0, "smoothing", "must be in (0, 1]")
        _check(0 <= self.price_decimals <= 18, "price_decimals", "must be in [0, 18]")
        for name, w in self.weights.items():
            _check(math.isfinite(w) and w > 0, f"weights.{name}", "must be finite and > 0")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> OracleConfig:
        """Build a config from plain data (a venue file's ``oracle`` section)."""
        known = {f.name for f in fields(cls)}
        extra = set(data) - known
        if extra:
            raise OracleConfigError(f"oracle: unknown keys {sorted(extra)}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise OracleConfigError(f"oracle: {exc}") from None


def _check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise OracleConfigError(f"oracle.{key}: {why}")


@dataclass(frozen=True, slots=True)
class SourceRejected:
    """A report the guard refused; it changed nothing."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class IndexUpdate:
    """A market's index after a report or a tick, with its provenance.

    ``price`` is always finite and > 0: with no reliable aggregate it is the last
    reliable price (``held``). ``sources`` are the sources that made ``raw`` (the
    weighted median of this computation), ``dropped`` the others with their reason.
    """

    market: str
    price: float
    reliable: bool
    held: bool
    ts_ms: int
    n_used: int
    quorum: int
    sources: tuple[str, ...]
    dropped: tuple[tuple[str, str], ...]
    spread: float
    raw: float | None
    acceptance: str | None = None

    def to_decimal(self, tick: Decimal) -> Decimal:
        """Return the price as a Decimal on the ``tick`` grid (half-even, at least one tick)."""
        return price_to_decimal(self.price, tick)


def price_to_decimal(price: float, tick: Decimal) -> Decimal:
    """Round a positive finite float price to the nearest multiple of ``tick`` (>= tick).

    Half-even rounding of the shortest decimal repr of the float; never below one tick,
    so a published price is always > 0.
    """
    if not (math.isfinite(price) and price > 0.0) or tick <= 0:
        raise ValueError(f"price {price!r} / tick {tick} must be finite and positive")
    steps = (Decimal(repr(price)) / tick).to_integral_value(rounding=ROUND_HALF_EVEN)
    return max(steps, Decimal(1)) * tick


class OracleGuard:
    """Guarded index prices of several markets fed by several sources.

    Parameters
    ----------
    markets
        Names the guard prices (markets, or assets: any key reports use).
    sources
        Names of the configured sources.
    config
        Guard settings.
    """

    def __init__(self, markets: Sequence[str], sources: Sequence[str],
                 config: OracleConfig | None = None) -> None:
        self.config = config or OracleConfig()
        if len(set(markets)) != len(markets) or len(set(sources)) != len(sources):
            raise OracleConfigError("oracle: market and source names must be distinct")
        if not markets or not sources:
            raise OracleConfigError("oracle: needs at least one market and one source")
        unknown = set(self.config.weights) - set(sources)
        if unknown:
            raise OracleConfigError(f"oracle.weights: unknown sources {sorted(unknown)}")
        self.markets = tuple(markets)
        self.sources = tuple(sources)
        self.market_index = {m: i for i, m in enumerate(self.markets)}
        self.source_index = {s: i for i, s in enumerate(self.sources)}
        n_m, n_s = len(self.markets), len(self.sources)
        self.prices = np.full((n_m, n_s), np.nan)
        self.ts_ms = np.full((n_m, n_s), -1, dtype=np.int64)
        self.weights = np.tile(np.array([float(self.config.weights.get(s, 1.0))
                                         for s in self.sources]), (n_m, 1))
        self.jump = np.zeros((n_m, n_s), dtype=np.bool_)
        self._history: list[list[deque[tuple[int, float]]]] = [
            [deque() for _ in range(n_s)] for _ in range(n_m)]
        self.clock_ms: int | None = None
        self.last_good: list[float | None] = [None] * n_m
        self._smoothed: list[float | None] = [None] * n_m
        self._status: list[IndexUpdate | None] = [None] * n_m
        self._out_index = np.empty(n_m)
        self._out_n = np.empty(n_m, dtype=np.int64)
        self._out_spread = np.empty(n_m)
        self._out_code = np.empty((n_m, n_s), dtype=np.int64)

    # ------------------------------------------------------------------ inputs

    def update(self, source: str, market: str, price: float | Decimal, ts_ms: int, *,
               now_ms: int | None = None) -> IndexUpdate | SourceRejected | None:
        """Record one source report and return the market's new index.

        Returns a :class:`SourceRejected` (unknown market or source, non-finite or
        non-positive price, timestamp from the future, out of order or already stale)
        that changed nothing, or None while the market has never had a reliable index.
        ``now_ms`` is the engine's clock; by default the report's own timestamp.
        """
        m = self.market_index.get(market)
        if m is None:
            return SourceRejected("unknown_market", f"oracle has no market {market!r}")
        s = self.source_index.get(source)
        if s is None:
            return SourceRejected("unknown_source", f"oracle has no source {source!r}")
        bad = self._check_report(m, s, price, ts_ms, now_ms)
        if bad is not None:
            return bad
        px = float(price)
        now = max(ts_ms if now_ms is None else now_ms, self.clock_ms or 0)
        self.jump[m, s] = self._is_jump(m, s, px, ts_ms)
        self.prices[m, s] = px
        self.ts_ms[m, s] = ts_ms
        self.clock_ms = now
        return self._recompute(m, now)

    def _check_report(self, m: int, s: int, price: float | Decimal, ts_ms: int,
                      now_ms: int | None) -> SourceRejected | None:
        if isinstance(ts_ms, bool) or not isinstance(ts_ms, int) or ts_ms < 0:
            return SourceRejected("invalid_timestamp", f"ts {ts_ms!r}")
        try:
            px = float(price)
        except (OverflowError, ValueError):
            return SourceRejected("invalid_price", f"price {price!r}")
        if not math.isfinite(px):
            return SourceRejected("invalid_price", f"price {price!r} is not finite")
        if not px > 0.0:
            return SourceRejected("non_positive_price", f"price {price!r} must be > 0")
        now = now_ms if now_ms is not None else max(ts_ms, self.clock_ms or 0)
        if ts_ms > now + self.config.max_future_ms:
            return SourceRejected("future_timestamp",
                                  f"ts {ts_ms} is {ts_ms - now} ms ahead of the clock {now}")
        if ts_ms < self.ts_ms[m, s]:
            return SourceRejected("out_of_order",
                                  f"ts {ts_ms} is before the source's last {self.ts_ms[m, s]}")
        if now - ts_ms > self.config.stale_ms:
            return SourceRejected("stale_report", f"ts {ts_ms} is {now - ts_ms} ms old")
        return None

    def _is_jump(self, m: int, s: int, px: float, ts_ms: int) -> bool:
        hist = self._history[m][s]
        start = ts_ms - self.config.jump_window_ms
        while hist and hist[0][0] < start:
            hist.popleft()
        ref = _median([p for _, p in hist]) if hist else None
        hist.append((ts_ms, px))
        return ref is not None and abs(px / ref - 1.0) > self.config.jump_limit

    def tick(self, now_ms: int) -> list[IndexUpdate]:
        """Advance the clock; return updates of markets whose status changed with time.

        A status changes when a source goes stale (or a held price keeps being held for
        a different reason): every market is re-aggregated in one kernel call.
        """
        now = max(now_ms, self.clock_ms or now_ms)
        self.clock_ms = now
        self._run(slice(None), now)
        out = []
        for m in range(len(self.markets)):
            prev = self._status[m]
            used = {self.sources[s] for s in range(len(self.sources))
                    if self._out_code[m, s] == CODE_OK}
            if prev is not None and set(prev.sources) == used:
                continue
            upd = self._result(m, now)
            if upd is not None:
                out.append(upd)
        return out

    # ------------------------------------------------------------------ outputs

    def status(self, market: str) -> IndexUpdate | None:
        """Return the market's latest index update (None before its first reliable one)."""
        m = self.market_index.get(market)
        return None if m is None else self._status[m]

    def validate_proposal(self, market: str, price: float) -> tuple[str, str] | None:
        """Check an externally proposed published price with dYdX's accuracy rule.

        Returns ``(reason, detail)`` when refused (also ``no_index`` without a reliable
        index), None when accurate against the current index.
        """
        upd = self.status(market)
        if upd is None or not upd.reliable or upd.raw is None:
            return ("no_index", f"market {market!r} has no reliable index")
        if not (math.isfinite(price) and price > 0.0):
            return ("invalid_price", f"price {price!r}")
        scale = 10 ** self.config.price_decimals
        return dydx.validate_price_accuracy(round(upd.price * scale), round(upd.raw * scale),
                                            round(price * scale),
                                            self.config.min_price_change_ppm)

    # ------------------------------------------------------------------ internals

    def _run(self, rows: slice, now_ms: int) -> None:
        c = self.config
        aggregate(self.prices[rows], self.ts_ms[rows], self.weights[rows], self.jump[rows],
                  now_ms, c.stale_ms, c.max_future_ms, c.band, self._out_index[rows],
                  self._out_n[rows], self._out_spread[rows], self._out_code[rows])

    def _recompute(self, m: int, now_ms: int) -> IndexUpdate | None:
        self._run(slice(m, m + 1), now_ms)
        return self._result(m, now_ms)

    def _result(self, m: int, now_ms: int) -> IndexUpdate | None:
        n = int(self._out_n[m])
        raw = float(self._out_index[m])
        raw_ok = n > 0 and math.isfinite(raw) and raw > 0.0
        reliable = raw_ok and n >= self.config.quorum
        note = None
        if reliable:
            price, note = self._publish(m, raw)
            self.last_good[m] = price
        held_price = self.last_good[m]
        if held_price is None:
            return None
        codes = self._out_code[m]
        used = tuple(self.sources[s] for s in range(len(self.sources)) if codes[s] == CODE_OK)
        dropped = tuple((self.sources[s], CODE_NAMES[int(codes[s])])
                        for s in range(len(self.sources)) if codes[s] != CODE_OK)
        upd = IndexUpdate(market=self.markets[m], price=held_price, reliable=reliable,
                          held=not reliable, ts_ms=now_ms, n_used=n, quorum=self.config.quorum,
                          sources=used, dropped=dropped, spread=float(self._out_spread[m]),
                          raw=raw if raw_ok else None, acceptance=note)
        self._status[m] = upd
        return upd

    def _publish(self, m: int, raw: float) -> tuple[float, str | None]:
        old = self.last_good[m]
        if self.config.acceptance == "none" or old is None:
            self._smoothed[m] = raw
            return raw, None
        c = self.config
        prev = self._smoothed[m]
        smoothed = raw if prev is None else prev + c.smoothing * (raw - prev)
        self._smoothed[m] = smoothed
        scale = 10 ** c.price_decimals
        o, i, sm = round(old * scale), round(raw * scale), round(smoothed * scale)
        prop = dydx.proposal_price(sm, i, o)
        if prop <= 0:
            return old, "invalid_proposal"
        if not dydx.is_above_required_min_price_change(o, prop, c.min_price_change_ppm):
            return old, "below_min_price_change"
        refused = dydx.validate_price_accuracy(o, i, prop, c.min_price_change_ppm)
        if refused is not None:
            return old, refused[0]
        return prop / scale, "accepted"


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    n = len(ys)
    mid = n // 2
    return ys[mid] if n % 2 else 0.5 * (ys[mid - 1] + ys[mid])
