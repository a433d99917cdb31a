"""BitMEX's isolated-position amounts and liquidation price, fees to close and funding
included (core.liquidation.bitmex; issue 28 "fees and funding in the liquidation price").

* A real BitMEX ``/position`` response (XBTUSD, 1 contract bought at 6,267, leverage 100,
  commission 0.00075, maintMarginReq 0.005; 2019-05-10, quoted in a public trading bot's
  docstring): posCost -15957, posInit 160, posComm 13, posMargin 173, posMaint 93 sat.
* A 10x long of 10,000 XBTUSD at 9,479.5 with funding 0.01 % (longs pay), by hand in
  satoshis, to the tick of 0.5 (BitMEX support's formula, maintenance = 0.5 % + exit
  taker fee + funding, as narodnik/predikate liquidation_price.py computes it).
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.liquidation.bitmex import bitmex_isolated, bitmex_margin_at_leverage

XBT = {"inverse": True, "contract_size": D(1), "scale": 100_000_000}


def test_a_real_bitmex_position_response() -> None:
    init, comm, margin = bitmex_margin_at_leverage(D(1), D(6267), D(100),
                                                   taker_fee=D("0.00075"), **XBT)
    # posInit = ceil(15,957 / 100) = 160; posComm = ceil(16,117 x 0.00075 = 12.09) = 13
    assert (init, comm, margin) == (160, 13, 173)
    pos = bitmex_isolated(D(1), D(6267), margin, tick=D("0.5"), mmr=D("0.005"),
                          taker_fee=D("0.00075"), funding_rate=D(0), **XBT)
    # posCost = round(1e8 / 6,267) = 15,957; posMaint = ceil(79.785) + 13 = 93
    assert (pos.cost, pos.commission, pos.maintenance) == (15_957, 13, 93)


def test_liquidation_price_with_fees_and_funding_by_hand() -> None:
    init, comm, margin = bitmex_margin_at_leverage(D(10_000), D("9479.5"), D(10),
                                                   taker_fee=D("0.00075"), **XBT)
    # posCost = 10,000 x round(1e8 / 9,479.5 = 10,549.08) = 105,490,000 sat
    # posInit = 10,549,000; posComm = ceil(116,039,000 x 0.00075 = 87,029.25) = 87,030
    assert (init, comm, margin) == (10_549_000, 87_030, 10_636_030)
    kw = {"tick": D("0.5"), "mmr": D("0.005"), "taker_fee": D("0.00075"), **XBT}
    pos = bitmex_isolated(D(10_000), D("9479.5"), margin, funding_rate=D("0.0001"), **kw)
    # funding against the long: ceil(105,490,000 x 0.0001) = 10,549;
    # posMaint = 527,450 + 87,030 + 10,549 = 625,029
    assert (pos.funding, pos.maintenance) == (10_549, 625_029)
    # 1e8 x 10,000 / p = 105,490,000 + 10,636,030 - 625,029 = 115,501,001
    # p = 8,657.933..., up to the tick: 8,658.0
    assert pos.liquidation_price == D("8658.0")
    # bankrupt: 105,490,000 + 10,636,030 - 87,030 = 116,039,000 -> 8,617.79 -> 8,618.0
    assert pos.bankrupt_price == D("8618.0")
    # without funding: 1e12 / 115,511,550 = 8,657.14 -> 8,657.5 (funding costs 0.5)
    free = bitmex_isolated(D(10_000), D("9479.5"), margin, funding_rate=D(0), **kw)
    assert free.funding == 0 and free.liquidation_price == D("8657.5")
    # a short receives a positive rate: no funding in its maintenance
    short = bitmex_isolated(D(-10_000), D("9479.5"), margin, funding_rate=D("0.0001"),
                            **kw)
    assert short.funding == 0
    # 1e12 / (105,490,000 - (10,636,030 - 614,480) = 95,468,450) = 10,474.67, down to
    # the tick: 10,474.5; bankrupt 1e12 / (105,490,000 - 10,549,000) = 10,532.86 -> 10,532.5
    assert short.liquidation_price == D("10474.5")
    assert short.bankrupt_price == D("10532.5")


def test_linear_by_hand() -> None:
    # XBTUSDT-like: 2 BTC long at 50,000 USDT (6 decimals), margin 10,000 USDT, taker
    # 0.05 %, maintenance 0.5 %, funding 0.01 % paid. posCost 100,000 USDT;
    # posComm = ceil((100,000 + 10,000 - c) x 0.0005) -> 54.973 USDT (quanta ceil)
    pos = bitmex_isolated(D(2), D(50_000), 10_000 * 10**6, inverse=False,
                          contract_size=D(1), scale=10**6, tick=D("0.1"), mmr=D("0.005"),
                          taker_fee=D("0.0005"), funding_rate=D("0.0001"))
    comm = pos.commission
    assert comm == pytest.approx((110_000 * 10**6 - comm) * 0.0005, abs=1)
    assert pos.maintenance == 500 * 10**6 + comm + 10 * 10**6
    # p = 50,000 - (10,000 - maintenance) / 2, rounded up to 0.1
    expect = D(50_000) - (D(10_000 * 10**6 - pos.maintenance) / 10**6) / 2
    assert pos.liquidation_price == (expect / D("0.1")).to_integral_value(
        "ROUND_CEILING") * D("0.1")


def test_margin_fees_through_the_cli(tmp_path: Path) -> None:
    # the hand case above through `solvency margin --venue bitmex --fees`: posMargin
    # 10,636,030 sat = 0.1063603 XBT on an isolated XBTUSD long
    data = {"venue": "bitmex", "prices": {"BTC-USD-INVERSE": "9479.5"},
            "account": {"mode": "isolated", "positions": [
                {"market": "BTC-USD-INVERSE", "size": "10000", "entry_price": "9479.5",
                 "margin": "0.1063603"}]}}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    res = CliRunner().invoke(app, ["margin", str(path), "--fees", "--funding-rate", "0.0001",
                                   "--json"])
    assert res.exit_code == 0, res.output
    (pos,) = json.loads(res.stdout)["bitmex_fees"]["positions"]
    assert pos["liquidation_price"] == "8658.0" and pos["bankrupt_price"] == "8618.0"
    assert pos["commission"] == "0.00087030" and pos["funding"] == "0.00010549"
    assert pos["maintenance"] == "0.00625029" and pos["maintenance_rate"] == "0.005"
    # the engine's own price (maintenance on the mark value, no fee or funding) is lower
    assert float(pos["engine_liquidation_price"]) < 8658.0
    data["venue"] = "binance"
    path.write_text(json.dumps(data))
    res = CliRunner().invoke(app, ["margin", str(path), "--fees"])
    assert res.exit_code == 2 and "give --venue bitmex" in res.output
    data.update(venue="bitmex", account={"mode": "cross", "collateral": {"BTC": "0.1"},
                "positions": [{"market": "XBTUSD", "size": "100", "entry_price": "9479.5"}]})
    path.write_text(json.dumps(data))
    res = CliRunner().invoke(app, ["margin", str(path), "--fees"])
    assert res.exit_code == 2 and "for isolated positions" in res.output
