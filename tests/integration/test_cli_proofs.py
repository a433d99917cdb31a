"""``solvency prove`` and ``solvency verify-proof`` (issue 18): a proof of liabilities of
the demo's final state, every account's proof checks, a tampered one fails with its
reason and exit 1, reserves give a ratio, and a service's store proves the same state."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.model.events import json_object
from solvency.core.proofs import verify_proof
from solvency.engine.summary import liabilities
from solvency.service.core import RiskService, ServiceConfig, parse_items

runner = CliRunner()
DEMO = [ln for ln in resources.files("solvency.data").joinpath("demo_events.jsonl")
        .read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def test_prove_the_demo_and_check_every_proof(tmp_path: Path) -> None:
    out = tmp_path / "p"
    reserves = tmp_path / "reserves.json"
    reserves.write_text('{"USDT": "3000000", "BTC": "10"}')
    seed = tmp_path / "seed"
    res = runner.invoke(app, ["prove", "--out", str(out), "--reserves", str(reserves),
                              "--seed-file", str(seed)])
    assert res.exit_code == 0, res.output
    root = json.loads((out / "root.json").read_text())
    proofs = sorted((out / "proofs").glob("*.json"))
    assert len(proofs) == root["accounts"] >= 10
    total = {a: 0 for a in root["assets"]}
    for p in proofs:
        got = verify_proof(json.loads(p.read_text()), root)
        for a, q in got.items():
            total[a] += q
    assert {a: str(t) for a, t in total.items()} == root["totals"]  # nothing hidden
    # the reserve ratio is reserves over liabilities, in the asset's units
    usdt = int(root["totals"]["USDT"]) / 10 ** root["units"]["USDT"]
    assert abs(float(root["reserve_ratio"]["USDT"]) - 3_000_000 / usdt) < 1e-6
    # the same state and seed give the same root; another seed another root
    again = runner.invoke(app, ["prove", "--out", str(tmp_path / "q"), "--seed-file",
                                str(seed)])
    assert again.exit_code == 0
    assert json.loads((tmp_path / "q" / "root.json").read_text())["root"] == root["root"]
    # verify-proof: OK with the balances, or the reason and exit 1
    ok = runner.invoke(app, ["verify-proof", str(out / "proofs" / "trader01.json"),
                             "--root", str(out / "root.json")])
    assert ok.exit_code == 0 and ok.stdout.startswith("OK: trader01")
    bad = json.loads((out / "proofs" / "trader01.json").read_text())
    bad["balances"][-1] = str(int(bad["balances"][-1]) + 1)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    fail = runner.invoke(app, ["verify-proof", str(tmp_path / "bad.json"), "--root",
                               str(out / "root.json")])
    assert fail.exit_code == 1 and "leaf_mismatch" in fail.output


def test_negative_equity_is_reported_beside_the_tree(tmp_path: Path) -> None:
    res = runner.invoke(app, ["prove", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    root = json.loads((tmp_path / "p" / "root.json").read_text())
    neg = root["negative_equity"]
    assert neg["accounts"] == len(neg["shortfall"])
    for account in neg["shortfall"]:  # its positive assets are still in the tree
        proof = tmp_path / "p" / "proofs" / f"{account}.json"
        if proof.exists():
            verify_proof(json.loads(proof.read_text()), root)


def test_prove_a_service_store_at_its_sequence_number(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    svc = RiskService(ServiceConfig(db=db, venue="binance"))
    svc.start()
    svc.submit(parse_items([json_object(ln) for ln in DEMO]), None).result(timeout=60)
    seq, state = svc.seq, svc.read(svc.engine.state_hash).result(timeout=60)
    owed = svc.read(lambda: liabilities(svc.engine)).result(timeout=60)
    svc.stop()
    res = runner.invoke(app, ["prove", "--db", db, "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    root = json.loads((tmp_path / "p" / "root.json").read_text())
    assert root["seq"] == seq and root["state_hash"] == state
    assert root["totals"] == {a: str(int(owed["owed"][:, i].sum()))
                              for i, a in enumerate(owed["assets"])}


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_bad_inputs_are_precise_errors(tmp_path: Path) -> None:
    r = runner.invoke(app, ["prove", str(tmp_path / "none.jsonl")])
    assert r.exit_code == 2 and "no such file" in flat(r.output)
    (tmp_path / "res.json").write_text('{"DOGE": "1"}')
    r = runner.invoke(app, ["prove", "--reserves", str(tmp_path / "res.json"), "--out",
                            str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown asset 'DOGE'" in flat(r.output)
    (tmp_path / "res.json").write_text('{"USDT": "-1"}')
    r = runner.invoke(app, ["prove", "--reserves", str(tmp_path / "res.json")])
    assert r.exit_code == 2 and ">= 0" in flat(r.output)
    (tmp_path / "p.json").write_text("not json")
    r = runner.invoke(app, ["verify-proof", str(tmp_path / "p.json"), "--root",
                            str(tmp_path / "p.json")])
    assert r.exit_code == 2 and "not JSON" in flat(r.output)
