"""The published JSON Schemas (docs/schema/*.json) are what the models generate, and every
bundled file of each format validates against its schema (checked with ``jsonschema``, the
reference validator of the JSON Schema spec, draft 2020-12).

To rewrite the schemas after changing a model: ``.venv/bin/python -m solvency.cli.schemas
--write`` (the registry is in cli, the one layer that sees the scenario file's model too).
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from solvency.adapters import schemas as adapter_schemas
from solvency.adapters.grids import grid_names
from solvency.cli.schemas import PUBLISHED, main, render_schema

REPO = Path(__file__).resolve().parents[3]
SCHEMA_DIR = REPO / "docs" / "schema"


@pytest.mark.parametrize("spec", PUBLISHED, ids=[s.name for s in PUBLISHED])
def test_published_schema_matches_the_model(spec):
    path = SCHEMA_DIR / f"{spec.name}.json"
    assert path.read_text(encoding="utf-8") == render_schema(spec), (
        f"{path} drifted from its model: run python -m solvency.cli.schemas --write")
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_every_generated_schema_is_published_and_written(tmp_path, capsys):
    generated = {f"{s.name}.json" for s in PUBLISHED}
    assert {s.name for s in adapter_schemas.PUBLISHED} < {s.name for s in PUBLISHED}
    assert "scenario-v1.json" in generated
    hand_written = {"risk-report-v1.json"}  # an output format, not generated
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == generated | hand_written
    assert main(["--write", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == generated
    # the old entry point cannot see the scenario model: it says where the writer is
    assert adapter_schemas.main([]) == 2
    assert "python -m solvency.cli.schemas --write" in capsys.readouterr().err


def _schema(name):
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", grid_names())
def test_shipped_grids_validate(name):
    text = resources.files("solvency.core.portfolio").joinpath(f"grids/{name}.toml").read_text()
    jsonschema.validate(tomllib.loads(text), _schema("grid-v1"))


@pytest.mark.parametrize(("patch", "word"), [
    ({"vol_rnage_up": 0.5}, "Additional properties"),
    ({"scenarios": [{"price": 1.0, "wieght": 2}]}, "Additional properties"),
    ({"scenarios": [{"price": 1.0, "move": 0.5}]}, "oneOf"),
    ({"scenarios": [{"price": 1.0, "weight": 2}]}, "maximum"),
    ({"price_range": -1}, "minimum"),
])
def test_grid_schema_refuses_what_the_model_refuses(patch, word):
    grid = {"name": "x", "price_range": 0.1, "scenarios": [{"price": 1.0}]} | patch
    with pytest.raises(jsonschema.ValidationError) as info:
        jsonschema.validate(grid, _schema("grid-v1"))
    assert word in str(info.value) or word in info.value.validator


# ------------------------------------------------------------------ portfolio files
# Issue 23: the portfolio files of `solvency margin` and `solvency greeks` on one model
# (engine.portfolio.PortfolioFile); the docs' example files are the bundled ones.

def _doc_portfolios():
    import re
    from decimal import Decimal

    found = []
    for name in ("cli.md", "greeks_and_hedging.md"):
        text = (REPO / "docs" / name).read_text(encoding="utf-8")
        # input files only: a `json run=...` block is a command's answer
        for m in re.finditer(r"```json([^\n]*)\n(.*?)```", text, re.S):
            if '"positions"' in m.group(2) and "run=" not in m.group(1):
                found.append(pytest.param(json.loads(m.group(2), parse_float=Decimal),
                                          id=f"{name}:{text[:m.start()].count(chr(10)) + 1}"))
    return found


DOC_PORTFOLIOS = _doc_portfolios()


def _plain(value):
    # jsonschema takes JSON types: a Decimal number as the float JSON would carry
    from decimal import Decimal

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return float(value) if isinstance(value, Decimal) else value


def test_the_docs_hold_portfolio_examples():
    assert len(DOC_PORTFOLIOS) >= 2  # docs/cli.md (margin), docs/greeks_and_hedging.md


@pytest.mark.parametrize("data", DOC_PORTFOLIOS)
def test_doc_portfolios_validate(data):
    from solvency.engine.multivenue import MultiVenuePortfolio, is_multi_venue
    from solvency.engine.portfolio import portfolio_model

    if is_multi_venue(data):  # one trader on several venues (issue 22)
        jsonschema.validate(_plain(data), _schema("portfolio-venues-v1"))
        MultiVenuePortfolio.model_validate(data)
        return
    jsonschema.validate(_plain(data), _schema("portfolio-v1"))
    portfolio_model(data)


PORTFOLIO_TYPOS = [
    ({"acount": {}}, "acount: unknown key; did you mean 'account'?"),
    ({"account": {"positions": [{"market": "BTC-PERP", "size": "1", "entry_price": "1",
                                 "marign": "5"}]}},
     "account.positions[0].marign: unknown key; did you mean 'margin'?"),
    ({"account": {"colateral": {"USDT": "5"}}},
     "account.colateral: unknown key; did you mean 'collateral'?"),
    ({"markets": {"BTC-C": {"type": "option", "underlying": "BTC", "kind": "call",
                            "strike": "1", "expiry": "2026-01-01T00:00:00Z",
                            "settle": "USDC", "contract_sise": "1"}}},
     "markets.BTC-C.contract_sise: unknown key; did you mean 'contract_size'?"),
    ({"prices": {"BTC-PERP": True}}, "prices.BTC-PERP: expected a number or a decimal "
                                     "string > 0, got bool True"),
]


@pytest.mark.parametrize(("patch", "says"), PORTFOLIO_TYPOS,
                         ids=["top", "position", "account", "option-market", "boolean"])
def test_portfolio_typos_are_refused_by_model_and_schema(patch, says):
    from solvency.cli.greeks import GreeksError, evaluate_greeks
    from solvency.engine.portfolio import PortfolioError, evaluate_portfolio

    data = {"account": {}} | patch
    if "acount" in patch:
        del data["account"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_plain(data), _schema("portfolio-v1"))
    for evaluate, error in ((evaluate_portfolio, PortfolioError),
                            (evaluate_greeks, GreeksError)):
        if "BTC-C" in str(patch) and evaluate is evaluate_portfolio:
            continue  # margin refuses an option market before reading its keys
        with pytest.raises(error) as exc:
            evaluate(data, source="p.json")
        assert any(line.startswith(f"p.json: {says}")
                   for line in str(exc.value).splitlines()), str(exc.value)


# ------------------------------------------------------------------ scenario files
# Issue 23: the stress lab's scenario TOML (sim.scenario.ScenarioFile); every bundled
# scenario validates against the published schema, and what the model refuses for a
# misspelt key, a wrong type or a path model's unknown field, the schema refuses too.

def _toml_as_json(value):
    # what a TOML-to-JSON converter gives an editor: datetimes as ISO strings
    import datetime as dt

    if isinstance(value, dict):
        return {k: _toml_as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_toml_as_json(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


BUNDLED_SCENARIOS = [
    # scenarios/calibration/ holds `solvency calibrate`'s inputs, not scenarios
    *sorted(p for p in (REPO / "scenarios").rglob("*.toml") if "calibration" not in p.parts),
    REPO / "src" / "solvency" / "data" / "default_scenario.toml",
]


def test_the_bundled_scenarios_are_found():
    names = {p.name for p in BUNDLED_SCENARIOS}
    assert {"default.toml", "default_scenario.toml", "crash_2025_10_10.toml",
            "oracle_outage.toml"} <= names


@pytest.mark.parametrize("path", BUNDLED_SCENARIOS,
                         ids=[str(p.relative_to(REPO)) for p in BUNDLED_SCENARIOS])
def test_bundled_scenarios_validate(path):
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(_toml_as_json(data), _schema("scenario-v1"))


def _scenario(dotted, value):
    """The bundled default scenario with the ``dotted`` key set to ``value``."""
    data = tomllib.loads((REPO / "scenarios" / "default.toml").read_text(encoding="utf-8"))
    *tables, key = dotted.split(".")
    node = data
    for t in tables:
        node = node.setdefault(t, {})
    node[key] = value
    return data


SCENARIO_REFUSED = [
    pytest.param(_scenario("horizn", "1d"), "horizn: unknown key; did you mean 'horizon'?",
                 id="misspelt-top-level"),
    pytest.param(_scenario("market.markets.BTC-PERP.gap_fractoin", 0.1),
                 "market.markets.BTC-PERP.gap_fractoin: unknown key; did you mean "
                 "'gap_fraction'?", id="misspelt-crash-field"),
    pytest.param(_scenario("market.markets.BTC-PERP.sigma_annual", 0.8),
                 "market.markets.BTC-PERP.sigma_annual: unknown key", id="gbm-field-in-crash"),
    pytest.param(_scenario("liquidity.BTC-PERP.band_bsp", 5.0),
                 "liquidity.BTC-PERP.band_bsp: unknown key; did you mean 'band_bps'?",
                 id="misspelt-liquidity"),
    pytest.param(_scenario("step", 1.5), "step: expected a duration", id="float-duration"),
    pytest.param(_scenario("step", "15 seconds"), "step: interval '15 seconds'",
                 id="bad-duration-text"),
    pytest.param(_scenario("population.n_accounts", "many"),
                 "population.n_accounts: Input should be a valid integer", id="wrong-type"),
    pytest.param(_scenario("run.vol_window", 1),
                 "run.vol_window: Input should be greater than or equal to 2", id="bound"),
    pytest.param(_scenario("market.model", "heston"), "market.model: Input should be",
                 id="unknown-model"),
    pytest.param(_scenario("report.fund_used_max", 1.5), "report.fund_used_max: Input should "
                 "be less than or equal to 1", id="report-share"),
]


@pytest.mark.parametrize(("data", "says"), SCENARIO_REFUSED)
def test_scenario_mistakes_are_refused_by_model_and_schema(data, says):
    from solvency.sim.scenario import ScenarioError, parse_scenario_data

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_toml_as_json(data), _schema("scenario-v1"))
    with pytest.raises(ScenarioError) as exc:
        parse_scenario_data(data, source="s.toml")
    assert str(exc.value).startswith(f"s.toml: {says}"), str(exc.value)
