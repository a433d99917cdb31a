"""Circuit breakers: a state machine per market, tripped by configurable rules.

States, by severity: ``normal`` < ``recovering`` < ``reduce_only`` <
``liquidations_paused`` < ``halted``. What each allows (:meth:`BreakerBank.allows`):

==================== ====== ====== ========= ======
state                open   reduce liquidate cancel
==================== ====== ====== ========= ======
normal               yes    yes    yes       yes
recovering           no     yes    yes       yes
reduce_only          no     yes    yes       yes
liquidations_paused  no     yes    no        yes
halted               no     no     no        yes
==================== ====== ====== ========= ======

and, whatever the state, no liquidation while the last index was unreliable (quorum
lost): no account is liquidated on an unreliable price.

Rules (:class:`BreakerRule`), each with the state it trips to and an optional ``for_ms``
(the condition must hold that long):

* ``index_move``: the index moved more than ``threshold`` (fraction) against any value
  of the last ``window_ms`` (monotonic min/max windows, O(1) per sample);
* ``source_disagreement``: the fresh sources' spread ``(max - min) / median`` exceeds
  ``threshold``;
* ``quorum_lost``: fewer fresh sources than the oracle's quorum;
* ``mark_twap``: Drift's "too volatile" oracle validity, ``max(mark, twap) /
  min(mark, twap) > threshold`` with the time-weighted average mark over ``window_ms``
  (drift-labs/protocol-v2 ``math/oracle.rs``; Drift's default ratio is 5).

A trip escalates at once (never down). With no rule active for ``cooldown_ms`` the market
goes to ``recovering``; after ``recovery_ms`` more with no rule active and the quorum
present it goes back to ``normal``; any rule firing while recovering trips it again.
Every change is a :class:`BreakerTransition` out-event naming the rule and the numbers.
The clock is the event time passed in (``now_ms``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from solvency.core.oracle.guard import IndexUpdate
from solvency.core.oracle.mark import MarkResult

__all__ = [
    "ACTIONS",
    "DEFAULT_RULES",
    "STATES",
    "Action",
    "BreakerBank",
    "BreakerConfig",
    "BreakerConfigError",
    "BreakerRule",
    "BreakerTransition",
    "RuleKind",
    "State",
    "TradingMode",
]

State = Literal["normal", "recovering", "reduce_only", "liquidations_paused", "halted"]
Action = Literal["open", "reduce", "liquidate", "cancel"]
RuleKind = Literal["index_move", "source_disagreement", "quorum_lost", "mark_twap"]
TradingMode = Literal["normal", "reduce_only", "halted"]

STATES: tuple[State, ...] = ("normal", "recovering", "reduce_only", "liquidations_paused",
                             "halted")
ACTIONS: tuple[Action, ...] = ("open", "reduce", "liquidate", "cancel")
_SEVERITY = {s: i for i, s in enumerate(STATES)}
_ALLOWED: dict[str, frozenset[str]] = {
    "normal": frozenset(ACTIONS),
    "recovering": frozenset({"reduce", "liquidate", "cancel"}),
    "reduce_only": frozenset({"reduce", "liquidate", "cancel"}),
    "liquidations_paused": frozenset({"reduce", "cancel"}),
    "halted": frozenset({"cancel"}),
}
_MODE: dict[str, TradingMode] = {"normal": "normal", "recovering": "reduce_only",
                                 "reduce_only": "reduce_only",
                                 "liquidations_paused": "reduce_only", "halted": "halted"}
_KINDS = ("index_move", "source_disagreement", "quorum_lost", "mark_twap")


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0.0


class BreakerConfigError(ValueError):
    """A breaker configuration that cannot be used, naming the bad key."""


@dataclass(frozen=True, slots=True)
class BreakerRule:
    """One trip rule: a condition of ``kind`` and the state it trips the market to."""

    name: str
    kind: RuleKind
    action: State
    threshold: float = 0.0
    window_ms: int = 0
    for_ms: int = 0

    def __post_init__(self) -> None:
        p = f"breakers.rules.{self.name}"
        if self.kind not in _KINDS:
            raise BreakerConfigError(f"{p}.kind: {self.kind!r} is not one of {_KINDS}")
        if self.action not in ("reduce_only", "liquidations_paused", "halted"):
            raise BreakerConfigError(f"{p}.action: {self.action!r} cannot be tripped to")
        if self.for_ms < 0:
            raise BreakerConfigError(f"{p}.for_ms: must be >= 0")
        if self.kind in ("index_move", "mark_twap") and self.window_ms <= 0:
            raise BreakerConfigError(f"{p}.window_ms: must be > 0")
        if self.kind == "mark_twap" and not self.threshold > 1.0:
            raise BreakerConfigError(f"{p}.threshold: a price/TWAP ratio must be > 1")
        if self.kind in ("index_move", "source_disagreement") and not self.threshold > 0.0:
            raise BreakerConfigError(f"{p}.threshold: must be > 0")


DEFAULT_RULES: tuple[BreakerRule, ...] = (
    BreakerRule("index_move_5m", "index_move", "halted", threshold=0.30, window_ms=300_000),
    BreakerRule("sources_disagree", "source_disagreement", "liquidations_paused",
                threshold=0.10, for_ms=30_000),
    BreakerRule("quorum_lost", "quorum_lost", "liquidations_paused"),
    BreakerRule("mark_too_volatile", "mark_twap", "liquidations_paused", threshold=1.5,
                window_ms=3_600_000),
)
"""Defaults: above the 2021-05-19 and 2025-10-10 crash paths (see docs/oracle.md)."""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Rules and recovery timing of every market's breaker."""

    rules: tuple[BreakerRule, ...] = DEFAULT_RULES
    cooldown_ms: int = 300_000
    recovery_ms: int = 120_000

    def __post_init__(self) -> None:
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise BreakerConfigError("breakers.rules: names must be distinct")
        if self.cooldown_ms < 0 or self.recovery_ms < 0:
            raise BreakerConfigError("breakers: cooldown_ms and recovery_ms must be >= 0")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> BreakerConfig:
        """Build from plain data: ``{"rules": [{"name", "kind", "action", ...}], ...}``."""
        extra = set(data) - {"rules", "cooldown_ms", "recovery_ms"}
        if extra:
            raise BreakerConfigError(f"breakers: unknown keys {sorted(extra)}")
        try:
            rules = tuple(BreakerRule(**dict(r)) for r in data.get("rules", []))
        except TypeError as exc:
            raise BreakerConfigError(f"breakers.rules: {exc}") from None
        return cls(rules=rules if "rules" in data else DEFAULT_RULES,
                   cooldown_ms=int(data.get("cooldown_ms", 300_000)),
                   recovery_ms=int(data.get("recovery_ms", 120_000)))


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """Out-event: a market's breaker changed state, and why."""

    type: ClassVar[str] = "breaker"
    id: str
    event: str
    market: str
    from_state: str
    to_state: str
    rule: str
    detail: str
    ts_ms: int


