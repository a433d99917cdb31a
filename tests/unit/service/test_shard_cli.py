"""``solvency shard``: bad input gets a precise error and exit code, never a traceback, and
nothing is sent (cli/shard.py). The running path is tested on real NATS in
tests/integration/service/test_shards_nats.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.model.presets import load_preset
from solvency.service.shard_node import ShardNode, merge_out_json

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["shard", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(("run", "--shard", "4/4"), "need 0 <= K < N", id="k-too-big"),
    pytest.param(("run", "--shard", "x"), "expected K/N", id="not-k-of-n"),
    pytest.param(("run", "--shard", "0/2", "--venue", "nosuch"), "nosuch", id="venue"),
])
def test_run_refuses(args: tuple[str, ...], message: str) -> None:
    code, out = _run(*args)
    assert code == 2 and message in out, out
    assert "Traceback" not in out


def test_run_refuses_another_shards_snapshot(tmp_path: Path) -> None:
    node = ShardNode("nats://127.0.0.1:1", "x", 1, 2, load_preset("binance"),
                     state_dir=tmp_path)
    node._save()
    (tmp_path / "shard-1.json").rename(tmp_path / "shard-0.json")
    code, out = _run("run", "--shard", "0/2", "--state-dir", str(tmp_path))
    assert code == 2 and "belongs to shard 1/2" in " ".join(out.split()), out
    (tmp_path / "shard-0.json").write_text("{")
    code, out = _run("run", "--shard", "0/2", "--state-dir", str(tmp_path))
    assert code == 2 and "error:" in out and "Traceback" not in out, out


def test_feed_refuses_a_bad_file_before_sending(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "deposit", "id": "d1", "account": "a", "asset": "USDT", '
                   '"amount": "5"}\n{"type": "deposit", "id": \n')
    # the stream URL is never reached: the file is refused first
    code, out = _run("feed", str(bad), "--shards", "2", "--stream", "nats://127.0.0.1:1")
    assert code == 2 and "bad.jsonl:2:" in out, out
    code, out = _run("feed", str(tmp_path / "none.jsonl"), "--shards", "2")
    assert code == 2 and "none.jsonl" in out, out


def test_merge_out_json() -> None:
    """Accounts' events from every shard, the market's news from shard 0 only, a
    broadcast's rejection once, settlements summed over the shards."""
    rej = {"type": "rejected", "event": "p9", "reason": "unknown_market"}
    mark = {"type": "mark", "market": "BTC-PERP", "price": "84000"}
    got = merge_out_json([
        [mark, {"type": "settled", "market": "BTC-PERP", "paid": "1.5", "received": "1",
                "rounding": "0"}, rej],
        [mark, {"type": "liquidation", "account": "t1"},
         {"type": "settled", "market": "BTC-PERP", "paid": "2", "received": "0.25",
          "rounding": "0.01"}, rej],
    ])
    assert got == [mark, {"type": "settled", "market": "BTC-PERP", "paid": "3.5",
                          "received": "1.25", "rounding": "0.01"}, rej,
                   {"type": "liquidation", "account": "t1"}]
    assert json.dumps(got)  # plain JSON


def test_no_nats_is_one_error_line(capfd: pytest.CaptureFixture[str]) -> None:
    """nats-py retries a first connection for ever and prints a traceback per try;
    adapters/nats_stream.connect (shards, serve --stream) gives up with one error."""
    import asyncio

    from solvency.adapters.nats_stream import connect

    with pytest.raises(ConnectionError, match=r"cannot connect to NATS at nats://127\.0\.0"
                                              r"\.1:1: ConnectionRefusedError"):
        asyncio.run(connect("nats://127.0.0.1:1", timeout_s=1.0))
    assert "Traceback" not in capfd.readouterr().err
