"""Standard option margin: Deribit's published short-option rule and Paradex's variant.

Cases are computed by hand from the published formulas (the sources are named per case):

* Deribit (inverse, coin): short call IM = max(0.15 - OTM/F, 0.1) + mark, MM = 0.075 +
  mark; short put IM = max(max(0.15 - OTM/F, 0.1) + mark, MM), MM = max(0.075, 0.075 *
  mark) + mark (Deribit's formulas as transcribed by TSLab, "Deribit Margin Requirements
  Calculation", and Aevo "Standard Margin"); longs need only the premium.
* Paradex cross margin for options (docs.paradex.trade, "Margin Requirements",
  perpetual options): worked examples with spot 100.
"""

from __future__ import annotations

import numpy as np
import pytest

from solvency.core.options.margin import (
    DERIBIT_OPTION_MARGIN,
    PARADEX_OPTION_MARGIN,
    OptionMarginParams,
    deribit_option_margin,
    option_margin,
)

F = 50_000.0

# (id, strike, mark_coin, size, is_call, im_coin, mm_coin)
DERIBIT_CASES = [
    # OTM 10,000 -> 0.15 - 0.2 < 0.1: floor 0.1.
    ("deribit-short-otm-call-floor", 60_000.0, 0.01, -1.0, True, 0.11, 0.085),
    # OTM 2,500 -> 0.15 - 0.05 = 0.10 exactly.
    ("deribit-short-otm-call-5pct", 52_500.0, 0.02, -1.0, True, 0.12, 0.095),
    # OTM 1,000 -> 0.15 - 0.02 = 0.13.
    ("deribit-short-otm-call-2pct", 51_000.0, 0.03, -2.0, True, 2 * 0.16, 2 * 0.105),
    # ITM call: OTM 0 -> 0.15.
    ("deribit-short-itm-call", 45_000.0, 0.12, -1.0, True, 0.27, 0.195),
    # OTM put 2,000 -> 0.15 - 0.04 = 0.11; MM = max(0.075, 0.075*0.015) + 0.015.
    ("deribit-short-otm-put", 48_000.0, 0.015, -1.0, False, 0.125, 0.09),
    # ITM put, mark 0.12: MM = 0.075 + 0.12 = 0.195; IM = 0.15 + 0.12 = 0.27.
    ("deribit-short-itm-put", 55_000.0, 0.12, -1.0, False, 0.27, 0.195),
    # Deep ITM put, mark 1.5 coin > 1: MM = 0.075*1.5 + 1.5 = 1.6125; IM = 1.65.
    ("deribit-short-deep-itm-put", 130_000.0, 1.5, -1.0, False, 1.65, 1.6125),
    # Longs: premium paid, no margin.
    ("deribit-long-call", 60_000.0, 0.01, 3.0, True, 0.0, 0.0),
    ("deribit-long-put", 40_000.0, 0.01, 3.0, False, 0.0, 0.0),
    ("deribit-flat", 40_000.0, 0.01, 0.0, False, 0.0, 0.0),
]


@pytest.mark.parametrize(
    ("strike", "mark", "size", "is_call", "im", "mm"),
    [c[1:] for c in DERIBIT_CASES], ids=[c[0] for c in DERIBIT_CASES],
)
def test_deribit_formula_cases(strike, mark, size, is_call, im, mm):
    out = deribit_option_margin(
        underlying_price=F, strike=strike, mark_price=mark, size=size, is_call=is_call
    )
    assert out.im[0] == pytest.approx(im, abs=1e-12)
    assert out.mm[0] == pytest.approx(mm, abs=1e-12)


def test_deribit_vectorized_matches_cases():
    cols = list(zip(*[c[1:] for c in DERIBIT_CASES], strict=True))
    out = deribit_option_margin(
        underlying_price=F, strike=cols[0], mark_price=cols[1], size=cols[2], is_call=cols[3]
    )
    np.testing.assert_allclose(out.im, cols[4], atol=1e-12)
    np.testing.assert_allclose(out.mm, cols[5], atol=1e-12)


def test_linear_is_inverse_times_price():
    # Aevo's linear form: max(0.15 - OTM/Spot, 0.1) * Spot + mark (USD).
    strikes = np.array([60_000.0, 45_000.0, 48_000.0, 55_000.0])
    calls = np.array([True, True, False, False])
    mark_coin = np.array([0.01, 0.12, 0.015, 0.12])
    inv = option_margin(underlying_price=F, strike=strikes, mark_price=mark_coin, size=-1.0,
                        is_call=calls, settlement="inverse")
    lin = option_margin(underlying_price=F, strike=strikes, mark_price=mark_coin * F,
                        size=-1.0, is_call=calls, settlement="linear")
    np.testing.assert_allclose(lin.im, inv.im * F, rtol=1e-14)
    np.testing.assert_allclose(lin.mm, inv.mm * F, rtol=1e-14)
    assert lin.im[0] == pytest.approx(0.1 * F + 0.01 * F)


