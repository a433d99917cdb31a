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
