"""Account shards: one venue's accounts over N engines, with a coordinator in front.

Design and protocol: docs/scale_out.md ("Account shards"). In short:

* **Assignment.** Account ``a`` lives on shard ``shard_of(a, N)`` = the first 8 bytes of
  ``sha256(a)`` as a big-endian integer, mod N: stable across processes, machines and
  Python versions (no ``hash()``, which is salted per process). The fund, the backstop
  vault and the stress lab's market account live on shard 0 (:data:`FUND_SHARD`).
* **Routing.** Deposits, withdrawals, margin-mode changes, isolated margin and order
  checks go to the account's shard. Prices, oracle reports, vols, funding, expiry and
  parameter changes go to every shard (they value every account). A fill between two
  accounts of one shard goes to that shard; a fill across shards is split into two legs,
  each booked against the shard's clearing account :data:`SHARD_CLEARING` (funded at
  start-up, see :meth:`ShardedEngine.genesis`), after both shards said the leg passes its
  checks (:meth:`~solvency.engine.engine.Engine.check_fill`): both legs or neither.
* **Time.** Every shard sees every accepted event's time (:meth:`Engine.pass_time` on
  the shards the event does not concern), so breakers, oracle staleness and partial
  liquidation cool-downs move at the same events as in one engine.
* **What needs one view of the whole venue** (the insurance fund paying, taking over or
  unwinding, the backstop vault, ADL, socialized loss, bad debt, the withdrawal block,
  the fee-share policy) is decided over the gathered venue: each shard applies the event
  as usual, and when any shard's liquidator says its sweep went past what the shard
  alone can decide (``Liquidator.venue_wide``), every shard goes back to its state before
  the event, one engine is restored from those states (:func:`gather`), the event is
  applied there, and its result is given back to the shards (:func:`scatter`): user
  accounts to their shards, the fund and the other engine-run accounts to shard 0, each
  shard's clearing account taking the difference. :func:`decide_venue_wide` is a pure
  function of the shards' states, so every shard that computes it gets the same answer.
  Open-interest-scaled margin is refused: a venue that has it at start
  (:class:`UnshardableError`), a parameter change that would turn it on before it is
  applied (:func:`refuse_unshardable`: rejected ``unshardable``, nothing changed, the id
  may be sent again).

Equivalence with one engine (tests/unit/service/test_shards.py): the same events give
every account the same balances, positions and cost basis, the fund and fee pool the same
totals, and the same liquidations and rejections; :func:`venue_digest` hashes exactly
that, over one engine or over the shards.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, Final

import numpy as np

from solvency.core.ledger.ledger import CLEARING, EXTERNAL, ROUNDING
from solvency.core.margin.kernels import MK_OI_UPPER
from solvency.core.margin.models import risk_row
from solvency.core.model.events import (
    AccountMode,
    Deposit,
    Expiry,
    Fill,
    Funding,
    IsolatedMargin,
    Params,
    Price,
    Rejected,
    Settled,
    Vol,
    Withdraw,
)
from solvency.core.model.venue import Venue
from solvency.core.oracle import OracleReport
from solvency.engine.base import RejectReason
from solvency.engine.engine import Engine
from solvency.engine.fills import SHARD_CLEARING
from solvency.engine.inputs import AnyInput
from solvency.engine.liquidation import BACKSTOP, INSURANCE_ROW, MARKET
from solvency.engine.params import WHILE_ORDERS, WHILE_POSITIONS, params_trial
from solvency.engine.pretrade import Order, OrderCancel
from solvency.engine.summary import liabilities

__all__ = [
    "FUND_SHARD",
    "SHARD_CLEARING",
    "GlobalViewNeededError",
    "ShardDivergenceError",
    "ShardedEngine",
    "UnshardableError",
    "names_clearing",
    "parse_shard",
    "refuse_contract_terms",
    "refuse_global",
    "refuse_unshardable",
    "route",
    "shard_of",
    "sharded_liabilities",
    "venue_digest",
]

FUND_SHARD: Final = 0
"""The shard that holds the venue-wide system accounts (fund, backstop, market)."""
_ON_FUND_SHARD: Final = frozenset({INSURANCE_ROW, BACKSTOP, MARKET})
GENESIS_QUANTA: Final = 10**17
"""The clearing account's deposit per settlement asset, in quanta: far above what any
leg needs, so its margin check never refuses a leg and it is never liquidated."""
_BROADCAST: Final = (Price, OracleReport, Vol, Funding, Expiry, Params)
_GLOBAL_OUT: Final = frozenset({"adl", "socialized_loss", "bad_debt", "fund_unwind"})


class UnshardableError(ValueError):
    """The venue has a rule that needs every account at once (open-interest-scaled
    margin): its engine cannot be split by account."""


class GlobalViewNeededError(RuntimeError):
    """An event reached the insurance fund, the backstop, ADL or bad debt, decisions that
    need the whole venue, where the shards cannot gather it (the shard processes,
    ``shard_node.py``, do not yet; the in-process :class:`ShardedEngine` does), or an
    out-event shows such a decision that the liquidator did not flag (a bug)."""

    def __init__(self, event_id: str, what: str) -> None:
        super().__init__(f"event {event_id}: {what} needs the venue-wide view "
                         "(not sharded yet: docs/scale_out.md)")
        self.event_id = event_id
        self.what = what


class ShardDivergenceError(RuntimeError):
    """Shards gave different verdicts on one broadcast event (a bug: stop at once)."""


def shard_of(account: str, n: int) -> int:
    """Shard of ``account`` among ``n``: ``int(sha256(account)[:8], big-endian) % n``;
    the fund, backstop and market accounts are on shard 0."""
    if n < 1:
        raise ValueError(f"shard count must be at least 1, got {n}")
    if account in _ON_FUND_SHARD:
        return FUND_SHARD
    return int.from_bytes(hashlib.sha256(account.encode()).digest()[:8], "big") % n


def parse_shard(spec: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N``; ValueError naming what is wrong."""
    k_text, sep, n_text = spec.partition("/")
    if not sep or not k_text.isdigit() or not n_text.isdigit():
        raise ValueError(f"--shard {spec!r}: expected K/N, e.g. 0/4")
    k, n = int(k_text), int(n_text)
    if n < 1 or k >= n:
        raise ValueError(f"--shard {spec!r}: need 0 <= K < N and N >= 1")
    return k, n


