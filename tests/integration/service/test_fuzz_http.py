"""The engine fuzz generator (issue 13) driving ``POST /v1/events`` of a real ``solvency
serve`` process, one per preset (SQLite in ``tmp_path``, ``--venue`` the preset, a
``govern`` key so ``params`` events are allowed).

A local engine, built as the service builds its own (``load_venue`` and the
``deribit_pm`` grid), is fed every line first through :class:`Harness` (which also checks
the engine's invariants); the generator reads that state to make events near it. The
same lines then go to the service as single-event posts, JSON arrays and JSON Lines
batches, and for every event:

* the HTTP status is 200, 400, 413 or 422 (never 5xx), and no body holds a traceback;
* the service's answer is the local engine's: ``accepted`` where the engine applied the
  event, ``rejected`` with the same reason where the parser or the engine refused it;
* a rejected event leaves ``GET /v1/state``'s ``state_hash`` as it was (on a sample: it
  costs two requests);

and after each sequence the service's ``state_hash`` and ``seq`` are the local engine's
(``seq``: the number of events the engine applied, every one logged).

Where the two differ by design, the expectation says so explicitly:

* **Reused ids.** The engine ignores an id it has applied before (no out-event, nothing
  changes). The service looks the id up in its log: the same canonical payload answers
  ``duplicate`` with the original ``seq``; other content answers ``rejected id_conflict``
  (HTTP 422 when posted alone). Either way nothing changes, on both sides.
* **Status of a lone event.** A body holding one event answers 422 when it is rejected
  (400 when it is not even a JSON object); a batch answers 200 with a result per event.
* **Body framing.** The service strips a UTF-8 BOM and blank space at the start of a
  body, skips blank lines of a JSON Lines body, and decodes a JSON array whole (one
  malformed element refuses the whole array with 400): blank lines are therefore posted
  alone, arrays hold only lines that are JSON objects, and the expected answer to a line
  that starts a body is that of the line as the service reads it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from solvency.adapters.eventlog import load_venue
from solvency.adapters.grids import load_grid
from solvency.core.model.events import EventError, json_object
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input_line
from solvency.service.core import canonical
from tests.integration.service.server import ServerProcess, make_keys
from tests.property.fuzz_gen import PRESETS, Generator, Harness, RandomChooser

SEQUENCES = 2  # per preset, one after the other on one server
STEPS = 30  # generator steps per sequence (a crash or a burst is several lines)
STATE_SAMPLE = 0.3  # share of rejected events whose state_hash is checked around the post
REPOST = 0.04  # chance of posting an accepted line again, verbatim (a true duplicate)
OK_STATUSES = {200, 400, 413, 422}


class _Gen(Generator):
    """The fuzz generator with ids unique per sequence (``s<k>e<n>``): the sequences of
    a preset run one after the other on one server and one engine."""

    def __init__(self, prefix: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prefix = prefix

    def _id(self) -> str:
        self.seq += 1
        eid = f"{self.prefix}e{self.seq}"
        self.ids.append(eid)
        return eid


@dataclass
class Expect:
    line: str
    status: str  # accepted | duplicate | rejected
    reason: str = ""


@dataclass
class Session:
    """One preset's server, key and local engine, with what was accepted so far."""

    srv: ServerProcess
    key: str
    harness: Harness
    http: httpx.Client
    logged: dict[str, str] = field(default_factory=dict)  # accepted id -> canonical payload
    accepted: list[str] = field(default_factory=list)  # accepted lines, for reposts
    rng: random.Random = field(default_factory=random.Random)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def sample(self) -> bool:
        """Whether to check the state around this rejection: the first few, then some."""
        return self.counts.get("state checks", 0) < 4 or self.rng.random() < STATE_SAMPLE

    def state(self) -> dict[str, Any]:
        r = self.http.get("/v1/state")
        assert r.status_code == 200, r.text
        return dict(r.json())


def _decodes(line: str) -> bool:
    try:
        json_object(line)
    except EventError:
        return False
    return True


def _canonical(line: str) -> str | None:
    try:
        return canonical(json_object(line))
    except EventError:
        return None


