"""``solvency backtest --json`` carries what the text and HTML views show (issue 28 item 9).

An auditor recomputes the statistics from the exported series alone: Kupiec's POF
(Kupiec 1995, "Techniques for verifying the accuracy of risk measurement models") and
Christoffersen's independence LR (Christoffersen 1998, "Evaluating interval forecasts"),
written out here by hand rather than through ``solvency.core.backtest``.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from solvency.cli.main import app

runner = CliRunner()
DAY_MS = 86_400_000


def _prices(tmp_path: Path, n: int = 320, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.standard_t(3, n) * 0.02))
    opens = np.r_[30_000.0, close[:-1]]
    t0 = 1_600_000_000_000 // DAY_MS * DAY_MS
    lines = [f"{t0 + i * DAY_MS},{o},{max(o, c) * 1.001},{min(o, c) * 0.999},{c},1.0"
             for i, (o, c) in enumerate(zip(opens, close, strict=True))]
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(args: list[str]) -> Any:
    res = runner.invoke(app, ["backtest", *args])
    assert res.exit_code == 0, res.output
    return res


def _kupiec(x: int, n: int, p: float) -> float:
    # LR_uc = -2 ln[(1-p)^(n-x) p^x] + 2 ln[(1-x/n)^(n-x) (x/n)^x]  (Kupiec 1995)
    def ll(q: float) -> float:
        return (n - x) * math.log1p(-q) + (x * math.log(q) if x else 0.0)

    return -2.0 * ll(p) + 2.0 * ll(x / n) if 0 < x < n else -2.0 * ll(p)


def _christoffersen(e: list[bool]) -> float:
    pairs = list(itertools.pairwise(e))
    n00 = sum(1 for a, b in pairs if not a and not b)
    n01 = sum(1 for a, b in pairs if not a and b)
    n10 = sum(1 for a, b in pairs if a and not b)
    n11 = sum(1 for a, b in pairs if a and b)

    def term(k: int, q: float) -> float:
        return k * math.log(q) if k else 0.0

    pi01, pi11 = n01 / (n00 + n01), (n11 / (n10 + n11) if n10 + n11 else 0.0)
    pi = (n01 + n11) / len(pairs)
    null = term(n00 + n10, 1 - pi) + term(n01 + n11, pi)
    alt = (term(n00, 1 - pi01) + term(n01, pi01) + term(n10, 1 - pi11) + term(n11, pi11))
    return -2.0 * (null - alt)


@pytest.mark.parametrize("model", ["ewma", "gjr", "fixed"])
def test_json_exports_the_series_an_audit_recomputes_the_statistics_from(
        tmp_path: Path, model: str) -> None:
    path = _prices(tmp_path)
    out = json.loads(_run(["--prices", str(path), "--warmup", "120", "--model", model,
                           "--json"]).stdout)
    series = out["series"]
    n = out["observations"]
    assert len(series["from"]) == len(series["margin_rate"]) == len(series["loss"]) == n
    # the exception flags are loss > posted rate, and their count is the statistic's
    flags = [loss > rate for loss, rate in zip(series["loss"], series["margin_rate"],
                                               strict=True)]
    assert flags == series["exception"]
    assert sum(flags) == out["exceptions"] > 0
    p = 1.0 - 0.99
    assert _kupiec(out["exceptions"], n, p) == pytest.approx(out["kupiec_lr"], rel=1e-9)
    assert float(stats.chi2.sf(out["kupiec_lr"], 1)) == pytest.approx(out["kupiec_p"])
    assert _christoffersen(flags) == pytest.approx(out["christoffersen_lr"], rel=1e-9,
                                                   abs=1e-12)
    assert float(np.mean(series["margin_rate"])) == pytest.approx(out["mean_rate"])
    # the exception list is what the text view prints: date, loss and margin per row
    listed = out["exception_list"]
    assert [e["from"] for e in listed] == [d for d, f in zip(series["from"], flags,
                                                              strict=True) if f]
    lines = _run(["--prices", str(path), "--warmup", "120", "--model", model]).stdout
    for e in listed:
        cells = [c.strip("│┃ ") for c in
                 next(ln for ln in lines.splitlines() if e["from"] in ln).split("│")]
        assert [c for c in cells if c] == [e["from"], f"{e['loss']:.2%}",
                                           f"{e['margin_rate']:.2%}"]


def test_model_all_runs_every_model_gjr_included(tmp_path: Path) -> None:
    out = json.loads(_run(["--prices", str(_prices(tmp_path)), "--warmup", "120",
                           "--model", "all", "--json"]).stdout)
    assert [m["model"] for m in out["models"]] == ["fixed", "ewma", "garch", "gjr", "fhs"]
    for m in out["models"]:
        assert len(m["series"]["margin_rate"]) == m["observations"]
