"""Proof-of-liabilities files: the published root and one inclusion proof per account,
built from an engine's exact state (``solvency prove``, the service's ``/v1/proofs``).

The tree itself is :mod:`solvency.core.proofs`; this module chooses what goes in it
(:func:`solvency.engine.summary.liabilities`), adds what the root publishes beside it
(sequence number, state hash, the engine's clock, accounts in negative equity, the reserve
ratio per asset when reserves are declared) and writes the files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote

from solvency.core.model.venue import ConfigError
from solvency.core.proofs import SumTree, audit, build_tree
from solvency.core.units import format_quanta
from solvency.engine.engine import Engine
from solvency.engine.summary import liabilities

__all__ = [
    "Liabilities",
    "ProofSet",
    "build_proofs",
    "load_reserves",
    "proof_filename",
    "proofs_from",
    "take_liabilities",
    "write_proofs",
]


@dataclass(frozen=True, slots=True)
class ProofSet:
    """A tree over an engine's liabilities and the root document that publishes it."""

    tree: SumTree
    root: dict[str, Any]


def load_reserves(path: Path) -> dict[str, Decimal]:
    """Declared holdings per asset: a JSON object ``{"BTC": "1234.5", ...}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: an object of asset -> amount")
    out: dict[str, Decimal] = {}
    for asset, amount in data.items():
        try:
            value = Decimal(str(amount))
        except InvalidOperation:
            raise ConfigError(f"{path}: {asset}: {amount!r} is not a number") from None
        if not value.is_finite() or value < 0:
            raise ConfigError(f"{path}: {asset}: {amount!r} must be a finite amount >= 0")
        out[str(asset)] = value
    return out


@dataclass(frozen=True, slots=True)
class Liabilities:
    """What an engine owes, taken at one sequence number (cheap to take on the service's
    writer thread; the tree is built from it elsewhere)."""

    owed: dict[str, Any]  # engine.summary.liabilities
    seq: int
    state_hash: str
    clock_ms: int | None
    venue: str
    decimals: dict[str, int]


def take_liabilities(engine: Engine, seq: int) -> Liabilities:
    """:class:`Liabilities` of ``engine`` now."""
    owed = liabilities(engine)
    return Liabilities(owed, seq, engine.state_hash(), engine.clock_ms, engine.venue.name,
                       {a: engine.venue.assets[a].decimals for a in owed["assets"]})


def build_proofs(engine: Engine, *, seq: int, seed: bytes,
                 reserves: Mapping[str, Decimal] | None = None) -> ProofSet:
    """The tree over what ``engine`` owes every account, audited (no account left out,
    none misstated), and its root document."""
    return proofs_from(take_liabilities(engine, seq), seed=seed, reserves=reserves)


def proofs_from(taken: Liabilities, *, seed: bytes,
                reserves: Mapping[str, Decimal] | None = None) -> ProofSet:
    """:func:`build_proofs` from liabilities already taken."""
    owed = taken.owed
    if not owed["accounts"]:
        raise ConfigError("no accounts: nothing to prove")
    assets: list[str] = owed["assets"]
    tree = build_tree(owed["accounts"], owed["owed"], assets, seed)
    audit(tree, {a: owed["owed"][i].tolist() for i, a in enumerate(owed["accounts"])})
    decimals = taken.decimals
    root = tree.root_json(decimals)
    root["totals_display"] = {a: format_quanta(t, decimals[a])
                              for a, t in zip(assets, tree.totals, strict=True)}
    clock = taken.clock_ms
    root.update(
        venue=taken.venue, seq=taken.seq, state_hash=taken.state_hash,
        as_of=(datetime.fromtimestamp(clock / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
               if clock is not None else None),
        negative_equity={"accounts": len(owed["negative"]), "shortfall": owed["negative"]},
    )
    if reserves is not None:
        unknown = sorted(set(reserves) - set(assets))
        if unknown:
            raise ConfigError(f"reserves: unknown asset {unknown[0]!r}; the venue's assets: "
                              f"{', '.join(assets)}")
        ratio = {}
        for a, t in zip(assets, tree.totals, strict=True):
            held = reserves.get(a, Decimal(0))
            owed_amount = Decimal(t).scaleb(-decimals[a])
            ratio[a] = (f"{held / owed_amount:.6f}" if owed_amount > 0 else
                        ("inf" if held > 0 else "n/a"))
        root["reserves"] = {a: str(v) for a, v in sorted(reserves.items())}
        root["reserve_ratio"] = ratio
    return ProofSet(tree, root)


def proof_filename(account: str) -> str:
    """A file name for an account's proof (percent-encoded where a name needs it)."""
    return quote(account, safe="") + ".json"


def write_proofs(proofs: ProofSet, out: Path) -> int:
    """``out/root.json`` and ``out/proofs/<account>.json``; returns the number of proofs."""
    (out / "proofs").mkdir(parents=True, exist_ok=True)
    (out / "root.json").write_text(json.dumps(proofs.root, indent=2) + "\n",
                                   encoding="utf-8")
    tree = proofs.tree
    for i, account in enumerate(tree.accounts):
        (out / "proofs" / proof_filename(account)).write_text(
            json.dumps(tree.proof(i), separators=(",", ":")) + "\n", encoding="utf-8")
    return len(tree.accounts)
