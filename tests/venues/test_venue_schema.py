"""The venue file on one schema (issue 23 item 1): ``docs/schema/venue-v1.json``.

Every bundled preset, every scenario's ``[venue]`` table and the docs' venue examples
validate against the published schema (``jsonschema``, draft 2020-12) and the model
(:class:`solvency.core.model.venue_schema.VenueFile`); a misspelt key in any section is
refused with the file, its dotted path and the keys that were expected, through
``load_venue`` and ``solvency replay --venue FILE`` (it once passed unnoticed inside
``oracle``, ``oracle.limits``, ``oracle.rate_limit`` and ``oracle.config.weights``).
"""

from __future__ import annotations

import json
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from solvency.adapters.eventlog import load_venue
from solvency.cli.main import app
from solvency.core.model.presets import PRESETS, venue_from_data
from solvency.core.model.venue import ConfigError
from solvency.core.model.venue_schema import PRESET_NAMES, VenueFile, check_venue_data

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "schema" / "venue-v1.json").read_text(encoding="utf-8"))


def _plain(value: Any) -> Any:
    # jsonschema takes JSON types: a Decimal number as the float JSON would carry
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return float(value) if isinstance(value, Decimal) else value


def _scenario_venues() -> list[Any]:
    out = []
    for path in sorted((REPO / "scenarios").rglob("*.toml")):
        if "calibration" in path.parts:
            continue  # `solvency calibrate`'s inputs, not scenarios
        data = tomllib.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        venue = dict(data.get("venue", {}))
        venue.pop("insurance_fund", None)  # the scenario's key (the fund's capital)
        out.append(pytest.param(venue, id=str(path.relative_to(REPO))))
    return out


def _doc_venues() -> list[Any]:
    """TOML blocks of the docs that are venue files or a scenario's [venue] tables."""
    out = []
    for doc in sorted((REPO / "docs").glob("*.md")):
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(r"```toml\n(.*?)```", text, re.S):
            block = m.group(1)
            data = tomllib.loads(block, parse_float=Decimal)
            if "venue" in data and set(data) == {"venue"}:
                data = data["venue"]  # a scenario's [venue] table shown alone
            elif "preset" not in data:
                continue
            line = text[:m.start()].count("\n") + 1
            out.append(pytest.param(data, id=f"{doc.name}:{line}"))
    return out


SCENARIO_VENUES = _scenario_venues()
DOC_VENUES = _doc_venues()


def test_preset_names_are_the_presets() -> None:
    assert tuple(sorted(PRESETS)) == PRESET_NAMES


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate(name: str) -> None:
    jsonschema.validate(_plain(PRESETS[name]), SCHEMA)
    VenueFile.model_validate(PRESETS[name])


def test_the_repo_holds_venue_files() -> None:
    assert len(SCENARIO_VENUES) >= 8
    assert len(DOC_VENUES) >= 2  # docs/venues.md (dYdX keys), docs/insurance_fund.md


@pytest.mark.parametrize("data", SCENARIO_VENUES + DOC_VENUES)
def test_venue_files_of_the_repo_validate(data: dict[str, Any]) -> None:
    jsonschema.validate(_plain(data), SCHEMA)
    assert check_venue_data(data) is None
    venue_from_data(dict(data) if "preset" in data else {"preset": "binance", **data})


# One misspelt key per section; each was (or would be) refused by no hand-written check
# before the schema, or by one with another wording: now every one names file and path.
TYPOS = [
    ({"oracel": {}}, "oracel: unknown key; did you mean 'oracle'?"),
    ({"oracle": {"sourcez": ["binance"]}}, "oracle.sourcez: unknown key; did you mean "
                                           "'sources'?"),
    ({"oracle": {"config": {"stale": 10}}}, "oracle.config.stale: unknown key; did you mean "
                                            "'stale_ms'?"),
    ({"oracle": {"limits": {"BTC-PERP": {"oi_maxx": 5}}}},
     "oracle.limits.BTC-PERP.oi_maxx: unknown key; did you mean 'oi_max'?"),
    ({"oracle": {"rate_limit": {"max_order": 5, "window_ms": 1000}}},
     "oracle.rate_limit.max_order: unknown key; did you mean 'max_orders'?"),
    ({"oracle": {"breakers": {"rules": [{"name": "r", "kind": "index_move",
                                         "action": "halted", "treshold": 0.1}]}}},
     "oracle.breakers.rules[0].treshold: unknown key; did you mean 'threshold'?"),
    ({"oracle": {"mark": "twap"}}, "oracle.mark: Input should be 'index', 'bitmex', "
                                   "'binance' or 'hyperliquid', got 'twap'"),
    ({"insurance": {"fee_shares_ppm": 5}}, "insurance.fee_shares_ppm: unknown key; did you "
                                           "mean 'fee_share_ppm'?"),
    ({"portfolio_margin": {"combin": "sum"}}, "portfolio_margin.combin: unknown key"),
    ({"liquidation": {"fund_capacty": "cash"}}, "liquidation.fund_capacty: unknown key; did "
                                                "you mean 'fund_capacity'?"),
    ({"assets": {"BTC": {"collateral": [{"floor_usd": "0", "wieght": "1"}]}}},
     "assets.BTC.collateral[0].wieght: unknown key; did you mean 'weight'?"),
    ({"markets": {"BTC-PERP": {"tikc_size": "1"}}}, "markets.BTC-PERP.tikc_size: unknown key; "
                                                    "did you mean 'tick_size'?"),
    ({"markets": {"BTC-PERP": {"tiers": [{"floor": "0", "mmr": "0.01", "imr": "0.02",
                                          "max_lev": "5"}]}}},
     "markets.BTC-PERP.tiers[0].max_lev: unknown key; did you mean 'max_leverage'?"),
    ({"margin_call_ratio": "1.5"}, "margin_call_ratio: expected a number > 0 and <= 1, got 1.5"),
]


