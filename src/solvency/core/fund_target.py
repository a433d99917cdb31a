"""Insurance-fund target from loss history: the fund a venue needs for the losses a
stress-lab sweep says it must absorb, and the fee share that rebuilds it in time.

Per stress path ``i`` the fund's **need** is what the fund paid plus what it would have
had to pay for nobody else to lose::

    need_i = fund_drawdown_i + (adl_haircut_i - adl_overshoot_i) + bad_debt_i

``fund_drawdown`` is the largest fall of the fund from a running peak (its equity where
the sweep records it: positions it took over count at the mark); ``adl_haircut -
adl_overshoot`` is the part of the ADL haircut the fund could not pay when it happened
(the minimum haircut, ``max(0, H_t - F_t)`` per step): with a larger fund the fund pays
it; ``bad_debt`` the shortfall nobody covered. The **target** is the ``q`` quantile
(VaR) or expected shortfall (ES) of ``need`` over the paths: the CCP "cover 2" idea of
CPMI-IOSCO, *Principles for financial market infrastructures* (2012), Principle 4 (key
consideration 4: resources for extreme but plausible conditions), in the venue's own
terms: the venue's own book, liquidity and fund rules under the sweep's crashes rather
than the default of its two largest members.

Empirical VaR and ES as :func:`solvency.core.var.empirical_var_es_losses` (Acerbi and
Tasche 2002, "On the coherence of expected shortfall", *J. Banking & Finance* 26(7)),
here in exact decimals: with ``x`` sorted ascending, ``m = ceil(q n)``::

    VaR = x_(m)
    ES  = (sum_{i > m} x_(i) / n + (m / n - q) x_(m)) / (1 - q)

**Rebuild.** With the fund at ``fund`` and trading fees of ``fee_income`` a day, the fee
share that closes ``shortfall = max(0, target - fund)`` within ``days`` is
``shortfall / (fee_income x days)``; above 1 no share can, and ``shortfall /
fee_income`` days at a share of 1 is the fastest. Everything is pure and exact: money in
``Decimal``, no floats.

**From realized losses.** The sweep's target is a model's; the losses the venue (or the
engine, ``insurance.policy.target_from_losses``) realized are facts. The loss-history
estimate is ``cover x L``, ``L`` the largest sum of realized losses (fund draws, ADL
haircuts, socialized losses, bad debt) within one episode (a day by default) over the
history window; the target is the larger of the two, so a fund that paid a large loss
raises its own target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Literal

from solvency.core.liquidation.insurance import largest_window_sum

__all__ = ["FundTarget", "PathLoss", "fund_target", "largest_episode_loss", "var_es"]

Measure = Literal["var", "es"]


@dataclass(frozen=True, slots=True)
class PathLoss:
    """One stress path's losses in the settlement asset (each >= 0)."""

    fund_drawdown: Decimal
    adl_haircut: Decimal
    adl_overshoot: Decimal
    bad_debt: Decimal

    @property
    def need(self) -> Decimal:
        """The fund this path needed: its drawdown, the ADL it could not pay, bad debt."""
        return self.fund_drawdown + (self.adl_haircut - self.adl_overshoot) + self.bad_debt


@dataclass(frozen=True, slots=True)
class FundTarget:
    """The target and the rebuild plan (``share`` None when no share rebuilds in time)."""

    measure: Measure
    confidence: Decimal
    paths: int
    var: Decimal
    es: Decimal
    target: Decimal
    fund: Decimal
    shortfall: Decimal
    fee_income_per_day: Decimal
    days: Decimal
    share: Decimal | None
    days_at_full_share: Decimal
    sweep_target: Decimal | None = None
    loss_target: Decimal | None = None


def var_es(sample: Sequence[Decimal], confidence: Decimal) -> tuple[Decimal, Decimal]:
    """Return the empirical ``(VaR, ES)`` of a loss sample at ``confidence``, exactly."""
    if not sample:
        raise ValueError("losses: empty sample")
    if not Decimal("0.5") <= confidence < 1:
        raise ValueError(f"confidence: {confidence} must lie in [0.5, 1)")
    x = sorted(sample)
    n = len(x)
    m = max(1, math.ceil(n * confidence))
    var = x[m - 1]
    tail = sum(x[m:], Decimal(0))
    es = (tail / n + (Decimal(m) / n - confidence) * var) / (1 - confidence)
    return var, es


def fund_target(
    losses: Sequence[PathLoss], *, fund: Decimal, fee_income_per_day: Decimal, days: Decimal,
    measure: Measure = "es", confidence: Decimal = Decimal("0.99"),
    loss_target: Decimal | None = None,
) -> FundTarget:
    """Return the fund target of the paths' needs and the fee share that rebuilds it.

    With ``loss_target`` (the loss-history estimate: a cover factor times the largest
    loss the venue realized in one episode, :func:`largest_episode_loss`) the target is
    the larger of the two (``sweep_target`` keeps the sweep's own).

    Raises
    ------
    ValueError
        On no paths, a negative loss, an overshoot above its haircut, a negative fund,
        a fee income or a number of days that is not positive, or an unknown measure.
    """
    if measure not in ("var", "es"):
        raise ValueError(f"measure: {measure!r} is not var or es")
    for i, p in enumerate(losses):
        if min(p.fund_drawdown, p.adl_haircut, p.adl_overshoot, p.bad_debt) < 0:
            raise ValueError(f"path {i}: losses must be >= 0")
        if p.adl_overshoot > p.adl_haircut:
            raise ValueError(f"path {i}: adl_overshoot above adl_haircut")
    if fund < 0 or fee_income_per_day <= 0 or days <= 0:
        raise ValueError("fund must be >= 0, fee income per day and days > 0")
    var, es = var_es([p.need for p in losses], confidence)
    sweep_target = es if measure == "es" else var
    if loss_target is not None and loss_target < 0:
        raise ValueError("loss_target must be >= 0")
    target = sweep_target if loss_target is None else max(sweep_target, loss_target)
    shortfall = max(Decimal(0), target - fund)
    need_share = shortfall / (fee_income_per_day * days)
    return FundTarget(
        measure=measure, confidence=confidence, paths=len(losses), var=var, es=es,
        target=target, fund=fund, shortfall=shortfall, fee_income_per_day=fee_income_per_day,
        days=days, share=need_share if need_share <= 1 else None,
        days_at_full_share=(shortfall / fee_income_per_day).quantize(
            Decimal("0.01"), rounding=ROUND_CEILING),
        sweep_target=sweep_target, loss_target=loss_target)


def largest_episode_loss(losses: Sequence[tuple[int, Decimal]], *, now_ms: int,
                         episode_ms: int, history_ms: int) -> Decimal:
    """Return the largest sum of realized losses ``(ts_ms, amount)`` within one
    ``episode_ms`` window ``[t_i, t_i + episode)``, over the losses newer than ``now_ms -
    history_ms`` (exact; the decimal twin of the engine's
    :func:`~solvency.core.liquidation.loss_history_target_quanta` before its cover)."""
    if not 0 < episode_ms <= history_ms:
        raise ValueError("need 0 < episode <= history")
    xs = sorted((t, q) for t, q in losses if t > now_ms - history_ms)
    return largest_window_sum(xs, episode_ms, Decimal(0))
