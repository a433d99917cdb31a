"""Venue presets: each venue's published margin rules for its BTC and ETH markets.

Values are copied from the venues' public documentation and code; ``source`` names where
and ``as_of`` when. Venues change parameters often: docs/venues.md records the date of
every table, and a user overrides any value with ``--venue FILE`` or a ``params`` event.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any, Final

from solvency.core.liquidation.policy import NO_POLICY_HINT
from solvency.core.model.venue import ConfigError, Venue, build_venue, merge_config
from solvency.core.model.venue_schema import check_venue_data

__all__ = ["PRESETS", "load_preset", "preset_names", "venue_from_data"]

_USD_STABLE: Final = {"decimals": 6, "price_usd": "1"}


def _coin(market: str, weights: list[tuple[str, str]], decimals: int) -> dict[str, Any]:
    return {"decimals": decimals, "price_market": market,
            "collateral": [{"floor_usd": f, "weight": w} for f, w in weights]}


def _lev_tiers(rows: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    """Tiers from (floor, max_leverage, mmr) rows; Binance-style, IM = notional / leverage."""
    return [{"floor": f, "max_leverage": lev, "mmr": mmr} for f, lev, mmr in rows]


def _risk_steps(base_limit: int, step: int, n: int, base_im: str = "0.01",
                base_mm: str = "0.005") -> list[dict[str, str]]:
    """BitMEX risk-limit steps: below the base risk limit the base IM/MM apply; each further
    step of ``step`` (settlement units) raises both by the base maintenance margin.

    BitMEX "Risk Limits Examples" (XBTUSD): ``MM = 0.50% + steps x 0.50%``, ``IM = 1.00% +
    steps x 0.50%``; the rate applies to the whole position (no maintenance amount).
    """
    from decimal import Decimal

    inc = Decimal(base_mm)
    floors = [0] + [base_limit + k * step for k in range(n - 1)]
    return [{"floor": str(f), "imr": str(Decimal(base_im) + inc * k),
             "mmr": str(inc + inc * k), "maintenance_amount": "0",
             "initial_amount": "0"} for k, f in enumerate(floors)]


def _hl_tiers(rows: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Hyperliquid tiers from (lower bound, max leverage): mmr = 1 / (2 x max leverage)."""
    from decimal import Decimal

    return [{"floor": f, "max_leverage": lev, "mmr": str(Decimal(1) / (2 * Decimal(lev)))}
            for f, lev in rows]


# Binance USD-M leverage brackets as GET /fapi/v1/leverageBracket returns them (snapshot in
# freqtrade/freqtrade freqtrade/exchange/binance_leverage_tiers.json, commit 01d10aeb, which
# lists the 240927/241227 quarterlies: mid-2024; read 2025). The maintenance amount (cum)
# follows from the bracket recursion and matches the published cum column exactly.
_BINANCE_BTC = _lev_tiers([
    ("0", "125", "0.004"), ("50000", "100", "0.005"), ("600000", "75", "0.0065"),
    ("3000000", "50", "0.01"), ("12000000", "25", "0.02"), ("70000000", "20", "0.025"),
    ("100000000", "10", "0.05"), ("230000000", "5", "0.1"), ("480000000", "4", "0.125"),
    ("600000000", "3", "0.15"), ("800000000", "2", "0.25"), ("1200000000", "1", "0.5"),
])
_BINANCE_ETH = _lev_tiers([
    ("0", "125", "0.004"), ("50000", "100", "0.005"), ("600000", "75", "0.0065"),
    ("3000000", "50", "0.01"), ("12000000", "25", "0.02"), ("50000000", "20", "0.025"),
    ("65000000", "10", "0.05"), ("150000000", "5", "0.1"), ("320000000", "4", "0.125"),
    ("400000000", "3", "0.15"), ("530000000", "2", "0.25"), ("800000000", "1", "0.5"),
])
# BTCUSDT quarterly (same snapshot, BTCUSDT_240927 and BTCUSDT_241227 share this table).
_BINANCE_BTC_QUARTERLY = _lev_tiers([
    ("0", "50", "0.01"), ("50000", "25", "0.02"), ("375000", "10", "0.05"),
    ("2000000", "5", "0.1"), ("4000000", "4", "0.125"), ("10000000", "3", "0.15"),
    ("20000000", "2", "0.25"), ("40000000", "1", "0.5"),
])

