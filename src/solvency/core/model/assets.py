"""Assets: quantum, valuation and collateral weights (haircuts), possibly tiered by value."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from solvency.core.units import quantum_of

__all__ = ["Asset", "CollateralTier"]


@dataclass(frozen=True, slots=True)
class CollateralTier:
    """Weight applied to the slice of an asset's USD value above ``floor_usd``.

    Tiered weights follow Binance multi-assets mode and Bybit's tiered collateral ratio:
    the first slice counts at ``weight``, larger holdings at lower weights.
    """

    floor_usd: Decimal
    weight: Decimal


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
    """

    symbol: str
    decimals: int
    price_usd: Decimal | None = None
    price_market: str | None = None
    collateral: tuple[CollateralTier, ...] = field(
        default_factory=lambda: (CollateralTier(Decimal(0), Decimal(1)),)
    )

    def __post_init__(self) -> None:
        if not self.symbol or not self.symbol.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"asset symbol {self.symbol!r} is not alphanumeric")
        if not 0 <= self.decimals <= 18:
            raise ValueError(f"asset {self.symbol}: decimals {self.decimals} outside 0..18")
        if self.price_usd is not None and self.price_usd <= 0:
            raise ValueError(f"asset {self.symbol}: price_usd must be positive")
        if self.price_usd is None and self.price_market is None:
            raise ValueError(f"asset {self.symbol}: needs price_usd or price_market")
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
