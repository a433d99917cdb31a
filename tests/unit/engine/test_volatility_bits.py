"""The EWMA volatility of marks, bit for bit against a decimal reference (issue 30; docs/
determinism.md, gap 5): the log return and the decay ``0.94 ** (dt / 1 day)`` are
correctly rounded doubles (here recomputed at 60 digits, independently of the engine's
34-digit context), so the recursion ``var = l var + (1 - l) r^2 / dt`` gives the same
bits on every machine, at irregular intervals included."""

from __future__ import annotations

import math
import struct
from decimal import Decimal, localcontext

from solvency.core.model.events import Price
from solvency.core.model.presets import load_preset
from solvency.engine.base import MS_PER_YEAR
from solvency.engine.engine import Engine

T0 = 1_774_512_000_000
STEPS = [(0, "100000"), (1_000, "100250"), (61_000, "99810"), (61_500, "99811"),
         (3_661_000, "97000"), (3_700_000, "97010"), (90_000_000, "103500"),
         (90_000_017, "103499"), (180_000_000, "88000")]


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _reference() -> float:
    var = math.nan
    last: tuple[int, Decimal] | None = None
    with localcontext() as ctx:
        ctx.prec = 60
        ln_lambda = Decimal("0.94").ln()
        for dt, text in STEPS:
            price = Decimal(text)
            if last is not None:
                r = float((price / last[1]).ln())
                lam = float((Decimal(dt - last[0]) / Decimal(86_400_000) * ln_lambda).exp())
                obs = r * r / ((dt - last[0]) / MS_PER_YEAR)
                var = obs if math.isnan(var) else lam * var + (1 - lam) * obs
            last = (dt, price)
    return var


def test_ewma_variance_bits_equal_the_decimal_reference() -> None:
    e = Engine(load_preset("binance"))
    m = e.book.market_index["BTC-PERP"]
    for i, (dt, text) in enumerate(STEPS):
        out = e.apply(Price(id=f"p{i}", market="BTC-PERP", price=Decimal(text), ts_ms=T0 + dt))
        assert not [o for o in out if o.type == "rejected"], out
    got = float(e.vol_var_annual[m])
    assert _bits(got) == _bits(_reference()), (got, _reference())
