"""The scenario TOML's edge schema (issue 23 item 1): every problem is one line
``file: dotted.key: what was expected`` (solvency.core.schema.format_errors), a misspelt key
at any depth is answered with the closest expected key, and NaN or infinity is refused."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest

from solvency.sim.scenario import DEFAULT_SCENARIO_TOML, ScenarioError, parse_scenario_data

BASE: dict[str, Any] = tomllib.loads(DEFAULT_SCENARIO_TOML)


def _with(path: str, value: Any, *, drop: str | None = None) -> dict[str, Any]:
    """The default scenario with ``path`` (dotted) set to ``value`` and ``drop`` removed."""
    data = copy.deepcopy(BASE)
    *tables, key = path.split(".")
    node = data
    for t in tables:
        node = node.setdefault(t, {})
    node[key] = value
    if drop is not None:
        del node[drop]
    return data


CASES = [
    pytest.param(_with("horizn", "1d"),
                 "horizn: unknown key; did you mean 'horizon'? expected one of: agents, "
                 "collateral_reports, description, horizon, links, liquidity, market, name, "
                 "oracle, population, report, run, seeds, start, step, venue",
                 id="misspelt-top-level"),
    pytest.param(_with("market.markets.BTC-PERP.vol_anual", 0.5, drop="vol_annual"),
                 "market.markets.BTC-PERP.vol_anual: unknown key; did you mean "
                 "'vol_annual'? expected one of: cascade_depth, cascade_duration, crash_at, "
                 "crash_vol_multiplier, drift_annual, gap_fraction, recovery_fraction, "
                 "recovery_half_life, start_price, vol_annual", id="misspelt-market-model-key"),
    pytest.param(_with("liquidity.ETH-PERP.impact_why", 1.0),
                 "liquidity.ETH-PERP.impact_why: unknown key; did you mean 'impact_y'?",
                 id="misspelt-in-a-named-table"),
    pytest.param(_with("agents.topup.latncy", "5s"),
                 "agents.topup.latncy: unknown key; did you mean 'latency'?",
                 id="misspelt-agent-key"),
    pytest.param(_with("population.n_accounts", "many"),
                 "population.n_accounts: Input should be a valid integer", id="wrong-type"),
    pytest.param(_with("step", 1.5),
                 'step: expected a duration: a string like "30s", "15m", "4h", "2d" or an '
                 "integer of milliseconds, got a number 1.5", id="wrong-type-duration"),
    pytest.param(_with("start", True),
                 "start: expected a UTC time: an ISO-8601 string", id="wrong-type-time"),
    pytest.param(_with("seeds", 7), "seeds: expected an object, got a number 7",
                 id="value-for-a-table"),
    pytest.param(_with("market.markets.BTC-PERP.start_price", float("nan")),
                 "market.markets.BTC-PERP.start_price: Input should be a finite number",
                 id="nan-in-a-market"),
    pytest.param(_with("liquidity.BTC-PERP.impact_y", float("inf")),
                 "liquidity.BTC-PERP.impact_y: Input should be a finite number",
                 id="infinity-in-liquidity"),
    pytest.param(_with("report.bad_debt_max", float("inf")),
                 "report.bad_debt_max: Input should be a finite number",
                 id="infinity-threshold"),
]


@pytest.mark.parametrize(("data", "line"), CASES)
def test_scenario_errors_name_the_file_and_the_dotted_key(data: dict[str, Any],
                                                          line: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario_data(data, source="my.toml")
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines  # one problem, one line (a union is not listed per member)
    assert lines[0].startswith(f"my.toml: {line}"), lines[0]


def test_the_base_is_valid_and_left_alone() -> None:
    before = copy.deepcopy(BASE)
    assert parse_scenario_data(BASE, source="d.toml").name
    with pytest.raises(ScenarioError):
        parse_scenario_data(_with("horizn", "1d"), source="d.toml")
    assert before == BASE


def test_every_problem_is_listed() -> None:
    data = _with("seeds.markte", 3)
    data["run"] = {"verify_every": 0}
    with pytest.raises(ScenarioError) as info:
        parse_scenario_data(data, source="two.toml")
    assert str(info.value).splitlines() == [
        "two.toml: seeds.markte: unknown key; did you mean 'market'? expected one of: "
        "agents, market, population",
        "two.toml: run.verify_every: Input should be greater than or equal to 1",
    ]
