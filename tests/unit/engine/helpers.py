"""Small builders for engine tests."""

from __future__ import annotations

from decimal import Decimal as D
from itertools import count
from typing import Any

import numpy as np

from solvency.core.model.events import OutEvent, parse_event
from solvency.core.model.presets import load_preset, venue_from_data
from solvency.engine.engine import Engine

_ids = count(1)


def engine(preset: str = "binance", **overrides: Any) -> Engine:
    if overrides:
        return Engine(venue_from_data({"preset": preset, **overrides}))
    return Engine(load_preset(preset))


def ev(kind: str, **fields: Any) -> Any:
    fields.setdefault("id", f"t{next(_ids)}")
    return parse_event({"type": kind, **{k: str(v) if isinstance(v, D | int) and k not in (
        "ts",) else v for k, v in fields.items()}})


def apply(e: Engine, kind: str, **fields: Any) -> list[OutEvent]:
    return e.apply(ev(kind, **fields))


def types(outs: list[OutEvent]) -> list[str]:
    return [o.type for o in outs]


def random_book(preset: str, seed: int, n_accounts: int = 40, *,
                last_btc: str = "98500", lever: int = 1) -> Engine:
    """A seeded book on ``preset``'s first two markets (BTC-PERP, ETH-PERP): cross and
    isolated accounts, fills of a few sizes (times ``lever``; fills the margin check
    refuses change nothing) at a few prices (equal scores occur), then BTC moved to
    ``last_btc``."""
    rng = np.random.default_rng(seed)
    e = engine(preset)
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "price", market="ETH-PERP", price="3000")
    names = [f"u{i}" for i in range(n_accounts)]
    settle = e.book.instruments[0].settle
    for i, a in enumerate(names):
        if i % 7 == 3:
            apply(e, "account", account=a, mode="isolated")
        apply(e, "deposit", account=a, asset=settle,
              amount=str(int(rng.integers(2_000, 60_000))))
        if i % 7 == 3:
            apply(e, "isolated_margin", account=a, market="BTC-PERP", amount="1500")
    for k in range(3 * n_accounts):
        buyer, seller = rng.choice(n_accounts, 2, replace=False)
        btc = k % 3 != 2
        # sizes from a short list: equal sizes at equal prices give equal scores (ties)
        size = str(D(str(rng.choice(["0.001", "0.002", "0.005", "0.01"]) if btc
                         else rng.choice(["0.1", "0.2", "0.5"]))) * lever)
        price = str(rng.choice(["99900", "100000", "100100"]) if btc
                    else rng.choice(["2990", "3000", "3010"]))
        apply(e, "fill", market="BTC-PERP" if btc else "ETH-PERP", buyer=names[buyer],
              seller=names[seller], size=size, price=price)
    apply(e, "price", market="BTC-PERP", price=last_btc)
    return e