PRESETS: Final[dict[str, dict[str, Any]]] = {
    "binance": {
        "name": "binance",
        "source": "Binance GET /fapi/v1/leverageBracket (BTCUSDT, ETHUSDT, BTCUSDT "
                  "quarterly) via freqtrade binance_leverage_tiers.json @01d10aeb; formula "
                  "'How to Calculate Liquidation Price of USDⓈ-M Futures Contracts'; COIN-M "
                  "BTCUSD_PERP checked against 'How to Calculate Liquidation Price of COIN-M "
                  "Futures Contracts' (300 BTC: 12.5%, 11.605 BTC)",
        "as_of": "2024-09",
        "margin_call_ratio": "0.8",
        "assets": {
            "USDT": _USD_STABLE, "USDC": _USD_STABLE,
            "BTC": _coin("BTC-PERP", [("0", "0.95")], 8),
            "ETH": _coin("ETH-PERP", [("0", "0.95")], 9),
        },
        "markets": {
            "BTC-PERP": {"kind": "linear_perp", "base": "BTC", "quote": "USDT",
                         "contract_size": "1", "tick_size": "0.1", "lot_size": "0.001",
                         "aliases": ["BTCUSDT"], "model": "tiered", "tiers": _BINANCE_BTC},
            "ETH-PERP": {"kind": "linear_perp", "base": "ETH", "quote": "USDT",
                         "contract_size": "1", "tick_size": "0.01", "lot_size": "0.001",
                         "aliases": ["ETHUSDT"], "model": "tiered", "tiers": _BINANCE_ETH},
            "BTC-USD-INVERSE": {
                "kind": "inverse_perp", "base": "BTC", "quote": "USD", "contract_size": "100",
                "tick_size": "0.1", "lot_size": "1", "aliases": ["BTCUSD_PERP"],
                "model": "tiered", "tiers": _lev_tiers([
                    ("0", "125", "0.004"), ("5", "100", "0.005"), ("10", "50", "0.01"),
                    ("20", "20", "0.025"), ("50", "10", "0.05"), ("100", "5", "0.1"),
                    ("200", "4", "0.125"), ("400", "3", "0.15"), ("1000", "2", "0.25"),
                    ("1500", "1", "0.5")])},
            "BTC-FUT-260327": {
                "kind": "linear_future", "base": "BTC", "quote": "USDT", "contract_size": "1",
                "tick_size": "0.1", "lot_size": "0.001", "aliases": ["BTCUSDT_260327"],
                "expiry": "2026-03-27T08:00:00Z", "model": "tiered",
                "tiers": _BINANCE_BTC_QUARTERLY},
        },
    },
    "dydx": {
        "name": "dydx",
        "source": "dYdX v4-chain protocol/testing/genesis.sh Large-Cap liquidity tier "
                  "(initial_margin_ppm 20000, maintenance_fraction_ppm 600000, "
                  "open_interest_lower_cap/upper_cap 0: 'OIMF doesn't apply to Large-Cap'; "
                  "PR #2431 2024-10-02); formula protocol/x/perpetuals/types/liquidity_tier.go",
        "as_of": "2024-10",
        "margin_call_ratio": "0.8",
        "assets": {"USDC": _USD_STABLE,
                   "BTC": _coin("BTC-PERP", [("0", "0")], 8),
                   "ETH": _coin("ETH-PERP", [("0", "0")], 9)},
        "markets": {
            "BTC-PERP": {"kind": "linear_perp", "base": "BTC", "quote": "USDC",
                         "tick_size": "1", "lot_size": "0.0001", "aliases": ["BTC-USD"],
                         "model": "oi_scaled", "imr": "0.02", "maintenance_fraction": "0.6",
                         "open_interest_lower_cap": "0", "open_interest_upper_cap": "0"},
            "ETH-PERP": {"kind": "linear_perp", "base": "ETH", "quote": "USDC",
                         "tick_size": "0.1", "lot_size": "0.001", "aliases": ["ETH-USD"],
                         "model": "oi_scaled", "imr": "0.02", "maintenance_fraction": "0.6",
                         "open_interest_lower_cap": "0", "open_interest_upper_cap": "0"},
        },
    },
    "hyperliquid": {
        "name": "hyperliquid",
        "source": "Hyperliquid docs, trading/margin-tiers (mainnet: BTC 40x to 150M then 20x, "
                  "ETH 25x to 100M then 15x; mmr = 1/(2 x max leverage), maintenance "
                  "deduction recursion)",
        "as_of": "2025",
        "margin_call_ratio": "0.8",
        "assets": {"USDC": _USD_STABLE,
                   "BTC": _coin("BTC-PERP", [("0", "0")], 8),
                   "ETH": _coin("ETH-PERP", [("0", "0")], 9)},
        "markets": {
            "BTC-PERP": {"kind": "linear_perp", "base": "BTC", "quote": "USDC",
                         "tick_size": "1", "lot_size": "0.00001", "aliases": ["BTC"],
                         "model": "tiered", "continuous_initial": True,
                         "tiers": _hl_tiers([("0", "40"), ("150000000", "20")])},
            "ETH-PERP": {"kind": "linear_perp", "base": "ETH", "quote": "USDC",
                         "tick_size": "0.1", "lot_size": "0.0001", "aliases": ["ETH"],
                         "model": "tiered", "continuous_initial": True,
                         "tiers": _hl_tiers([("0", "25"), ("100000000", "15")])},
        },
    },
    "drift": {
        "name": "drift",
        "source": "Drift protocol-v2 programs/drift/src/math/margin.rs "
                  "(calculate_size_premium_liability_weight, PerpMarket::get_margin_ratio). "
                  "UNVERIFIED market params: margin_ratio_initial/maintenance and imf_factor "
                  "of BTC-PERP/ETH-PERP not found in public docs/code (on-chain PerpMarket "
                  "accounts); docs 'Per-Market Leverage' list BTC-PERP at 20x max",
        "as_of": "draft",
        "margin_call_ratio": "0.8",
        "assets": {"USDC": _USD_STABLE,
                   "BTC": _coin("BTC-PERP", [("0", "0.8")], 8),
                   "ETH": _coin("ETH-PERP", [("0", "0.8")], 9)},
        "markets": {
            "BTC-PERP": {"kind": "linear_perp", "base": "BTC", "quote": "USDC",
                         "tick_size": "0.1", "lot_size": "0.0001", "model": "size_premium",
                         "imr": "0.1", "mmr": "0.05", "imf_factor": "0.00025"},
            "ETH-PERP": {"kind": "linear_perp", "base": "ETH", "quote": "USDC",
                         "tick_size": "0.01", "lot_size": "0.001", "model": "size_premium",
                         "imr": "0.1", "mmr": "0.05", "imf_factor": "0.00025"},
        },
    },
    "deribit": {
        "name": "deribit",
        "source": "Deribit docs, Futures contract specifications (deribit.com "
                  "pages/docs/futures): BTC IM 2% + 0.5% per 100 BTC, MM 1.5% + 0.5% per "
                  "100 BTC (examples 25 BTC -> 2.125%, 350 BTC -> 3.75%). ETH rates and "
                  "slopes UNVERIFIED (draft)",
        "as_of": "undated docs, read 2025",
        "margin_call_ratio": "0.8",
        "assets": {"USDC": _USD_STABLE,
                   "BTC": _coin("BTC-PERP", [("0", "1")], 8),
                   "ETH": _coin("ETH-PERP", [("0", "1")], 9)},
        "markets": {
            "BTC-PERP": {"kind": "linear_perp", "base": "BTC", "quote": "USDC",
                         "tick_size": "1", "lot_size": "0.0001",
                         "aliases": ["BTC_USDC-PERPETUAL"], "model": "size_linear",
                         "imr": "0.02", "mmr": "0.015", "im_slope": "0.00005",
                         "mm_slope": "0.00005"},
            "ETH-PERP": {"kind": "linear_perp", "base": "ETH", "quote": "USDC",
                         "tick_size": "0.1", "lot_size": "0.001",
                         "aliases": ["ETH_USDC-PERPETUAL"], "model": "size_linear",
                         "imr": "0.04", "mmr": "0.02", "im_slope": "0.000002",
                         "mm_slope": "0.000002"},
            "BTC_USDC-26JUN26-100000-C": {
                "kind": "option", "option_kind": "call", "strike": "100000",
                "underlying": "BTC-PERP", "expiry": "2026-06-26T08:00:00Z", "base": "BTC",
                "quote": "USDC", "tick_size": "0.1", "lot_size": "0.01",
                "model": "option_standard"},
            "BTC-26JUN26-90000-P": {
                "kind": "option", "option_kind": "put", "strike": "90000",
                "underlying": "BTC-USD-INVERSE", "expiry": "2026-06-26T08:00:00Z",
                "base": "BTC", "quote": "BTC", "tick_size": "0.0001", "lot_size": "0.1",
                "model": "option_standard"},
            "BTC-USD-INVERSE": {"kind": "inverse_perp", "base": "BTC", "quote": "USD",
                                "contract_size": "10", "tick_size": "0.5", "lot_size": "1",
                                "aliases": ["BTC-PERPETUAL"], "model": "size_linear",
                                "imr": "0.02", "mmr": "0.015", "im_slope": "0.00005",
                                "mm_slope": "0.00005"},
        },
    },
    "bitmex": {
        "name": "bitmex",
        "source": "BitMEX 'Risk Limits Examples' (XBTUSD: base IM 1%, MM 0.5%, base risk "
                  "limit 200 XBT, +0.5% IM and MM per step) and blog 'Lower Margin "
                  "Requirements on Large Positions' (XBTUSD risk step 100 -> 150 XBT from "
                  "2021-08-31). XBTUSDT/ETHUSDT limits and steps UNVERIFIED (draft)",
        "as_of": "2021-08",
        "margin_call_ratio": "0.8",
        "assets": {"USDT": _USD_STABLE,
                   "BTC": _coin("BTC-PERP", [("0", "1")], 8),
                   "ETH": _coin("ETH-PERP", [("0", "1")], 9)},
        "markets": {
            "BTC-PERP": {"kind": "linear_perp", "base": "BTC", "quote": "USDT",
                         "tick_size": "0.1", "lot_size": "0.0001", "aliases": ["XBTUSDT"],
                         "model": "tiered", "tiers": _risk_steps(10_000_000, 10_000_000, 10)},
            "ETH-PERP": {"kind": "linear_perp", "base": "ETH", "quote": "USDT",
                         "tick_size": "0.01", "lot_size": "0.001", "aliases": ["ETHUSDT"],
                         "model": "tiered", "tiers": _risk_steps(5_000_000, 5_000_000, 10)},
            "BTC-USD-INVERSE": {"kind": "inverse_perp", "base": "BTC", "quote": "USD",
                                "contract_size": "1", "tick_size": "0.5", "lot_size": "100",
                                "aliases": ["XBTUSD"], "model": "tiered",
                                "tiers": _risk_steps(200, 150, 10)},
        },
    },
}