def route(event: AnyInput, n: int) -> list[tuple[int, AnyInput]]:
    """The shards an event goes to and what each applies (a cross-shard fill: its leg
    against :data:`SHARD_CLEARING`, the buyer's first), in shard order otherwise."""
    if isinstance(event, _BROADCAST):
        return [(k, event) for k in range(n)]
    if isinstance(event, Fill):
        b, s = shard_of(event.buyer, n), shard_of(event.seller, n)
        if b == s:
            return [(b, event)]
        # each leg keeps its own side's resting order (the other side's is in its shard);
        # one order named for both sides stays on both legs, so each refuses it as one
        # engine does (order_mismatch, before any order is looked up)
        both = event.buyer_order is not None and event.buyer_order == event.seller_order
        return [(b, replace(event, seller=SHARD_CLEARING, fee_seller=Decimal(0),
                            seller_order=event.seller_order if both else None)),
                (s, replace(event, buyer=SHARD_CLEARING, fee_buyer=Decimal(0),
                            buyer_order=event.buyer_order if both else None))]
    if isinstance(event, Deposit | Withdraw | AccountMode | IsolatedMargin | Order
                  | OrderCancel):
        return [(shard_of(event.account, n), event)]
    return [(FUND_SHARD, event)]  # an unknown type: one shard names the rejection


def names_clearing(event: AnyInput) -> str | None:
    """The field of a user's event that names :data:`SHARD_CLEARING` (``account``,
    ``buyer`` or ``seller``), or None. Only the shards book against that account: a user's
    withdrawal from it, or a fill with it (exempt from reduce-only as a shard's clearing
    leg), would make the sharded venue differ from one engine."""
    for field in ("account", "buyer", "seller"):
        if getattr(event, field, None) == SHARD_CLEARING:
            return field
    return None


