"""Issue 17 item 1: one calibration method for every crash window (solvency.sim.calibrate,
``solvency calibrate``). The crash scenarios are its output; each formula is checked by hand.

Sources of the hand figures: Binance BTCUSDT perp's median daily volume of the calm days
around 2025-10-10, 163,672 BTC (docs/stress_models.md, "The bundled default: calibration",
from ../shared/data/btcusdt_binance_um_perp_5m_2025-10-08_2025-10-13.csv); Binance's
insurance fund 1.22 bn USDT against ~28.9 bn of BTC and ETH open interest on 2025-10-10
(Binance Square, https://www.binance.bh/en/square/post/30856400292745).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from solvency.adapters.ohlcv import Ohlcv
from solvency.cli.main import app
from solvency.sim.calibrate import (
    CalibrationError,
    book_depth_per_bp,
    calibrate_file,
    calm_daily_volume,
    load_inputs,
)
from solvency.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
INPUTS = REPO / "scenarios" / "calibration"
WINDOWS = ("2025_10_10", "2024_08_05", "2021_05_19", "2020_03_12", "2022_11_08")
DAY = 86_400_000
HOUR = 3_600_000


def test_the_crash_scenarios_are_the_methods_output(shared_data: Path) -> None:
    for w in WINDOWS:
        got = calibrate_file(INPUTS / f"{w}.toml")
        path = REPO / "scenarios" / f"crash_{w}.toml"
        assert path.read_text(encoding="utf-8") == got.text, (
            f"{path} differs: run `solvency calibrate scenarios/calibration/{w}.toml "
            f"--out {path.relative_to(REPO)}`")
        scenario = load_scenario(path)  # and it parses, with path-consistent entries
        assert scenario.population.entry_history_ms == 28 * DAY


def test_the_reference_window_by_hand(shared_data: Path) -> None:
    c = calibrate_file(INPUTS / "2025_10_10.toml")
    btc, eth = c.markets
    assert btc.calm_days == ("2025-10-08", "2025-10-09", "2025-10-11", "2025-10-12",
                             "2025-10-13")
    assert round(btc.daily_volume) == 163_672
    # 16.44 bn USD at 123,142 (CoinGlass, early October 2025)
    assert btc.open_interest_base == pytest.approx(16.44e9 / 123_142.0)
    # the fund: 1.22 bn over 28.9 bn of open interest, times the population's notional
    oi_usd = 0.15 * (btc.open_interest_base * btc.first_price
                     + eth.open_interest_base * eth.first_price)
    assert c.population_oi_usd == pytest.approx(oi_usd)
    assert c.fund == round(oi_usd * 1.22 / 28.9)
    # ETH has no book file: BTC's depth per bp per unit of daily volume, times ETH's volume
    assert eth.depth_per_bp == pytest.approx(eth.daily_volume * btc.depth_per_bp
                                             / btc.daily_volume)
    # the arbitrageur closes 76 % of the premium a minute: 1 - 0.24 at one-minute steps
    assert "speed = 0.76\n" in c.text
    # the mark follows the replayed bars in both markets: they already carry the impact
    # of the venue's own liquidations (docs/validation.md)
    assert c.text.count("\noracle_weight = 0.0\n") == 2
    assert "oracle_weight = 1" not in c.text


def test_a_window_without_sources_derives_from_the_reference(shared_data: Path) -> None:
    ref = calibrate_file(INPUTS / "2025_10_10.toml")
    c = calibrate_file(INPUTS / "2024_08_05.toml")
    for m, r in zip(c.markets, ref.markets, strict=True):
        assert m.open_interest_base == pytest.approx(
            m.daily_volume * r.open_interest_base / r.daily_volume)
        assert m.open_interest_note.startswith("derived: V x (OI / V) of 2025-10-10's")
    assert c.fund == round(c.population_oi_usd * ref.fund / ref.population_oi_usd)
    # 1-minute bars at 4 points: 15-second steps; 76 % a minute is 30.0 % a step
    assert {m.step_ms for m in c.markets} == {15_000}
    assert f"speed = {1 - 0.24 ** 0.25:.6g}\n" in c.text


def _bars(days: list[float], partial_last: bool) -> Ohlcv:
    # hourly bars, each day's volume spread evenly; the last day cut short if asked
    ts, vol = [], []
    for d, v in enumerate(days):
        hours = 12 if partial_last and d == len(days) - 1 else 24
        ts += [d * DAY + h * HOUR for h in range(hours)]
        vol += [v / 24.0] * hours
    n = len(ts)
    price = 100.0 * np.exp(0.001 * np.arange(n))
    return Ohlcv(ts_ms=np.array(ts, dtype=np.int64), open=price, high=price, low=price,
                 close=price, volume=np.array(vol))


def test_calm_daily_volume_by_hand() -> None:
    # days 0..4 with volumes 10, 30, 900 (the crash), 20, 50 (partial): median of 10, 30, 20
    bars = _bars([10.0, 30.0, 900.0, 20.0, 50.0], partial_last=True)
    v, days, sigma = calm_daily_volume(bars, 2 * DAY, 3 * DAY, ["1970-01-03"])
    assert days == ("1970-01-01", "1970-01-02", "1970-01-04")
    assert v == pytest.approx(20.0)
    # a steady 0.1 % an hour, within the calm days only: sqrt(0.001^2 x 8,760)
    assert sigma == pytest.approx(0.001 * np.sqrt(8760.0))
    with pytest.raises(CalibrationError, match="no calm full day"):
        calm_daily_volume(bars, 2 * DAY, 3 * DAY,
                          ["1970-01-01", "1970-01-02", "1970-01-03", "1970-01-04"])


def test_book_depth_per_bp_by_hand(tmp_path: Path) -> None:
    # ask depth within 1 %: 100, 120, 140 (median 120, 1.2 a bp); within 2 %: 300, 320,
    # 360 (median 320, 1.6 a bp); the mean 1.4. Bid buckets do not count.
    rows = ["timestamp,percentage,depth,notional,weighted_avg_price"]
    for k, (a1, a2) in enumerate(((100, 300), (120, 320), (140, 360))):
        t = f"2025-10-10 00:0{k}:00"
        rows += [f"{t},-2,9999,1,1", f"{t},-1,9999,1,1", f"{t},1,{a1},1,1", f"{t},2,{a2},1,1"]
    path = tmp_path / "depth.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    assert book_depth_per_bp(path) == pytest.approx(1.4)


def test_the_command_writes_and_checks(tmp_path: Path, shared_data: Path) -> None:
    runner = CliRunner()
    inputs = INPUTS / "2022_11_08.toml"
    out = tmp_path / "s.toml"
    r = runner.invoke(app, ["calibrate", str(inputs), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text() == (REPO / "scenarios" / "crash_2022_11_08.toml").read_text()
    assert runner.invoke(app, ["calibrate", str(inputs), "--out", str(out),
                               "--check"]).exit_code == 0
    out.write_text(out.read_text().replace("n_accounts = 50000", "n_accounts = 5000"))
    r = runner.invoke(app, ["calibrate", str(inputs), "--out", str(out), "--check"])
    assert r.exit_code == 1 and "differs" in r.output


def test_the_mark_is_not_a_behaviour_parameter(tmp_path: Path) -> None:
    # a behaviour file that sets the mark's share of the lab's impact is refused with the
    # key: the method sets it (a replay's bars already carry the liquidations' impact)
    inputs = (INPUTS / "2022_11_08.toml").read_text()
    beh = (INPUTS / "behaviour.toml").read_text()
    (tmp_path / "beh.toml").write_text(beh.replace('impact_half_life = "30m"',
                                                   'impact_half_life = "30m"\n'
                                                   'oracle_weight = 1.0'))
    bad = tmp_path / "w.toml"
    bad.write_text(inputs.replace('behaviour = "behaviour.toml"', 'behaviour = "beh.toml"'))
    with pytest.raises(CalibrationError, match=r"liquidity.oracle_weight: set by the method"):
        calibrate_file(bad)


def test_bad_inputs_name_the_key(tmp_path: Path) -> None:
    text = (INPUTS / "2022_11_08.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("sample_share = 0.15", "sample_share = 1.5"))
    with pytest.raises(CalibrationError, match=r"population.sample_share: must be in"):
        load_inputs(bad)
    bad.write_text(text.replace('points_per_bar = 12', 'points_per_bar = 12\nbarz = "x"'))
    r = CliRunner().invoke(app, ["calibrate", str(bad)])
    assert r.exit_code == 2 and "markets.BTC-PERP: unknown keys ['barz']" in r.output
    assert "Traceback" not in r.output
