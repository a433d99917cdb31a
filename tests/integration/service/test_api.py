"""The service's HTTP API against a real ``solvency serve`` process on 127.0.0.1 (issue 15):
bad input, auth, idempotency, reads and the pre-trade check. Each rejection must leave
``state_hash`` exactly as it was."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from solvency.client import Client, ServiceError
from tests.integration.service.server import ServerProcess, make_keys

DEMO = resources.files("solvency.data").joinpath("demo_events.jsonl").read_text()
DEMO_LINES = [ln for ln in DEMO.splitlines() if ln.strip() and not ln.startswith("#")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict]]:
    tmp = tmp_path_factory.mktemp("api")
    db = f"sqlite:///{tmp / 'api.db'}"
    keys = make_keys(db)
    srv = ServerProcess(db, tmp, args=("--max-body", "65536"))
    srv.start()
    # the demo's first half: accounts with money and positions, marks set
    with Client(srv.url, keys["submit"]) as c:
        res = c.submit([json.loads(ln) for ln in DEMO_LINES[:40]])
        assert all(r["status"] == "accepted" for r in res["results"]), res
    yield srv, keys
    srv.stop()


def h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# every request waits up to 30 s: httpx's default of 5 s is shorter than a first
# request can take on a loaded 2-core CI machine (a ReadTimeout there, not a 4xx)
_get = functools.partial(httpx.get, timeout=30)
_post = functools.partial(httpx.post, timeout=30)


def state_hash(srv: ServerProcess, key: str) -> str:
    r = _get(srv.url + "/v1/state", headers=h(key))
    assert r.status_code == 200, r.text
    return str(r.json()["state_hash"])


def post(srv: ServerProcess, key: str, body: bytes | str) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.post(srv.url + "/v1/events", content=content, headers=h(key), timeout=30)


DEPOSIT = '{{"type":"deposit","id":"{id}","ts":"2026-03-26T09:00:00Z","account":"{acct}",' \
          '"asset":"USDT","amount":{amount}}}'

BAD_BODIES = [
    # (body, reason the engine or the API gives)
    ('{"type":"deposit"', "malformed"),
    (b"\xff\xfe{}", "encoding"),
    ("[]", "malformed"),
    ("42", "malformed"),
    ('{"type":"deposit","id":"x1","ts":"2026-03-26T09:00:00Z","account":"trader01",'
     '"asset":"USDT","amount":NaN}', "invalid_number"),
    ('{"type":"deposit","id":"x1","ts":"2026-03-26T09:00:00Z","account":"trader01",'
     '"asset":"USDT","amount":Infinity}', "invalid_number"),
    (DEPOSIT.format(id="x2", acct="trader01", amount='"NaN"'), None),
    (DEPOSIT.format(id="x3", acct="trader01", amount='"inf"'), None),
    (DEPOSIT.format(id="x4", acct="trader01", amount='"-5"'), None),
    (DEPOSIT.format(id="x5", acct="trader01", amount='"0"'), None),
    (DEPOSIT.format(id="x6", acct="trader01", amount='"1e999999"'), None),
    (DEPOSIT.format(id="x7", acct="trader01", amount="[1]"), None),
    ('{"type":"deposit","id":"x8","ts":"2026-03-26T09:00:00Z","account":"trader01",'
     '"asset":"USDT","amount":"5","colour":"red"}', "unknown_field"),
    ('{"type":"deposit","id":"x9","ts":"2026-03-26T09:00:00Z","account":"trader01",'
     '"asset":"DOGE","amount":"5"}', None),
    ('{"type":"withdraw","id":"x10","ts":"2026-03-26T09:00:00Z","account":"nobody",'
     '"asset":"USDT","amount":"5"}', None),
    ('{"type":"price","id":"x11","ts":"2026-03-26T09:00:00Z","market":"DOGE-PERP",'
     '"price":"1"}', None),
    ('{"type":"fill","id":"x12","ts":"2026-03-26T09:00:00Z","market":"BTC-PERP",'
     '"buyer":"trader01","seller":"mm","size":"-1","price":"84000"}', None),
    ('{"type":"fill","id":"x13","ts":"2026-03-26T09:00:00Z","market":"BTC-PERP",'
     '"buyer":"trader01","seller":"mm","size":"0","price":"84000"}', None),
    ('{"type":"teleport","id":"x14","ts":"2026-03-26T09:00:00Z"}', None),
    ('{"type":"deposit","id":"x15","ts":"2020-01-01T00:00:00Z","account":"trader01",'
     '"asset":"USDT","amount":"5"}', "out_of_order"),
]


@pytest.mark.parametrize(("body", "reason"), BAD_BODIES)
def test_bad_input_is_a_4xx_with_a_reason_and_changes_nothing(server, body, reason) -> None:
    srv, keys = server
    before = state_hash(srv, keys["read"])
    r = post(srv, keys["submit"], body)
    assert 400 <= r.status_code < 500, r.text
    err = r.json()["error"]
    assert err["reason"] and err["detail"], r.text
    if reason is not None:
        assert err["reason"] == reason, r.text
    assert "Traceback" not in r.text
    assert state_hash(srv, keys["read"]) == before


def test_oversized_body_is_413_and_changes_nothing(server) -> None:
    srv, keys = server
    before = state_hash(srv, keys["read"])
    lines = "\n".join(DEPOSIT.format(id=f"big{i}", acct="trader01", amount='"1"')
                      for i in range(2_000))
    assert len(lines) > 65536
    r = post(srv, keys["submit"], lines)
    assert r.status_code == 413 and r.json()["error"]["reason"] == "too_large"
    assert state_hash(srv, keys["read"]) == before


def test_a_batch_answers_each_event_and_keeps_the_good_ones(server) -> None:
    srv, keys = server
    body = "\n".join([
        DEPOSIT.format(id="b1", acct="trader01", amount='"10"'),
        '{"type":"deposit",',
        DEPOSIT.format(id="b2", acct="trader01", amount='"-1"'),
        DEPOSIT.format(id="b3", acct="trader02", amount='"10"'),
    ])
    r = post(srv, keys["submit"], body)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["accepted", "rejected", "rejected", "accepted"]
    assert res[1]["reason"] == "malformed" and "line 2" in res[1]["detail"]
    assert res[3]["seq"] == res[0]["seq"] + 1  # rejected events take no sequence number


def test_idempotent_by_id_duplicate_and_id_conflict(server) -> None:
    srv, keys = server
    ev = DEPOSIT.format(id="idem1", acct="trader03", amount='"7"')
    first = post(srv, keys["submit"], ev).json()["results"][0]
    assert first["status"] == "accepted"
    before = state_hash(srv, keys["read"])
    again = post(srv, keys["submit"], ev).json()["results"][0]
    assert again["status"] == "duplicate" and again["seq"] == first["seq"]
    # the same content with keys in another order and the amount as a number: same event
    same = json.dumps({"amount": "7", "asset": "USDT", "account": "trader03",
                       "ts": "2026-03-26T09:00:00Z", "id": "idem1", "type": "deposit"})
    assert post(srv, keys["submit"], same).json()["results"][0]["status"] == "duplicate"
    other = post(srv, keys["submit"], DEPOSIT.format(id="idem1", acct="trader03",
                                                      amount='"8"'))
    assert other.status_code == 422
    assert other.json()["error"]["reason"] == "id_conflict"
    assert state_hash(srv, keys["read"]) == before


def test_auth_401_403_and_scopes(server) -> None:
    srv, keys = server
    ev = DEPOSIT.format(id="auth1", acct="trader01", amount='"1"')
    assert _post(srv.url + "/v1/events", content=ev).status_code == 401
    assert post(srv, "slv_00000000_" + "A" * 43, ev).status_code == 401
    assert post(srv, "not-a-key", ev).status_code == 401
    assert _get(srv.url + "/v1/state").status_code == 401
    r = post(srv, keys["read"], ev)
    assert r.status_code == 403 and r.json()["error"]["reason"] == "forbidden"
    params = ('{"type":"params","id":"p1","ts":"2026-03-26T09:00:00Z","market":"BTC-PERP",'
              '"tick_size":"0.5"}')
    before = state_hash(srv, keys["read"])
    r = post(srv, keys["submit"], params)
    assert r.status_code == 403 and "govern" in r.json()["error"]["detail"]
    assert state_hash(srv, keys["read"]) == before
    # the same key text never appears in the server's log
    assert keys["submit"] not in srv.log() and keys["read"] not in srv.log()


def test_reads_say_which_sequence_they_reflect(server) -> None:
    srv, keys = server
    with Client(srv.url, keys["read"]) as c:
        st = c.state()
        assert st["conserved"] is True and st["seq"] >= 40
        acct = c.account("trader01")
        assert acct["seq"] == st["seq"] and acct["account"] == "trader01"
        assert "positions" in acct
        risk = c.risk()
        assert risk["seq"] == st["seq"] and "insurance_fund" in risk
        assert set(risk["breakers"]) >= {"BTC-PERP"}
        with pytest.raises(ServiceError) as exc:
            c.account("nobody")
        assert exc.value.status == 404 and exc.value.reason == "unknown_account"


def test_order_check_changes_nothing(server) -> None:
    srv, keys = server
    before = state_hash(srv, keys["read"])
    order = {"id": "o1", "ts": "2026-03-26T09:00:00Z", "account": "trader01",
             "market": "BTC-PERP", "side": "buy", "size": "0.01", "price": "84000"}
    with Client(srv.url, keys["read"]) as c:
        for _ in range(50):  # far past any rate limit an order event would count toward
            ans = c.check(order)
            assert ans["status"] in {"accepted", "rejected"}
        big = c.check({**order, "size": "100000"})
        assert big["status"] == "rejected" and big["reason"]
        with pytest.raises(ServiceError) as exc:
            c.check({**order, "size": "NaN"})
        assert exc.value.status == 422
    assert state_hash(srv, keys["read"]) == before


def test_resting_orders_through_post_events(server) -> None:
    """``POST /v1/events`` takes a resting order and its cancel through the engine's
    parser: another account's cancel is refused ``unknown_order`` with the hash
    unchanged, the owner's is accepted."""
    srv, keys = server
    lines = [
        '{"type":"order","id":"rest1","account":"trader03","market":"BTC-PERP",'
        '"side":"buy","size":"0.001","price":"83000","rest":true}',
        '{"type":"order_cancel","id":"cx1","account":"trader01","order":"rest1"}',
    ]
    r = post(srv, keys["submit"], lines[0])
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "accepted", r.text
    before = state_hash(srv, keys["read"])
    res = post(srv, keys["submit"], lines[1]).json()["results"][0]
    assert (res["status"], res["reason"]) == ("rejected", "unknown_order"), res
    assert state_hash(srv, keys["read"]) == before
    ok = post(srv, keys["submit"], lines[1].replace('"cx1","account":"trader01"',
                                                    '"cx2","account":"trader03"'))
    assert ok.json()["results"][0]["status"] == "accepted", ok.text


