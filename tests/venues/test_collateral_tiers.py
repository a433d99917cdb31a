"""Collateral tiers by amount, several of them, through the engine (issue 14, item 2).

Source: Binance FAQ "Binance Cross Margin Collateral Haircuts"
(https://www.binance.com/en-BH/support/faq/binance-cross-margin-collateral-haircuts-4bec9126c021472285b20874f9380dfb,
read 2026-12-07), example 1: BTC's collateral ratio is 100 % of the USDT value up to
100,000,000, 97.5 % to 120M, 95 % to 150M, 90 % to 180M, 85 % to 200M, each ratio on the
slice of the value in its tier; "User A holds 6,000 BTC ... BTC price is 20,000 USDT ...
Collateral Value (USDT) = (100,000,000) * 100% + (120,000,000 - 100,000,000) * 97.5% =
119,500,000 USDT". The venue file is the example of docs/venues.md (read from there, so
the documented file is the one tested); the other rows are computed by hand below.
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from solvency.core.model.events import Deposit, Fill, Price
from solvency.core.model.presets import load_preset, venue_from_data
from solvency.core.model.venue import Venue
from solvency.engine.engine import Engine

DOC = Path(__file__).resolve().parents[2] / "docs" / "venues.md"


def _doc_venue() -> Venue:
    text = DOC.read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[assets.BTC]" in b]
    assert len(blocks) == 1
    return venue_from_data(tomllib.loads(blocks[0]))


def _account(venue: Venue, *, btc: str, mark: str, long_btc: str = "10") -> dict[str, Any]:
    """Account ``a``: ``btc`` BTC and 1,000 USDT, long ``long_btc`` BTC-PERP bought at
    20,000 from ``b``; the mark then at ``mark``."""
    e = Engine(venue)
    e.apply(Price(id="p0", market="BTC-PERP", price=Decimal(20_000)))
    for i, (acct, asset, amount) in enumerate([("a", "BTC", btc), ("a", "USDT", "1000"),
                                              ("b", "USDT", "100000000")]):
        assert e.apply(Deposit(id=f"d{i}", account=acct, asset=asset,
                               amount=Decimal(amount))) == []
    assert e.apply(Fill(id="f", market="BTC-PERP", buyer="a", seller="b",
                        size=Decimal(long_btc), price=Decimal(20_000))) == []
    e.apply(Price(id="p1", market="BTC-PERP", price=Decimal(mark)))
    return e.account_view("a")


# Hand-computed: BTC value V = btc x mark; weighted = sum over tiers of the slice of V in
# the tier x its ratio; USDT = 1,000 + 10 x (mark - 20,000) (unrealized PnL, at 1 when
# negative); BTCUSDT bracket at notional N = 10 x mark: 50,000 <= N < 600,000 ->
# IM = N / 100, MM = N x 0.5 % - 50 (docs/venues.md, Binance).
CASES = [
    # the FAQ's scenario: 120M spans two tiers
    ("faq-6000-btc", "6000", "20000", {
        "equity_usd": 120_000_000 + 1_000,
        "collateral_usd": 100_000_000 + 20_000_000 * 0.975 + 1_000,  # 119,501,000
        "initial_margin": 2_000, "maintenance_margin": 950}),
    # 190M spans all five: 100M + 20M x .975 + 30M x .95 + 30M x .9 + 10M x .85
    ("five-tiers", "9500", "20000", {
        "equity_usd": 190_000_000 + 1_000,
        "collateral_usd": 100_000_000 + 19_500_000 + 28_500_000 + 27_000_000 + 8_500_000
        + 1_000,  # 183,501,000
        "initial_margin": 2_000, "maintenance_margin": 950}),
    # beyond the table (240M): the last tier runs on, 60M x .85
    ("past-the-table", "12000", "20000", {
        "equity_usd": 240_000_000 + 1_000,
        "collateral_usd": 100_000_000 + 19_500_000 + 28_500_000 + 27_000_000 + 51_000_000
        + 1_000,  # 226,001,000
        "initial_margin": 2_000, "maintenance_margin": 950}),
    # the mark falls to 10,500: 99.75M is all in the first tier; USDT 1,000 - 95,000
    ("back-to-one-tier", "9500", "10500", {
        "equity_usd": 99_750_000 - 94_000,
        "collateral_usd": 99_750_000 - 94_000,
        "initial_margin": 1_050, "maintenance_margin": 105_000 * 0.005 - 50}),
]


@pytest.mark.parametrize(("btc", "mark", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_tiered_collateral_through_the_engine(btc: str, mark: str,
                                              expected: dict[str, float]) -> None:
    view = _account(_doc_venue(), btc=btc, mark=mark)
    for key, value in expected.items():
        assert float(view[key]) == pytest.approx(value, abs=0.01), key
    assert float(view["free_collateral"]) == pytest.approx(
        expected["collateral_usd"] - expected["initial_margin"], abs=0.01)


def test_the_tiers_are_what_changed() -> None:
    """The preset's one Multi-Assets tier (95 %) on the same account: 114,001,000."""
    view = _account(load_preset("binance"), btc="6000", mark="20000")
    assert float(view["collateral_usd"]) == pytest.approx(6_000 * 20_000 * 0.95 + 1_000,
                                                          abs=0.01)
    assert float(view["equity_usd"]) == pytest.approx(120_001_000, abs=0.01)