# Paradex "Margin Requirements" (perpetual options) examples, spot 100, short 1 option:
# (id, strike, is_call, imr, mmr)
PARADEX_CASES = [
    ("paradex-otm-call-106", 106.0, True, 10.0, 5.0),  # max(15-6, 10), max(7.5-6, 5)
    ("paradex-itm-put-106", 106.0, False, 15.0, 7.5),  # max(15, 10), max(7.5, 5)
    ("paradex-otm-put-40-cap", 40.0, False, 10.0, 5.0),  # min(10, 0.5*40), min(5, 20)
]


@pytest.mark.parametrize(
    ("strike", "is_call", "im", "mm"), [c[1:] for c in PARADEX_CASES],
    ids=[c[0] for c in PARADEX_CASES],
)
def test_paradex_variant_cases(strike, is_call, im, mm):
    out = option_margin(underlying_price=100.0, strike=strike, mark_price=25.0, size=-1.0,
                        is_call=is_call, settlement="linear", params=PARADEX_OPTION_MARGIN)
    assert out.im[0] == pytest.approx(im, abs=1e-12)
    assert out.mm[0] == pytest.approx(mm, abs=1e-12)


# Paradex "Margin Requirements" (perpetual options), docs.paradex.trade/documentation/
# perpetual-options/margin-requirements (read 2026-12-07), "Buy" examples: spot 100, long 1
# option. (id, option mark, imr, mmr)
PARADEX_LONG_CASES = [
    ("paradex-long-mark-10", 10.0, 10.0, 5.0),  # min(100% x 10, 20% x 100), min(50% x 10, 10)
    ("paradex-long-mark-30", 30.0, 20.0, 10.0),  # min(30, 20), min(15, 10)
]


@pytest.mark.parametrize(("mark", "im", "mm"), [c[1:] for c in PARADEX_LONG_CASES],
                         ids=[c[0] for c in PARADEX_LONG_CASES])
@pytest.mark.parametrize("is_call", [True, False])
def test_paradex_long_options_pay_margin(mark, im, mm, is_call):
    out = option_margin(underlying_price=100.0, strike=100.0, mark_price=mark, size=1.0,
                        is_call=is_call, settlement="linear", params=PARADEX_OPTION_MARGIN)
    assert out.im[0] == pytest.approx(im, abs=1e-12)
    assert out.mm[0] == pytest.approx(mm, abs=1e-12)
    # the same rule for an inverse option: coin amounts, the spot fraction in coin
    inv = option_margin(underlying_price=100.0, strike=100.0, mark_price=mark / 100.0,
                        size=2.0, is_call=is_call, settlement="inverse",
                        params=PARADEX_OPTION_MARGIN)
    assert inv.im[0] == pytest.approx(2 * im / 100.0, abs=1e-15)
    assert inv.mm[0] == pytest.approx(2 * mm / 100.0, abs=1e-15)


def test_deribit_longs_need_no_margin_and_sides_add():
    out = option_margin(underlying_price=F, strike=F, mark_price=0.05, size=[3.0, -1.0],
                        is_call=True)
    assert out.im[0] == 0.0 and out.mm[0] == 0.0
    assert out.im[1] == pytest.approx(0.15 + 0.05)


def test_put_cap_binds():
    # Deep OTM put with cap 0.5 K: 0.5 * 10 = 5 < floor 0.10 * 100 = 10.
    out = option_margin(underlying_price=100.0, strike=10.0, mark_price=0.0, size=-1.0,
                        is_call=False, settlement="linear", params=PARADEX_OPTION_MARGIN)
    assert out.im[0] == pytest.approx(5.0)
    assert out.mm[0] == pytest.approx(5.0)


def test_generic_parameters_change_the_rule():
    params = OptionMarginParams(base=0.2, floor=0.1, otm_discount=0.5, mm_base=0.1)
    out = option_margin(underlying_price=100.0, strike=110.0, mark_price=0.0, size=-1.0,
                        is_call=True, settlement="linear", params=params)
    assert out.im[0] == pytest.approx(15.0)  # max(0.2 - 0.5 * 0.1, 0.1) * 100
    assert out.mm[0] == pytest.approx(10.0)
    assert DERIBIT_OPTION_MARGIN.base == 0.15


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("underlying_price", {"underlying_price": 0.0}),
        ("strike", {"strike": np.nan}),
        ("mark_price", {"mark_price": -0.1}),
        ("size", {"size": np.inf}),
    ],
)
def test_bad_input_names_the_field(field, kwargs):
    args = {"underlying_price": F, "strike": F, "mark_price": 0.1, "size": -1.0,
            "is_call": True} | kwargs
    with pytest.raises(ValueError, match=field):
        deribit_option_margin(**args)