def test_health_metrics_and_openapi(server) -> None:
    srv, _ = server
    assert _get(srv.url + "/healthz").text == "ok"
    assert _get(srv.url + "/readyz").json()["ready"] is True
    metrics = _get(srv.url + "/metrics").text
    assert "solvency_events_total" in metrics and "solvency_commit_seconds" in metrics
    assert 'solvency_rejections_total{reason="malformed"}' in metrics or \
        "solvency_rejections_total" in metrics
    spec = _get(srv.url + "/openapi.json").json()
    assert {"/v1/events", "/v1/state", "/v1/risk", "/v1/orders/check"} <= set(spec["paths"])


def test_rate_limit_429(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'rate.db'}"
    keys = make_keys(db)
    # one token per 100 s: the bucket cannot refill between requests however slow a
    # loaded CI machine answers them (at 1 per second it did: no 429 in six requests)
    srv = ServerProcess(db, tmp_path, args=("--rate-limit", "0.01", "--rate-burst", "3"))
    srv.start()
    try:
        codes = [_get(srv.url + "/v1/state", headers=h(keys["read"])).status_code
                 for _ in range(6)]
        assert codes == [200, 200, 200, 429, 429, 429], codes
        r = _get(srv.url + "/v1/state", headers=h(keys["read"]))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # another key has its own bucket
        assert _get(srv.url + "/v1/state", headers=h(keys["submit"])).status_code == 200
    finally:
        srv.stop()


def test_proofs_of_liabilities_over_http(server) -> None:
    from solvency.core.proofs import verify_proof

    srv, keys = server
    with Client(srv.url, keys["read"]) as c:
        st = c.state()
    root = _get(srv.url + "/v1/proofs/root", headers=h(keys["read"])).json()
    assert root["seq"] == st["seq"] and root["state_hash"] == st["state_hash"]
    proof = _get(srv.url + "/v1/proofs/trader01", headers=h(keys["read"])).json()
    assert verify_proof(proof, root)["USDT"] >= 0
    r = _get(srv.url + "/v1/proofs/nobody", headers=h(keys["read"]))
    assert r.status_code == 404 and r.json()["error"]["reason"] == "not_in_tree"
    assert _get(srv.url + "/v1/proofs/root").status_code == 401


def test_risk_report_over_http_validates(server) -> None:
    from solvency.adapters.risk_report import validate

    srv, keys = server
    r = _get(srv.url + "/v1/risk-report", headers=h(keys["read"]))
    assert r.status_code == 200, r.text
    report = r.json()
    validate(report)
    assert report["seq"] == _get(srv.url + "/v1/state",
                                      headers=h(keys["read"])).json()["seq"]
