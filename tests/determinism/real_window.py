"""The stress lab over a real window, recorded to the bit (issue 17: identical metrics and
state before and after each speed-up).

The bundled default scenario (its calibrated population, liquidity and all five agents)
replayed over the 2021-05-19 crash hours of the real Binance BTC/USDT 1-minute bars
(``../shared/data/btcusdt_binance_spot_1m_2021-05-16_2021-05-20.csv``, as
``solvency simulate --prices`` does; ETH-PERP follows BTC's moves) on a reduced
population, with ``Engine.verify()`` and the flat-account check after every step. A case
records the engine's final ``state_hash`` and section hashes, a hash of every metric
(``wall_s`` aside) and a hash of every per-step series, so an optimisation of the run loop,
the recorder, the liquidity model or the engine that changes any number, or any order of
events that reaches the state, fails ``test_real_window``.

``python -m tests.determinism.real_window --write`` records ``real_window.json``; it
changes only with a deliberate behaviour change, said in the commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from solvency.sim.metrics import StepSeries
from solvency.sim.run import run_scenario
from solvency.sim.scenario import DEFAULT_SCENARIO_TOML, parse_scenario

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("real_window.json")
PRICES_NAME = "btcusdt_binance_spot_1m_2021-05-16_2021-05-20.csv"
# (case id, accounts, start, horizon): the fall of 2021-05-19 (12:00-15:00 UTC: the
# low at 13:xx, liquidations, ADL under binance) on a population small enough for CI
WINDOWS: tuple[tuple[str, int, str, str], ...] = (
    ("2021-05-19T12/3h/1500", 1500, "2021-05-19T12:00:00Z", "3h"),
)


def scenario_text(accounts: int, start: str, horizon: str, verify_every: int = 1) -> str:
    """The bundled default with the population, window and check interval replaced."""
    text = re.sub(r"(?m)^n_accounts = .*$", f"n_accounts = {accounts}", DEFAULT_SCENARIO_TOML)
    text = re.sub(r'(?m)^start = ".*"$', f'start = "{start}"', text)
    text = re.sub(r'(?m)^horizon = ".*"$', f'horizon = "{horizon}"', text)
    return re.sub(r"(?m)^verify_every = .*$", f"verify_every = {verify_every}", text)


def _digest(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def _series_data(series: StepSeries) -> dict[str, Any]:
    # every array as its bytes' hash, dicts of arrays per market, other values as-is
    def enc(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return f"{v.dtype.str}{list(v.shape)}:{hashlib.sha256(v.tobytes()).hexdigest()}"
        if isinstance(v, dict):
            return {str(k): enc(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [enc(x) for x in v]
        if isinstance(v, float):
            return v.hex()
        return v

    return {name: enc(getattr(series, name)) for name in series.__dataclass_fields__}


def window_case(data_dir: Path, accounts: int, start: str, horizon: str) -> dict[str, Any]:
    """Run one window; return its hashes, metrics hash and headline counts."""
    scenario = parse_scenario(scenario_text(accounts, start, horizon), source="default.toml",
                              base_dir=REPO / "scenarios"
                              ).with_prices({"BTC-PERP": str(data_dir / PRICES_NAME)})
    res = run_scenario(scenario, state_hashes=True)
    m = dict(res.metrics)
    state, sections = m.pop("engine_state_hash"), m.pop("engine_section_hashes")
    m.pop("wall_s")
    return {"state_hash": state, "sections": sections, "metrics": _digest(m),
            "series": _digest(_series_data(res.series)), "points": m["points"],
            "liquidations": m["liquidations"], "adl_count": m["adl_count"],
            "conserved": m["conserved"], "violation": m["violation"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="record real_window.json")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    args = ap.parse_args()
    got = {name: window_case(Path(args.data), n, start, horizon)
           for name, n, start, horizon in WINDOWS}
    if args.write:
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(got)} cases to {GOLDEN}")
    else:
        print(json.dumps(got, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
