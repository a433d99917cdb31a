"""Margin model validation, and the numba kernel held to the plain twins on every preset."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvency.core.margin.kernels import requirement
from solvency.core.margin.models import (
    MarginTier,
    OIScaledModel,
    SizeLinearModel,
    SizePremiumModel,
    TieredModel,
    risk_row,
)
from solvency.core.model.presets import load_preset, preset_names

D = Decimal


def tier(floor: str, mmr: str, imr: str) -> MarginTier:
    return MarginTier(D(floor), D(mmr), D(imr))


@pytest.mark.parametrize(("build", "message"), [
    (lambda: TieredModel(tiers=()), "tiers must start at floor 0"),
    (lambda: TieredModel(tiers=(tier("10", "0.01", "0.02"),)), "tiers must start at floor 0"),
    (lambda: TieredModel(tiers=(tier("0", "0.01", "0.02"), tier("50", "0.02", "0.04"),
                                tier("20", "0.03", "0.05"))), "floors must strictly increase"),
    (lambda: TieredModel(tiers=(tier("0", "0.01", "0.02"), tier("0", "0.02", "0.04"))),
     "floors must strictly increase"),
    (lambda: TieredModel(tiers=(tier("0", "0.02", "0.01"),)), "imr 0.01 below mmr 0.02"),
    (lambda: TieredModel(tiers=(tier("0", "-0.01", "0.02"),)), r"mmr -0.01 outside \[0, 1\]"),
    (lambda: TieredModel(tiers=(tier("0", "0.5", "1.5"),)), r"imr 1.5 outside \[0, 1\]"),
    (lambda: OIScaledModel(imr=D("1.2"), maintenance_fraction=D("0.5")),
     r"imr 1.2 outside \[0, 1\]"),
    (lambda: OIScaledModel(imr=D("0.1"), maintenance_fraction=D("1.5")),
     r"maintenance_fraction 1.5 outside \[0, 1\]"),
    (lambda: OIScaledModel(imr=D("0.1"), maintenance_fraction=D("0.5"),
                           open_interest_lower_cap=D(50), open_interest_upper_cap=D(20)),
     "open_interest_upper_cap must exceed the lower cap"),
    (lambda: SizePremiumModel(imr=D("0.05"), mmr=D("0.1")), "imr below mmr"),
    (lambda: SizePremiumModel(imr=D("0.1"), mmr=D("0.05"), imf_factor=D("-0.001")),
     "imf_factor must be non-negative"),
    (lambda: SizePremiumModel(imr=D("-0.1"), mmr=D("0")), r"imr -0.1 outside \[0, 1\]"),
    (lambda: SizeLinearModel(imr=D("0.02"), mmr=D("0.015"), im_slope=D("-0.00005")),
     "non-negative slopes"),
    (lambda: SizeLinearModel(imr=D("0.02"), mmr=D("0.015"), mm_slope=D("-0.00005")),
     "non-negative slopes"),
    (lambda: SizeLinearModel(imr=D("0.01"), mmr=D("0.015")), "need imr >= mmr"),
    (lambda: SizeLinearModel(imr=D("2"), mmr=D("0.015")), r"imr 2 outside \[0, 1\]"),
], ids=["tiered-empty", "tiered-first-floor-not-zero", "tiered-floors-out-of-order",
        "tiered-duplicate-floor", "tiered-imr-below-mmr", "tiered-negative-mmr",
        "tiered-imr-above-one", "oi-imr-above-one", "oi-fraction-above-one",
        "oi-caps-inverted", "premium-imr-below-mmr", "premium-negative-imf",
        "premium-negative-imr", "linear-negative-im-slope", "linear-negative-mm-slope",
        "linear-imr-below-mmr", "linear-imr-above-one"])
def test_invalid_models_raise_clear_value_errors(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


# --------------------------------------------------------------------------- kernel vs twin
MARKETS = [(v, m) for v in preset_names() for m in sorted(load_preset(v).markets)]
_VENUES = {v: load_preset(v) for v in preset_names()}

# Marks per market kind (quote per base), and a cap on position size (base units) that keeps
# the Drift size premium below 100%: the kernel caps every rate at 1, the twin of the Drift
# rule does not (Drift itself does not cap; see docs/venues.md).
_MARK = {"BTC": (1_000.0, 300_000.0), "ETH": (50.0, 20_000.0)}


@pytest.mark.parametrize(("venue", "market"), MARKETS, ids=[f"{v}-{m}" for v, m in MARKETS])
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    mark_u=st.floats(0.0, 1.0),
    notional_exp=st.floats(-2.0, 9.5),
    short=st.booleans(),
    oi_exp=st.floats(0.0, 10.5),
)
def test_kernel_matches_twin(venue: str, market: str, mark_u: float, notional_exp: float,
                             short: bool, oi_exp: float) -> None:
    inst = _VENUES[venue].markets[market]
    model = inst.margin
    row = risk_row(model)
    tiers = np.array(row.tiers, dtype=np.float64)
    lo, hi = _MARK[inst.base]
    mark = lo + (hi - lo) * mark_u
    cv = float(inst.contract_size)
    inverse = inst.kind == "inverse_perp"
    target = 10.0 ** notional_exp  # USD notional
    contracts = target / cv if inverse else target / (cv * mark)
    if short:
        contracts = -contracts
    oi_contracts = 10.0 ** oi_exp / (cv if inverse else cv * mark)
    value, notional, im, mm = requirement(
        1.0 if inverse else 0.0, cv, 1.0, mark, contracts, 0, len(row.tiers), tiers,
        row.oi_lower, row.oi_upper, oi_contracts, row.imf_factor, row.im_slope, row.mm_slope,
        0.0, 0.0)
    if inverse:
        size_base = abs(value)
        oi = oi_contracts * cv / mark
    else:
        size_base = abs(contracts) * cv
        oi = oi_contracts * cv * mark
    if isinstance(model, SizePremiumModel) and model.rate(float(model.imr), size_base) >= 1.0:
        return  # outside the range where kernel (capped) and Drift (uncapped) agree
    assert notional == pytest.approx(abs(value), rel=1e-15)
    assert (value < 0) == (short != inverse)
    twin_im, twin_mm = model.requirement(notional, size_base, oi)
    assert im == pytest.approx(twin_im, rel=1e-9, abs=1e-9)
    assert mm == pytest.approx(twin_mm, rel=1e-9, abs=1e-9)
    assert 0.0 <= mm <= im + 1e-9 * max(1.0, notional)
