"""Assets: quantum, valuation and collateral weights (haircuts), possibly tiered by value."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from solvency.core.units import quantum_of

__all__ = ["Asset", "CollateralTier", "CollateralValuation", "ValuationSource"]

VALUATION_KINDS = ("book", "index", "redemption")
"""Kinds of a collateral valuation source: the venue's own spot book, an external index
(both report the asset's USD price), a redemption rate x the underlying's USD price."""


@dataclass(frozen=True, slots=True)
class CollateralTier:
    """Weight applied to the slice of an asset's USD value above ``floor_usd``.

    Tiered weights follow Binance multi-assets mode and Bybit's tiered collateral ratio:
    the first slice counts at ``weight``, larger holdings at lower weights.
    """

    floor_usd: Decimal
    weight: Decimal


@dataclass(frozen=True, slots=True)
class ValuationSource:
    """One source of a collateral valuation rule and its weight.

    ``book`` and ``index`` sources are oracle reports (``{"type": "oracle", "asset": ...,
    "source": source}``) of the asset's USD price; a ``redemption`` source is ``rate`` x
    the USD price of ``underlying`` (an asset of the venue), its rate replaced by the
    reports of ``source`` when they come.
    """

    kind: str
    weight: Decimal
    source: str
    underlying: str | None = None
    rate: Decimal | None = None

    def __post_init__(self) -> None:
        if self.kind not in VALUATION_KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {list(VALUATION_KINDS)}")
        if not Decimal(0) <= self.weight <= Decimal(1):
            raise ValueError("weight outside [0, 1]")
        if (self.kind == "redemption") != (self.underlying is not None):
            raise ValueError("underlying is for (and required by) a redemption source")
        if (self.kind == "redemption") != (self.rate is not None):
            raise ValueError("rate is for (and required by) a redemption source")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")


@dataclass(frozen=True, slots=True)
class CollateralValuation:
    """How a venue values a collateral asset: weighted sources, a band, staleness.

    ``price = sum(weight x value) / sum(weight)`` over the sources with a positive weight
    and a fresh value (a report no older than ``stale_ms``; a redemption source is fresh
    while its underlying has a price), then clamped to ``reference x (1 -/+ band)``
    where the source named ``reference`` has a value (its weight may be 0).
    """

    sources: tuple[ValuationSource, ...]
    band: Decimal | None = None
    reference: str | None = None
    stale_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a valuation needs at least one source")
        names = [s.source for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names repeat: {names}")
        if sum((s.weight for s in self.sources), Decimal(0)) != 1:
            raise ValueError("source weights must sum to 1")
        if (self.band is None) != (self.reference is None):
            raise ValueError("band and reference go together")
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not a source ({names})")
        if self.band is not None and not Decimal(0) < self.band < Decimal(1):
            raise ValueError("band must be in (0, 1)")
        if self.stale_ms is not None and self.stale_ms <= 0:
            raise ValueError("stale_ms must be positive")

    def source(self, name: str) -> ValuationSource | None:
        """The source named ``name``, if any."""
        return next((s for s in self.sources if s.source == name), None)


@dataclass(frozen=True, slots=True)
class Asset:
    """A settlement or collateral asset.

    Parameters
    ----------
    symbol
        Ticker, e.g. ``"USDT"``.
    decimals
        The quantum is ``10**-decimals`` (USDT/USDC 6, BTC 8, ETH 9).
    price_usd
        Fixed USD value (stablecoins); ``None`` when the price comes from a market.
    price_market
        Market whose mark values this asset (e.g. ``"BTC-PERP"`` for BTC), if not fixed.
    collateral
        Weight tiers for positive balances; negative balances (liabilities) count at 1.
    valuation
        The venue's rule for the USD price of a collateral asset (weighted sources),
        instead of ``price_usd`` or ``price_market``.
    """

    symbol: str
    decimals: int
    price_usd: Decimal | None = None
    price_market: str | None = None
    collateral: tuple[CollateralTier, ...] = field(
        default_factory=lambda: (CollateralTier(Decimal(0), Decimal(1)),)
    )
    valuation: CollateralValuation | None = None

    def __post_init__(self) -> None:
        if not self.symbol or not self.symbol.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"asset symbol {self.symbol!r} is not alphanumeric")
        if not 0 <= self.decimals <= 18:
            raise ValueError(f"asset {self.symbol}: decimals {self.decimals} outside 0..18")
        if self.price_usd is not None and self.price_usd <= 0:
            raise ValueError(f"asset {self.symbol}: price_usd must be positive")
        fixed = self.price_usd is not None or self.price_market is not None
        if fixed == (self.valuation is not None):
            raise ValueError(f"asset {self.symbol}: needs price_usd or price_market, or "
                             "a valuation instead of both")
        if not self.collateral or self.collateral[0].floor_usd != 0:
            raise ValueError(f"asset {self.symbol}: collateral tiers must start at floor 0")
        floors = [t.floor_usd for t in self.collateral]
        if floors != sorted(set(floors)):
            raise ValueError(f"asset {self.symbol}: collateral floors must increase")
        for t in self.collateral:
            if not Decimal(0) <= t.weight <= Decimal(1):
                raise ValueError(f"asset {self.symbol}: collateral weight outside [0, 1]")

    @property
    def quantum(self) -> Decimal:
        """Smallest unit of the asset."""
        return quantum_of(self.decimals)