class _MinMax:
    """Min and max of the samples of the last ``window_ms`` (monotonic deques)."""

    __slots__ = ("_hi", "_lo", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._lo: deque[tuple[int, float]] = deque()
        self._hi: deque[tuple[int, float]] = deque()

    def add(self, ts: int, x: float) -> None:
        while self._lo and self._lo[-1][1] >= x:
            self._lo.pop()
        self._lo.append((ts, x))
        while self._hi and self._hi[-1][1] <= x:
            self._hi.pop()
        self._hi.append((ts, x))
        start = ts - self.window_ms
        while self._lo[0][0] < start:
            self._lo.popleft()
        while self._hi[0][0] < start:
            self._hi.popleft()

    def move(self, x: float) -> float:
        """Largest relative move of ``x`` against any sample in the window."""
        if not self._lo:
            return 0.0
        return max(x / self._lo[0][1] - 1.0, 1.0 - x / self._hi[0][1])


class _Twap:
    """Time-weighted average of a step function over the last ``window_ms``."""

    __slots__ = ("_closed", "_segs", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._segs: deque[tuple[int, float]] = deque()
        self._closed = 0.0  # area of every segment but the last

    def twap(self, now: int) -> float | None:
        """The average up to ``now`` (None before the first sample)."""
        if not self._segs:
            return None
        start = now - self.window_ms
        while len(self._segs) > 1 and self._segs[1][0] <= start:
            t0, v0 = self._segs.popleft()
            self._closed -= v0 * (self._segs[0][0] - t0)
        t_first, v_first = self._segs[0]
        t_last, v_last = self._segs[-1]
        lo = max(t_first, start)
        area = self._closed - v_first * (lo - t_first) + v_last * (now - t_last)
        span = now - lo
        return area / span if span > 0 else v_last

    def add(self, ts: int, x: float) -> None:
        if self._segs:
            t_last, v_last = self._segs[-1]
            ts = max(ts, t_last)
            self._closed += v_last * (ts - t_last)
        self._segs.append((ts, x))


@dataclass(slots=True)
class _Market:
    state: State = "normal"
    since_ms: int = 0
    last_active_ms: int | None = None
    quorum_ok: bool = True
    index: float | None = None
    mark: float | None = None
    spread: float = 0.0
    cond_since: dict[str, int] = field(default_factory=dict)
    moves: dict[str, _MinMax] = field(default_factory=dict)
    twaps: dict[str, _Twap] = field(default_factory=dict)


class BreakerBank:
    """Breakers of every market (created on first sight, in state ``normal``).

    Parameters
    ----------
    config
        Rules and recovery timing, shared by all markets.
    """

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = config or BreakerConfig()
        self._markets: dict[str, _Market] = {}
        self._seq = 0

    def _get(self, market: str) -> _Market:
        st = self._markets.get(market)
        if st is None:
            st = _Market()
            for r in self.config.rules:
                if r.kind == "index_move":
                    st.moves[r.name] = _MinMax(r.window_ms)
                elif r.kind == "mark_twap":
                    st.twaps[r.name] = _Twap(r.window_ms)
            self._markets[market] = st
        return st

    # ------------------------------------------------------------------ queries

    def state(self, market: str) -> State:
        """Return the market's breaker state (``normal`` for an unseen market)."""
        st = self._markets.get(market)
        return "normal" if st is None else st.state

    def mode(self, market: str) -> TradingMode:
        """Return the order-entry mode: ``normal``, ``reduce_only`` or ``halted``."""
        return _MODE[self.state(market)]

    def allows(self, market: str, action: Action) -> bool:
        """Return whether ``action`` is allowed now (liquidation also needs a quorum)."""
        st = self._markets.get(market)
        if st is None:
            return True
        if action == "liquidate" and not st.quorum_ok:
            return False
        return action in _ALLOWED[st.state]

    # ------------------------------------------------------------------ inputs

    def observe(self, market: str, now_ms: int, *, index: float | None, quorum_ok: bool,
                mark: float | None = None, spread: float = 0.0, cause: str = "",
                next_id: Callable[[], str] | None = None) -> list[BreakerTransition]:
        """Feed a market's latest index (and mark); return the transitions it caused.

        ``index`` is only sampled when ``quorum_ok`` (a held price is not a new price);
        ``spread`` is the fresh sources' ``(max - min) / median``; ``cause`` is the id of
        the input event, ``next_id`` the engine's out-event id source.
        """
        st = self._get(market)
        st.quorum_ok = quorum_ok
        st.spread = spread if math.isfinite(spread) else 0.0
        if quorum_ok and index is not None and _ok(index):
            st.index = index
            for mm in st.moves.values():
                mm.add(now_ms, index)
        px = mark if _ok(mark) else (st.index if quorum_ok else None)
        if px is not None:
            st.mark = px
        out = self._evaluate(market, st, now_ms, cause, next_id)
        if px is not None:
            for tw in st.twaps.values():
                tw.add(now_ms, px)
        return out

    def observe_update(self, update: IndexUpdate, mark: MarkResult | None = None, *,
                       cause: str = "", next_id: Callable[[], str] | None = None
                       ) -> list[BreakerTransition]:
        """:meth:`observe` with an oracle :class:`IndexUpdate` and an optional mark."""
        return self.observe(update.market, update.ts_ms, index=update.price,
                            quorum_ok=update.reliable,
                            mark=mark.price if mark is not None else None,
                            spread=update.spread, cause=cause, next_id=next_id)

    def tick(self, now_ms: int, *, cause: str = "",
             next_id: Callable[[], str] | None = None) -> list[BreakerTransition]:
        """Re-evaluate every market at ``now_ms`` with its last inputs (cool-downs)."""
        out: list[BreakerTransition] = []
        for market in sorted(self._markets):
            out.extend(self._evaluate(market, self._markets[market], now_ms, cause, next_id))
        return out

    # ------------------------------------------------------------------ internals

    def _conditions(self, st: _Market, now: int) -> list[tuple[BreakerRule, str]]:
        active = []
        for r in self.config.rules:
            hit = self._condition(r, st, now)
            if hit is None:
                st.cond_since.pop(r.name, None)
                continue
            since = st.cond_since.setdefault(r.name, now)
            if now - since >= r.for_ms:
                active.append((r, hit))
        return active

    def _condition(self, r: BreakerRule, st: _Market, now: int) -> str | None:
        if r.kind == "quorum_lost":
            return None if st.quorum_ok else "fresh sources below quorum"
        if r.kind == "source_disagreement":
            if st.quorum_ok and st.spread > r.threshold:
                return f"source spread {st.spread:.4f} > {r.threshold}"
            return None
        if r.kind == "index_move":
            if st.index is None:
                return None
            mv = st.moves[r.name].move(st.index)
            if mv > r.threshold:
                return f"index moved {mv:.4f} > {r.threshold} within {r.window_ms} ms"
            return None
        twap = st.twaps[r.name].twap(now)
        if st.mark is None or twap is None:
            return None
        ratio = max(st.mark, twap) / min(st.mark, twap)
        if ratio > r.threshold:
            return f"mark {st.mark:.6g} vs TWAP {twap:.6g}: ratio {ratio:.4f} > {r.threshold}"
        return None

    def _evaluate(self, market: str, st: _Market, now: int, cause: str,
                  next_id: Callable[[], str] | None) -> list[BreakerTransition]:
        active = self._conditions(st, now)
        cfg = self.config
        if active:
            st.last_active_ms = now
            rule, _ = max(active, key=lambda a: _SEVERITY[a[0].action])
            if _SEVERITY[rule.action] > _SEVERITY[st.state]:
                names = ",".join(r.name for r, _ in active)
                details = "; ".join(d for _, d in active)
                return [self._move(market, st, rule.action, names, details, now, cause,
                                   next_id)]
            return []
        if _SEVERITY[st.state] >= _SEVERITY["reduce_only"]:
            last = st.last_active_ms if st.last_active_ms is not None else st.since_ms
            if now - last >= cfg.cooldown_ms:
                return [self._move(market, st, "recovering", "cooldown",
                                   f"no rule active for {now - last} ms", now, cause,
                                   next_id)]
            return []
        if st.state == "recovering" and st.quorum_ok and now - st.since_ms >= cfg.recovery_ms:
            return [self._move(market, st, "normal", "recovered",
                               f"no rule active for {now - st.since_ms} ms while recovering",
                               now, cause, next_id)]
        return []

    def _move(self, market: str, st: _Market, to: State, rule: str, detail: str, now: int,
              cause: str, next_id: Callable[[], str] | None) -> BreakerTransition:
        self._seq += 1
        eid = next_id() if next_id is not None else f"breaker:{market}:{self._seq}"
        tr = BreakerTransition(id=eid, event=cause, market=market, from_state=st.state,
                               to_state=to, rule=rule, detail=detail, ts_ms=now)
        st.state = to
        st.since_ms = now
        return tr

    def markets(self) -> Sequence[str]:
        """Markets seen so far, sorted."""
        return sorted(self._markets)
