"""The insurance fund against open interest: coverage, and the fee-share policy hook.

A venue may tie the fund's share of trading fees to its coverage (fund / open-interest
notional of the markets settled in the fund's asset): below the policy's target the share
rises, above its release level it falls (``core.liquidation.fee_share_update``). With a
``target_fund`` (``insurance.policy.target_fund`` and ``target_asset``: the fund a stress
sweep says the venue needs, ``solvency fund-target --venue-out``) coverage is the fund over
that target instead; with ``target_from_losses`` the target is the larger of that and
the loss-history estimate of the losses the engine realized (fund draws, ADL haircuts,
socialized losses, bad debt; ``Liquidator.loss_target_quanta``). The fill path calls
:func:`review_fee_share` after every fill when a policy is configured.
"""

from __future__ import annotations

from typing import Any

from solvency.core.ledger.ledger import INSURANCE
from solvency.core.liquidation import fee_share_update
from solvency.core.model.events import ParamsChanged
from solvency.engine.base import EngineState

__all__ = ["coverage", "open_interest_quanta", "review_fee_share"]


def open_interest_quanta(state: EngineState, asset: str) -> int:
    """Open-interest notional (one side, at the marks) of markets settled in
    ``asset``, in its quanta (rounded down)."""
    book = state.book
    oi = 0.0
    for m, inst in enumerate(book.instruments):
        if inst.settle != asset or book.marks[m] is None:
            continue
        contracts = book.oi_lots[m] * book.lot_size[m] * float(inst.contract_size)
        mark = float(book.mk[m, 3])
        oi += contracts / mark if inst.is_inverse else contracts * mark
    return int(oi * book.asset_scale[book.asset_index[asset]])


def coverage(state: EngineState, asset: str) -> float:
    """Insurance fund / open-interest notional of the markets settled in ``asset``."""
    oi = open_interest_quanta(state, asset)
    return state.ledger.balance(INSURANCE, asset) / oi if oi > 0 else float("inf")


def review_fee_share(state: EngineState, asset: str, cause: str) -> list[Any]:
    """The fee-share policy hook: coverage below target raises the fund's share of
    fees (above the release level lowers it), as a ``params_changed`` out-event."""
    policy = state.fee_policy
    assert policy is not None
    # the fund's balance and the open interest are the whole venue's (an account shard
    # decides this event over the gathered venue: service/shards.py)
    state.liquidator.venue_wide = state.liquidator.venue_wide or "the fee-share policy"
    target = state.fee_target_quanta
    if target is not None and policy.target_from_losses is not None:
        # re-estimated from the losses the engine realized (issue 19)
        target = max(target, state.liquidator.loss_target_quanta())
    if target is not None and asset != policy.target_asset:
        return []  # a fund target is in one asset: fills settled in others leave it
    fund = max(state.ledger.balance(INSURANCE, asset), 0)
    oi = open_interest_quanta(state, asset) if target is None else 0
    change = fee_share_update(policy, fund_quanta=fund, open_interest_quanta=oi,
                              current_share_ppm=state.fee_share_ppm, target_quanta=target)
    if not change:
        return []
    old = state.fee_share_ppm
    state.fee_share_ppm = int(change[policy.param])
    if target is not None:
        reason = f"insurance fund at {fund / target:.6g} of its {asset} target"
    else:
        cov = fund / oi if oi else float("inf")
        reason = f"insurance coverage of {asset} open interest {cov:.6g}"
    return [ParamsChanged(id=state.next_id(), event=cause, param=policy.param,
                          old=str(old), new=str(state.fee_share_ppm), reason=reason)]
