"""Fuzz the engine at scale (issue 13): seeded random event sequences for every preset,
checked after every event, failures shrunk to a minimal event list.

Run: ``python bench/fuzz_engine.py [--sequences N] [--seed S] [--preset NAME ...]
[--steps K] [--out DIR] [--known-defects]``.

The generator and the invariants are those of the hypothesis suite
(``tests/property/fuzz_gen.py``, shared): valid and bad variants of every input event,
fed through the real parser and ``Engine.apply``. Sequence ``i`` of a run uses
``random.Random(f"{preset}/{seed * 1_000_000 + i}")``, so ``--seed S --only I`` replays
it. A failing sequence is classified (a known defect of ``fuzz_gen.KNOWN_DEFECTS``, or
``new``), shrunk by delta debugging (drop chunks of lines, then single lines, while a
violation of the same kind persists) and written as JSON Lines to
``DIR/<preset>-<sequence seed>-<kind>-<class>.jsonl``; the first ``--shrink-max`` of
each kind and class per preset are shrunk, the rest counted. The report prints the
counts of sequences, events, bad events, parse errors and rejections by reason, and what
the run reached (liquidations, ADL, socialized losses, bad debt, breaker trips, expiries,
out-events by type), so a generator that only reaches ``unknown_account`` shows itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.property.fuzz_gen import (  # noqa: E402 - after the path is set
    PRESETS,
    Generator,
    Harness,
    RandomChooser,
    Violation,
    classify,
    reproduce,
)

from machine import describe  # noqa: E402 - bench/ is the script's directory


def run_sequence(preset: str, seq_seed: int, steps: int, stats: Counter[str], *,
                 known_defects: bool = False) -> tuple[list[str], Violation | None]:
    """Generate and check one sequence; return its lines and the violation, if any."""
    ch = RandomChooser(f"{preset}/{seq_seed}")
    h = Harness(preset, stats=stats)
    gen = Generator(preset, lambda: h.engine, known_defects=known_defects)
    try:
        for line in gen.setup(ch):
            h.feed(line)
        for _ in range(steps):
            for line, bad in gen.make(gen.next_kind(ch), ch):
                if bad:
                    stats["bad_events"] += 1
                h.feed(line)
        h.finish()
    except Violation as v:
        return h.lines, v
    return h.lines, None


def ddmin(lines: Sequence[str], fails: Callable[[list[str]], bool]) -> list[str]:
    """Delta debugging: a smaller list for which ``fails`` still holds (1-minimal when the
    loop ends on single lines)."""
    cur = list(lines)
    n = 2
    while len(cur) >= 2:
        chunk = max(1, len(cur) // n)
        reduced = False
        for start in range(0, len(cur), chunk):
            trial = cur[:start] + cur[start + chunk:]
            if trial and fails(trial):
                cur = trial
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(cur), n * 2)
    return cur


def shrink(preset: str, lines: Sequence[str], kind: str) -> list[str]:
    """The failing lines cut down while a violation of the same kind persists."""

    def fails(trial: list[str]) -> bool:
        v = reproduce(preset, trial)
        return v is not None and v.kind == kind

    # cut after the first failing line: nothing later matters for a per-line check
    return ddmin(lines, fails)


REACH = [
    ("liquidation steps", "out:liquidation"), ("ADL", "out:adl"),
    ("socialized losses", "out:socialized_loss"), ("bad debt", "out:bad_debt"),
    ("withdrawal gates", "out:system_state"), ("breaker transitions", "out:breaker"),
    ("margin calls", "out:margin_call"), ("expiries settled", "settled:expiry"),
    ("fundings settled", "settled:funding"), ("params changed", "settled:params"),
    ("marks from the oracle", "out:mark"), ("duplicate ids", "duplicates"),
]


def report(title: str, stats: Counter[str], seconds: float) -> None:
    seqs, events = stats["sequences"], stats["events"]
    parse = sum(v for k, v in stats.items() if k.startswith("parse:"))
    rejected = sum(v for k, v in stats.items() if k.startswith("rejected:"))
    applied = sum(v for k, v in stats.items() if k.startswith("applied:"))
    print(f"== {title}: {seqs:,} sequences, {events:,} events ({events / max(seconds, 1e-9):,.0f}"
          f"/s, {seconds:.0f} s), {stats['bad_events']:,} generated bad, {parse:,} parse "
          f"errors, {rejected:,} rejected, {applied:,} applied, "
          f"{stats['violations']:,} violations")
    print("   reached: " + ", ".join(f"{name} {stats[key]:,}" for name, key in REACH))
    for prefix, label in (("violation:", "violations"), ("applied:", "applied by type"),
                          ("out:", "out-events by type"), ("liquidation_via:", "liquidated via"),
                          ("breaker_to:", "breaker transitions to"),
                          ("rejected:", "rejections by reason"),
                          ("parse:", "parse errors by reason"), ("order:", "orders answered"),
                          ("fill_on:", "fills applied on")):
        items = sorted(((k[len(prefix):], v) for k, v in stats.items() if k.startswith(prefix)),
                       key=lambda kv: (-kv[1], kv[0]))
        if items:
            print(f"   {label}: " + ", ".join(f"{k} {v:,}" for k, v in items))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequences", type=int, default=100_000, help="per preset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", action="append", choices=PRESETS,
                    help="repeat for several (default: all)")
    ap.add_argument("--steps", type=int, default=60, help="generator steps per sequence")
    ap.add_argument("--only", type=int, help="run only sequence I (replay a failure)")
    ap.add_argument("--known-defects", action="store_true",
                    help="also generate the inputs of the known, reported defects")
    ap.add_argument("--out", type=Path, default=Path("fuzz-failures"))
    ap.add_argument("--shrink-max", type=int, default=2,
                    help="failures shrunk per preset and violation kind")
    args = ap.parse_args(argv)
    presets = args.preset or list(PRESETS)
    print(describe(), flush=True)
    total: Counter[str] = Counter()
    t_all = time.perf_counter()
    failed = 0
    for preset in presets:
        stats: Counter[str] = Counter()
        shrunk: Counter[tuple[str, str]] = Counter()
        t0 = time.perf_counter()
        indices = [args.only] if args.only is not None else range(args.sequences)
        for i in indices:
            seq_seed = args.seed * 1_000_000 + i
            stats["sequences"] += 1
            lines, v = run_sequence(preset, seq_seed, args.steps, stats,
                                    known_defects=args.known_defects)
            if v is None:
                continue
            known = classify(v) or "new"
            stats["violations"] += 1
            stats[f"violation:{v.kind} ({known})"] += 1
            failed += 1
            print(f"FAIL {preset} --seed {args.seed} --only {i} (sequence seed {seq_seed}, "
                  f"{known}): {str(v)[:400]}", flush=True)
            if shrunk[(v.kind, known)] >= args.shrink_max:
                continue
            shrunk[(v.kind, known)] += 1
            t1 = time.perf_counter()
            small = shrink(preset, lines, v.kind)
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"{preset}-{seq_seed}-{v.kind}-{known}.jsonl"
            path.write_text("".join(line + "\n" for line in small))
            again = reproduce(preset, small)
            print(f"     shrunk {len(lines)} -> {len(small)} lines in "
                  f"{time.perf_counter() - t1:.1f} s: {path} ({again})", flush=True)
        report(preset, stats, time.perf_counter() - t0)
        total.update(stats)
    if len(presets) > 1:
        report("all presets", total, time.perf_counter() - t_all)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
