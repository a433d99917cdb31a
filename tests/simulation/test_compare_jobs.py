"""Issue 17, speed: ``simulate --compare`` runs its venues in parallel processes
(``--jobs``), with results identical to the sequential run: every metric (``wall_s``
aside) and the engines' final state hashes, on a reduced population."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.cli.simulate import _clean
from solvency.sim.run import RunResult, run_compare
from solvency.sim.scenario import parse_scenario
from tests.simulation.test_run import SMALL

ARGS: dict[str, object] = {"horizon": "45m", "seed": 7, "verify_every": 1, "vol": 0.4,
                           "gap": 0.02, "depth": 0.15, "n": 300, "venue": "binance",
                           "fund": 20000}
VENUES = ["binance", "dydx"]


def _strip(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "wall_s"}


@pytest.fixture(scope="module")
def sequential() -> dict[str, RunResult]:
    scenario = parse_scenario(SMALL.format(**ARGS), source="small.toml")
    return run_compare(scenario, VENUES, jobs=1, state_hashes=True)


def test_parallel_compare_equals_sequential_state_hashes(
        sequential: dict[str, RunResult]) -> None:
    scenario = parse_scenario(SMALL.format(**ARGS), source="small.toml")
    seen: list[tuple[int, int]] = []
    two = run_compare(scenario, VENUES, jobs=2, state_hashes=True,
                      progress=lambda d, t: seen.append((d, t)))
    one = sequential
    assert list(two) == VENUES
    for v in VENUES:
        assert _strip(two[v].metrics) == _strip(one[v].metrics)
        assert two[v].metrics["engine_state_hash"] == one[v].metrics["engine_state_hash"]
    assert one["binance"].metrics["liquidations"] > 0  # not vacuous
    assert one["binance"].metrics["engine_state_hash"] != one["dydx"].metrics[
        "engine_state_hash"]
    # progress: the points of both venues summed, never going back, ending at the total
    total = 2 * (one["binance"].metrics["points"] - 1)
    assert seen and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(ValueError, match="--jobs must be >= 1"):
        run_compare(scenario, VENUES, jobs=0)


def test_cli_jobs_2_writes_the_sequential_metrics(tmp_path: Path,
                                                 sequential: dict[str, RunResult]) -> None:
    # metrics.json of `--jobs 2` against the sequential runs' metrics as the CLI writes
    # them (the same _clean and JSON round trip); state hashes are not in metrics.json
    path = tmp_path / "small.toml"
    path.write_text(SMALL.format(**ARGS), encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(path), "--compare", ",".join(VENUES),
                                   "--jobs", "2", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "out" / "metrics.json").read_text("utf-8"))
    expect = json.loads(json.dumps(_clean({v: _strip({
        k: x for k, x in r.metrics.items()
        if k not in ("engine_state_hash", "engine_section_hashes")})
        for v, r in sequential.items()}), sort_keys=True))
    assert list(data["venues"]) == VENUES
    assert {v: _strip(m) for v, m in data["venues"].items()} == expect
    res = CliRunner().invoke(app, ["simulate", str(path), "--compare", "binance,dydx",
                                   "--jobs", "0"])
    assert res.exit_code == 2