def _binance_dated(name: str, *, wbeth_book: str, bnsol_book: str, as_of: str,
                   rule: str) -> dict[str, Any]:
    """Binance with the collateral of the 2025-10-10 depeg valued by the rule of a date.

    On 2025-10-10 Binance valued unified-account collateral partly from its own spot
    books: USDe from its own book, wBETH 20 % own book + 80 % (WBETH/ETH rate x ETH),
    BNSOL 30 % own book + 70 % (BNSOL/SOL rate x SOL); from 2025-10-14 08:00 UTC the
    own-book weights of wBETH and BNSOL are 0 % (docs/venues.md, "Collateral valued by
    rule", for the announcements). The collateral ratios (0.9 USDe, 0.95 the others) and
    the redemption rates (1.07 WBETH/ETH, 1.06 BNSOL/SOL: reports of the ``redemption``
    source replace them) are assumed; SOL is valued from an external ``index`` source
    (the preset has no SOL market).
    """
    data = copy.deepcopy(PRESETS["binance"])

    def staking(book_w: str, underlying: str, rate: str, decimals: int) -> dict[str, Any]:
        red_w = str(1 - Decimal(book_w))
        return {"decimals": decimals, "collateral": [{"floor_usd": "0", "weight": "0.95"}],
                "valuation": {"sources": [
                    {"kind": "book", "weight": book_w},
                    {"kind": "redemption", "weight": red_w, "underlying": underlying,
                     "rate": rate}]}}

    data["assets"].update({
        "USDE": {"decimals": 8, "collateral": [{"floor_usd": "0", "weight": "0.9"}],
                 "valuation": {"sources": [{"kind": "book", "weight": "1"}]}},
        "SOL": {"decimals": 9, "collateral": [{"floor_usd": "0", "weight": "0.95"}],
                "valuation": {"sources": [{"kind": "index", "weight": "1"}]}},
        "WBETH": staking(wbeth_book, "ETH", "1.07", 8),
        "BNSOL": staking(bnsol_book, "SOL", "1.06", 8),
    })
    data["name"] = name
    data["as_of"] = as_of
    data["source"] = f"{data['source']}; collateral valued by {rule}"
    # the liquidation policy of the preset it is built on
    data["liquidation"] = {"policy": "binance", **data.get("liquidation", {})}
    return data


