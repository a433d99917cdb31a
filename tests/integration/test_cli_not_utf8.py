"""A user file that is not UTF-8 text (here 00 ff fe 80) is refused with exit 2 and the
file named, never a UnicodeDecodeError traceback (review1 #3): each loader that reads a
user file as text, reached from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})

NOT_UTF8 = b"\x00\xff\xfe\x80"

PORTFOLIO = {
    "venue": "binance",
    "prices": {"BTC-PERP": "100000"},
    "account": {"collateral": {"USDT": "10000"},
                "positions": [{"market": "BTC-PERP", "size": "0.5", "entry_price": "98000"}]},
}


@pytest.mark.parametrize(("args", "bad"), [
    (["margin", "{bad}"], "bin.json"),                               # portfolio (JSON)
    (["margin", "{bad}"], "bin.toml"),                               # portfolio (TOML)
    (["margin", "{good}", "--venue", "{bad}"], "bin.json"),          # venue file
    (["rebalance", "{bad}"], "bin.json"),                            # multi-venue file
    (["greeks", "{bad}"], "bin.json"),
    (["replay", "{bad}"], "bin.jsonl"),                              # events
    (["replay", "{bad}", "--venue", "{bad2}"], "bin.jsonl"),         # venue file of a replay
    (["replay", "{events}", "--pm-grid", "{bad}"], "bin.toml"),      # grid file
    (["margin", "{good}", "--corr", "{bad}"], "bin.json"),           # correlation file
    (["simulate", "{bad}"], "bin.toml"),                             # scenario
    (["calibrate", "{bad}"], "bin.toml"),                            # calibration inputs
    (["fund-target", "--sweep", "{dir}", "--fee-income", "1"], "sweep.csv"),
    (["risk-report", "{events}", "--sweep", "{dir}", "--out", "{out}"], "sweep.csv"),
    (["prove", "{events}", "--reserves", "{bad}", "--out", "{out}"], "bin.json"),
])
def test_a_file_that_is_not_utf8_exits_2_and_names_the_file(
        tmp_path: Path, args: list[str], bad: str) -> None:
    folder = tmp_path / "sweep"
    folder.mkdir()
    path = (folder if bad == "sweep.csv" else tmp_path) / bad
    path.write_bytes(NOT_UTF8)
    bad2 = tmp_path / "venue.json"
    bad2.write_bytes(NOT_UTF8)
    good = tmp_path / "p.json"
    good.write_text(json.dumps(PORTFOLIO), encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_text("", encoding="utf-8")
    names = {"{bad}": str(path), "{bad2}": str(bad2), "{good}": str(good),
             "{events}": str(events), "{dir}": str(folder), "{out}": str(tmp_path / "out")}
    res = runner.invoke(app, [names.get(a, a) for a in args])
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    text = " ".join(res.output.split())
    named = str(bad2 if "{bad2}" in args else path)
    assert named in text or Path(named).name in text, text
    assert "Traceback" not in res.output and "UnicodeDecodeError" not in res.output
