"""Drift's weight on positive unrealized PnL, applied by the engine's margin sums.

Source: github.com/drift-labs/protocol-v2 at commit 0ae3e3b1db782a6765c3525b3dec38ad4d9d3a62
(2026-04-01): ``programs/drift/src/math/margin.rs`` ``calculate_perp_position_value_and_pnl``
(``weighted = pnl * w / 1e4``, then ``min(weighted, MAX_POSITIVE_UPNL_FOR_INITIAL_MARGIN)``,
100 USDC, for the initial check), ``programs/drift/src/state/perp_market.rs``
``PerpMarket::get_unrealized_asset_weight`` and ``math/margin.rs``
``calculate_size_discount_asset_weight`` (the weight); the vectors are
``programs/drift/src/math/margin/tests.rs`` ``calculate_user_equity_value_tests``.

The engine folds the part of a profit that does not count (``pnl - weighted``) into the
position's requirements, so ``value - cost - IM`` (what the position adds to free
collateral) is Drift's ``weighted upnl - margin requirement``, to the quantum. The ids
name ``protocol-v2@0ae3e3b1/<file>/<test>[/<step>]``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.margin.kernels import S_COST, S_IM
from solvency.core.margin.models import SizePremiumModel, drift_unrealized_asset_weight_bp
from solvency.core.model.venue import ConfigError
from solvency.engine.engine import Engine
from tests.unit.engine.helpers import apply, engine
from tests.venues._units import (
    DRIFT_PRICE_PRECISION,
    drift_imf,
    drift_ratio,
    position_quanta,
)
from tests.venues.test_drift_vectors import PNL_24K, UNREALIZED_WEIGHT_CASES

REPO = "protocol-v2@0ae3e3b1/programs/drift/src"
MARGIN = f"{REPO}/math/margin/tests.rs"
QUOTE = 10**6
runner = CliRunner(env={"COLUMNS": "200"})


def _market(initial: int, maintenance: int, imf: int, *, upnl_imf: int,
            cap: Decimal = Decimal(100)) -> SizePremiumModel:
    return SizePremiumModel(imr=drift_ratio(initial), mmr=drift_ratio(maintenance),
                            imf_factor=drift_imf(imf),
                            unrealized_pnl_initial_asset_weight=Decimal(1),
                            unrealized_pnl_maintenance_asset_weight=Decimal(1),
                            unrealized_pnl_imf_factor=drift_imf(upnl_imf),
                            unrealized_pnl_initial_max=cap)


def _drift_position(model: SizePremiumModel, *, base9: int, price: int, quote: int
                    ) -> tuple[int, int, int, int]:
    # (value, IM, MM, pnl) of a Drift position of base9 (1e-9 base) and quote_asset_amount
    # `quote` (QUOTE_PRECISION; the engine's cost basis is its negative) at `price`
    v, im, mm = position_quanta(model, lots=base9, cv=Decimal("1e-9"),
                                mark=Decimal(price) / DRIFT_PRICE_PRECISION, decimals=6,
                                cost_quanta=-quote)
    return v, im, mm, v + quote


# calculate_user_equity_value_tests: margin_ratio_initial 1000, imf_factor 1000,
# unrealized_pnl_imf_factor = imf_factor, weights 10,000; short 6.147540983 base with
# quote_asset_amount 153,688.524588 USDC ($25,000 entry): pmr and the weighted upnl
# (capped at 100 USDC) at oracle 22,050 and 21,050
@pytest.mark.parametrize(("oracle", "pmr", "upnl"),
                         [(22_050, 13_555_327_867, 100_000_000),
                          (21_050, 12_940_573_769, 100_000_000)],
                         ids=[f"{MARGIN}/calculate_user_equity_value_tests/pmr,upnl",
                              f"{MARGIN}/calculate_user_equity_value_tests/pmr_2,upnl_2"])
def test_equity_value_vectors_through_the_engine(oracle: int, pmr: int, upnl: int) -> None:
    model = _market(1000, 500, 1000, upnl_imf=1000)
    _v, im, _mm, pnl = _drift_position(model, base9=-(12_295_081_967 // 2),
                                       price=oracle * DRIFT_PRICE_PRECISION,
                                       quote=153_688_524_588)
    # the engine's free-collateral contribution equals Drift's weighted upnl - pmr
    assert pnl - im == upnl - pmr
    # the requirement itself is Drift's pmr plus the part of the profit that does not
    # count: the profit is far above the 100 USDC cap
    assert im == pmr + pnl - 100_000_000
    if oracle == 21_050:
        assert pnl == PNL_24K  # Drift's position_unrealized_pnl


# the 8 weights of calculate_user_equity_value_tests (the venue's arithmetic is held by
# tests/venues/test_drift_vectors.py; here the same vectors through the engine's sums)
WEIGHT_CASES = UNREALIZED_WEIGHT_CASES


@pytest.mark.parametrize(("pnl", "weight"), list(WEIGHT_CASES.values()),
                         ids=[f"{MARGIN}/calculate_user_equity_value_tests/{k}"
                              for k in WEIGHT_CASES])
def test_weight_vectors_through_the_engine(pnl: int, weight: int) -> None:
    """The 8 weights of get_unrealized_asset_weight, read back from the engine's
    per-position quanta: a long of 1 BTC at 50,000 whose cost basis leaves ``pnl``; the
    cap lifted so the weight shows (Drift's own vectors call the weight directly)."""
    assert drift_unrealized_asset_weight_bp(pnl, 10_000, 1_000) == weight
    model = _market(1000, 500, 0, upnl_imf=1000, cap=Decimal(10) ** 12)
    plain = SizePremiumModel(imr=model.imr, mmr=model.mmr)
    v, im, mm = position_quanta(model, lots=1, cv=Decimal(1), mark=Decimal(50_000),
                                decimals=6, cost_quanta=50_000 * QUOTE - pnl)
    v0, im0, mm0 = position_quanta(plain, lots=1, cv=Decimal(1), mark=Decimal(50_000),
                                   decimals=6)
    assert (v, mm) == (v0, mm0)  # maintenance weight 1: no maintenance haircut
    assert im - im0 == pnl - pnl * weight // 10_000


def test_losses_and_the_maintenance_weight() -> None:
    """A loss counts in full (weight 1e4: no haircut); the maintenance weight applies
    as set, uncapped; an initial weight of 0 counts no profit."""
    model = SizePremiumModel(imr=Decimal("0.1"), mmr=Decimal("0.05"),
                             unrealized_pnl_initial_asset_weight=Decimal(0),
                             unrealized_pnl_maintenance_asset_weight=Decimal("0.9"))
    args = {"lots": 2, "cv": Decimal(1), "mark": Decimal(1_000), "decimals": 6}
    loss = position_quanta(model, **args, cost_quanta=2_500 * QUOTE)  # type: ignore[arg-type]
    assert loss == (2_000 * QUOTE, 200 * QUOTE, 100 * QUOTE)
    gain = position_quanta(model, **args, cost_quanta=1_500 * QUOTE)  # type: ignore[arg-type]
    # profit 500: initial counts none of it, maintenance 450 (500 * 9000 // 10000)
    assert gain == (2_000 * QUOTE, 700 * QUOTE, 150 * QUOTE)


# ------------------------------------------------------------------------ the engine
def _venue(weight: str | None, cap: str = "100") -> Engine:
    market: dict[str, str] = {"imf_factor": "0"}
    if weight is not None:
        market.update(unrealized_pnl_initial_asset_weight=weight,
                      unrealized_pnl_initial_max=cap)
    e = engine("drift", markets={"BTC-PERP": market})
    apply(e, "deposit", account="alice", asset="USDC", amount="1000")
    apply(e, "deposit", account="bob", asset="USDC", amount="100000")
    apply(e, "price", market="BTC-PERP", price="50000")
    apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.1",
          price="50000")
    apply(e, "price", market="BTC-PERP", price="60000")  # alice: +1,000 USDC
    return e


