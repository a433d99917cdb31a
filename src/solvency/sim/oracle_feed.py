"""Oracle sources for the stress lab: the mark reaches the engine as ``oracle`` reports.

By default the runner sets each market's mark with a ``price`` event (the index blended
with the venue's own impact by ``oracle_weight``, see :mod:`solvency.sim.market`). With a
scenario's ``[oracle]`` table it instead sends one :class:`~solvency.core.oracle.OracleReport`
per source per step, and the engine's own machinery does the rest: the guard (staleness,
band, jump, quorum), the venue's mark preset, and the circuit breakers, whose states and
transitions then show in the metrics and the report. This is how a risk team asks
"what if two of five sources went dark in the crash" or "would a 5 %-in-5-minutes
breaker have saved the fund".

Each source ``j`` reports, at step ``k`` (time ``t_k``), with its lag ``L_j``:

* an *external* source: the index path at ``t_k - L_j`` (the last path point at or before
  it) times ``exp(noise_bps / 10,000 x z_jk)``, ``z`` standard normal, seeded;
* a *venue* source (``venue_sources``): the venue's own trade price (index times the
  liquidation-flow impact, :meth:`~solvency.sim.market.ImpactLiquidity.trade_price`) as it
  was at ``t_k - L_j``: this book feeds the venue's oracle only as far as its share of the
  median lets it;

stamped ``t_k - L_j``. A source inside one of its ``outages`` windows sends nothing: its
last report ages out after ``stale_ms`` and the index loses a source (below ``quorum`` the
index is unreliable and the default ``quorum_lost`` breaker pauses liquidations).

The guard drops a report older than ``stale_ms`` (default 30 s in the engine), so with
one-minute steps every source would be stale when the next step's first report moves the
clock. The feed therefore sets the venue's ``oracle.config.stale_ms`` to ``stale_ms``
(default: twice the step) unless the scenario's venue overrides set it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from solvency.core.oracle import OracleReport
from solvency.core.typing import Float64Array1D
from solvency.engine.feeds import DEFAULT_SOURCES

__all__ = ["OracleFeed", "OracleFeedError", "OracleFeedSpec", "SourceOutage"]


class OracleFeedError(ValueError):
    """An ``[oracle]`` table of a scenario that cannot be used (says which key)."""


@dataclass(frozen=True, slots=True)
class SourceOutage:
    """Source ``source`` sends nothing from ``start_ms`` to ``end_ms`` (offsets from the
    run's first point, end excluded)."""

    source: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class OracleFeedSpec:
    """Which sources report, how noisy and late, and when they go dark.

    Parameters
    ----------
    sources : tuple of str
        Source names, in the order they report within a step (default: the engine's
        five defaults).
    venue_sources : tuple of str
        Sources that quote this venue's own trade price (impact included).
    noise_bps : float
        Standard deviation of each external source's independent log-noise, in bps.
    lag_ms : Mapping[str, int]
        Per-source reporting lag (default 0).
    outages : tuple of SourceOutage
        Windows in which a source sends nothing.
    stale_ms : int or None
        The guard's staleness limit set on the venue (default: twice the step).
    """

    sources: tuple[str, ...] = DEFAULT_SOURCES
    venue_sources: tuple[str, ...] = ()
    noise_bps: float = 0.0
    lag_ms: Mapping[str, int] = field(default_factory=dict)
    outages: tuple[SourceOutage, ...] = ()
    stale_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise OracleFeedError("oracle.sources: at least one source is needed")
        if len(set(self.sources)) != len(self.sources):
            raise OracleFeedError(f"oracle.sources: duplicate names in {list(self.sources)}")
        known = set(self.sources)
        for key, names in (("venue_sources", self.venue_sources),
                           ("lag_ms", tuple(self.lag_ms)),
                           ("outages", tuple(o.source for o in self.outages))):
            unknown = sorted(set(names) - known)
            if unknown:
                raise OracleFeedError(f"oracle.{key}: {unknown} not in oracle.sources")
        if not (math.isfinite(self.noise_bps) and self.noise_bps >= 0.0):
            raise OracleFeedError(f"oracle.noise_bps: must be finite and >= 0, got "
                                  f"{self.noise_bps}")
        for name, lag in self.lag_ms.items():
            if lag < 0:
                raise OracleFeedError(f"oracle.lag_ms.{name}: must be >= 0, got {lag}")
        for o in self.outages:
            if not 0 <= o.start_ms < o.end_ms:
                raise OracleFeedError(f"oracle.outages ({o.source}): need 0 <= start < end, "
                                      f"got {o.start_ms}..{o.end_ms} ms")
        if self.stale_ms is not None and self.stale_ms <= 0:
            raise OracleFeedError(f"oracle.stale_ms: must be > 0, got {self.stale_ms}")

    def venue_overrides(self, step_ms: int, current: Mapping[str, Any]) -> dict[str, Any]:
        """The venue's ``oracle`` section for this feed, merged over ``current``: its
        source list, and ``config.stale_ms`` unless ``current`` sets it."""
        out = dict(current)
        out["sources"] = list(self.sources)
        cfg = dict(out.get("config", {}))
        if "stale_ms" not in cfg:
            cfg["stale_ms"] = self.stale_ms if self.stale_ms is not None else 2 * step_ms
        out["config"] = cfg
        return out


class OracleFeed:
    """The reports of every source for every step of one run (deterministic per seed).

    External sources' prices are computed for the whole path at once; venue sources read
    the trade prices the runner records as the run goes (:meth:`reports`).
    """

    def __init__(self, spec: OracleFeedSpec, ts_ms: np.ndarray,
                 index: Mapping[str, Float64Array1D], seed: int) -> None:
        self.spec = spec
        self.ts = np.asarray(ts_ms, dtype=np.int64)
        n = self.ts.shape[0]
        t0 = int(self.ts[0]) if n else 0
        self.markets = tuple(index)
        rng = np.random.default_rng([seed, 0x0AC1E])
        # lagged point of each source: the last path point at or before t_k - L_j
        self.lag_idx: dict[str, np.ndarray] = {}
        self.live: dict[str, np.ndarray] = {}
        for name in spec.sources:
            lag = int(spec.lag_ms.get(name, 0))
            self.lag_idx[name] = np.maximum(
                np.searchsorted(self.ts, self.ts - lag, side="right") - 1, 0)
            live = np.ones(n, dtype=np.bool_)
            for o in spec.outages:
                if o.source == name:
                    live &= ~((self.ts - t0 >= o.start_ms) & (self.ts - t0 < o.end_ms))
            self.live[name] = live
        self.external: dict[str, dict[str, Float64Array1D]] = {}
        for m in self.markets:
            path = np.asarray(index[m], dtype=np.float64)
            per: dict[str, Float64Array1D] = {}
            for name in spec.sources:
                z = rng.standard_normal(n)  # drawn for every source: stable streams
                if name in spec.venue_sources:
                    continue
                per[name] = path[self.lag_idx[name]] * np.exp(spec.noise_bps / 1e4 * z)
            self.external[m] = per
        self.trade: dict[str, Float64Array1D] = {m: np.full(n, np.nan) for m in self.markets}

    def reports(self, k: int, market: str, trade_price: float) -> list[OracleReport]:
        """Reports of step ``k`` for ``market``; ``trade_price`` is the venue's trade
        price now (kept for venue sources that report it later)."""
        self.trade[market][k] = trade_price
        now = int(self.ts[k])
        out: list[OracleReport] = []
        for name in self.spec.sources:
            if not self.live[name][k]:
                continue
            j = int(self.lag_idx[name][k])
            if name in self.spec.venue_sources:
                price = float(self.trade[market][j])
            else:
                price = float(self.external[market][name][k])
            lag = int(self.ts[k] - self.ts[j]) if self.spec.lag_ms.get(name, 0) else 0
            out.append(OracleReport(id=f"step:{k}:{market}:{name}", source=name,
                                    price=_decimal(price), ts_ms=now - lag, market=market))
        return out


def _decimal(price: float) -> Decimal:
    """A report's price: 12 significant digits (sources publish rounded prices)."""
    return Decimal(f"{price:.12g}")