def expect(s: Session, line: str) -> Expect:
    """Feed ``line`` to the local engine; what the service must answer for it."""
    step = s.harness.feed(line)
    if step.event is None:
        s.count("parse error")
        return Expect(line, "rejected", step.reason)
    if step.duplicate:
        # the engine ignores a reused id; the service compares the payload with its log
        logged = s.logged.get(step.event.id)
        if logged is not None and logged == _canonical(line):
            s.count("duplicate")
            return Expect(line, "duplicate")
        s.count("id_conflict")
        return Expect(line, "rejected", "id_conflict")
    if step.reason:
        s.count("rejected")
        return Expect(line, "rejected", step.reason)
    canon = _canonical(line)
    assert canon is not None
    s.logged[step.event.id] = canon
    s.accepted.append(line)
    s.count("accepted")
    return Expect(line, "accepted")


def _as_body_start(e: Expect) -> Expect:
    """The expectation for ``e`` when its line starts a body: the service strips a BOM
    there (the engine's line parser does not). Such a line is never an event here
    (the generator's BOM line is ``\\ufeff{}``), so the state is untouched either way."""
    if not e.line.startswith("\ufeff"):
        return e
    try:
        parse_input_line(e.line.lstrip("\ufeff"))
    except EventError as exc:
        return Expect(e.line, "rejected", exc.reason)
    raise AssertionError(f"a BOM line that parses as an event: {e.line[:80]!r}")


def _check_body(r: httpx.Response) -> None:
    assert r.status_code in OK_STATUSES, f"HTTP {r.status_code}: {r.text[:2000]}"
    assert "Traceback" not in r.text, r.text[:2000]


def _same(got: dict[str, Any], e: Expect, where: str) -> None:
    want = (e.status, e.reason)
    have = (got.get("status"), got.get("reason", ""))
    assert have == want, f"{where}: service {have}, engine {want} for {e.line[:300]!r}"


def post_single(s: Session, e: Expect) -> None:
    e = _as_body_start(e)
    sample = e.status == "rejected" and s.sample()
    before = s.state()["state_hash"] if sample else None
    r = s.http.post("/v1/events", content=e.line.encode())
    _check_body(r)
    s.count("posts single")
    if not e.line.strip() or not _decodes(e.line.lstrip("\ufeff")):
        # not a JSON object at all: the body is refused whole (400), reason the parser's
        assert r.status_code == 400, r.text[:2000]
        assert r.json()["error"]["reason"] == e.reason, (r.text[:2000], e)
    elif e.status == "rejected":
        assert r.status_code == 422, (r.text[:2000], e)
        body = r.json()
        assert body["error"]["reason"] == e.reason, (r.text[:2000], e)
        _same(body["results"][0], e, "single")
    else:
        assert r.status_code == 200, (r.text[:2000], e)
        _same(r.json()["results"][0], e, "single")
    if before is not None:
        s.count("state checks")
        assert s.state()["state_hash"] == before, f"rejected {e.line[:300]!r} changed the state"


def post_batch(s: Session, batch: list[Expect], mode: str) -> None:
    if mode == "array":
        body = "[" + ",".join(e.line for e in batch) + "]"
    else:
        body = "\n".join(e.line for e in batch)
        batch = [_as_body_start(batch[0]), *batch[1:]]
    sample = any(e.status == "rejected" for e in batch) and s.sample()
    # a batch changes the state only by its accepted events
    before = s.state()["state_hash"] if sample and all(
        e.status != "accepted" for e in batch) else None
    r = s.http.post("/v1/events", content=body.encode())
    _check_body(r)
    s.count(f"posts {mode}")
    assert r.status_code == 200, (mode, r.text[:2000])
    results = r.json()["results"]
    assert len(results) == len(batch), (mode, len(results), len(batch))
    for i, (got, e) in enumerate(zip(results, batch, strict=True)):
        _same(got, e, f"{mode} [{i}]")
    if before is not None:
        s.count("state checks")
        assert s.state()["state_hash"] == before, "a batch of rejections changed the state"


