"""Instruments: linear and inverse perpetuals, linear dated futures (options later).

Sizes are in contracts, on a lot grid; prices on a tick grid. For a linear contract one
contract is ``contract_size`` units of the base asset and PnL settles in the quote asset;
for an inverse contract (BitMEX XBTUSD) one contract is ``contract_size`` units of the
quote currency (USD) and PnL settles in the base coin. A European option is linear in
its premium: one contract is ``contract_size`` units of the underlying, the premium is
quoted and settled in the quote asset (USDC for linear options, the coin itself for
coin-settled ones, where ``quote == base``), and ``underlying`` names the market whose
mark is the option's index.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from solvency.core.margin.models import MarginModel

__all__ = ["Instrument", "InstrumentKind"]

InstrumentKind = Literal["linear_perp", "inverse_perp", "linear_future", "option"]


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable derivative market and its risk parameters.

    Parameters
    ----------
    name
        Market id, e.g. ``"BTC-PERP"``.
    kind
        ``linear_perp``, ``inverse_perp`` or ``linear_future``.
    base, quote, settle
        Asset symbols. Linear: settle == quote. Inverse: settle == base.
    contract_size
        Base units per contract (linear) or quote units per contract (inverse).
    tick_size, lot_size
        Price increment (quote per base) and size increment (contracts).
    margin
        The margin model (see :mod:`solvency.core.margin.models`).
    expiry_ms
        Expiry instant (epoch milliseconds) for dated futures.
    aliases
        The venue's own names for the market (e.g. ``BTCUSDT``).
    """

    name: str
    kind: InstrumentKind
    base: str
    quote: str
    settle: str
    contract_size: Decimal
    tick_size: Decimal
    lot_size: Decimal
    margin: MarginModel
    expiry_ms: int | None = None
    aliases: tuple[str, ...] = ()
    option_kind: Literal["call", "put"] | None = None
    strike: Decimal | None = None
    underlying: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("linear_perp", "inverse_perp", "linear_future", "option"):
            raise ValueError(f"market {self.name}: unknown kind {self.kind!r}")
        if self.kind == "option":
            if self.option_kind not in ("call", "put"):
                raise ValueError(f"market {self.name}: option_kind must be call or put")
            if self.strike is None or not self.strike.is_finite() or self.strike <= 0:
                raise ValueError(f"market {self.name}: an option needs a positive strike")
            if self.underlying is None or self.expiry_ms is None:
                raise ValueError(f"market {self.name}: an option needs underlying and expiry")
        for fname in ("contract_size", "tick_size", "lot_size"):
            v = getattr(self, fname)
            if not isinstance(v, Decimal) or not v.is_finite() or v <= 0:
                raise ValueError(f"market {self.name}: {fname} must be a positive decimal")
        if self.is_inverse and self.settle != self.base:
            raise ValueError(f"market {self.name}: inverse contracts settle in the base coin")
        if not self.is_inverse and self.settle != self.quote:
            raise ValueError(f"market {self.name}: linear contracts settle in the quote asset")
        if self.kind in ("linear_future", "option") and self.expiry_ms is None:
            raise ValueError(f"market {self.name}: a dated future needs expiry")

    @property
    def is_inverse(self) -> bool:
        """True for coin-margined inverse contracts."""
        return self.kind == "inverse_perp"

    @property
    def is_option(self) -> bool:
        """True for European options (premium in the quote asset; see module doc)."""
        return self.kind == "option"

    @property
    def coin_settled(self) -> bool:
        """An option quoted and settled in its underlying coin (Deribit BTC options)."""
        return self.is_option and self.quote == self.base

    @property
    def is_perpetual(self) -> bool:
        """True for perpetual swaps (funding applies)."""
        return self.kind in ("linear_perp", "inverse_perp")

    def tick_value_quanta(self, settle_decimals: int) -> int:
        """Settlement quanta that one lot gains when the price moves one tick (linear only).

        ``lot_size * contract_size * tick_size / quantum`` must be a whole number so that
        fill notionals are exact; a market whose grid breaks this is refused at load.
        """
        value = (Fraction(self.lot_size) * Fraction(self.contract_size)
                 * Fraction(self.tick_size) * 10**settle_decimals)
        if value.denominator != 1 or value <= 0:
            raise ValueError(
                f"market {self.name}: lot x contract x tick = {float(value)} quanta is not "
                "a whole number; choose a coarser grid or a finer settlement quantum"
            )
        return int(value)
