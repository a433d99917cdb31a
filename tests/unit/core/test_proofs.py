"""Proof of liabilities (core/proofs.py): a Merkle sum tree whose nodes commit to both
children's hashes and sums (Chalkias, Lewi, Mohassel, Nikolaenko, FC 2020; DAPOL+, Ji &
Chalkias 2021; PSE Summa). Every proof verifies; each attack the literature describes is
caught with its own reason."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvency.core.proofs import (
    ProofError,
    audit,
    build_tree,
    leaf_hash,
    node_hash,
    verify_proof,
    verify_proofs,
)

ASSETS = ["BTC", "USDT"]
SEED = b"venue secret seed"


def small_tree(n: int = 5):
    accounts = [f"a{i}" for i in range(n)]
    bal = np.array([[i * 10, 1000 + i] for i in range(n)], dtype=np.int64)
    return build_tree(accounts, bal, ASSETS, SEED), accounts, bal


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**18), st.integers(0, 10**18)),
                min_size=1, max_size=40))
def test_every_proof_verifies_and_the_totals_are_exact(rows) -> None:
    accounts = [f"acct{i}" for i in range(len(rows))]
    bal = np.array(rows, dtype=np.int64)
    tree = build_tree(accounts, bal, ASSETS, SEED)
    root = tree.root_json()
    assert tree.totals == [sum(r[0] for r in rows), sum(r[1] for r in rows)]
    assert root["accounts"] == len(rows)
    assert root["padding_leaves"] == (1 << max(0, (len(rows) - 1).bit_length())) - len(rows)
    for i, a in enumerate(accounts):
        got = verify_proof(tree.proof(i), root)
        assert got == {"BTC": rows[i][0], "USDT": rows[i][1]}
        assert tree.index_of(a) == i
    verify_proofs([tree.proof(i) for i in range(len(rows))], root)


def test_the_root_by_hand_for_two_leaves() -> None:
    tree, _accounts, _bal = small_tree(2)
    l0 = leaf_hash("a0", tree.salts[0], [0, 1000])
    l1 = leaf_hash("a1", tree.salts[1], [10, 1001])
    assert (tree.node(0, 0), tree.node(0, 1)) == (l0, l1)
    assert tree.root == node_hash(l0, [0, 1000], l1, [10, 1001])
    assert tree.totals == [10, 2001]


def test_the_root_changes_when_any_balance_moves_one_quantum() -> None:
    tree, accounts, bal = small_tree(7)
    for i in range(7):
        for a in range(2):
            b = bal.copy()
            b[i, a] += 1
            assert build_tree(accounts, b, ASSETS, SEED).root != tree.root


def _reason(proof, root) -> str:
    with pytest.raises(ProofError) as exc:
        verify_proof(proof, root)
    return exc.value.reason


def test_each_tampering_has_its_own_message() -> None:
    tree, accounts, bal = small_tree(6)
    root = tree.root_json()
    good = tree.proof(3)
    # a tampered balance (the user's view of their own leaf)
    p = copy.deepcopy(good)
    p["balances"][1] = str(int(p["balances"][1]) - 1)
    assert _reason(p, root) == "leaf_mismatch"
    # a tampered sibling sum: the path no longer adds up to the published totals
    p = copy.deepcopy(good)
    h, sums = p["path"][1].split(":")
    s = sums.split(",")
    s[1] = str(int(s[1]) - 500)
    p["path"][1] = h + ":" + ",".join(s)
    assert _reason(p, root) == "sum_mismatch"
    # a negative sibling sum (hiding liabilities by cancelling)
    p = copy.deepcopy(good)
    p["path"][0] = h + ":" + "-5,0"
    assert _reason(p, root) == "negative_sum"
    # a negative balance in the leaf itself
    p = copy.deepcopy(good)
    p["balances"][0] = "-1"
    assert _reason(p, root) == "negative_balance"
    # a wrong sibling hash with the right sums
    p = copy.deepcopy(good)
    h0, s0 = p["path"][0].split(":")
    p["path"][0] = ("A" if h0[0] != "A" else "B") + h0[1:] + ":" + s0
    assert _reason(p, root) == "root_mismatch"
    # a proof against another root (the venue published another tree)
    other = build_tree(accounts, bal + 1, ASSETS, SEED).root_json()
    assert _reason(good, other) == "another_root"
    # garbage
    p = copy.deepcopy(good)
    p["path"][2] = "not a level"
    assert _reason(p, root) == "malformed"


def test_a_left_out_or_misstated_account_and_shared_leaves_are_caught() -> None:
    tree, accounts, bal = small_tree(4)
    owed = {a: [int(x) for x in bal[i]] for i, a in enumerate(accounts)}
    audit(tree, owed)
    partial = build_tree(accounts[:3], bal[:3], ASSETS, SEED)
    with pytest.raises(ProofError) as exc:
        audit(partial, owed)
    assert exc.value.reason == "left_out" and "a3" in exc.value.detail
    # the left-out account's own proof (from the honest tree) fails against that root
    assert _reason(tree.proof(3), partial.root_json()) == "another_root"
    with pytest.raises(ProofError) as exc:
        audit(tree, {**owed, "a1": [0, 0]})
    assert exc.value.reason == "balance_differs"
    with pytest.raises(ValueError, match="twice"):
        build_tree(["a", "a"], np.zeros((2, 2), dtype=np.int64), ASSETS, SEED)
    # two accounts handed one leaf (the same index): caught across proofs
    p0, p1 = tree.proof(0), copy.deepcopy(tree.proof(0))
    p1["account"] = "a9"
    with pytest.raises(ProofError) as exc:
        verify_proofs([p0, p1], tree.root_json())
    assert exc.value.reason in ("duplicate_leaf", "leaf_mismatch")


def test_negative_liabilities_are_refused_at_build() -> None:
    with pytest.raises(ValueError, match="negative liability"):
        build_tree(["a", "b"], np.array([[1, 2], [-1, 0]], dtype=np.int64), ASSETS, SEED)


def test_a_leaf_reveals_nothing_without_its_salt() -> None:
    tree, _, _ = small_tree(2)
    other_seed = build_tree(["a0", "a1"], np.array([[0, 1000], [10, 1001]]), ASSETS,
                            b"another seed")
    assert other_seed.node(0, 0) != tree.node(0, 0)  # same balances, other salt
    assert other_seed.totals == tree.totals
