"""A snapshot stored as JSON with sorted keys (as the service's store writes it) restores
the same engine: markets in the book's order, not the alphabetical order of the venue's
keys. Before ``market_order`` the restored book put BTC-FUT first, the marks and open
interest of one market landed on another, and the next fill of an account that was fine
was refused for margin (found by the service's kill -9 recovery test)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from solvency.adapters.eventlog import load_venue
from solvency.adapters.grids import load_grid
from solvency.core.model.events import EventError
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input_line

LINES = [ln for ln in resources.files("solvency.data").joinpath("demo_events.jsonl")
         .read_text().splitlines() if ln.strip() and not ln.startswith("#")]


@pytest.mark.parametrize("cut", [20, 60, 100])
def test_sorted_key_snapshot_restores_the_same_engine(cut: int) -> None:
    grid = load_grid("deribit_pm")
    events = []
    for ln in LINES:
        try:
            events.append(parse_input_line(ln))
        except EventError:
            continue
    a = Engine(load_venue("binance"), pm_grid=grid)
    for ev in events[:cut]:
        a.apply(ev)
    blob = json.dumps(a.snapshot(), sort_keys=True, default=str)
    b = Engine.restore(json.loads(blob), pm_grid=grid)
    assert b.book.market_names == a.book.market_names
    assert list(b.book.market_names) != sorted(b.book.market_names)  # the case that broke
    assert b.state_hash() == a.state_hash()
    for ev in events[cut:]:
        assert b.out_json(b.apply(ev)) == a.out_json(a.apply(ev)), ev.id
    assert b.state_hash() == a.state_hash()