class ShardedEngine:
    """N engines, one per shard of the accounts, behind one :meth:`apply`.

    Parameters
    ----------
    venue
        The venue every shard runs.
    n
        Number of shards.
    make_engine
        Builds one shard's engine (default ``Engine(venue)``): the same ports as one
        engine would have.
    """

    def __init__(self, venue: Venue, n: int, *,
                 make_engine: Callable[[Venue], Engine] | None = None,
                 checkpoint_every: int = 50) -> None:
        if n < 1:
            raise ValueError(f"shard count must be at least 1, got {n}")
        self.n = n
        self.shards = [(make_engine or Engine)(venue) for _ in range(n)]
        for k, engine in enumerate(self.shards):
            check_shardable(engine)
            for ev in genesis(engine, k):
                engine.apply(ev)
        self.seen: set[str] = set()
        self.m = 0
        """Input events applied (the venue sequence number of the last)."""
        self.births: dict[str, BirthKey] = {}
        """Every row's creation (:data:`BirthKey`): the venue's row order."""
        self.venue_wide_events: list[tuple[str, str]] = []
        """(event id, what needed it) of each event decided over the gathered venue."""
        self.checkpoint_every = checkpoint_every
        self._base: list[dict[str, Any]] = []
        self._ops: list[list[tuple[Any, ...]]] = []
        self._checkpoint()

    def _checkpoint(self) -> None:
        # each shard's state, and what it applied since: a shard goes back to the state
        # before an event by restoring this and applying those again
        self._base = [e.snapshot() for e in self.shards]
        self._ops = [[] for _ in self.shards]

    def apply(self, event: AnyInput) -> list[Any]:
        """Apply one event across the shards; return its out-events (shard order)."""
        if event.id in self.seen:
            return []
        named = names_clearing(event)
        if named is not None:  # before anything moves: one engine has no such account
            return [Rejected(id=f"rejected:{event.id}", event=event.id,
                             reason="system_account",
                             detail=f"{named} {SHARD_CLEARING} is run by the shards")]
        self.m += 1
        if self.m % self.checkpoint_every == 0:
            self._checkpoint()
        refused = refuse_unshardable(self.shards[FUND_SHARD], event)
        if refused is None:
            refused = refuse_contract_terms(self.shards, event)
        if refused is not None:  # every shard holds the same markets: one verdict
            return [refused]
        legs = route(event, self.n)
        if len(legs) == 2 and isinstance(event, Fill):
            rej = self._check_legs(event, legs)
            if rej is not None:
                return [rej]
        per_shard: list[list[Any]] = [[] for _ in self.shards]
        sizes = [len(e.book.rows) for e in self.shards]
        n_ops = [len(ops) for ops in self._ops]
        for engine in self.shards:
            engine.liquidator.venue_wide = None
        verdicts = []
        for k, ev in legs:
            got = self.shards[k].apply(ev)
            self._ops[k].append(("apply", ev))
            verdicts.append(any(isinstance(o, Rejected) and o.event == event.id for o in got))
            per_shard[k] = got
        if any(verdicts):
            if not all(verdicts):
                raise ShardDivergenceError(f"event {event.id}: accepted by some shards, "
                                      f"rejected by others ({verdicts})")
            return per_shard[legs[0][0]][:1] if len(legs) > 1 else per_shard[legs[0][0]]
        self.seen.add(event.id)
        targets = [k for k, _ in legs]
        if event.ts_ms is not None:
            for k, engine in enumerate(self.shards):
                if k not in targets:
                    per_shard[k] = engine.pass_time(event.ts_ms, event.id)
                    self._ops[k].append(("pass_time", event.ts_ms, event.id))
        need = next((e.liquidator.venue_wide for e in self.shards
                     if e.liquidator.venue_wide), None)
        if need is not None:
            return self._venue_wide(event, targets, need, n_ops)
        for k, engine in enumerate(self.shards):
            order = targets + [j for j in range(self.n) if j not in targets]
            record_births(self.births, engine, sizes[k], (self.m, order.index(k)))
        out = merge_out(event.id, per_shard)
        refuse_global(event.id, out)
        return out

    def _venue_wide(self, event: AnyInput, targets: list[int], need: str,
                    n_ops: list[int]) -> list[Any]:
        """The event over the gathered venue: every shard back to its state before it,
        one engine restored from them (:func:`gather`), the event applied there, and its
        result given back to the shards (:func:`scatter`)."""
        olds = []
        for k, engine in enumerate(self.shards):
            back = restore_like(engine, self._base[k])
            for op in self._ops[k][:n_ops[k]]:
                if op[0] == "apply":
                    back.apply(op[1])
                else:
                    back.pass_time(op[1], op[2])
            olds.append(back.snapshot())
        out, snaps = decide_venue_wide(self.shards[FUND_SHARD], olds, self.births, event,
                                       targets, self.m)
        self.shards = [restore_like(e, snap) for e, snap in zip(self.shards, snaps,
                                                                  strict=True)]
        self.venue_wide_events.append((event.id, need))
        self._checkpoint()
        return out

    def apply_all(self, events: Iterable[AnyInput]) -> list[Any]:
        """Apply events in order; return every out-event."""
        out: list[Any] = []
        for ev in events:
            out.extend(self.apply(ev))
        return out

    def _check_legs(self, event: Fill, legs: list[tuple[int, AnyInput]]) -> Rejected | None:
        # the clock first, as Engine.apply does (every shard's clock is the venue's)
        clock = self.shards[legs[0][0]].clock_ms
        if event.ts_ms is not None and clock is not None and event.ts_ms < clock:
            return Rejected(id=f"rejected:{event.id}", event=event.id, reason="out_of_order",
                            detail=f"ts {event.ts_ms} is before the engine clock {clock}")
        for k, leg in legs:
            assert isinstance(leg, Fill)
            rej = self.shards[k].check_fill(leg)
            if rej is not None:
                return rej
        return None

    def owner(self, account: str) -> Engine:
        """The engine of the shard that holds ``account``."""
        return self.shards[shard_of(account, self.n)]

    def account_view(self, account: str) -> dict[str, Any]:
        """An account's view, from its shard."""
        return self.owner(account).account_view(account)

    def state_hash(self) -> str:
        """sha256 over the shard count and each shard's ``state_hash`` in shard order:
        it commits to every shard's exact state (each checkable on its own)."""
        return shards_hash([e.state_hash() for e in self.shards])

    def digest(self) -> str:
        """:func:`venue_digest` over the shards (equal to one engine's)."""
        return venue_digest(self.shards)


def restore_like(engine: Engine, snap: dict[str, Any]) -> Engine:
    """An engine restored from ``snap`` with ``engine``'s ports (liquidity, policy,
    portfolio grid)."""
    return type(engine).restore(snap, liquidity=engine.liquidity,
                                policy=engine.liquidator.policy,
                                pm_grid=engine.portfolio_margin.grid, like=engine.venue)


