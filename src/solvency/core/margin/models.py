"""Margin models: each one a real venue's published rule, as data plus a plain-Python twin.

Every model reduces to one row of the unified risk table that the vectorized kernel in
:mod:`solvency.core.margin.kernels` evaluates for all positions at once:

* notional tiers ``(floor, mmr, imr, maintenance_amount, initial_amount)``, where the
  requirement in a tier is ``notional * rate - amount``;
* a per-base-unit slope added to the rates (Deribit's size-scaled percentage);
* a square-root size premium (Drift's ``imf_factor``);
* open-interest scaling of the initial rate (dYdX v4 liquidity tiers).

Notional is measured in the market's settlement asset (quote for linear contracts, coin
for inverse ones). The ``requirement`` method of each model is the slow reference twin:
short, obviously correct, used by the tests to hold the kernel to the published rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

__all__ = [
    "MarginModel",
    "MarginTier",
    "ModelKind",
    "OIScaledModel",
    "OptionStandardModel",
    "SizeLinearModel",
    "SizePremiumModel",
    "TieredModel",
    "derive_amounts",
    "drift_unrealized_asset_weight_bp",
]

def drift_unrealized_asset_weight_bp(pnl_quanta: int, asset_weight_bp: int, imf_ppm: int,
                                     *, initial: bool = True) -> int:
    """Drift's asset weight (1e-4) on a perp position's unrealized PnL of
    ``pnl_quanta`` (USDC quanta, 1e-6): 10,000 for a loss or zero; for a profit, the
    maintenance weight as set, and for the initial check the market's
    ``unrealized_pnl_initial_asset_weight`` discounted by size,
    ``min(w, 1.1e6 x 1e4 // (1e6 + isqrt(pnl x 1e3 x 10 + 1) x imf // 1e5))`` (0 when the
    weight is 0). Integer divisions round down, as Drift's do.

    Source: drift-labs/protocol-v2 at 0ae3e3b1 (2026-04-01),
    ``programs/drift/src/state/perp_market.rs`` ``PerpMarket::get_unrealized_asset_weight``
    and ``programs/drift/src/math/margin.rs`` ``calculate_size_discount_asset_weight``
    (``AMM_TO_QUOTE_PRECISION_RATIO`` 1e3, ``SPOT_IMF_PRECISION`` 1e6); the market's
    ``unrealized_pnl_max_imbalance`` scaling is not modelled (0: off).

    The plain twin of the weight in ``kernels.drift_upnl_haircut``, which the engine's
    margin sums apply on markets that set ``unrealized_pnl_initial_asset_weight``.
    """
    if pnl_quanta <= 0:
        return 10_000
    if not initial:
        return asset_weight_bp
    if asset_weight_bp <= 0:
        return 0
    if imf_ppm == 0:
        return asset_weight_bp
    size_sqrt = math.isqrt(pnl_quanta * 1_000 * 10 + 1)
    discounted = (1_100_000 * 10_000) // (1_000_000 + size_sqrt * imf_ppm // 100_000)
    return min(asset_weight_bp, discounted)


ModelKind = Literal["tiered", "oi_scaled", "size_premium", "size_linear",
                   "option_standard"]


@dataclass(frozen=True, slots=True)
class MarginTier:
    """One notional bracket: rates apply to the whole notional, minus the amount.

    ``maintenance_amount`` is Binance's "maintenance amount" (``cum``) and Hyperliquid's
    "maintenance deduction"; when ``None`` it is derived by the bracket recursion
    ``cum_i = cum_{i-1} + floor_i * (mmr_i - mmr_{i-1})`` so the requirement is continuous.
    """

    floor: Decimal
    mmr: Decimal
    imr: Decimal
    maintenance_amount: Decimal | None = None
    initial_amount: Decimal | None = None


def derive_amounts(tiers: tuple[MarginTier, ...], *, continuous_initial: bool) -> tuple[
    MarginTier, ...
]:
    """Fill in missing maintenance (and, if asked, initial) amounts by the bracket recursion.

    Binance USD-M: ``cum_i = cum_{i-1} + floor_i * (mmr_i - mmr_{i-1})``, ``cum_0 = 0``
    (Binance "Leverage and Margin of USDⓈ-M Futures"); Hyperliquid's maintenance deduction
    is the same recursion (docs: trading/margin-tiers). Initial amounts stay 0 unless
    ``continuous_initial`` (Binance charges ``notional / leverage`` per bracket).
    """
    out: list[MarginTier] = []
    cum_mm = Decimal(0)
    cum_im = Decimal(0)
    prev: MarginTier | None = None
    for t in tiers:
        if prev is not None:
            cum_mm += t.floor * (t.mmr - prev.mmr)
            cum_im += t.floor * (t.imr - prev.imr)
        mm_amt = t.maintenance_amount if t.maintenance_amount is not None else cum_mm
        if t.initial_amount is not None:
            im_amt = t.initial_amount
        else:
            im_amt = cum_im if continuous_initial else Decimal(0)
        out.append(replace(t, maintenance_amount=mm_amt, initial_amount=im_amt))
        prev = t
    return tuple(out)


def _check_rate(name: str, value: Decimal) -> None:
    if not Decimal(0) <= value <= Decimal(1):
        raise ValueError(f"{name} {value} outside [0, 1]")


PPM_D = Decimal(1_000_000)


def _check_whole(name: str, value: Decimal, digits: int) -> None:
    # the venues that decide in integers hold their rates in fixed precision
    if value != value.quantize(Decimal(1).scaleb(-digits)):
        raise ValueError(f"{name} {value} is not a whole 1e-{digits} (the venue's precision)")


@dataclass(frozen=True, slots=True)
class TieredModel:
    """Notional brackets with a maintenance amount (Binance USD-M, Hyperliquid, BitMEX).

    ``MM = notional * mmr_t - maintenance_amount_t`` and ``IM = notional * imr_t -
    initial_amount_t`` where ``t`` is the bracket with the largest floor ``<= notional``
    (Binance "Leverage and Margin of USDⓈ-M Futures"; Hyperliquid trading/margin-tiers:
    ``mmr = 1 / (2 * max_leverage)`` and the maintenance deduction recursion).
    """

    tiers: tuple[MarginTier, ...]
    continuous_initial: bool = False
    kind: Literal["tiered"] = "tiered"

    def __post_init__(self) -> None:
        if not self.tiers or self.tiers[0].floor != 0:
            raise ValueError("tiers must start at floor 0")
        floors = [t.floor for t in self.tiers]
        if floors != sorted(set(floors)):
            raise ValueError("tier floors must strictly increase")
        for t in self.tiers:
            _check_rate("mmr", t.mmr)
            _check_rate("imr", t.imr)
            if t.imr < t.mmr:
                raise ValueError(f"imr {t.imr} below mmr {t.mmr} at floor {t.floor}")
        object.__setattr__(
            self, "tiers", derive_amounts(self.tiers, continuous_initial=self.continuous_initial)
        )

    def tier_index(self, notional: float) -> int:
        """Index of the bracket that holds ``notional`` (plain twin of the kernel's search)."""
        idx = 0
        for i, t in enumerate(self.tiers):
            if notional >= float(t.floor):
                idx = i
        return idx

    def requirement(self, notional: float, size_base: float, oi: float) -> tuple[float, float]:
        """Return ``(initial, maintenance)`` in the settlement asset (reference twin)."""
        t = self.tiers[self.tier_index(notional)]
        assert t.maintenance_amount is not None and t.initial_amount is not None
        mm = notional * float(t.mmr) - float(t.maintenance_amount)
        im = notional * float(t.imr) - float(t.initial_amount)
        return im, mm


@dataclass(frozen=True, slots=True)
class OIScaledModel:
    """dYdX v4 liquidity tier: initial margin scaled by open interest.

    ``IMF = base + (1 - base) * clamp((OI - lower_cap) / (upper_cap - lower_cap), 0, 1)``;
    ``MMF = base * maintenance_fraction`` ignores open interest (dYdX v4-chain
    ``protocol/x/perpetuals/types/liquidity_tier.go``, ``GetInitialMarginQuoteQuantums``
    and ``GetMaintenanceMarginPpm``). ``upper_cap == 0`` turns scaling off. dYdX decides
    in ppm: the scaled IMF is floored to a whole ppm, ``IM = ceil(N * IMF_ppm / 1e6)``
    and ``MM = ceil(ceil(N * base_ppm / 1e6) * maintenance_fraction_ppm / 1e6)`` in quote
    quantums (``lib.GetMarginRequirementsInQuoteQuantums``); so ``imr`` and
    ``maintenance_fraction`` must be whole ppm.
    """

    imr: Decimal
    maintenance_fraction: Decimal
    open_interest_lower_cap: Decimal = Decimal(0)
    open_interest_upper_cap: Decimal = Decimal(0)
    kind: Literal["oi_scaled"] = "oi_scaled"

    def __post_init__(self) -> None:
        _check_rate("imr", self.imr)
        _check_rate("maintenance_fraction", self.maintenance_fraction)
        _check_whole("imr", self.imr, 6)
        _check_whole("maintenance_fraction", self.maintenance_fraction, 6)
        if self.open_interest_upper_cap and (
            self.open_interest_upper_cap <= self.open_interest_lower_cap
        ):
            raise ValueError("open_interest_upper_cap must exceed the lower cap")

    @property
    def mmr(self) -> Decimal:
        """Maintenance fraction of notional."""
        return self.imr * self.maintenance_fraction

    @property
    def maintenance_margin_ppm(self) -> int:
        """MMF in whole ppm, rounded down (dYdX ``GetMaintenanceMarginPpm``: the rate dYdX
        publishes; its requirement rounds the IM quanta instead, see the class doc)."""
        return int(self.imr * PPM_D) * int(self.maintenance_fraction * PPM_D) // 1_000_000

    def adjusted_imr_ppm(self, oi_quanta: int, scale: int) -> int:
        """IMF in whole ppm after open-interest scaling, rounded down (plain twin of
        ``GetAdjustedInitialMarginPpm``); ``oi_quanta`` and the caps in quanta of 1/scale."""
        base = int(self.imr * PPM_D)
        lo = int(self.open_interest_lower_cap * scale)
        hi = int(self.open_interest_upper_cap * scale)
        if hi == 0 or oi_quanta <= lo:
            return base
        if oi_quanta >= hi:
            return 1_000_000
        return base + (1_000_000 - base) * (oi_quanta - lo) // (hi - lo)

    def adjusted_imr(self, oi: float) -> float:
        """IMF after open-interest scaling, floored to a whole ppm (float estimate)."""
        base = float(self.imr)
        lo, hi = float(self.open_interest_lower_cap), float(self.open_interest_upper_cap)
        if hi == 0 or oi <= lo:
            return base
        if oi >= hi:
            return 1.0
        base_ppm = int(self.imr * PPM_D)
        return (base_ppm + math.floor((1e6 - base_ppm) * (oi - lo) / (hi - lo))) / 1e6

    def requirement_quanta(self, notional_quanta: int, oi_quanta: int,
                           scale: int) -> tuple[int, int]:
        """Return ``(initial, maintenance)`` in quote quantums, as dYdX decides them (plain
        twin of the kernel's integer path; both rounded up)."""
        base = int(self.imr * PPM_D)
        im = -(-notional_quanta * self.adjusted_imr_ppm(oi_quanta, scale) // 1_000_000)
        im_base = -(-notional_quanta * base // 1_000_000)
        mm = -(-im_base * int(self.maintenance_fraction * PPM_D) // 1_000_000)
        return im, mm

    def requirement(self, notional: float, size_base: float, oi: float) -> tuple[float, float]:
        """Return ``(initial, maintenance)`` in the settlement asset (reference twin)."""
        return notional * self.adjusted_imr(oi), notional * float(self.mmr)


@dataclass(frozen=True, slots=True)
class SizePremiumModel:
    """Drift size premium: ``rate = max(base, 0.8 * base + imf_factor * sqrt(size_base))``.

    Drift protocol-v2 ``math/margin.rs::calculate_size_premium_liability_weight`` applied by
    ``PerpMarket::get_margin_ratio`` to both the initial and maintenance ratios, in
    integers: ``max(r, r - r // 5 + isqrt(size * 10 + 1) * imf // 1e7)`` with ``r`` in
    Drift's margin precision (1e-4), ``size`` in 1e-9 base units and ``imf`` in 1e-6; the
    requirement is ``liability * ratio // 1e4`` (``calculate_perp_position_value_and_pnl``,
    rounded down). So ``imr``/``mmr`` must be whole 1e-4 and ``imf_factor`` whole 1e-6.
    The ratio is not capped: Drift lets it pass 100 %.

    Positive unrealized PnL (Drift's ``unrealized_pnl_initial_asset_weight``,
    ``unrealized_pnl_maintenance_asset_weight``, ``unrealized_pnl_imf_factor``; whole
    1e-4, 1e-4 and 1e-6): when ``unrealized_pnl_initial_asset_weight`` is set, a
    position's profit (value minus cost basis) counts towards margin at its weight
    (:func:`drift_unrealized_asset_weight_bp`), towards initial margin at most
    ``unrealized_pnl_initial_max`` (Drift's ``MAX_POSITIVE_UPNL_FOR_INITIAL_MARGIN``, 100
    of the settlement asset); ``None`` (the default): every profit counts in full.
    """

    imr: Decimal
    mmr: Decimal
    imf_factor: Decimal = Decimal(0)
    unrealized_pnl_initial_asset_weight: Decimal | None = None
    unrealized_pnl_maintenance_asset_weight: Decimal = Decimal(1)
    unrealized_pnl_imf_factor: Decimal = Decimal(0)
    unrealized_pnl_initial_max: Decimal = Decimal(100)
    kind: Literal["size_premium"] = "size_premium"

    def __post_init__(self) -> None:
        _check_rate("imr", self.imr)
        _check_rate("mmr", self.mmr)
        if self.imr < self.mmr:
            raise ValueError("imr below mmr")
        if self.imf_factor < 0:
            raise ValueError("imf_factor must be non-negative")
        _check_whole("imr", self.imr, 4)
        _check_whole("mmr", self.mmr, 4)
        _check_whole("imf_factor", self.imf_factor, 6)
        if self.unrealized_pnl_initial_asset_weight is not None:
            _check_rate("unrealized_pnl_initial_asset_weight",
                        self.unrealized_pnl_initial_asset_weight)
            _check_whole("unrealized_pnl_initial_asset_weight",
                         self.unrealized_pnl_initial_asset_weight, 4)
        _check_rate("unrealized_pnl_maintenance_asset_weight",
                    self.unrealized_pnl_maintenance_asset_weight)
        _check_whole("unrealized_pnl_maintenance_asset_weight",
                     self.unrealized_pnl_maintenance_asset_weight, 4)
        if self.unrealized_pnl_imf_factor < 0:
            raise ValueError("unrealized_pnl_imf_factor must be non-negative")
        _check_whole("unrealized_pnl_imf_factor", self.unrealized_pnl_imf_factor, 6)
        if self.unrealized_pnl_initial_max < 0:
            raise ValueError("unrealized_pnl_initial_max must be non-negative")
        if self.unrealized_pnl_initial_asset_weight is None and (
                self.unrealized_pnl_maintenance_asset_weight != 1
                or self.unrealized_pnl_imf_factor != 0
                or self.unrealized_pnl_initial_max != 100):
            # without the initial weight every profit counts in full: a setting that is
            # accepted must act, so the others are refused alone
            raise ValueError("unrealized_pnl_maintenance_asset_weight, "
                             "unrealized_pnl_imf_factor and unrealized_pnl_initial_max act "
                             "only with unrealized_pnl_initial_asset_weight: set it too")

    def ratio_bp(self, base: Decimal, size_base: Decimal) -> int:
        """Size-premium ratio in 1e-4, as Drift decides it (plain twin of the kernel)."""
        r = int(base * 10_000)
        imf = int(self.imf_factor * PPM_D)
        if imf == 0:
            return r
        size9 = int((abs(size_base) * 10**9).to_integral_value())
        if size9 >= 400_000_000_000_000_000:  # the kernel's float root there (int64)
            root = min(math.floor(math.sqrt(float(size9) * 10.0)), 1_099_511_627_776)
        else:
            root = math.isqrt(size9 * 10 + 1)
        return max(r, r - r // 5 + root * imf // 10_000_000)

    def rate(self, base: float, size_base: float) -> float:
        """Size-premium-adjusted ratio, the continuous form (twin of the kernel's float
        estimate; :meth:`ratio_bp` is Drift's integer rule, which the engine's quanta use)."""
        imf = float(self.imf_factor)
        if imf == 0:
            return base
        return max(base, 0.8 * base + imf * math.sqrt(abs(size_base)))

    def requirement_quanta(self, liability_quanta: int, size_base: Decimal) -> tuple[int, int]:
        """Return ``(initial, maintenance)`` in quanta, rounded down as Drift does."""
        return (liability_quanta * self.ratio_bp(self.imr, size_base) // 10_000,
                liability_quanta * self.ratio_bp(self.mmr, size_base) // 10_000)

    def requirement(self, notional: float, size_base: float, oi: float) -> tuple[float, float]:
        """Return ``(initial, maintenance)`` in the settlement asset (reference twin)."""
        return (
            notional * self.rate(float(self.imr), size_base),
            notional * self.rate(float(self.mmr), size_base),
        )


@dataclass(frozen=True, slots=True)
class SizeLinearModel:
    """Deribit futures: percentage that grows linearly with position size in base units.

    ``IM% = imr + im_slope * size_base`` and ``MM% = mmr + mm_slope * size_base``
    (Deribit support, "Margin for futures": e.g. initial 4% + 0.005% per BTC held).
    """

    imr: Decimal
    mmr: Decimal
    im_slope: Decimal = Decimal(0)
    mm_slope: Decimal = Decimal(0)
    kind: Literal["size_linear"] = "size_linear"

    def __post_init__(self) -> None:
        _check_rate("imr", self.imr)
        _check_rate("mmr", self.mmr)
        if self.imr < self.mmr or self.im_slope < 0 or self.mm_slope < 0:
            raise ValueError("need imr >= mmr and non-negative slopes")

    def requirement(self, notional: float, size_base: float, oi: float) -> tuple[float, float]:
        """Return ``(initial, maintenance)`` in the settlement asset (reference twin)."""
        s = abs(size_base)
        im_rate = min(1.0, float(self.imr) + float(self.im_slope) * s)
        mm_rate = min(1.0, float(self.mmr) + float(self.mm_slope) * s)
        return notional * im_rate, notional * mm_rate


@dataclass(frozen=True, slots=True)
class OptionStandardModel:
    """Standard (per-position) option margin: Deribit's rule by default, Paradex's with
    its constants.

    Per contract, as fractions of the underlying ``S`` (in coin for inverse options,
    times ``S`` for linear ones; ``OTM`` the out-of-the-money amount)::

        short IM = max(max(base - im_otm_discount OTM/S, floor) + premium mark, MM)
        short MM = max(mm_base - mm_otm_discount OTM/S, mm_floor) + premium mark
                   (puts: the first term at least mm_mark_factor x mark; puts capped
                   at put_cap x K/S)
        long  IM = min(long_premium_im x mark, long_spot_im)
        long  MM = min(long_premium_mm x mark, long_spot_mm)

    Deribit (the defaults): 0.15 / 0.10 / 0.075, discount 1 / 0, premium 1, longs 0
    (Deribit support, "Margin for options"). Paradex's cross-margin option rule
    (docs.paradex.trade, perpetual options "Margin Requirements"): 0.15 / 0.10 / 0.075,
    ``mm_floor`` 0.05, both discounts 1, premium 0, ``mm_mark_factor`` 0, ``put_cap`` 0.5,
    longs ``min(100 % mark, 20 % S)`` / ``min(50 % mark, 10 % S)``. See
    :func:`solvency.core.options.margin.option_margin`, which computes it. The engine
    evaluates it per market whenever the underlying, the volatility or the clock moves
    and hands the per-contract amounts of each side to the kernel.
    """

    base: Decimal = Decimal("0.15")
    floor: Decimal = Decimal("0.10")
    mm_base: Decimal = Decimal("0.075")
    kind: Literal["option_standard"] = "option_standard"
    im_otm_discount: Decimal = Decimal(1)
    mm_floor: Decimal = Decimal(0)
    mm_otm_discount: Decimal = Decimal(0)
    mm_mark_factor: Decimal | None = None  # None: mm_base (Deribit's short put floor)
    premium: Decimal = Decimal(1)
    put_cap: Decimal | None = None  # None: no cap
    long_premium_im: Decimal = Decimal(0)
    long_spot_im: Decimal = Decimal(0)
    long_premium_mm: Decimal = Decimal(0)
    long_spot_mm: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for name in ("base", "floor", "mm_base", "im_otm_discount", "mm_floor",
                     "mm_otm_discount", "premium", "long_premium_im", "long_spot_im",
                     "long_premium_mm", "long_spot_mm"):
            _check_rate(name, getattr(self, name))
        if self.mm_mark_factor is not None:
            _check_rate("mm_mark_factor", self.mm_mark_factor)
        if self.put_cap is not None and not self.put_cap > 0:
            raise ValueError(f"put_cap {self.put_cap} must be positive")
        if self.long_premium_mm > self.long_premium_im or (
                self.long_spot_mm > self.long_spot_im):
            raise ValueError("long_premium_mm and long_spot_mm must not exceed "
                             "long_premium_im and long_spot_im (maintenance <= initial)")

    def requirement(self, notional: float, size_base: float, oi: float) -> tuple[float, float]:
        """Options are margined per contract by the engine (see class doc): 0 here."""
        return 0.0, 0.0


MarginModel = TieredModel | OIScaledModel | SizePremiumModel | SizeLinearModel | (
    OptionStandardModel)


@dataclass(frozen=True, slots=True)
class RiskRow:
    """One market's row of the unified risk table (floats: margin is an estimate)."""

    tiers: tuple[tuple[float, float, float, float, float, float, float], ...]
    oi_lower: float = 0.0
    oi_upper: float = 0.0
    imf_factor: float = 0.0
    im_slope: float = 0.0
    mm_slope: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    # Drift's positive-PnL weight: (on, initial weight, maintenance weight, imf, initial
    # cap), the kernel's MK_UPNL.. columns; all 0: off
    upnl: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)


def risk_row(model: MarginModel) -> RiskRow:
    """Reduce any margin model to the unified table row the kernel evaluates.

    Tier columns: ``(floor, mmr, imr, maintenance_amount, initial_amount, rule, aux)``;
    ``rule`` 1 decides in dYdX's ppm (``aux``: the maintenance fraction), 2 in Drift's
    margin precision, 0 in floats (see ``kernels.slot_quanta``).
    """
    if isinstance(model, TieredModel):
        rows = []
        for t in model.tiers:
            assert t.maintenance_amount is not None and t.initial_amount is not None
            rows.append((float(t.floor), float(t.mmr), float(t.imr),
                         float(t.maintenance_amount), float(t.initial_amount), 0.0, 0.0))
        return RiskRow(tiers=tuple(rows))
    if isinstance(model, OIScaledModel):
        return RiskRow(
            tiers=((0.0, float(model.mmr), float(model.imr), 0.0, 0.0, 1.0,
                    float(model.maintenance_fraction)),),
            oi_lower=float(model.open_interest_lower_cap),
            oi_upper=float(model.open_interest_upper_cap),
        )
    if isinstance(model, OptionStandardModel):
        return RiskRow(tiers=((0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),))
    if isinstance(model, SizePremiumModel):
        iw = model.unrealized_pnl_initial_asset_weight
        return RiskRow(
            tiers=((0.0, float(model.mmr), float(model.imr), 0.0, 0.0, 2.0, 0.0),),
            imf_factor=float(model.imf_factor),
            upnl=(0.0, 0.0, 0.0, 0.0, 0.0) if iw is None else (
                1.0, float(iw), float(model.unrealized_pnl_maintenance_asset_weight),
                float(model.unrealized_pnl_imf_factor),
                float(model.unrealized_pnl_initial_max)),
        )
    return RiskRow(
        tiers=((0.0, float(model.mmr), float(model.imr), 0.0, 0.0, 0.0, 0.0),),
        im_slope=float(model.im_slope),
        mm_slope=float(model.mm_slope),
    )
