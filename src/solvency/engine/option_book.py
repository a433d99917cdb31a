"""An external book of European options, valued with the Black-76 kernels.

The engine has no option instruments yet: a desk that sells options elsewhere (or a
market maker quoting them) keeps them here, beside its perpetual positions in the
engine, and the :class:`~solvency.engine.hedging.Hedger` adds the two deltas.

An option market is declared as data (the ``markets`` entries of a portfolio file)::

    {"type": "option", "underlying": "BTC", "kind": "call", "strike": "100000",
     "expiry": "2026-12-25T08:00:00Z", "settle": "USDC"}

``settle`` equal to the underlying (``"BTC"``) makes it inverse (coin-settled, Deribit);
any other asset makes it linear (quote-settled). One contract is ``contract_size`` units
of the underlying (default 1). Time to expiry is ACT/365: ``(expiry - now) / 365 days``.

Units of :class:`BookGreeks` (see ``docs/greeks_and_hedging.md``):

* ``price .. rho``: raw Greeks of ONE contract in its settlement currency (coin for
  inverse options: the exact derivatives of ``V_usd / F``), vega per 1.00 vol, theta per
  year, rho per 1.00 rate;
* ``exposure`` columns ``delta, gamma, vega, theta, rho``: the amounts that add across a
  book: delta in base units (Black-76 delta for linear options, Deribit's net transaction
  delta ``delta - V_coin`` for inverse ones), gamma in base units per quote unit (Black-76
  gamma, as Deribit displays it for inverse options too), vega/theta/rho in the quote
  currency (for inverse options ``F x`` the coin Greeks, which equals Black-76's).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, NamedTuple, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, ValidationError

from solvency.core.model.events import EventError, parse_ts_ms
from solvency.core.options import black76_greeks, inverse_greeks
from solvency.core.schema import Num, format_errors
from solvency.core.typing import Float64Array1D, Float64Array2D

__all__ = [
    "EXPOSURE_COLUMNS",
    "MS_PER_YEAR",
    "BookGreeks",
    "OptionBook",
    "OptionBookError",
    "OptionKind",
    "OptionMarketEntry",
    "OptionPosition",
    "OptionSpec",
    "iso_ms",
    "parse_option_market",
    "time_to_expiry_yr",
]

OptionKind = Literal["call", "put"]
MS_PER_YEAR: Final = 365 * 86_400_000
"""ACT/365: milliseconds in the year that ``time_yr`` counts."""
EXPOSURE_COLUMNS: Final = ("delta", "gamma", "vega", "theta", "rho")


class OptionBookError(ValueError):
    """An option market, position or valuation input that cannot be used, named by path."""


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """A European option market.

    Attributes
    ----------
    name
        Market id, e.g. ``"BTC-20261225-100000-C"``.
    underlying
        Underlying symbol (``"BTC"``); prices are looked up by it.
    kind
        ``"call"`` or ``"put"``.
    strike
        Quote per base, > 0.
    expiry_ms
        Expiry instant, epoch milliseconds (UTC).
    settle
        Settlement asset; equal to ``underlying`` for inverse (coin-settled) options.
    contract_size
        Base units per contract (> 0).
    """

    name: str
    underlying: str
    kind: OptionKind
    strike: float
    expiry_ms: int
    settle: str
    contract_size: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("call", "put"):
            raise OptionBookError(f"{self.name}: kind {self.kind!r} is not call or put")
        if not (math.isfinite(self.strike) and self.strike > 0.0):
            raise OptionBookError(f"{self.name}: strike {self.strike} must be > 0")
        if not (math.isfinite(self.contract_size) and self.contract_size > 0.0):
            raise OptionBookError(f"{self.name}: contract_size must be > 0")

    @property
    def inverse(self) -> bool:
        """True for coin-settled options (``settle == underlying``)."""
        return self.settle == self.underlying


@dataclass(frozen=True, slots=True)
class OptionPosition:
    """Signed contracts of one option market (negative: short)."""

    spec: OptionSpec
    size: float


class BookGreeks(NamedTuple):
    """Per-position values of an option book (see the module docstring for units)."""

    price: Float64Array1D
    delta: Float64Array1D
    gamma: Float64Array1D
    vega: Float64Array1D
    theta: Float64Array1D
    rho: Float64Array1D
    exposure: Float64Array2D
    """``(n_positions, 5)`` per contract, columns :data:`EXPOSURE_COLUMNS`."""
    time_yr: Float64Array1D


def iso_ms(ts_ms: int) -> str:
    """Format epoch milliseconds as ISO-8601 UTC (``2026-01-01T00:00:00Z``)."""
    text = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat()
    return text.replace("+00:00", "Z")


def time_to_expiry_yr(expiry_ms: int, now_ms: int) -> float:
    """Return ACT/365 years from ``now_ms`` to ``expiry_ms`` (negative once expired)."""
    return (expiry_ms - now_ms) / MS_PER_YEAR


_PositiveText = Annotated[Decimal, Num(gt=0, text_ok=True)]
_Text = Annotated[str, Strict(), StringConstraints(min_length=1)]


class OptionMarketEntry(BaseModel):
    """A ``{"type": "option", ...}`` entry of a portfolio file's ``markets`` (edge schema).

    Unknown keys are refused; strike and contract size are exact decimals (numbers or
    decimal strings) above zero; ``expiry`` is ISO-8601 UTC or epoch ms.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    # "type": "string" stated: pydantic before 2.7 leaves it out of a one-value Literal
    type: Literal["option"] = Field(description="Declares an option market.",
                                    json_schema_extra={"type": "string"})
    underlying: _Text = Field(description="Base symbol whose price is the forward, e.g. BTC.")
    kind: OptionKind
    strike: _PositiveText
    expiry: int | _Text = Field(description="ISO-8601 UTC (…Z) or epoch milliseconds.")
    settle: _Text = Field(description="Settlement asset: the underlying makes it inverse "
                                      "(coin-settled, Deribit), any other linear.")
    contract_size: _PositiveText = Field(Decimal(1),
                                         description="Units of the underlying per contract.")


