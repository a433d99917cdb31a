"""``solvency greeks`` end to end (CliRunner, real files): values, totals, table, bad input.

Per-contract values are checked against the plain-Python Black-76 twin
(``solvency.core.options.reference``, itself held to QuantLib), with T = 30 / 365 (ACT/365).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.options.reference import black76_one, inverse_one

runner = CliRunner(env={"COLUMNS": "200"})

T_30D = 30 / 365

PORTFOLIO: dict[str, Any] = {
    "venue": "deribit",
    "now": "2026-01-01T00:00:00Z",
    "rate": "0.03",
    "markets": {
        "BTC-C": {"type": "option", "underlying": "BTC", "kind": "call", "strike": "100000",
                  "expiry": "2026-01-31T00:00:00Z", "settle": "USDC"},
        "BTC-P": {"type": "option", "underlying": "BTC", "kind": "put", "strike": "90000",
                  "expiry": "2026-01-31T00:00:00Z", "settle": "BTC"},
    },
    "prices": {"BTC": "100000"},
    "vols": {"BTC-C": "0.6", "BTC-P": "0.7"},
    "account": {"positions": [
        {"market": "BTC-C", "size": "-10"},
        {"market": "BTC-P", "size": "3"},
        {"market": "BTC-PERP", "size": "5"},
        {"market": "BTC-USD-INVERSE", "size": "1000"},
    ]},
}


def _write(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(obj))
    return path


def _run_json(tmp_path: Path, obj: object) -> dict[str, Any]:
    res = runner.invoke(app, ["greeks", str(_write(tmp_path, obj)), "--json"])
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.output)
    return out


def test_json_per_contract_values_match_the_reference(tmp_path: Path) -> None:
    out = _run_json(tmp_path, PORTFOLIO)
    call, put, perp, inv = out["positions"]
    assert [p["market"] for p in out["positions"]] == ["BTC-C", "BTC-P", "BTC-PERP",
                                                       "BTC-USD-INVERSE"]
    ref = black76_one(f=1e5, k=1e5, t=T_30D, sigma=0.6, r=0.03, is_call=True)
    for key, want in zip(("price", "delta", "gamma", "vega", "theta", "rho"), ref[:6],
                         strict=True):
        assert call[key] == pytest.approx(want, rel=1e-10), key
    assert call["time_to_expiry_yr"] == pytest.approx(T_30D, rel=1e-15)
    # inverse (coin-settled) put: raw Greeks of V_coin = V_usd / F (Deribit "Inverse Options")
    iref = inverse_one(f=1e5, k=9e4, t=T_30D, sigma=0.7, r=0.03, is_call=False)
    for key, want in zip(("price", "delta", "gamma", "vega", "theta", "rho"), iref[:6],
                         strict=True):
        assert put[key] == pytest.approx(want, rel=1e-9), key
    assert (perp["delta"], perp["gamma"]) == (1.0, 0.0)
    # Deribit inverse perpetual, 10 USD per contract: 10 / 100,000 BTC per contract
    assert inv["delta"] == pytest.approx(1e-4)


def test_totals_are_size_weighted_in_base_and_quote_units(tmp_path: Path) -> None:
    out = _run_json(tmp_path, PORTFOLIO)
    c = black76_one(f=1e5, k=1e5, t=T_30D, sigma=0.6, r=0.03, is_call=True)
    p = black76_one(f=1e5, k=9e4, t=T_30D, sigma=0.7, r=0.03, is_call=False)
    p_coin = inverse_one(f=1e5, k=9e4, t=T_30D, sigma=0.7, r=0.03, is_call=False)
    tot = out["totals"]["BTC"]
    # inverse put counts Deribit's net transaction delta: delta - V_coin
    net_put = p_coin[6]
    assert net_put == pytest.approx(p[1] - p[0] / 1e5, rel=1e-12)
    assert tot["delta"] == pytest.approx(-10 * c[1] + 3 * net_put + 5 + 1000 * 1e-4, rel=1e-12)
    assert tot["gamma"] == pytest.approx(-10 * c[2] + 3 * p[2], rel=1e-12)
    assert tot["vega"] == pytest.approx(-10 * c[3] + 3 * p[3], rel=1e-12)
    assert tot["theta"] == pytest.approx(-10 * c[4] + 3 * p[4], rel=1e-12)
    assert out["cash"]["delta"] == pytest.approx(tot["delta"] * 1e5, rel=1e-12)


def test_table_uses_screen_units(tmp_path: Path) -> None:
    res = runner.invoke(app, ["greeks", str(_write(tmp_path, PORTFOLIO))])
    assert res.exit_code == 0, res.output
    for label in ("vega / vol pt", "theta / day", "rho / 1%", "BTC-C", "BTC-PERP"):
        assert label in res.output
    theta_day = black76_one(f=1e5, k=1e5, t=T_30D, sigma=0.6, r=0.03, is_call=True)[4] / 365
    assert f"{theta_day:.6g}" in res.output


def _cells(output: str, first: str) -> list[str]:
    """The cells of the table row (or folded record) that starts with ``first``."""
    line = next(ln for ln in output.splitlines() if ln.strip("│ ").startswith(first))
    return [c for c in line.replace("│", " ").split() if c]


def _expiry_count_delta(output: str, expiry: str) -> tuple[str, str]:
    """Count and net delta of one expiry's line, from the table row or, where the table
    does not fit the width (print_table folds it into records; rich 13.7 measures the
    columns wider than newer rich), from the folded record."""
    lines = output.splitlines()
    for ln in lines:
        if ln.strip("│ ").startswith(expiry):
            cells = _cells(output, expiry)
            return cells[1], cells[2]  # expiry date, count, net delta
    i = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["expiry", expiry])
    fields = {" ".join(ln.split()[:-1]): ln.split()[-1] for ln in lines[i + 1:i + 3]}
    return fields["count"], fields["net delta"]


def test_inverse_option_delta_is_deribits_black_scholes_delta(tmp_path: Path) -> None:
    # Deribit API v2, public/ticker `greeks.delta`: "the Black Scholes Delta" of the
    # option (a put near -0.27, not dV_coin/dF = -3.5e-06 BTC per USD); its account
    # `delta_total` adds the "Net Transaction Delta = Black Scholes Delta - Mark Price"
    # (mark price in BTC), private/get_account_summary. Premiums of inverse options are
    # quoted in BTC (Deribit "Inverse Options"); vega, theta and gamma are the standard
    # Black-Scholes ones, in USD.
    p = black76_one(f=1e5, k=9e4, t=T_30D, sigma=0.7, r=0.03, is_call=False)
    out = _run_json(tmp_path, PORTFOLIO)
    put = out["positions"][1]["quote_greeks"]
    assert put["delta"] == pytest.approx(p[1], rel=1e-9)
    assert put["delta_net"] == pytest.approx(p[1] - p[0] / 1e5, rel=1e-9)
    assert (put["gamma"], put["vega"], put["theta"]) == pytest.approx(p[2:5], rel=1e-9)
    res = runner.invoke(app, ["greeks", str(_write(tmp_path, PORTFOLIO))])
    assert res.exit_code == 0, res.output
    row = _cells(res.output, "BTC-P")
    assert row[:4] == ["BTC-P", "3", f"{p[0] / 1e5:.6g}", "BTC"]  # premium in BTC
    assert row[4:7] == [f"{p[1]:.6g}", f"{p[1] - p[0] / 1e5:.6g}", f"{p[2]:.6g}"]
    assert row[7] == f"{p[3] / 100:.6g}"  # USD per vol point
    # an inverse perpetual's price is in USD and says so; no title claims otherwise
    assert _cells(res.output, "BTC-USD-INVERSE")[2:4] == ["100000", "USD"]
    assert "in the settlement currency" not in res.output


def test_table_shows_the_cash_totals_of_the_json(tmp_path: Path) -> None:
    out = _run_json(tmp_path, PORTFOLIO)
    res = runner.invoke(app, ["greeks", str(_write(tmp_path, PORTFOLIO))])
    assert res.exit_code == 0, res.output
    cash = out["cash"]
    assert "cash delta" in res.output and "cash gamma / 1%" in res.output
    row = _cells(res.output, f"{cash['delta']:.6g}")
    assert row == [f"{cash['delta']:.6g}", f"{cash['gamma_1pct']:.6g}",
                   f"{cash['vega'] / 100:.6g}", f"{cash['theta'] / 365:.6g}",
                   f"{cash['rho'] / 100:.6g}"]


def _many(n: int) -> dict[str, Any]:
    data = copy.deepcopy(PORTFOLIO)
    expiries = ("2026-01-30T08:00:00Z", "2026-02-27T08:00:00Z")
    for i in range(n):
        name = f"BTC-{100000 + 500 * i}-{'C' if i % 2 else 'P'}"
        data["markets"][name] = {"type": "option", "underlying": "BTC",
                                 "kind": "call" if i % 2 else "put",
                                 "strike": str(60000 + 500 * i), "expiry": expiries[i % 2],
                                 "settle": "BTC" if i % 3 else "USDC"}
        data["vols"][name] = "0.55"
        data["account"]["positions"].append({"market": name, "size": str(i % 7 - 3 or 1)})
    return data


def test_a_long_portfolio_is_summarized_per_underlying_and_expiry(tmp_path: Path) -> None:
    data = _many(200)
    out = _run_json(tmp_path, data)
    narrow = CliRunner(env={"COLUMNS": "80"})
    res = narrow.invoke(app, ["greeks", str(_write(tmp_path, data))])
    assert res.exit_code == 0, res.output
    assert "BTC-100500-C" not in res.output  # no per-position rows
    assert "204 positions summarized per underlying and expiry" in res.output
    assert "--positions" in res.output
    # one line per expiry, never cut at 80 columns: the net deltas add up to the total
    jan = [p for p in out["positions"] if p["expiry"] == "2026-01-30T08:00:00Z"]
    jan_delta = sum(p["size"] * p["quote_greeks"]["delta_net"] for p in jan)
    assert _expiry_count_delta(res.output, "2026-01-30") == (str(len(jan)),
                                                              f"{jan_delta:.6g}")
    assert max(len(line) for line in res.output.splitlines()) <= 80
    assert "…" not in res.output
    # the full list behind a flag, or in a file
    res = narrow.invoke(app, ["greeks", str(_write(tmp_path, data)), "--positions"])
    assert res.exit_code == 0 and "BTC-100500-C" in res.output
    csv_path = tmp_path / "positions.csv"
    res = narrow.invoke(app, ["greeks", str(_write(tmp_path, data)), "--positions-csv",
                              str(csv_path)])
    assert res.exit_code == 0 and f"written to {csv_path}" in " ".join(res.output.split())
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 1 + 204 and lines[0].startswith("market,type,underlying,expiry")


def test_prices_by_perp_market_name_and_linear_only_file(tmp_path: Path) -> None:
    data = copy.deepcopy(PORTFOLIO)
    data["venue"] = "binance"
    data["prices"] = {"BTC-PERP": "100000"}
    data["markets"].pop("BTC-P")
    data["vols"].pop("BTC-P")
    data["account"]["positions"] = [{"market": "BTC-C", "size": "1"},
                                    {"market": "BTCUSDT", "size": "-0.5"}]
    out = _run_json(tmp_path, data)
    ref = black76_one(f=1e5, k=1e5, t=T_30D, sigma=0.6, r=0.03, is_call=True)
    assert out["totals"]["BTC"]["delta"] == pytest.approx(ref[1] - 0.5, rel=1e-12)


def _mutate(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(PORTFOLIO)
    *head, last = path.split("/")
    node: Any = data
    for key in head:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()

BAD = [
    ("unknown-kind", "markets/BTC-C/kind", "straddle",
     "markets.BTC-C.kind: Input should be 'call' or 'put', got 'straddle'"),
    ("expired", "markets/BTC-C/expiry", "2025-12-31T00:00:00Z",
     "BTC-C: expired at 2025-12-31T00:00:00Z (now 2026-01-01T00:00:00Z)"),
    ("negative-strike", "markets/BTC-C/strike", "-1",
     "markets.BTC-C.strike: expected a number > 0, got -1"),
    ("negative-vol", "vols/BTC-C", "-0.6", "vols.BTC-C: expected a number > 0, got -0.6"),
    ("zero-vol", "vols/BTC-C", "0", "vols.BTC-C: expected a number > 0, got 0"),
    ("missing-vol", "vols/BTC-C", _DELETE, "vols.BTC-C: missing"),
    ("missing-price", "prices/BTC", _DELETE, "prices: no price for underlying 'BTC'"),
    ("malformed-now", "now", "2026-13-01", "now: '2026-13-01' is not ISO-8601"),
    ("non-utc-now", "now", "2026-01-01T00:00:00+02:00", "must be UTC"),
    ("missing-now", "now", _DELETE, "now: required"),
    ("malformed-expiry", "markets/BTC-C/expiry", "soon", "markets.BTC-C.expiry: 'soon'"),
    ("unknown-option-key", "markets/BTC-C/style", "american",
     "markets.BTC-C.style: unknown key; did you mean 'settle'?"),
    ("bad-type", "markets/BTC-C/type", "swap",
     "markets.BTC-C.type: Input should be 'option', got 'swap'"),
    ("unknown-position-market", "account/positions/0/market", "DOGE-PERP",
     "unknown market 'DOGE-PERP'"),
    ("bad-size", "account/positions/0/size", "ten",
     "account.positions[0].size: expected a decimal number, got 'ten'"),
    ("vol-for-unknown-market", "vols/ETH-C", "0.5", "vols.ETH-C: not an option market"),
    ("unknown-price-key", "prices/DOGE", "1", "prices.DOGE: not an underlying"),
    ("rate-not-decimal", "rate", "abc", "rate"),
]


@pytest.mark.parametrize(("path", "value", "message"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_a_precise_message(tmp_path: Path, path: str, value: object,
                                                  message: str) -> None:
    res = runner.invoke(app, ["greeks", str(_write(tmp_path, _mutate(path, value)))])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()), res.output


def test_unknown_venue_and_missing_file(tmp_path: Path) -> None:
    res = runner.invoke(app, ["greeks", str(_write(tmp_path, PORTFOLIO)), "--venue", "ftx"])
    assert res.exit_code == 2 and "unknown venue 'ftx'" in res.output
    res = runner.invoke(app, ["greeks", str(tmp_path / "nope.json")])
    assert res.exit_code == 2


def test_the_venue_may_be_a_venue_file_as_for_margin(tmp_path: Path) -> None:
    # deribit's inverse perpetual with a 100 USD contract (the preset's is 10): one contract
    # is 100 / F = 100 / 100,000 = 0.001 BTC of delta, so 5 contracts 0.005
    (tmp_path / "venues").mkdir()
    (tmp_path / "venues" / "db.toml").write_text(
        'preset = "deribit"\nname = "deribit-file"\n\n'
        '[markets.BTC-USD-INVERSE]\ncontract_size = "100"\n')
    data = {"venue": "venues/db.toml", "prices": {"BTC": "100000"},
            "account": {"positions": [{"market": "BTC-USD-INVERSE", "size": "5"}]}}
    out = _run_json(tmp_path, data)  # the file's venue, relative to the portfolio file
    (inv,) = out["positions"]
    assert (out["venue"], inv["delta"]) == ("deribit-file", pytest.approx(0.001))
    assert out["totals"]["BTC"]["delta"] == pytest.approx(0.005)
    path = str(_write(tmp_path, {**data, "venue": "deribit"}))
    res = runner.invoke(app, ["greeks", path, "--json", "--venue",
                              str(tmp_path / "venues" / "db.toml")])  # --venue FILE
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["positions"][0]["delta"] == pytest.approx(0.001)
    res = runner.invoke(app, ["greeks", path, "--json"])  # the preset: 10 / 100,000
    assert json.loads(res.output)["positions"][0]["delta"] == pytest.approx(0.0001)
    # the same errors as margin: exit 2, the key named
    res = runner.invoke(app, ["greeks", str(_write(tmp_path, {
        **data, "venue": "venues/nope.toml"}))])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "venue: unknown venue 'venues/nope.toml'" in text, text
    res = runner.invoke(app, ["greeks", path, "--venue", "nope.toml"])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "--venue: unknown venue 'nope.toml'" in text, text
    (tmp_path / "venues" / "bad.toml").write_text('preset = "deribit"\nmarkts = {}\n')
    res = runner.invoke(app, ["greeks", str(_write(tmp_path, {
        **data, "venue": "venues/bad.toml"}))])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "venue:" in text and "markts" in text, text


@pytest.mark.parametrize("value", ["1e400", "1e-400", "2e18"])
def test_a_contract_size_out_of_range_exits_2_naming_the_key(tmp_path: Path,
                                                             value: str) -> None:
    # review 2 item 12: "1e400" passed the schema, became inf as a float and ended in a
    # traceback (exit 1); through a venue file, --venue FILE and the portfolio's markets
    (tmp_path / "v.toml").write_text(
        f'preset = "deribit"\n[markets.BTC-USD-INVERSE]\ncontract_size = "{value}"\n')
    data = {"venue": "v.toml", "prices": {"BTC": "100000"},
            "account": {"positions": [{"market": "BTC-USD-INVERSE", "size": "5"}]}}
    expect = ("markets.BTC-USD-INVERSE.contract_size: expected a number >= 1E-18 and "
              "<= 1E+18, got ")
    over = {**data, "venue": "deribit",
            "markets": {"BTC-USD-INVERSE": {"contract_size": value}}}
    for args in (["greeks", str(_write(tmp_path, data))],
                 ["greeks", str(_write(tmp_path, {**data, "venue": "deribit"})), "--venue",
                  str(tmp_path / "v.toml")],
                 ["greeks", str(_write(tmp_path, over))]):
        res = runner.invoke(app, args)
        text = " ".join(res.output.split())
        assert res.exit_code == 2 and expect in text, (args, text)
        assert "Traceback" not in text
