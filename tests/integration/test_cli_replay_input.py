"""``solvency replay`` on hostile files (issue 13): every bad line is a rejected line with a
reason and a bounded detail, never a traceback; a byte-order mark is accepted; rejected
lines are counted, and ``--strict`` turns them into a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.model.events import DETAIL_MAX_CHARS

runner = CliRunner(env={"COLUMNS": "200"})

GOOD = '{"type":"deposit","id":"e1","account":"a","asset":"USDT","amount":"1000"}'


def _replay(tmp_path: Path, text: str | bytes, *args: str) -> tuple[int, str, list[dict]]:
    src = tmp_path / "events.jsonl"
    if isinstance(text, bytes):
        src.write_bytes(text)
    else:
        src.write_text(text)
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["replay", str(src), "--out", str(out), *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    outs = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return res.exit_code, res.stdout if "--json" in args else res.output, outs


def test_hostile_lines_are_rejected_with_a_reason(tmp_path: Path) -> None:
    huge_int = '{"type":"deposit","id":"e3","account":"a","asset":"USDT","amount":' + (
        "9" * 5000) + "}"
    huge_str = '{"type":"deposit","id":"e4","account":"a","asset":"USDT","amount":"' + (
        "9" * 2_000_000) + '"}'
    lines = [GOOD, "[" * 100_000 + "]" * 100_000, huge_int, huge_str,
             '{"type":"deposit","id":"e5","account":"a","asset":"USDT","amou']
    code, output, outs = _replay(tmp_path, "\n".join(lines) + "\n", "--json")
    assert code == 0, output
    summary = json.loads(output)
    assert (summary["applied"], summary["rejected"]) == (1, 4)
    reasons = [(o["event"], o["reason"]) for o in outs if o["type"] == "rejected"]
    assert reasons == [("line:2", "malformed"), ("line:3", "invalid_number"),
                       ("line:4", "invalid_number"), ("line:5", "malformed")]
    # the 2 MB number is not echoed into the out-event file
    assert all(len(o["detail"]) <= DETAIL_MAX_CHARS + 40 for o in outs)
    assert (tmp_path / "out.jsonl").stat().st_size < 2_000


def test_a_huge_order_is_a_rejected_line_not_a_traceback(tmp_path: Path) -> None:
    lines = [GOOD,
             '{"type":"price","id":"p1","market":"BTC-PERP","price":"84000"}',
             '{"type":"order","id":"o1","account":"a","market":"BTC-PERP","side":"buy",'
             '"size":"1e9"}']
    code, output, outs = _replay(tmp_path, "\n".join(lines) + "\n", "--json")
    assert code == 0, output
    assert [(o["type"], o.get("status"), o.get("reason")) for o in outs] == [
        ("order", "rejected", "size_too_large")]


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    code, output, _ = _replay(tmp_path, b"\xef\xbb\xbf" + GOOD.encode() + b"\n", "--json")
    assert code == 0, output
    summary = json.loads(output)
    assert (summary["applied"], summary["rejected"]) == (1, 0)


def test_rejected_lines_are_counted_and_strict_fails(tmp_path: Path) -> None:
    text = GOOD + '\n{"type":"deposit","id":"e2","acc\n'
    code, output, _ = _replay(tmp_path, text)
    assert code == 0, output
    assert "1 of 2 events rejected" in " ".join(output.split())
    code, output, _ = _replay(tmp_path, text, "--strict")
    assert code == 1, output
    code, output, _ = _replay(tmp_path, GOOD + "\n", "--strict")
    assert code == 0, output


def test_an_empty_file_says_so(tmp_path: Path) -> None:
    code, output, _ = _replay(tmp_path, "")
    assert code == 0, output
    assert "no events" in output
    code, output, _ = _replay(tmp_path, "", "--strict")
    assert code == 1, output


def test_summary_lists_the_top_accounts_and_writes_the_rest_to_a_file(tmp_path: Path) -> None:
    # issue 26: the summary stays readable at a million accounts: the N accounts nearest
    # liquidation and the N largest, the full listing behind a flag or in a file
    path = tmp_path / "accounts.jsonl"
    res = runner.invoke(app, ["replay", "--json", "--top", "3", "--accounts-out", str(path)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    near, large = summary["accounts_nearest_liquidation"], summary["accounts_largest"]
    assert len(near) == 3 and len(large) == 3
    ratios = [float(a["margin_ratio"]) for a in near]
    assert ratios == sorted(ratios, reverse=True) and ratios[0] > 0
    notionals = [float(a["notional_usd"]) for a in large]
    assert notionals == sorted(notionals, reverse=True)
    listed = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(listed) >= summary["account_count"] > 3
    full = json.loads(runner.invoke(app, ["replay", "--json", "--all-accounts"]).stdout)
    by_name = {a["account"]: a for a in listed}
    for name, entry in full["accounts"].items():
        assert by_name[name]["margin_ratio"] == entry["margin_ratio"]
        assert by_name[name]["positions"] == entry["positions"]
    # the top of the nearest-liquidation list is the account with the highest ratio
    user = {n: float(e["margin_ratio"]) for n, e in full["accounts"].items()
            if not n.startswith("__")}
    assert near[0]["account"] == max(user, key=lambda n: (user[n], n))