def parse_option_market(name: str, data: Mapping[str, Any], *, path: str = "markets",
                        source: str = "") -> OptionSpec:
    """Build an :class:`OptionSpec` from a ``{"type": "option", ...}`` entry, strictly.

    Parameters
    ----------
    name
        Market id (the entry's key).
    data
        The entry: ``underlying``, ``kind``, ``strike``, ``expiry`` (ISO-8601 UTC),
        ``settle``, optional ``contract_size`` (schema :class:`OptionMarketEntry`).
    path
        Prefix of error messages' dotted keys.
    source
        The file the entry comes from, named first in error messages.

    Returns
    -------
    OptionSpec
        The validated market.

    Raises
    ------
    OptionBookError
        ``source: path.name.key: what was expected``: an unknown (misspelt) key, a
        missing one, an unknown kind, a non-positive strike, a malformed expiry.
    """
    p = f"{path}.{name}"
    try:
        m = OptionMarketEntry.model_validate(data)
    except ValidationError as exc:
        raise OptionBookError(format_errors(source or "option market", exc,
                                            OptionMarketEntry, at=(path, name))) from None
    try:
        expiry_ms = parse_ts_ms(m.expiry)
    except EventError as exc:
        where = f"{source}: {p}" if source else p
        raise OptionBookError(f"{where}.expiry: {exc.detail.removeprefix('ts: ')}") from None
    return OptionSpec(name=name, underlying=m.underlying, kind=m.kind,
                      strike=float(m.strike), expiry_ms=expiry_ms, settle=m.settle,
                      contract_size=float(m.contract_size))


def _number(mapping: Mapping[str, float | Decimal], key: str, path: str, what: str) -> float:
    if key not in mapping:
        raise OptionBookError(f"{path}: no {what} for {key!r}")
    x = float(mapping[key])
    if not (math.isfinite(x) and x > 0.0):
        raise OptionBookError(f"{path}.{key}: {what} {mapping[key]} must be finite and > 0")
    return x


