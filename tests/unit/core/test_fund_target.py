"""Insurance-fund target (issue 19): exact VaR/ES, the fund's need per path, the rebuild."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
import pytest

from solvency.core.fund_target import PathLoss, fund_target, var_es
from solvency.core.var import empirical_var_es_losses


def test_var_es_by_hand() -> None:
    # Acerbi and Tasche (2002): m = ceil(q n); ES = (sum_{i>m} x_(i)/n + (m/n - q) x_(m))/(1-q)
    x = [D(i) for i in range(1, 101)]  # 1..100, q n = 99 exactly: VaR x_(99), ES x_(100)
    assert var_es(x, D("0.99")) == (D(99), D(100))
    y = [D(i) for i in range(150, 0, -1)]  # 1..150 unsorted, q n = 148.5: m = 149
    var, es = var_es(y, D("0.99"))
    assert var == D(149)
    assert es == (D(150) / 150 + (D(149) / 150 - D("0.99")) * 149) / D("0.01")
    assert var_es([D(7)], D("0.99")) == (D(7), D(7))


def test_var_es_equals_the_float_kernel() -> None:
    # The same definition as core.var.empirical_var_es_losses (the risk report's).
    rng = np.random.default_rng(11)
    for n in (1, 37, 100, 101, 999):
        x = np.round(rng.pareto(1.5, n) * 1e5, 2)
        var, es = var_es([D(repr(float(v))) for v in x], D("0.99"))
        fv, fe = empirical_var_es_losses(x, 0.99)
        assert float(var) == pytest.approx(fv, rel=1e-12)
        assert float(es) == pytest.approx(fe, rel=1e-12)


def test_need_counts_what_the_fund_could_not_pay() -> None:
    p = PathLoss(fund_drawdown=D("100"), adl_haircut=D("50"), adl_overshoot=D("20"),
                 bad_debt=D("7"))
    assert p.need == D("137")  # 100 + (50 - 20) + 7


def test_fee_share_rebuilds_the_shortfall_in_time() -> None:
    paths = [PathLoss(D(v), D(0), D(0), D(0)) for v in range(1, 101)]  # needs 1..100
    t = fund_target(paths, fund=D("40"), fee_income_per_day=D("2"), days=D("30"))
    assert (t.var, t.es, t.target) == (D(99), D(100), D(100))
    assert t.shortfall == D(60) and t.share == D(1)  # 60 / (2 x 30)
    t = fund_target(paths, fund=D("40"), fee_income_per_day=D("2"), days=D("20"),
                    measure="var")
    assert t.target == D(99) and t.shortfall == D(59)
    assert t.share is None and t.days_at_full_share == D("29.50")  # 59 / 2
    t = fund_target(paths, fund=D("500"), fee_income_per_day=D("2"), days=D("20"))
    assert t.shortfall == 0 and t.share == 0


@pytest.mark.parametrize(
    ("paths", "kw", "match"),
    [([], {}, "empty"),
     ([PathLoss(D(-1), D(0), D(0), D(0))], {}, "path 0: losses must be >= 0"),
     ([PathLoss(D(1), D(1), D(2), D(0))], {}, "overshoot above"),
     ([PathLoss(D(1), D(0), D(0), D(0))], {"fund": D(-1)}, "fund must be >= 0"),
     ([PathLoss(D(1), D(0), D(0), D(0))], {"fee_income_per_day": D(0)}, "fee income"),
     ([PathLoss(D(1), D(0), D(0), D(0))], {"confidence": D(1)}, "confidence")],
)
def test_refusals(paths: list[PathLoss], kw: dict[str, D], match: str) -> None:
    args: dict[str, D] = {"fund": D(0), "fee_income_per_day": D(1), "days": D(30), **kw}
    with pytest.raises(ValueError, match=match):
        fund_target(paths, **args)  # type: ignore[arg-type]