def run_sequence(s: Session, preset: str, k: int, rng: random.Random) -> None:
    h = s.harness
    ch = RandomChooser(f"http/{preset}/{k}")
    gen = _Gen(f"s{k}", preset, lambda: h.engine)
    gen.now = max(gen.now, h.engine.clock_ms or 0)  # the second sequence goes on in time
    pending: list[Expect] = []
    mode, size = "single", 1

    def flush() -> None:
        nonlocal mode, size
        batch = pending[:]
        pending.clear()
        if not batch:
            return
        if mode == "array" and not all(_decodes(e.line) for e in batch):
            mode = "jsonl"  # an array is decoded whole: only JSON objects go in one
        if len(batch) == 1 or mode == "single":
            for e in batch:
                post_single(s, e)
        else:
            post_batch(s, batch, mode)
        mode = rng.choice(["single", "single", "array", "jsonl"])
        size = 1 if mode == "single" else rng.randint(2, 9)

    def add(line: str) -> None:
        e = expect(s, line)
        if line.strip() and not line.lstrip().startswith("#") and (
                line.splitlines() == [line]):
            pending.append(e)
            if len(pending) >= size:
                flush()
            return
        # blank or a "#" comment (a JSON Lines body skips both) or broken by line
        # separators: alone
        flush()
        if not line.strip():
            post_single(s, e)
        elif _decodes(line):
            post_array_of_one(s, e)
        else:
            s.count("not posted")  # a parse error: nothing changes on either side

    for line in gen.setup(ch):
        add(line)
    for _ in range(STEPS):
        for line, _bad in gen.make(gen.next_kind(ch), ch):
            add(line)
        if s.accepted and rng.random() < REPOST:
            add(rng.choice(s.accepted))
    flush()


def post_array_of_one(s: Session, e: Expect) -> None:
    """A one-element JSON array (its line has line breaks a JSON Lines body would split)."""
    r = s.http.post("/v1/events", content=("[" + e.line + "]").encode())
    _check_body(r)
    assert r.status_code == 200, r.text[:2000]
    _same(r.json()["results"][0], e, "array of one")


def _wait_ready(srv: ServerProcess, timeout: float = 120.0) -> None:
    """Poll ``/readyz`` over one connection pool (``ServerProcess.wait_ready`` builds an
    httpx client, TLS context and all, per poll: half a CPU second each, taken from the
    six servers starting at once), then let it confirm (or raise with the log)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as c:
        while time.monotonic() < deadline and srv.proc is not None and (
                srv.proc.poll() is None):
            try:
                if c.get(srv.url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    srv.wait_ready(timeout=max(1.0, deadline - time.monotonic()))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, tuple[ServerProcess, str]]]:
    """A server per preset, all started at once (their start-ups overlap)."""
    out: dict[str, tuple[ServerProcess, str]] = {}
    try:
        for preset in PRESETS:
            tmp = tmp_path_factory.mktemp(f"fuzz-{preset}")
            db = f"sqlite:///{tmp / 'fuzz.db'}"
            keys = make_keys(db)
            srv = ServerProcess(db, tmp, venue=preset)
            srv.start(wait=False)
            out[preset] = (srv, keys["govern"])
        yield out
    finally:
        for srv, _ in out.values():
            srv.stop()


@pytest.mark.parametrize("preset", PRESETS)
def test_fuzzed_events_over_http_answer_as_the_engine(
        servers: dict[str, tuple[ServerProcess, str]], preset: str) -> None:
    srv, key = servers[preset]
    _wait_ready(srv)
    harness = Harness(preset)
    # the engine as the service builds it: the venue by name, the deribit_pm grid
    harness.engine = Engine(load_venue(preset), pm_grid=load_grid("deribit_pm"))
    rng = random.Random(f"http-fuzz/{preset}")
    with httpx.Client(base_url=srv.url, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as http:
        s = Session(srv, key, harness, http, rng=random.Random(f"http-sample/{preset}"))
        assert s.state()["state_hash"] == harness.engine.state_hash()
        for k in range(SEQUENCES):
            run_sequence(s, preset, k, rng)
            st = s.state()
            assert st["state_hash"] == harness.engine.state_hash(), f"after sequence {k}"
            assert st["seq"] == len(s.logged), (st["seq"], len(s.logged))
    log_text = Path(srv.log_path).read_text(errors="replace")
    assert "Traceback" not in log_text and "internal error" not in log_text, log_text[-4000:]
    # the run reached what it is for: all answers, and every way of posting
    c = s.counts
    assert c.get("accepted", 0) > 50 and c.get("rejected", 0) + c.get("parse error", 0) > 3, c
    assert all(c.get(f"posts {m}", 0) > 0 for m in ("single", "array", "jsonl")), c
    assert c.get("state checks", 0) > 0, c
    print(f"{preset}: {json.dumps(dict(sorted(c.items())))}")