def record_births(births: dict[str, BirthKey], engine: Engine, before: int,
                  key: tuple[int, int]) -> None:
    """Record the rows ``engine`` created beyond its first ``before`` (one event's)."""
    rows = engine.book.rows
    for i in range(before, len(rows)):
        name = rows[i].name
        births[name] = min(births.get(name, (*key, i)), (*key, i))


def decide_venue_wide(like: Engine, olds: list[dict[str, Any]], births: dict[str, BirthKey],
                      event: AnyInput, targets: list[int],
                      m: int) -> tuple[list[Any], list[dict[str, Any]]]:
    """Apply ``event`` to one engine holding the whole venue (:func:`gather` of the
    shards' states before it, ``olds``); return its out-events and each shard's state
    after it (:func:`scatter`). A pure function of its arguments: every shard that
    computes it from the same states gets the same answer. ``births`` gains the rows the
    event created."""
    merged = restore_like(like, gather(olds, births))
    before = len(merged.book.rows)
    out = merged.apply(event)
    record_births(births, merged, before, (m, 0))
    return out, scatter(merged.snapshot(), olds, targets, event.id)


def shards_hash(hashes: Sequence[str]) -> str:
    """The venue's hash over its shards' state hashes (in shard order)."""
    h = hashlib.sha256(f"solvency-shards/1 n={len(hashes)}".encode())
    for k, x in enumerate(hashes):
        h.update(f"\n{k} {x}".encode())
    return h.hexdigest()


def check_shardable(engine: Engine) -> None:
    """Raise :class:`UnshardableError` where margin depends on venue-wide open interest."""
    mk = engine.book.mk
    if mk.shape[0] and bool(np.any(mk[:, MK_OI_UPPER] > 0.0)):
        names = [engine.book.market_names[m] for m in np.flatnonzero(mk[:, MK_OI_UPPER] > 0)]
        raise UnshardableError(f"markets {names} scale initial margin with open interest, "
                          "which only the whole venue knows")


def refuse_unshardable(engine: Engine, event: AnyInput) -> Rejected | None:
    """The rejection (``unshardable``) of a parameter change that would scale its
    market's margin with open interest, decided before anything is applied from what
    the engine would make of the market (:func:`~solvency.engine.params.params_trial`,
    changing nothing); None for any other event, or a change the engine itself refuses
    (it names its own reason). Every shard holds the same markets, so every shard
    reaches the same verdict."""
    if not isinstance(event, Params):
        return None
    try:
        _, inst, _ = params_trial(engine, event)
    except RejectReason:
        return None
    if risk_row(inst.margin).oi_upper <= 0.0:
        return None
    return Rejected(id=f"rejected:{event.id}", event=event.id, reason="unshardable",
                    detail=f"market {inst.name} would scale initial margin with open "
                           "interest, which only the whole venue knows")


def refuse_contract_terms(shards: Sequence[Engine], event: AnyInput) -> Rejected | None:
    """One engine's rejection of a ``params`` change of contract terms (lot or tick size,
    contract size, expiry...) while the market has positions or resting orders, decided
    over every shard before anything is applied: the positions and orders of a market
    may sit on some shards only, and one engine looks at them all (positions first, as
    :func:`~solvency.engine.params.params_trial` does). None for any other event or
    verdict (every shard reaches those alike)."""
    if not isinstance(event, Params):
        return None
    found: dict[str, RejectReason] = {}
    for engine in shards:
        try:
            params_trial(engine, event)
        except RejectReason as exc:
            for kind in (WHILE_POSITIONS, WHILE_ORDERS):
                if exc.reason == "invalid_params" and kind in exc.detail:
                    found.setdefault(kind, exc)
    got = found.get(WHILE_POSITIONS) or found.get(WHILE_ORDERS)
    if got is None:
        return None
    return Rejected(id=f"rejected:{event.id}", event=event.id, reason=got.reason,
                    detail=got.detail)


def genesis(engine: Engine, k: int) -> list[Deposit]:
    """The shard's first events: its clearing account's deposit of every settlement
    asset (:data:`GENESIS_QUANTA`), so that its side of a leg always passes margin. Marks
    ``engine`` as a shard's (``Engine.shard``: the clearing side of a leg is not refused
    by reduce-only; a plain engine refuses it like any account's)."""
    engine.shard = True
    settles = sorted({inst.settle for inst in engine.venue.markets.values()})
    return [Deposit(id=f"shard-genesis:{k}:{a}", account=SHARD_CLEARING, asset=a,
                    amount=Decimal(GENESIS_QUANTA).scaleb(-engine.venue.assets[a].decimals))
            for a in settles]


