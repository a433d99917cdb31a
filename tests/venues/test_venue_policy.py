"""The liquidation policy is part of the venue file (issue 14, "Configuration that is not
ignored", item 1).

A venue's policy (sizing, partial steps, penalty, waterfall, ADL ranking, socialization,
fund rules) is its file's ``liquidation`` section: a named start (``policy``), the
preset's, or a policy stated whole (``sizing`` and the rest), with keys over the start.
The presets' policies are data of that format (``POLICY_DATA``); a venue with neither a
preset nor a policy is refused with what to add (it silently got ``close_all``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solvency.adapters.eventlog import load_venue
from solvency.cli.main import app
from solvency.core.liquidation.policy import (
    POLICIES,
    POLICY_DATA,
    LiquidationSection,
    policy_to_data,
)
from solvency.core.model.presets import PRESETS, load_preset, venue_from_data
from solvency.core.model.venue import ConfigError
from solvency.engine.engine import Engine


def _full(preset: str, **extra: Any) -> dict[str, Any]:
    """A preset's data as a complete venue file of another name (no ``preset`` key)."""
    return {**copy.deepcopy(PRESETS[preset]), "name": "my-venue", **extra}


def _policy_name(preset: str) -> str:
    """The named policy of a preset: its own, or the one its liquidation section names
    (the dated binance presets of issue 22 are binance's with collateral rules)."""
    return str(PRESETS[preset].get("liquidation", {}).get("policy", preset))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_carries_its_policy_as_data(name: str) -> None:
    policy = POLICIES[_policy_name(name)]
    assert load_preset(name).policy == policy
    assert Engine(load_preset(name)).liquidator.policy == policy
    LiquidationSection.model_validate(POLICY_DATA[_policy_name(name)])


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_each_named_policy_can_be_stated_whole_in_a_file(name: str) -> None:
    """A complete venue file stating a policy key by key gets exactly that policy."""
    section = policy_to_data(POLICIES[name])
    json.dumps(section)  # plain JSON: strings, integers, booleans
    venue = venue_from_data(_full("binance", liquidation=section))
    assert Engine(venue).liquidator.policy == POLICIES[name]


def test_a_file_on_a_preset_inherits_and_overrides() -> None:
    venue = venue_from_data({"preset": "hyperliquid", "name": "hl-fork", "liquidation": {
        "partial_threshold_quote": "250000", "adl_ranking": "pro_rata", "cooldown_ms": 60_000}})
    policy = Engine(venue).liquidator.policy
    hl = POLICIES["hyperliquid"]
    assert (policy.partial_threshold_quote, policy.adl_ranking, policy.cooldown_ms) == (
        250_000.0, "pro_rata", 60_000)
    assert (policy.sizing, policy.backstop, policy.partial_portion_ppm, policy.name) == (
        hl.sizing, hl.backstop, hl.partial_portion_ppm, "hyperliquid")


def test_a_named_start_then_keys() -> None:
    venue = venue_from_data(_full("binance", liquidation={
        "policy": "dydx", "insurance_fee_ppm": 7_500, "account_notional_cap_quote": "inf"}))
    policy = venue.policy
    assert policy is not None
    assert (policy.sizing, policy.insurance_fee_ppm) == ("dydx", 7_500)
    assert policy.account_notional_cap_quote == float("inf")
    assert policy.account_insurance_cap_quote == POLICIES["dydx"].account_insurance_cap_quote


def test_a_policy_stated_from_the_defaults() -> None:
    venue = venue_from_data(_full("dydx", liquidation={"sizing": "close_all",
                                                       "socialize": "pro_rata_winners"}))
    policy = venue.policy
    assert policy is not None
    assert (policy.name, policy.sizing, policy.socialize, policy.adl_ranking) == (
        "my-venue", "close_all", "pro_rata_winners", "none")


@pytest.mark.parametrize("data", [
    pytest.param(_full("binance"), id="preset-data-renamed"),
    pytest.param({**copy.deepcopy(PRESETS["dydx"])}, id="named-like-a-preset"),
    pytest.param(_full("binance", liquidation={"insurance_fee_ppm": 0}), id="keys-no-start"),
])
def test_no_preset_and_no_policy_is_refused(tmp_path: Path, data: dict[str, Any]) -> None:
    """It was liquidated by close_all (any name) or by the preset of the same name."""
    path = tmp_path / "v.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_venue(str(path))
    text = str(err.value)
    assert text.startswith(f"{path}: no liquidation policy: add \"preset\": NAME")
    assert '"liquidation": {"policy": "close_all"}' in text
    res = CliRunner().invoke(app, ["replay", "--venue", str(path)])
    assert res.exit_code == 2 and "no liquidation policy" in " ".join(res.output.split())


@pytest.mark.parametrize(("section", "message"), [
    ({"policy": "ftx"}, "liquidation.policy: Input should be 'close_all', 'binance'"),
    ({"sizing": "half"}, "liquidation.sizing: Input should be 'close_all', 'dydx'"),
    ({"partial_threshold_quote": "-1"}, "liquidation.partial_threshold_quote: expected a "
                                        "number >= 0 or \"inf\""),
    ({"backstop": "yes"}, "liquidation.backstop: Input should be a valid boolean"),
    ({"partial_portion_ppm": 0}, "liquidation: hyperliquid: partial_portion_ppm must be in "
                                 "(0, 1e6]"),
], ids=["unknown-policy", "unknown-sizing", "negative-threshold", "string-bool",
        "zero-portion"])
def test_bad_policy_keys_are_named(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        venue_from_data({"preset": "hyperliquid", "liquidation": section})
    assert message in str(err.value)


def test_a_renamed_preset_keeps_its_policy_through_a_snapshot() -> None:
    """The venue keeps its ``preset``: a restore once rebuilt it by name (close_all)."""
    engine = Engine(venue_from_data({"preset": "bitmex", "name": "desk-a"}))
    restored = Engine.restore(engine.snapshot())
    assert restored.liquidator.policy == engine.liquidator.policy == POLICIES["bitmex"]
    assert restored.state_hash() == engine.state_hash()


def test_venues_shows_each_policy() -> None:
    res = CliRunner().invoke(app, ["venues", "--json"])
    assert res.exit_code == 0
    data = json.loads(res.output)
    for name in PRESETS:
        assert data[name]["liquidation"] == policy_to_data(POLICIES[_policy_name(name)])
    table = CliRunner().invoke(app, ["venues"], env={"COLUMNS": "200"})
    words = set(table.output.replace("│", " ").split())
    assert {"tier_step", "funding_index", "pro_rata_winners", "equity_at_depth"} <= words
