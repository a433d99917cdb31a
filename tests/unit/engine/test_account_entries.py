"""``account_entries`` (what ``solvency replay --accounts-out`` writes and
``--all-accounts`` lists, issue 26) against ``account_entry`` (one account_view each).

The vectorized listing must give the same entries, string for string, for every account:
on every preset's seeded book (liquidations, ADL, funding, isolated rows, multi-asset
collateral), on a book with a portfolio-margined account (grid requirements) and after
a price move that the slot caches have not seen through a view yet.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.model.events import Price
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input_line
from solvency.engine.summary import account_entries, account_entry
from tests.determinism.cases import PRESETS, random_lines
from tests.scenarios.test_portfolio_mode import _engine, _sell_call_and_hedge
from tests.unit.engine.helpers import apply
from tests.unit.engine.test_account_index import _busy_engine


def _one_by_one(engine: Engine) -> list[dict[str, object]]:
    return [{"account": a, **account_entry(engine, a)} for a in sorted(engine.accounts)]


@pytest.mark.parametrize("preset", PRESETS)
def test_entries_equal_account_entry_on_every_preset(preset: str) -> None:
    engine = Engine(load_preset(preset))
    for line in random_lines(preset, 11, n_accounts=50, n_events=400):
        engine.apply(parse_input_line(line))
    listed = list(account_entries(engine))
    assert len(listed) == len(engine.accounts) > 10
    assert any(e["positions"] for e in listed)
    assert listed == _one_by_one(engine)


def test_entries_equal_account_entry_with_a_portfolio_account_after_a_move() -> None:
    engine = _engine()
    _sell_call_and_hedge(engine)
    m = engine.book.market_index["BTC-PERP"]
    engine.apply(Price(id="p2", market="BTC-PERP", price=Decimal(97000),
                       ts_ms=1_774_000_000_000))
    assert engine.book.marks[m] == Decimal(97000)
    listed = list(account_entries(engine))
    pm = next(e for e in listed if e["account"] == "pm")
    assert len(pm["positions"]) == 2  # type: ignore[arg-type]
    assert listed == _one_by_one(engine)


def test_entries_equal_account_entry_with_isolated_rows_and_coins() -> None:
    e = _busy_engine()  # cross, two isolated buckets, a portfolio account
    apply(e, "price", market="BTC-PERP", price="99000")
    apply(e, "deposit", account="alice", asset="BTC", amount="0.25")
    apply(e, "deposit", account="iso", asset="ETH", amount="1.5")
    listed = list(account_entries(e))
    iso = next(x for x in listed if x["account"] == "iso")
    assert len(e.rows_of("iso")) == 3 and iso["positions"]  # cross row and two buckets
    assert len(next(x for x in listed if x["account"] == "alice")["equity"]) == 2  # type: ignore[arg-type]
    assert listed == _one_by_one(e)


def test_accounts_out_writes_the_entries(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(random_lines("binance", 3, n_accounts=30, n_events=200)) + "\n")
    out = tmp_path / "accounts.jsonl"
    result = CliRunner().invoke(app, ["replay", str(log), "--accounts-out", str(out)])
    assert result.exit_code == 0, result.output
    engine = Engine(load_preset("binance"))
    for line in random_lines("binance", 3, n_accounts=30, n_events=200):
        engine.apply(parse_input_line(line))
    written = [json.loads(x) for x in out.read_text().splitlines()]
    assert written == _one_by_one(engine)