def merge_out(event_id: str, per_shard: list[list[Any]]) -> list[Any]:
    """One event's out-events over the shards: every account's own (each is on one
    shard), the market's news (marks, breakers, parameter changes) once, from shard 0
    (every shard sees every price and every moment, so each reports the same; a shard
    reporting news shard 0 did not is a divergence), settlements summed."""
    news = Counter(_content(o) for o in per_shard[FUND_SHARD] if _is_news(o))
    out: list[Any] = []
    for k, got in enumerate(per_shard):
        for o in got:
            if k == FUND_SHARD or not _is_news(o):
                out.append(o)
            elif news[_content(o)] <= 0:
                raise ShardDivergenceError(f"event {event_id}: shard {k} reported {o}, "
                                      "shard 0 did not")
    return _merge_settled(out) if len(per_shard) > 1 else out


def _is_news(o: Any) -> bool:
    return not hasattr(o, "account") and not isinstance(o, Settled | Rejected)


def _content(o: Any) -> tuple[Any, ...]:
    return tuple((f, getattr(o, f)) for f in o.__slots__ if f != "id")


def _merge_settled(out: list[Any]) -> list[Any]:
    """One ``settled`` per market: the shards' paid, received and rounding summed (the
    clearing accounts' own payments included: they net out over the shards)."""
    first: dict[str, int] = {}
    merged: list[Any] = []
    for o in out:
        if not isinstance(o, Settled):
            merged.append(o)
            continue
        at = first.get(o.market)
        if at is None:
            first[o.market] = len(merged)
            merged.append(o)
            continue
        prev = merged[at]
        merged[at] = replace(prev, **{f: str(Decimal(getattr(prev, f)) + Decimal(getattr(o, f)))
                                      for f in ("paid", "received", "rounding")})
    return merged


def refuse_global(event_id: str, out: list[Any]) -> None:
    """Raise :class:`GlobalViewNeededError` if ``out`` holds a decision that needs the
    whole venue (the fund paying, the backstop, ADL, socialized loss, bad debt)."""
    for o in out:
        kind = getattr(o, "type", "")
        if kind in _GLOBAL_OUT:
            raise GlobalViewNeededError(event_id, kind)
        if kind == "liquidation" and (o.via not in ("market", "unresolved")
                                      or o.insurance_fund_delta.startswith("-")):
            raise GlobalViewNeededError(event_id, f"a liquidation via {o.via} with fund delta "
                                             f"{o.insurance_fund_delta}")
        if getattr(o, "account", None) == SHARD_CLEARING:
            raise GlobalViewNeededError(event_id, f"a {kind} of the clearing account")


_NOT_COMPARED: Final = frozenset({CLEARING, ROUNDING, EXTERNAL, "u:" + SHARD_CLEARING})


def venue_digest(engines: Sequence[Engine]) -> str:
    """sha256 of what one engine and its shards must agree on: every ledger account's
    balance per asset summed over the engines (user accounts live on one), every row's
    positions (lots, cost), the marks, the realized PnL per account, the resting orders
    (each on its account's engine). Left out: the clearing and rounding accounts and the
    world's side of deposits, which the legs and the shards' own funding rounding move
    (their venue-wide sum is checked apart by :func:`clearing_residual`)."""
    return hashlib.sha256(json.dumps(venue_summary(engines), sort_keys=True).encode()
                          ).hexdigest()


def venue_summary(engines: Sequence[Engine]) -> dict[str, Any]:
    """The data :func:`venue_digest` hashes (for a readable diff when they differ)."""
    balances: dict[str, int] = {}
    positions: dict[str, list[int]] = {}
    realized: dict[str, Decimal] = {}
    marks: list[Any] | None = None
    orders: list[Any] = []
    for engine in engines:
        snap = engine.snapshot()
        orders.extend(snap.get("open_orders", []))
        for account, asset, value in snap["ledger"]["balances"]:
            if account not in _NOT_COMPARED:
                key = f"{account}|{asset}"
                balances[key] = balances.get(key, 0) + int(value)
        for name, market, lots, cost in snap["positions"]:
            if name != SHARD_CLEARING:
                key = f"{name}|{market}"
                got = positions.setdefault(key, [0, 0])
                got[0] += int(lots)
                got[1] += int(cost)
        for account, value in snap["realized"].items():
            if SHARD_CLEARING not in account:
                realized[account] = realized.get(account, Decimal(0)) + Decimal(value)
        if marks is None:
            marks = snap["marks"]
        elif marks != snap["marks"]:
            raise ShardDivergenceError("shards hold different marks")
    return {"balances": {k: str(v) for k, v in balances.items() if v},
            "positions": {k: [str(x) for x in v] for k, v in positions.items() if v != [0, 0]},
            "realized": {k: str(v) for k, v in realized.items() if v},
            "marks": marks,
            **({"open_orders": sorted(orders, key=lambda o: str(o[0]))} if orders else {})}


def clearing_residual(engines: Sequence[Engine]) -> dict[str, Any]:
    """Per asset, what the clearing, rounding and world accounts hold over all engines
    (less the shards' genesis deposits), and per market the clearing accounts' summed
    lots (always 0: every leg has its opposite on another shard)."""
    held: dict[str, int] = {}
    lots: dict[str, int] = {}
    for engine in engines:
        snap = engine.snapshot()
        for account, asset, value in snap["ledger"]["balances"]:
            if account in _NOT_COMPARED:
                held[asset] = held.get(asset, 0) + int(value)
        for name, market, n_lots, _ in snap["positions"]:
            if name == SHARD_CLEARING:
                lots[market] = lots.get(market, 0) + int(n_lots)
    return {"held": held, "clearing_lots": lots}


