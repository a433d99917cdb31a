"""Paradex's cross-margin option rule from a venue file's keys, through ``solvency margin``
(issue 29 item 2): longs pay ``min(premium_multiplier x mark, long_itm x spot)``, which
Deribit's rule (longs: their premium only) never charged.

Source: Paradex, "Margin Requirements" (perpetual options), docs.paradex.trade/
documentation/perpetual-options/margin-requirements, stored copy read 2026-12-07 (the
page announces portfolio margin for January 2025). Its example parameters:
premium_multiplier 100 % / 50 %, long_itm 20 % / 10 %, short_itm 15 % / 7.5 %, short_otm
10 % / 5 %, short_put_cap 50 % / 50 % (initial / maintenance), and its worked examples,
spot 100, one contract:

* Buy, mark 10: IMR = 10 (the mark), MMR = 5; mark 30: IMR = 20 % x 100 = 20, MMR = 10.
* Sell, OTM call strike 106: IMR = max(15 - 6, 10) = 10, MMR = max(7.5 - 6, 5) = 5;
  ITM put strike 106: IMR = max(15, 10) = 15, MMR = 7.5; OTM put strike 40, mark 25:
  IMR = min(10, 50 % x 40) = 10, MMR = min(5, 20) = 5.

(The page as republished later, docs.paradex.trade/risk, lists other example constants,
long_itm 10 % / 5 %: the venue sets them per underlying, so they are venue-file keys.)
Amounts are USDC, exact to the quantum (1e-6): the engine rounds requirements up to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})

# Paradex's example constants as venue-file keys of the option_standard model
PARADEX_KEYS = {
    "model": "option_standard", "im_base": "0.15", "im_floor": "0.10", "mm_base": "0.075",
    "mm_floor": "0.05", "mm_otm_discount": "1", "mm_mark_factor": "0", "premium": "0",
    "put_cap": "0.5", "long_premium_im": "1", "long_spot_im": "0.2",
    "long_premium_mm": "0.5", "long_spot_mm": "0.1"}

# (id, option kind, strike, mark, size, IM, MM): the page's examples, and one by hand
# whose amounts are not whole (mark 17.3: 17.3 and 8.65 exactly, under 20 and 10)
CASES = [
    ("paradex-buy-mark-10", "call", "100", "10", "1", "10", "5"),
    ("paradex-buy-mark-30", "put", "100", "30", "1", "20", "10"),
    ("paradex-sell-otm-call-106", "call", "106", "1", "-1", "10", "5"),
    ("paradex-sell-itm-put-106", "put", "106", "6", "-1", "15", "7.5"),
    ("paradex-sell-otm-put-40-capped", "put", "40", "25", "-1", "10", "5"),
    ("hand-buy-mark-17.3-two-contracts", "call", "90", "17.3", "2", "34.6", "17.3"),
]


def _market(kind: str, strike: str, **keys: str) -> dict[str, str]:
    return {"kind": "option", "option_kind": kind, "strike": strike,
            "underlying": "BTC-PERP", "expiry": "2026-06-26T08:00:00Z", "base": "BTC",
            "quote": "USDC", "tick_size": "0.1", "lot_size": "0.01", **keys}


def _portfolio(tmp_path: Path, keys: dict[str, str]) -> Path:
    data: dict[str, Any] = {
        "venue": "deribit",
        "markets": {c[0]: _market(c[1], c[2], **keys) for c in CASES},
        "prices": {"BTC-PERP": "100", **{c[0]: c[3] for c in CASES}},
        "account": {"collateral": {"USDC": "1000"}, "positions": [
            {"market": c[0], "size": c[4], "entry_price": c[3]} for c in CASES]}}
    path = tmp_path / "paradex.json"
    path.write_text(json.dumps(data))
    return path


def test_paradex_worked_examples_through_the_cli(tmp_path: Path) -> None:
    res = runner.invoke(app, ["margin", str(_portfolio(tmp_path, PARADEX_KEYS)), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    got = {p["market"]: (p["initial_margin"], p["maintenance_margin"])
           for p in out["positions"]}
    assert got == {c[0]: (c[5], c[6]) for c in CASES}
    # cross margin: the account's requirement is the sum over its markets (Paradex
    # "Cross Margin Requirement": Account Margin Requirement = sum over markets)
    assert (out["initial_margin"], out["maintenance_margin"]) == ("99.6", "49.8")


def test_deribit_rule_by_default_longs_pay_nothing(tmp_path: Path) -> None:
    # the same file without the Paradex keys: Deribit's rule, longs need no margin
    res = runner.invoke(app, ["margin", str(_portfolio(tmp_path, {"model": "option_standard"})),
                                  "--json"])
    assert res.exit_code == 0, res.output
    longs = [p for p in json.loads(res.output)["positions"] if not p["size"].startswith("-")]
    assert len(longs) == 3
    assert {(p["initial_margin"], p["maintenance_margin"]) for p in longs} == {("0", "0")}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("long_spot_imm", "0.2", "long_spot_imm: unknown key; did you mean"),
    ("long_premium_im", "1.5", "long_premium_im 1.5 outside [0, 1]"),
    ("long_spot_mm", "0.3", "long_spot_mm must not exceed"),
    ("put_cap", "0", "put_cap"),
], ids=["typo", "above-one", "maintenance-above-initial", "zero-cap"])
def test_a_bad_option_key_is_refused_with_its_path(tmp_path: Path, key: str, value: str,
                                                   message: str) -> None:
    res = runner.invoke(app, ["margin", str(_portfolio(tmp_path, {**PARADEX_KEYS,
                                                                   key: value})), "--json"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "paradex-buy-mark-10" in text and key in text and message in text
    assert "Traceback" not in res.output


def test_the_docs_paradex_entry_is_the_one_tested() -> None:
    # docs/portfolio_margin.md shows the keys a user copies: they are these
    text = (Path(__file__).parents[2] / "docs" / "portfolio_margin.md").read_text(
        encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    entries = [json.loads(b) for b in blocks if "long_premium_im" in b]
    assert entries == [PARADEX_KEYS]