@pytest.mark.parametrize(("patch", "message"), TYPOS,
                         ids=[next(iter(p)) + ":" + m.split(":")[0] for p, m in TYPOS])
def test_typos_are_refused_with_file_and_path(tmp_path: Path, patch: dict[str, Any],
                                              message: str) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"preset": "binance", **patch}), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_venue(str(path))
    assert f"{path}: {message}" in str(err.value)


def test_replay_refuses_a_typo_inside_oracle(tmp_path: Path) -> None:
    """The issue's reproducer: it exited 0 and the typo was ignored."""
    path = tmp_path / "v.json"
    path.write_text('{"preset": "binance", "oracle": {"sourcez": ["binance"]}}',
                    encoding="utf-8")
    res = CliRunner().invoke(app, ["replay", "--venue", str(path)])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())  # the terminal wraps the message
    assert f"{path}: oracle.sourcez: unknown key; did you mean 'sources'?" in said
    assert "Traceback" not in res.output


def test_a_rule_error_names_the_file_too(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text('preset = "dydx"\n[markets.BTC-PERP]\ntiers = [{floor = "0", mmr = "0.01", '
                    'imr = "0.02"}]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_venue(str(path))
    assert str(err.value).startswith(f"{path}: markets.BTC-PERP: keys ['tiers'] do not apply "
                                     "to model 'oi_scaled'")


def test_amounts_stay_exact() -> None:
    """A decimal string reaches the venue digit for digit; a Python float is refused (its
    digits are not the decimal it prints), as the parser behind the schema refuses it."""
    venue = venue_from_data({"preset": "dydx", "markets": {"BTC-PERP": {"imr": "0.020001"}}})
    assert venue.markets["BTC-PERP"].margin.imr == Decimal("0.020001")  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as err:
        venue_from_data({"preset": "dydx", "margin_call_ratio": 0.5})
    assert "margin_call_ratio: expected a decimal string, got binary float 0.5" in str(err.value)


@pytest.mark.parametrize(("key", "value", "rule"), [
    ("contract_size", "1e400", ">= 1E-18 and <= 1E+18"),
    ("contract_size", "1e-400", ">= 1E-18 and <= 1E+18"),
    ("tick_size", "1e19", ">= 1E-18 and <= 1E+18"),
    ("lot_size", "1e-19", ">= 1E-18 and <= 1E+18"),
    ("imr", "1e400", ">= 0 and <= 1E+18"),
    ("maintenance_amount", "-1e400", ">= -1E+18 and <= 1E+18"),
])
def test_a_market_decimal_out_of_range_is_refused_with_its_key(key: str, value: str,
                                                               rule: str) -> None:
    # the engine reads these as floats: 1e400 would be inf and 1e-400 0.0 (review 2, 12)
    market: dict[str, Any] = {key: value}
    where = f"markets.BTC-PERP.{key}"
    if key == "maintenance_amount":
        market = {"tiers": [{"floor": "0", "mmr": "0.01", key: value}]}
        where = f"markets.BTC-PERP.tiers[0].{key}"
    said = check_venue_data({"preset": "binance", "markets": {"BTC-PERP": market}})
    assert said is not None and f"{where}: expected a number {rule}, got " in said, said
    with pytest.raises(ConfigError):
        venue_from_data({"preset": "binance", "markets": {"BTC-PERP": market}})


def test_the_range_bounds_themselves_are_accepted() -> None:
    venue = venue_from_data({"preset": "deribit", "markets": {
        "BTC-USD-INVERSE": {"contract_size": "1e18"}, "BTC-PERP": {"contract_size": "1"}}})
    assert venue.markets["BTC-USD-INVERSE"].contract_size == Decimal("1e18")