PRESETS["binance-2025-10-10"] = _binance_dated(
    "binance-2025-10-10", wbeth_book="0.2", bnsol_book="0.3", as_of="2025-10-10",
    rule="Binance's rule until 2025-10-14 08:00 UTC (USDe own book; wBETH 20 % own book "
         "+ 80 % WBETH/ETH x ETH; BNSOL 30 % own book + 70 % BNSOL/SOL x SOL)")
PRESETS["binance-2025-10-14"] = _binance_dated(
    "binance-2025-10-14", wbeth_book="0", bnsol_book="0", as_of="2025-10-14",
    rule="Binance's rule from 2025-10-14 08:00 UTC (wBETH and BNSOL own-book weight 0 %: "
         "100 % redemption rate x the underlying's index; USDe own book as before)")


def preset_names() -> list[str]:
    """Names of the bundled venue presets."""
    return sorted(PRESETS)


def venue_from_data(data: dict[str, Any], *, source: str = "venue") -> Venue:
    """Build a venue from a user's data: a full venue, or ``{"preset": NAME, ...overrides}``.

    A full venue states its liquidation policy (``liquidation.policy`` or
    ``liquidation.sizing``); one built on a preset inherits the preset's.

    The user's data is checked against the venue file's schema before a preset's data is
    merged into it (so that errors name the keys as the user wrote them); ``source``
    names the file in the errors.
    """
    base_name = data.get("preset")
    if base_name is not None:
        if base_name not in PRESETS:
            raise ConfigError(f"{source}: preset: unknown venue {base_name!r}; "
                              f"known: {preset_names()}")
        problems = check_venue_data(data, source=source)
        if problems is not None:
            raise ConfigError(problems)
        merged = merge_config(PRESETS[str(base_name)], data)
        if merged.get("name") != base_name:
            # a renamed preset keeps the preset it was built on (its liquidation policy,
            # the same after a snapshot's restore); one that keeps the preset's name is
            # named by it, and its data (and state hashes) stay as they were
            merged["preset"] = base_name
        data = merged
    else:
        # a file without a preset states its liquidation policy: its name alone (even a
        # preset's) chooses none
        liq = data.get("liquidation")
        if not isinstance(liq, dict) or not ({"policy", "sizing"} & set(liq)):
            problems = check_venue_data(data, source=source)
            raise ConfigError(problems or f"{source}: {NO_POLICY_HINT}")
    return build_venue(data, source=source)


def load_preset(name: str) -> Venue:
    """Build a bundled preset by name."""
    if name not in PRESETS:
        raise ConfigError(f"unknown venue {name!r}; known: {preset_names()}")
    return build_venue(copy.deepcopy(PRESETS[name]))
