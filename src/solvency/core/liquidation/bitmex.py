"""BitMEX's liquidation price of an isolated position, fees to close and funding included.

BitMEX keeps, per position, integer amounts of the settlement asset's quanta (satoshis for
XBT): ``posCost`` (the entry value), ``posInit`` (initial margin), ``posComm`` (the taker
fee to close, reserved), ``posMargin = posInit + posComm`` (plus any margin added) and
``posMaint``, the maintenance margin *plus the taker fee to close plus the funding to the
next settlement when it is against the position*. A position is liquidated when its
margin plus unrealised PnL falls to ``posMaint``, and goes bankrupt when it falls to zero.
Sources: the fields of BitMEX's ``/position`` API (posCost, posInit, posComm, posMargin,
posMaint; a real response's amounts are reproduced to the satoshi in
tests/unit/core/test_bitmex_liquidation.py) and the formula BitMEX support gave for the
liquidation price, maintenance margin = 0.5 % + exit taker fee + funding rate when paid
(relayed in nottug/bitmex_utils README, commit f4e1b55, and narodnik/predikate
liquidation_price.py, which computes it in satoshis):

* ``posCost = |Q| x round(1e8 / entry)`` sat for the inverse XBTUSD (one USD a contract),
  ``|Q| x size x entry`` quanta for a linear contract;
* ``posInit = ceil(posCost / leverage)``;
* ``posComm = ceil((posCost + posInit) x takerFee)``: the fee of closing at the bankruptcy
  price, whose value is ``posCost + posInit``;
* ``posMaint = ceil(posCost x maintMarginReq) + posComm + ceil(posCost x max(0, s r))``,
  ``s = +1`` long, ``-1`` short, ``r`` the next funding rate (longs pay a positive rate).

The liquidation price solves ``posMargin + PnL(p) = posMaint`` (bankruptcy:
``posMargin - posComm + PnL(p) = 0``, the fee reserve being spent on the close), where
``PnL`` of the inverse contract is ``Q (1e8 / entry' - 1e8 / p)`` sat with ``1e8 / entry'``
the rounded per-contract value, and of a linear one ``Q size (p - entry)``. Prices round to
the tick towards the mark (a long's up, a short's down): the position is never shown safer
than it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

__all__ = ["BitmexIsolated", "bitmex_isolated", "bitmex_margin_at_leverage"]


def _ceil(x: Decimal) -> int:
    return int(x.to_integral_value(ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class BitmexIsolated:
    """An isolated position as BitMEX values it (amounts in settlement quanta)."""

    cost: int
    commission: int
    funding: int
    maintenance: int
    margin: int
    liquidation_price: Decimal | None
    bankrupt_price: Decimal | None


def _value(size: Decimal, entry: Decimal, *, inverse: bool, contract_size: Decimal,
           scale: int) -> int:
    if inverse:  # round(-100000000 / price) per contract, as BitMEX's multiplier does
        per = (Decimal(scale) * contract_size / entry).to_integral_value(ROUND_HALF_EVEN)
        return int(abs(size) * per)
    return int((abs(size) * contract_size * entry * scale).to_integral_value(ROUND_HALF_EVEN))


def bitmex_margin_at_leverage(size: Decimal, entry: Decimal, leverage: Decimal, *,
                              inverse: bool, contract_size: Decimal, scale: int,
                              taker_fee: Decimal) -> tuple[int, int, int]:
    """Return ``(posInit, posComm, posMargin)`` of a position opened at ``leverage``."""
    cost = _value(size, entry, inverse=inverse, contract_size=contract_size, scale=scale)
    init = _ceil(Decimal(cost) / leverage)
    comm = _ceil((cost + init) * taker_fee)
    return init, comm, init + comm


def _commission(cost: int, margin: int, taker_fee: Decimal) -> int:
    # posComm = ceil((posCost + posInit) f) with posInit = posMargin - posComm: the least
    # fixed point, from below (at most a few steps: each changes it by < f times the last)
    comm = 0
    for _ in range(64):
        nxt = _ceil((cost + margin - comm) * taker_fee)
        if nxt == comm:
            return comm
        comm = nxt
    return comm


def _price(size: Decimal, entry: Decimal, cushion: int, *, inverse: bool,
           contract_size: Decimal, scale: int, tick: Decimal, cost: int) -> Decimal | None:
    """The price at which the position's PnL is ``-cushion`` quanta, rounded to the tick
    towards the entry (None where no positive price does)."""
    q = abs(size)
    long = size > 0
    if inverse:
        # long: 1e8 Q / p = cost + cushion; short: 1e8 Q / p = cost - cushion
        denom = cost + cushion if long else cost - cushion
        if denom <= 0:
            return None
        p = Decimal(scale) * q * contract_size / denom
    else:
        move = Decimal(cushion) / (q * contract_size * scale)
        p = entry - move if long else entry + move
        if p <= 0:
            return None
    steps = (p / tick).to_integral_value(ROUND_CEILING if long else ROUND_FLOOR)
    return steps * tick


def bitmex_isolated(size: Decimal, entry: Decimal, margin: int, *, inverse: bool,
                    contract_size: Decimal, scale: int, tick: Decimal, mmr: Decimal,
                    taker_fee: Decimal, funding_rate: Decimal) -> BitmexIsolated:
    """Return BitMEX's amounts, liquidation and bankruptcy prices of an isolated position.

    ``size`` signed contracts, ``entry`` its average entry price, ``margin`` its
    ``posMargin`` in settlement quanta (``scale`` quanta a unit: 1e8 for XBT), ``mmr`` the
    maintenance rate of its risk limit, ``taker_fee`` and ``funding_rate`` (the next one;
    positive: longs pay). Formulas and rounding in the module docstring.
    """
    if size == 0 or not entry > 0 or margin < 0:
        raise ValueError("bitmex_isolated: size != 0, entry > 0 and margin >= 0")
    cost = _value(size, entry, inverse=inverse, contract_size=contract_size, scale=scale)
    comm = _commission(cost, margin, taker_fee)
    against = max(Decimal(0), funding_rate if size > 0 else -funding_rate)
    funding = _ceil(cost * against)
    maint = _ceil(cost * mmr) + comm + funding
    liq = _price(size, entry, margin - maint, inverse=inverse, contract_size=contract_size,
                 scale=scale, tick=tick, cost=cost)
    bankrupt = _price(size, entry, margin - comm, inverse=inverse,
                      contract_size=contract_size, scale=scale, tick=tick, cost=cost)
    return BitmexIsolated(cost=cost, commission=comm, funding=funding, maintenance=maint,
                          margin=margin, liquidation_price=liq, bankrupt_price=bankrupt)