def sharded_liabilities(engines: Sequence[Engine]) -> dict[str, Any]:
    """What the venue owes every account, over its shards: the shape of
    :func:`~solvency.engine.summary.liabilities` (``assets``, ``accounts``, ``owed`` int64
    accounts x assets, ``negative``), each account's row from the shard that holds it,
    accounts sorted by name (so 1, 2 or 4 shards, or one engine's liabilities sorted the
    same way, give the same tree). The clearing accounts are engine-run (``__`` names)
    and, like the fund, not listed by ``liabilities``."""
    assets = list(engines[0].book.asset_names)
    rows: dict[str, np.ndarray] = {}
    negative: dict[str, Any] = {}
    for engine in engines:
        got = liabilities(engine)
        col = [got["assets"].index(a) if a in got["assets"] else -1 for a in assets]
        extra = sorted(set(got["assets"]) - set(assets))
        if extra:
            raise ShardDivergenceError(f"shards hold different assets: {extra}")
        for i, account in enumerate(got["accounts"]):
            if account in rows:
                raise ShardDivergenceError(f"account {account!r} is on two shards")
            owed = got["owed"][i]
            rows[account] = np.array([owed[c] if c >= 0 else 0 for c in col],
                                     dtype=np.int64)
        negative.update(got["negative"])
    names = sorted(rows)
    owed = (np.stack([rows[a] for a in names]) if names
            else np.zeros((0, len(assets)), dtype=np.int64))
    return {"assets": assets, "accounts": names, "owed": owed,
            "negative": dict(sorted(negative.items()))}


# ---------------------------------------------------------------- the venue-wide decision

_PER_ACCOUNT_STATE: Final = frozenset({
    "rows", "positions", "ledger", "realized", "accounts", "warned", "seen_ids",
    "liquidation", "counts", "liquidation_counts", "open_orders"})
"""Snapshot keys that differ by shard (``open_orders``: each shard rests its own accounts'
orders); every other key (marks, oracle and breakers, clock,
volatility, collateral sources, params...) is state every shard holds alike."""
_CLEARING_LEDGER: Final = "u:" + SHARD_CLEARING
_FIXED_LEDGER: Final = frozenset({CLEARING, EXTERNAL})  # each shard's own, never moved


def _owner(account: str, n: int) -> int | None:
    """The shard an account's rows and money belong to after a venue-wide event: its
    shard for a user account, 0 for an engine-run (``__``) one; None for the clearing
    account (every shard has its own)."""
    if account == SHARD_CLEARING:
        return None
    if account.startswith("__"):
        return FUND_SHARD
    return shard_of(account, n)


BirthKey = tuple[int, int, int]
"""When a row was created: (venue sequence of the event, the shard's place among the
event's targets, the row's index on its shard). Sorting the venue's rows by it gives
the order one engine created them in (a fill creates its buyer's row before its
seller's, and the buyer's leg is the first target)."""