def _im_quanta(e: Engine, account: str) -> int:
    book = e.book
    s = book.slot_of(book.row_index[account], 0)
    return int(book.st[s, S_IM])


@pytest.mark.parametrize(("weight", "cap", "im_usdc", "accepted"), [
    (None, "100", 600, True),          # no weight: the profit counts in full
    ("1", "1000000", 600, True),       # weight 1, cap lifted: the same
    ("0.5", "1000000", 1_100, False),  # half of the 1,000 profit does not count
    ("1", "100", 1_500, False),        # Drift's cap: 100 of the 1,000 counts
], ids=["off", "weight-1", "weight-0.5", "drift-cap-100"])
def test_positive_pnl_weight_decides_an_order(weight: str | None, cap: str, im_usdc: int,
                                              accepted: bool) -> None:
    """Alice holds 0.1 BTC bought at 50,000 with 1,000 USDC; at a mark of 60,000 her
    equity is 2,000 (1,000 of it profit) and the position's IM 600 (10 %). Buying 0.2
    more at 60,000 needs 1,800 of IM: it passes where the profit counts in full (free
    collateral 200) and is refused where it counts at 0.5 (IM equity 1,500) or up to 100
    USDC (1,100), with the state hash unchanged."""
    e = _venue(weight, cap)
    assert _im_quanta(e, "alice") == im_usdc * QUOTE  # 600 + the haircut, to the quantum
    view = e.account_view("alice")
    assert Decimal(view["equity_usd"]) == 2_000
    assert Decimal(view["initial_margin"]) == im_usdc
    before = e.state_hash()
    outs = apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.2",
                 price="60000")
    if accepted:
        assert "rejected" not in [o.type for o in outs]
        assert _im_quanta(e, "alice") == 1_800 * QUOTE
        return
    assert [o.type for o in outs] == ["rejected"]
    assert outs[0].reason == "insufficient_initial_margin"
    assert e.state_hash() == before


