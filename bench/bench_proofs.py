"""Proof of liabilities at scale (issue 18). Run: ``python bench/bench_proofs.py
[--accounts N]``.

Builds the Merkle sum tree (core/proofs.py) over ``--accounts`` accounts x 3 assets
(default 1,000,000; balances drawn log-normally around $20k BTC, $500 ETH and $1k USDT,
in quanta) and prints: the build time (target <= 5 s), a proof's size as JSON (target
<= 2 KB), its verification time (target <= 1 ms), and the tree's hashing rate beside
hashlib's raw SHA-256 rate over messages of the same size, measured in the same run (the
ceiling for a tree built with one SHA-256 per node).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np

from machine import describe
from solvency.core.proofs import build_tree, verify_proof


def main() -> None:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.accounts
    rng = np.random.default_rng(18)
    bal = rng.lognormal(np.log([2e4 / 1e5 * 1e8, 5e2 / 3e3 * 1e9, 1e3 * 1e6]), 2.0,
                        (n, 3)).astype(np.int64)
    accounts = [f"acct{i:08d}" for i in range(n)]
    t0 = time.perf_counter()
    tree = build_tree(accounts, bal, ["BTC", "ETH", "USDT"], b"bench seed")
    build = time.perf_counter() - t0
    nodes = sum(len(level) for level in tree.levels)
    root = tree.root_json()
    picks = rng.integers(0, n, 200)
    proofs = [tree.proof(int(i)) for i in picks]
    size = max(len(json.dumps(p, separators=(",", ":"))) for p in proofs)
    t0 = time.perf_counter()
    for p in proofs:
        verify_proof(p, root)
    verify = (time.perf_counter() - t0) / len(proofs)
    # hashlib alone: one SHA-256 per node over a node's message (1 + 2 x (32 + 48) bytes)
    msg = b"N" + bytes(160)
    sha = hashlib.sha256
    t0 = time.perf_counter()
    for _ in range(nodes):
        sha(msg).digest()
    raw = time.perf_counter() - t0
    print(f"tree over {n:,} accounts x 3 assets ({nodes:,} nodes, depth {len(tree.levels) - 1},"
          f" {tree.padding:,} padding leaves): built in {build:.2f} s "
          f"(target <= 5 s: {'met' if build <= 5 else f'missed by {build / 5:.2f}x'})")
    print(f"  hashing rate {nodes / build / 1e6:.2f} M nodes/s; hashlib alone "
          f"{nodes / raw / 1e6:.2f} M hashes/s on node-sized messages -> the tree runs at "
          f"{raw / build:.2f}x the raw hash rate")
    print(f"  largest of 200 proofs: {size:,} bytes (target <= 2,048: "
          f"{'met' if size <= 2048 else 'missed'}); verification {verify * 1e3:.3f} ms "
          f"(target <= 1 ms: {'met' if verify <= 1e-3 else 'missed'})")


if __name__ == "__main__":
    main()