def gather(snaps: Sequence[dict[str, Any]], births: dict[str, BirthKey]) -> dict[str, Any]:
    """One engine's snapshot of the whole venue from its shards' snapshots (taken before
    the same input event): every account's rows in the venue's creation order
    (``births``), positions, balances, realized PnL and liquidation state; the engine-run
    accounts (market, fund, backstop, fee pool, rounding) summed over the shards; the
    state every shard holds alike (marks, oracle and breakers, clock, volatility) from
    shard 0. The clearing accounts' rows are left out (their positions sum to zero in
    every market); their money stays, as one ledger account, so the ledger balances."""
    base = snaps[FUND_SHARD]
    for k, snap in enumerate(snaps):
        if snap["marks"] != base["marks"] or snap["clock_ms"] != base["clock_ms"]:
            raise ShardDivergenceError(f"shard {k} holds other marks or clock than shard 0")
    out: dict[str, Any] = {key: v for key, v in base.items() if key not in _PER_ACCOUNT_STATE}
    out.pop("shard", None)  # the gathered venue is one engine's
    out["counts"], out["liquidation_counts"] = base["counts"], base["liquidation_counts"]
    rows: dict[str, list[Any]] = {}
    for snap in snaps:
        for row in snap["rows"]:
            if row[1] != SHARD_CLEARING:
                rows.setdefault(row[0], row)
    missing = sorted(set(rows) - set(births))
    if missing:
        raise ShardDivergenceError(f"rows without a recorded creation: {missing[:5]}")
    out["rows"] = [rows[name] for name in sorted(rows, key=lambda x: births[x])]
    orders = sorted((o for snap in snaps for o in snap.get("open_orders", [])),
                    key=lambda o: str(o[0]))
    if orders:  # one engine omits the key while no order rests
        out["open_orders"] = orders
    positions: dict[tuple[str, str], list[int]] = {}
    balances: dict[tuple[str, str], int] = {}
    external: dict[str, int] = {}
    realized: dict[str, int] = {}
    accounts: dict[str, Any] = {}
    warned: set[str] = set()
    seen: set[str] = set()
    partial: dict[str, Any] = {}
    deficit: set[str] = set()
    blocked: set[str] = set()
    losses: list[list[int]] = []
    for snap in snaps:
        for name, market, lots, cost in snap["positions"]:
            if name in rows:
                got = positions.setdefault((name, market), [0, 0])
                got[0] += int(lots)
                got[1] += int(cost)
        for account, asset, value in snap["ledger"]["balances"]:
            balances[(account, asset)] = balances.get((account, asset), 0) + int(value)
        for asset, value in snap["ledger"]["external_net"].items():
            external[asset] = external.get(asset, 0) + int(value)
        for key, value in snap["realized"].items():
            if SHARD_CLEARING not in key:
                realized[key] = realized.get(key, 0) + int(value)
        for account, mode in snap["accounts"].items():
            if account != SHARD_CLEARING:
                accounts.setdefault(account, mode)
        warned.update(x for x in snap["warned"] if x in rows)
        seen.update(snap["seen_ids"])
        liq = snap["liquidation"]
        partial.update(liq["last_partial_ms"])
        deficit.update(liq["deficit_rows"])
        blocked.update(liq["blocked_assets"])
        losses.extend(liq.get("losses", []))
    out["positions"] = [[name, market, str(lots), str(cost)]
                        for (name, market), (lots, cost) in _in_row_order(positions, out)
                        if (lots, cost) != (0, 0)]
    out["ledger"] = {"balances": [[a, s, str(v)] for (a, s), v in sorted(balances.items())
                                  if v],
                     "external_net": {a: str(v) for a, v in sorted(external.items())}}
    out["realized"] = {k: str(v) for k, v in sorted(realized.items())}
    out["accounts"] = dict(sorted(accounts.items()))
    out["warned"] = [r[0] for r in out["rows"] if r[0] in warned]
    out["seen_ids"] = sorted(seen)
    losses.sort()
    out["liquidation"] = {"last_partial_ms": dict(sorted(partial.items())),
                          "deficit_rows": sorted(deficit),
                          "blocked_assets": sorted(blocked),
                          **({"last_unwind_ms": base["liquidation"]["last_unwind_ms"]}
                             if "last_unwind_ms" in base["liquidation"] else {}),
                          # the dynamic fee's mark windows: every shard sees every mark
                          **({"mark_vol": base["liquidation"]["mark_vol"]}
                             if "mark_vol" in base["liquidation"] else {}),
                          # realized losses (target_from_losses): the fund shard holds the
                          # history, the others what they recorded since the last scatter
                          **({"losses": losses} if losses else {})}
    return out


def _in_row_order(positions: dict[tuple[str, str], list[int]],
                  snap: dict[str, Any]) -> list[tuple[tuple[str, str], list[int]]]:
    order = {r[0]: i for i, r in enumerate(snap["rows"])}
    markets = {m: i for i, m in enumerate(snap["market_order"])}
    return sorted(positions.items(), key=lambda kv: (order[kv[0][0]], markets[kv[0][1]]))


