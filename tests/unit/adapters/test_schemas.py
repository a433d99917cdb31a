"""The published JSON Schemas (docs/schema/*.json) are what the models generate, and every
bundled file of each format validates against its schema (checked with ``jsonschema``, the
reference validator of the JSON Schema spec, draft 2020-12).

To rewrite the schemas after changing a model: ``.venv/bin/python -m solvency.adapters.schemas
--write``.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from solvency.adapters.grids import grid_names
from solvency.adapters.schemas import PUBLISHED, render_schema

REPO = Path(__file__).resolve().parents[3]
SCHEMA_DIR = REPO / "docs" / "schema"


@pytest.mark.parametrize("spec", PUBLISHED, ids=[s.name for s in PUBLISHED])
def test_published_schema_matches_the_model(spec):
    path = SCHEMA_DIR / f"{spec.name}.json"
    assert path.read_text(encoding="utf-8") == render_schema(spec), (
        f"{path} drifted from its model: run python -m solvency.adapters.schemas --write")
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


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
    from solvency.engine.portfolio import portfolio_model

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