class OptionBook:
    """A list of option positions, valued on demand with Black-76.

    Parameters
    ----------
    positions
        Initial positions (more with :meth:`add`).
    """

    def __init__(self, positions: Iterable[OptionPosition] = ()) -> None:
        self.positions: list[OptionPosition] = list(positions)

    def add(self, spec: OptionSpec, size: float) -> None:
        """Append a position of ``size`` signed contracts."""
        if not math.isfinite(size):
            raise OptionBookError(f"{spec.name}: size {size} is not finite")
        self.positions.append(OptionPosition(spec, size))

    def underlyings(self) -> list[str]:
        """Underlying symbols of the book, sorted."""
        return sorted({p.spec.underlying for p in self.positions})

    def sizes(self) -> Float64Array1D:
        """Signed contracts per position."""
        return cast(Float64Array1D, np.array([p.size for p in self.positions], dtype=np.float64))

    def greeks(self, *, prices: Mapping[str, float | Decimal],
               vols: Mapping[str, float | Decimal], now_ms: int, rate: float = 0.0,
               ) -> BookGreeks:
        """Value every position (per contract) at ``now_ms``.

        Parameters
        ----------
        prices
            Forward price per underlying symbol (quote per base).
        vols
            Mark volatility per option market name (per 1.00).
        now_ms
            Valuation instant, epoch ms; time to expiry is ACT/365.
        rate
            Continuously compounded discount rate.

        Returns
        -------
        BookGreeks
            Raw per-contract Greeks and the additive ``exposure`` matrix.

        Raises
        ------
        OptionBookError
            If a price or vol is missing or not positive, or an option has expired.
        """
        if not math.isfinite(rate):
            raise OptionBookError(f"rate: {rate} is not finite")
        n = len(self.positions)
        fwd, strike, t_yr, vol, call, inv, cs = (np.empty(n) for _ in range(7))
        for i, pos in enumerate(self.positions):
            s = pos.spec
            t = time_to_expiry_yr(s.expiry_ms, now_ms)
            if t <= 0.0:
                raise OptionBookError(f"{s.name}: expired at {iso_ms(s.expiry_ms)} "
                                      f"(now {iso_ms(now_ms)})")
            fwd[i] = _number(prices, s.underlying, "prices", "price")
            vol[i] = _number(vols, s.name, "vols", "vol")
            strike[i], t_yr[i], call[i] = s.strike, t, s.kind == "call"
            inv[i], cs[i] = s.inverse, s.contract_size
        return _value(fwd, strike, t_yr, vol, rate, call.astype(bool), inv.astype(bool), cs)

    def delta(self, prices: Mapping[str, float | Decimal], vols: Mapping[str, float | Decimal],
              now_ms: int, rate: float = 0.0) -> dict[str, float]:
        """Return the book's delta per underlying, in base units (see module docstring)."""
        out = dict.fromkeys(self.underlyings(), 0.0)
        if not self.positions:
            return out
        g = self.greeks(prices=prices, vols=vols, now_ms=now_ms, rate=rate)
        for pos, d in zip(self.positions, g.exposure[:, 0].tolist(), strict=True):
            out[pos.spec.underlying] += pos.size * d
        return out

    def value_quote(self, prices: Mapping[str, float | Decimal],
                    vols: Mapping[str, float | Decimal], now_ms: int,
                    rate: float = 0.0) -> float:
        """Return the book's value in the quote currency (USD view, ``V_coin x F``).

        Expired options are worth their intrinsic value at ``prices`` (the caller passes
        the settlement price), a rule the kernels leave to the caller.
        """
        total = 0.0
        live = OptionBook()
        for pos in self.positions:
            s = pos.spec
            if time_to_expiry_yr(s.expiry_ms, now_ms) > 0.0:
                live.positions.append(pos)
                continue
            f = _number(prices, s.underlying, "prices", "price")
            payoff = max(f - s.strike, 0.0) if s.kind == "call" else max(s.strike - f, 0.0)
            total += pos.size * payoff * s.contract_size
        if live.positions:
            g = live.greeks(prices=prices, vols=vols, now_ms=now_ms, rate=rate)
            f_row = np.array([float(prices[p.spec.underlying]) for p in live.positions])
            usd = np.where([p.spec.inverse for p in live.positions], g.price * f_row, g.price)
            total += float(np.dot(live.sizes(), usd))
        return total


def _value(fwd: Float64Array1D, strike: Float64Array1D, t_yr: Float64Array1D,
           vol: Float64Array1D, rate: float, call: np.ndarray, inv: np.ndarray,
           cs: Float64Array1D) -> BookGreeks:
    lin = black76_greeks(forward=fwd, strike=strike, time_yr=t_yr, vol=vol, rate=rate,
                         is_call=call)
    coin = inverse_greeks(forward=fwd, strike=strike, time_yr=t_yr, vol=vol, rate=rate,
                          is_call=call)
    if np.any(lin.status != 0) or np.any(coin.status != 0):
        raise OptionBookError("option inputs out of the model's domain")
    def per_contract(usd: Float64Array1D, in_coin: Float64Array1D) -> Float64Array1D:
        return cast(Float64Array1D, cs * np.where(inv, in_coin, usd))

    exposure = np.stack([np.where(inv, coin.delta_net, lin.delta), lin.gamma, lin.vega,
                         lin.theta, lin.rho], axis=1) * cs[:, None]
    return BookGreeks(
        price=per_contract(lin.price, coin.price), delta=per_contract(lin.delta, coin.delta),
        gamma=per_contract(lin.gamma, coin.gamma), vega=per_contract(lin.vega, coin.vega),
        theta=per_contract(lin.theta, coin.theta), rho=per_contract(lin.rho, coin.rho),
        exposure=cast(Float64Array2D, exposure), time_yr=t_yr)
