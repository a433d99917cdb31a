"""Mark price methods as presets, each returning its provenance.

Methods (``MarkConfig.method``):

``index``
    The guarded index itself.
``bitmex``
    BitMEX *fair price*: ``index x (1 + funding_basis)``, ``funding_basis = funding_rate x
    time_until_funding / funding_interval`` (BitMEX "Fair Price Marking"): the basis
    decays to zero at each funding time.
``binance``
    Median of ``index + EMA(mid - index)`` (5-minute basis), the mid price (impact bid/ask
    mid when given, else best bid/ask mid) and the last trade (as stated by the issue;
    Binance's own page also lists a funding-based ``index x (1 + rate x t / interval)``
    component, available here as ``bitmex``).
``hyperliquid``
    Median of ``index + EMA150s(mid - index)``, ``median(best bid, best ask, last
    trade)`` and the median of external venues' perp mids; with exactly two of those, the
    30-second EMA of ``median(bid, ask, last)`` joins the median (Hyperliquid docs,
    "Robust price indices").

EMAs are time-weighted on the event clock, Hyperliquid's form: ``num <- num x
exp(-dt / tau) + sample x dt``, ``den <- den x exp(-dt / tau) + dt``, value ``num / den``.
Every input that is missing, non-finite or non-positive is skipped with a note. The mark
is clamped to ``index x (1 +/- max_basis)`` and falls back to the index if anything
still goes wrong, so it is always finite and > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from solvency.core import detmath
from solvency.core.oracle.guard import IndexUpdate, OracleConfigError, price_to_decimal

__all__ = ["BookInputs", "MarkConfig", "MarkMethod", "MarkPricer", "MarkResult", "TimeEMA"]

MarkMethod = Literal["index", "bitmex", "binance", "hyperliquid"]
_METHODS = ("index", "bitmex", "binance", "hyperliquid")


@dataclass(frozen=True, slots=True)
class MarkConfig:
    """Mark price settings.

    Parameters
    ----------
    method
        One of ``index``, ``bitmex``, ``binance``, ``hyperliquid``.
    basis_ms
        Time constant of the basis EMA (Binance 5 minutes; Hyperliquid 150 s).
    fallback_ms
        Time constant of Hyperliquid's fallback EMA of the book median (30 s).
    funding_interval_ms
        Funding interval of the BitMEX fair price (8 h).
    max_basis
        The mark is clamped to ``index x (1 +/- max_basis)``.
    """

    method: MarkMethod = "index"
    basis_ms: int = 300_000
    fallback_ms: int = 30_000
    funding_interval_ms: int = 8 * 3_600_000
    max_basis: float = 0.10

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise OracleConfigError(f"mark.method: {self.method!r} is not one of {_METHODS}")
        if self.basis_ms <= 0 or self.fallback_ms <= 0 or self.funding_interval_ms <= 0:
            raise OracleConfigError("mark: time constants must be > 0")
        if not 0.0 < self.max_basis < 1.0:
            raise OracleConfigError("mark.max_basis: must be in (0, 1)")

    @classmethod
    def preset(cls, method: MarkMethod) -> MarkConfig:
        """Return the preset of a method (Hyperliquid's basis EMA is 150 s)."""
        if method == "hyperliquid":
            return cls(method=method, basis_ms=150_000)
        return cls(method=method)


@dataclass(frozen=True, slots=True)
class BookInputs:
    """The venue's own market data at the time of the mark (all optional)."""

    bid: float | None = None
    ask: float | None = None
    impact_bid: float | None = None
    impact_ask: float | None = None
    last: float | None = None
    external_mids: tuple[float, ...] = ()
    funding_rate: float | None = None
    next_funding_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MarkResult:
    """A mark price and how it was made (auditable provenance).

    ``components`` are the named candidates of the method (their median, or the formula
    value, is the mark), ``chosen`` the one picked, ``sources`` the index's sources and
    ``notes`` what was skipped, clamped or fell back.
    """

    market: str
    price: float
    method: str
    ts_ms: int
    index: float
    index_reliable: bool
    sources: tuple[str, ...]
    components: tuple[tuple[str, float], ...]
    chosen: str
    notes: tuple[str, ...] = ()

    def to_decimal(self, tick: Decimal) -> Decimal:
        """Return the mark as a Decimal on the ``tick`` grid (half-even, at least one tick)."""
        return price_to_decimal(self.price, tick)

    def provenance(self) -> dict[str, object]:
        """Return the provenance as JSON-able data (for an out-event or an audit log)."""
        return {"market": self.market, "method": self.method, "price": repr(self.price),
                "index": repr(self.index), "index_reliable": self.index_reliable,
                "sources": list(self.sources), "chosen": self.chosen,
                "components": {k: repr(v) for k, v in self.components},
                "notes": list(self.notes), "ts": self.ts_ms}


class TimeEMA:
    """Time-weighted EMA on the event clock (Hyperliquid's form, see the module docstring)."""

    __slots__ = ("_den", "_last_ms", "_num", "tau_ms")

    def __init__(self, tau_ms: int) -> None:
        self.tau_ms = tau_ms
        self._num = 0.0
        self._den = 0.0
        self._last_ms: int | None = None

    def update(self, sample: float, ts_ms: int) -> None:
        """Add a sample observed at ``ts_ms`` (earlier timestamps count as ``dt = 0``)."""
        dt = 0.0 if self._last_ms is None else float(max(ts_ms - self._last_ms, 0))
        # core/detmath's exp: the same bits on every machine (libm's may differ in the
        # last bit by CPU, and this EMA feeds the mark once book inputs reach it)
        decay = float(detmath.exp(-dt / self.tau_ms))
        weight = dt if self._den > 0.0 else 1.0
        self._num = self._num * decay + sample * weight
        self._den = self._den * decay + weight
        self._last_ms = ts_ms if self._last_ms is None else max(ts_ms, self._last_ms)

    @property
    def value(self) -> float | None:
        """The average, or None before the first sample."""
        return self._num / self._den if self._den > 0.0 else None


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0.0


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    n = len(ys)
    return ys[n // 2] if n % 2 else 0.5 * (ys[n // 2 - 1] + ys[n // 2])


class MarkPricer:
    """Mark prices of one market by one method; keeps its EMAs between calls.

    Parameters
    ----------
    market
        The market name (copied into results).
    config
        The method and its settings.
    """

    def __init__(self, market: str, config: MarkConfig | None = None) -> None:
        self.market = market
        self.config = config or MarkConfig()
        self._basis = TimeEMA(self.config.basis_ms)
        self._fallback = TimeEMA(self.config.fallback_ms)

    def mark(self, index: IndexUpdate | float, book: BookInputs | None = None, *,
             ts_ms: int | None = None) -> MarkResult | None:
        """Return the mark for an index and the venue's book, or None without a valid index.

        ``index`` is the guard's :class:`IndexUpdate` (its sources become provenance) or
        a bare price; ``ts_ms`` defaults to the update's timestamp.
        """
        if isinstance(index, IndexUpdate):
            idx, reliable, sources = index.price, index.reliable, index.sources
            ts = index.ts_ms if ts_ms is None else ts_ms
        else:
            idx, reliable, sources = float(index), True, ()
            ts = 0 if ts_ms is None else ts_ms
        if not _ok(idx):
            return None
        book = book or BookInputs()
        notes: list[str] = []
        method = self.config.method
        if method == "bitmex":
            comps, chosen = self._bitmex(idx, book, ts, notes)
        elif method == "binance":
            comps, chosen = self._binance(idx, book, ts, notes)
        elif method == "hyperliquid":
            comps, chosen = self._hyperliquid(idx, book, ts, notes)
        else:
            comps, chosen = [("index", idx)], "index"
        price = dict(comps).get(chosen, idx) if chosen != "median" else _median(
            [v for _, v in comps])
        price = self._guard(idx, price, notes)
        return MarkResult(market=self.market, price=price, method=method, ts_ms=ts, index=idx,
                          index_reliable=reliable, sources=tuple(sources),
                          components=tuple(comps), chosen=_which(comps, price, chosen),
                          notes=tuple(notes))

    def _guard(self, idx: float, price: float, notes: list[str]) -> float:
        if not _ok(price):
            notes.append("fallback_index: non-finite or non-positive mark")
            return idx
        cap = self.config.max_basis
        lo, hi = idx * (1.0 - cap), idx * (1.0 + cap)
        if price < lo or price > hi:
            notes.append(f"clamped: {price!r} outside index +/- {cap}")
            return min(max(price, lo), hi)
        return price

    def _bitmex(self, idx: float, book: BookInputs, ts: int,
                notes: list[str]) -> tuple[list[tuple[str, float]], str]:
        rate, nxt = book.funding_rate, book.next_funding_ms
        if rate is None or nxt is None or not math.isfinite(rate):
            notes.append("skipped: funding_basis (no funding rate or time)")
            return [("index", idx)], "index"
        frac = min(max(nxt - ts, 0), self.config.funding_interval_ms) / (
            self.config.funding_interval_ms)
        basis = rate * frac
        return [("funding_basis", basis), ("fair_price", idx * (1.0 + basis))], "fair_price"

    def _mid(self, book: BookInputs, notes: list[str]) -> tuple[str, float] | None:
        if _ok(book.impact_bid) and _ok(book.impact_ask):
            assert book.impact_bid is not None and book.impact_ask is not None
            return "impact_mid", 0.5 * (book.impact_bid + book.impact_ask)
        if _ok(book.bid) and _ok(book.ask):
            assert book.bid is not None and book.ask is not None
            return "mid", 0.5 * (book.bid + book.ask)
        notes.append("skipped: mid (no valid bid/ask)")
        return None

    def _binance(self, idx: float, book: BookInputs, ts: int,
                 notes: list[str]) -> tuple[list[tuple[str, float]], str]:
        comps: list[tuple[str, float]] = []
        mid = self._mid(book, notes)
        if mid is not None:
            self._basis.update(mid[1] - idx, ts)
        basis = self._basis.value
        if basis is not None:
            comps.append(("index_plus_basis", idx + basis))
        if mid is not None:
            comps.append(mid)
        if _ok(book.last):
            assert book.last is not None
            comps.append(("last", book.last))
        else:
            notes.append("skipped: last")
        comps = [(k, v) for k, v in comps if _ok(v)]
        if not comps:
            return [("index", idx)], "index"
        return comps, "median"

    def _hyperliquid(self, idx: float, book: BookInputs, ts: int,
                     notes: list[str]) -> tuple[list[tuple[str, float]], str]:
        comps: list[tuple[str, float]] = []
        mid = self._mid(book, notes)
        if mid is not None:
            self._basis.update(mid[1] - idx, ts)
        basis = self._basis.value
        if basis is not None and _ok(idx + basis):
            comps.append(("oracle_plus_ema_basis", idx + basis))
        local = [x for x in (book.bid, book.ask, book.last) if _ok(x)]
        local_f = [float(x) for x in local if x is not None]
        if local_f:
            book_median = _median(local_f)
            comps.append(("book_median", book_median))
            self._fallback.update(book_median, ts)
        ext = [x for x in book.external_mids if _ok(x)]
        if ext:
            comps.append(("external_mids_median", _median(ext)))
        if len(comps) == 2:
            fb = self._fallback.value
            if fb is not None and _ok(fb):
                comps.append(("book_median_ema30s", fb))
        if not comps:
            notes.append("skipped: all components")
            return [("index", idx)], "index"
        return comps, "median"


def _which(comps: list[tuple[str, float]], price: float, chosen: str) -> str:
    if chosen != "median":
        return chosen
    for name, v in comps:
        if v == price:
            return name
    return "median"