def scatter(merged: dict[str, Any], olds: Sequence[dict[str, Any]], targets: Sequence[int],
            event_id: str) -> list[dict[str, Any]]:
    """Each shard's snapshot after an event decided over the gathered venue (``merged``,
    its one-engine state after the event; ``olds``, the shards' states before it).

    Every user account gets its rows, positions, balances, realized PnL and liquidation
    state from ``merged`` on its own shard; the engine-run accounts (fund, its positions,
    market, backstop, fee pool, bad debt, rounding) move whole to shard 0; each shard's
    clearing account takes the difference, per asset and per market, so every shard's
    ledger total and book stay balanced and the clearing accounts' money and lots still
    sum over the shards to what they held (zero lots in every market). The state every
    shard holds alike comes from ``merged``; ``event_id`` joins the ``targets``' ids."""
    n = len(olds)
    ledger_owner: dict[str, str] = {}
    for snap in (*olds, merged):
        for row in snap["rows"]:
            ledger_owner[row[3]] = row[1]
    merged_pos: dict[str, dict[str, tuple[int, int]]] = {}
    for name, market, lots, cost in merged["positions"]:
        merged_pos.setdefault(name, {})[market] = (int(lots), int(cost))
    merged_account = {r[0]: r[1] for r in merged["rows"]}
    merged_warned = set(merged["warned"])
    merged_bal = {(a, s): int(v) for a, s, v in merged["ledger"]["balances"]}
    markets = {m: i for i, m in enumerate(merged["market_order"])}
    out = []
    for k, old in enumerate(olds):
        names = {r[0] for r in old["rows"]}
        rows = list(old["rows"]) + [r for r in merged["rows"] if r[0] not in names
                                    and _owner(r[1], n) == k]
        row_account = {r[0]: r[1] for r in rows}
        # positions: the owner's from merged; the clearing row takes the difference
        old_pos = {(name, market): (int(lots), int(cost))
                   for name, market, lots, cost in old["positions"]}
        new_pos: dict[tuple[str, str], tuple[int, int]] = {}
        for r in rows:
            if _owner(r[1], n) == k:
                for market, v in merged_pos.get(r[0], {}).items():
                    new_pos[(r[0], market)] = v
        shift: dict[str, list[int]] = {}
        for key in set(old_pos) | set(new_pos):
            if row_account[key[0]] == SHARD_CLEARING:
                continue
            a, b = old_pos.get(key, (0, 0)), new_pos.get(key, (0, 0))
            got = shift.setdefault(key[1], [0, 0])
            got[0] += b[0] - a[0]
            got[1] += b[1] - a[1]
        for (name, market), (lots, cost) in old_pos.items():
            if row_account[name] == SHARD_CLEARING:
                d = shift.pop(market, [0, 0])
                new_pos[(name, market)] = (lots - d[0], cost - d[1])
        for market, d in shift.items():
            if d != [0, 0]:
                new_pos[(SHARD_CLEARING, market)] = (-d[0], -d[1])
        order = {r[0]: i for i, r in enumerate(rows)}
        positions = [[name, market, str(lots), str(cost)] for (name, market), (lots, cost)
                     in sorted(new_pos.items(), key=lambda kv: (order[kv[0][0]],
                                                                markets[kv[0][1]]))
                     if (lots, cost) != (0, 0)]
        # balances: the same rule per ledger account and asset
        old_bal = {(acct, asset): int(q) for acct, asset, q in old["ledger"]["balances"]}
        new_bal: dict[tuple[str, str], int] = {}
        for (acct, asset), q in merged_bal.items():
            if acct == _CLEARING_LEDGER or acct in _FIXED_LEDGER:
                continue
            if _owner(ledger_owner.get(acct, "__system__"), n) == k:
                new_bal[(acct, asset)] = q
        moved: dict[str, int] = {}
        for acct, asset in set(old_bal) | set(new_bal):
            if acct == _CLEARING_LEDGER or acct in _FIXED_LEDGER:
                continue
            moved[asset] = (moved.get(asset, 0) + new_bal.get((acct, asset), 0)
                            - old_bal.get((acct, asset), 0))
        for (acct, asset), q in old_bal.items():
            if acct in _FIXED_LEDGER:
                new_bal[(acct, asset)] = q
            elif acct == _CLEARING_LEDGER:
                new_bal[(acct, asset)] = q - moved.pop(asset, 0)
        for asset, q in moved.items():
            if q:
                new_bal[(_CLEARING_LEDGER, asset)] = -q
        mine = {r[0] for r in rows if _owner(r[1], n) == k}
        old_warned = set(old["warned"])
        liq = merged["liquidation"]
        snap = {key: v for key, v in merged.items() if key not in _PER_ACCOUNT_STATE}
        if old.get("shard"):
            snap["shard"] = True
        orders = [o for o in merged.get("open_orders", []) if _owner(str(o[1]), n) == k]
        if orders:  # the shard's own accounts' orders; the key omitted when none rest
            snap["open_orders"] = orders
        snap.update({
            "counts": old["counts"], "liquidation_counts": old["liquidation_counts"],
            "rows": rows, "positions": positions,
            "ledger": {"balances": [[a, s, str(v)] for (a, s), v in sorted(new_bal.items())
                                    if v],
                       "external_net": old["ledger"]["external_net"]},
            "realized": dict(sorted((
                {key: v for key, v in old["realized"].items() if SHARD_CLEARING in key}
                | {key: v for key, v in merged["realized"].items()
                   if _owner(merged_account.get(key, key), n) == k}).items())),
            "accounts": dict(sorted((
                {a: m for a, m in old["accounts"].items() if a == SHARD_CLEARING}
                | {a: m for a, m in merged["accounts"].items() if _owner(a, n) == k})
                .items())),
            "warned": [r[0] for r in rows if (r[0] in merged_warned and r[0] in mine)
                       or (r[0] in old_warned and r[1] == SHARD_CLEARING)],
            "seen_ids": sorted(set(old["seen_ids"]) | ({event_id} if k in targets
                                                      else set())),
            "liquidation": {
                "last_partial_ms": {x: t for x, t in liq["last_partial_ms"].items()
                                    if x in mine},
                "deficit_rows": [x for x in liq["deficit_rows"] if x in mine],
                "blocked_assets": liq["blocked_assets"],
                **({"last_unwind_ms": liq["last_unwind_ms"]}
                   if k == FUND_SHARD and "last_unwind_ms" in liq else
                   {"last_unwind_ms": old["liquidation"]["last_unwind_ms"]}
                   if "last_unwind_ms" in old["liquidation"] else {}),
                **({"mark_vol": liq["mark_vol"]} if "mark_vol" in liq else {}),
                **({"losses": liq["losses"]} if k == FUND_SHARD and "losses" in liq
                   else {}),
            },
        })
        out.append(snap)
    return out