def test_cost_basis_follows_trades_and_restore() -> None:
    """The haircut reads the exact cost basis: a partial close keeps the profit share
    (cost 5,000 -> 2,500 for half), a snapshot restores the same quanta and hash."""
    e = _venue("0.5", "1000000")
    apply(e, "fill", market="BTC-PERP", buyer="bob", seller="alice", size="0.05",
          price="60000")
    book = e.book
    s = book.slot_of(book.row_index["alice"], 0)
    assert int(book.st[s, S_COST]) == 2_500 * QUOTE
    # value 3,000, profit 500: IM 300 + 250 not counted
    assert _im_quanta(e, "alice") == 550 * QUOTE
    again = Engine.restore(e.snapshot())
    assert again.state_hash() == e.state_hash()
    assert _im_quanta(again, "alice") == 550 * QUOTE
    # money is conserved: every asset's ledger sums to the external flows
    assert e.ledger.verify() == again.ledger.verify()


@pytest.mark.parametrize(("key", "value"), [
    ("unrealized_pnl_initial_asset_weight", "1.5"),
    ("unrealized_pnl_initial_asset_weight", "0.00001"),
    ("unrealized_pnl_imf_factor", "0.0000001"),
    ("unrealized_pnl_initial_max", "-1"),
])
def test_bad_weights_are_refused_with_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"markets\.BTC-PERP.*{key}"):
        engine("drift", markets={"BTC-PERP": {key: value}})


@pytest.mark.parametrize(("key", "value"), [
    ("unrealized_pnl_imf_factor", "0.001"),
    ("unrealized_pnl_maintenance_asset_weight", "0.5"),
    ("unrealized_pnl_initial_max", "1000"),
])
def test_a_weight_key_without_the_initial_weight_is_refused(key: str, value: str) -> None:
    # without unrealized_pnl_initial_asset_weight every profit counts in full, so the
    # others would be accepted and never act
    with pytest.raises(ConfigError, match=r"markets\.BTC-PERP.*only with "
                                          r"unrealized_pnl_initial_asset_weight"):
        engine("drift", markets={"BTC-PERP": {key: value}})


# ------------------------------------------------------------------- solvency margin
def _cli_portfolio(tmp_path: Path, market: dict[str, str]) -> Path:
    data = {"venue": "drift", "markets": {"BTC-PERP": {"imf_factor": "0", **market}},
            "prices": {"BTC-PERP": "60000"},
            "account": {"collateral": {"USDC": "1000"}, "positions": [
                {"market": "BTC-PERP", "size": "0.1", "entry_price": "50000"},
                {"market": "ETH-PERP", "size": "-1", "entry_price": "3000"}]}}
    data["prices"]["ETH-PERP"] = "3100"  # type: ignore[index]
    path = tmp_path / "drift.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("market", "im", "free"), [
    ({}, "910", "990"),
    ({"unrealized_pnl_initial_asset_weight": "0.5",
      "unrealized_pnl_initial_max": "1000000"}, "1410", "490"),
    ({"unrealized_pnl_initial_asset_weight": "1"}, "1810", "90"),
    ({"unrealized_pnl_initial_asset_weight": "0"}, "1910", "-10"),
], ids=["off", "weight-0.5", "drift-cap-100", "weight-0 (Drift's initialize default)"])
def test_margin_cli_weighs_the_profit(tmp_path: Path, market: dict[str, str], im: str,
                                      free: str) -> None:
    """By hand: 1,000 USDC; long 0.1 BTC from 50,000 at 60,000 (+1,000, IM 600); short 1
    ETH from 3,000 at 3,100 (-100, IM 310, a loss: no weight). Collateral 1,000 + 1,000 -
    100 = 1,900; IM 910 plus the BTC profit that does not count: 500 at weight 0.5, 900
    at weight 1 under the 100 USDC cap, all 1,000 at weight 0 (free collateral -10)."""
    res = runner.invoke(app, ["margin", str(_cli_portfolio(tmp_path, market)), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert Decimal(out["collateral"]) == 1_900
    assert (out["initial_margin"], out["free_collateral"]) == (im, free)


def test_margin_cli_refuses_a_bad_weight(tmp_path: Path) -> None:
    res = runner.invoke(app, ["margin", str(_cli_portfolio(
        tmp_path, {"unrealized_pnl_initial_asset_weight": "0.00005"})), "--json"])
    assert res.exit_code == 2, res.output
    assert "markets.BTC-PERP" in res.output and "unrealized_pnl_initial_asset_weight" in (
        res.output)
    assert "Traceback" not in res.output
