"""Exact double-entry ledger: integer quanta, named result codes, always-on conservation.

A transfer moves ``amount`` quanta of one asset from a debit account to a credit account.
Transfers of one event are posted as a batch: all of them or none (TigerBeetle's linked
transfers). Money enters and leaves only through the ``EXTERNAL`` account (deposits and
withdrawals), so for every asset the sum over all other accounts equals deposits minus
withdrawals; :meth:`Ledger.post` checks that after every batch, and :meth:`Ledger.verify`
re-adds every balance from scratch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Final, NamedTuple

from solvency.core.units import MAX_QUANTA

__all__ = [
    "CLEARING",
    "EXTERNAL",
    "FEES",
    "INSURANCE",
    "ROUNDING",
    "ConservationError",
    "Ledger",
    "Result",
    "Transfer",
]

EXTERNAL: Final = "ext:world"
"""Outside the venue: the counterpart of deposits and withdrawals."""
FEES: Final = "sys:fees"
"""Trading fees collected (net of rebates paid)."""
INSURANCE: Final = "sys:insurance"
"""Insurance fund (one balance per settlement asset)."""
ROUNDING: Final = "sys:rounding"
"""Remainders of divisions that do not come out even (always >= 0: rounding never pays)."""
CLEARING: Final = "sys:clearing"
"""Transit account of multi-party settlements (funding, expiry); zero after each event."""

_NON_NEGATIVE: Final = frozenset({INSURANCE, ROUNDING, CLEARING})


class Result(StrEnum):
    """Named outcome of posting a batch (expected rejections are values, not exceptions)."""

    OK = "ok"
    AMOUNT_NOT_POSITIVE = "amount_not_positive"
    AMOUNT_TOO_LARGE = "amount_too_large"
    SAME_ACCOUNT = "same_account"
    EXCEEDS_BALANCE = "exceeds_balance"
    UNKNOWN_ASSET = "unknown_asset"


class ConservationError(RuntimeError):
    """Money was created or destroyed: a broken invariant, the engine must stop."""


class Transfer(NamedTuple):
    """Move ``amount_quanta`` of ``asset`` from ``debit`` to ``credit``.

    A named tuple rather than a frozen dataclass: immutable all the same, and built
    about 4x faster (several are built per fill).
    """

    debit: str
    credit: str
    asset: str
    amount_quanta: int
    code: str = ""


class Ledger:
    """Balances of every ledger account in every asset, as Python ints of quanta."""

    __slots__ = ("_assets", "_balances", "_external_net")

    def __init__(self, assets: Iterable[str]) -> None:
        self._assets = frozenset(assets)
        self._balances: dict[tuple[str, str], int] = {}
        # Deposits minus withdrawals per asset, kept apart from the balances it checks.
        self._external_net: dict[str, int] = dict.fromkeys(self._assets, 0)

    # ------------------------------------------------------------ reads

    def balance(self, account: str, asset: str) -> int:
        """Balance in quanta (0 for an account never touched)."""
        return self._balances.get((account, asset), 0)

    def balances(self) -> Mapping[tuple[str, str], int]:
        """All non-zero balances (read-only view)."""
        return self._balances

    def net_external(self, asset: str) -> int:
        """Deposits minus withdrawals of ``asset`` so far."""
        return self._external_net[asset]

    @property
    def assets(self) -> frozenset[str]:
        """Assets this ledger holds."""
        return self._assets

    def totals(self) -> dict[str, int]:
        """Sum over every account except ``EXTERNAL``, per asset (from scratch)."""
        out = dict.fromkeys(sorted(self._assets), 0)
        for (account, asset), amount in self._balances.items():
            if account != EXTERNAL:
                out[asset] += amount
        return out

    # ------------------------------------------------------------ writes

    def check(self, batch: Sequence[Transfer]) -> Result:
        """Validate a batch without applying it."""
        pending: dict[tuple[str, str], int] | None = None
        assets = self._assets
        for t in batch:
            if t.asset not in assets:
                return Result.UNKNOWN_ASSET
            if t.amount_quanta <= 0:
                return Result.AMOUNT_NOT_POSITIVE
            if t.amount_quanta > MAX_QUANTA:
                return Result.AMOUNT_TOO_LARGE
            if t.debit == t.credit:
                return Result.SAME_ACCOUNT
            # only accounts that must stay non-negative need the running balance
            for acct, sign in ((t.debit, -1), (t.credit, 1)):
                if acct in _NON_NEGATIVE:
                    if pending is None:
                        pending = {}
                    key = (acct, t.asset)
                    pending[key] = pending.get(key, 0) + sign * t.amount_quanta
        if pending:
            for key, delta in pending.items():
                if self._balances.get(key, 0) + delta < 0:
                    return Result.EXCEEDS_BALANCE
        return Result.OK

    def post(self, batch: Sequence[Transfer]) -> Result:
        """Apply a batch atomically; return a named result, never a partial post.

        One pass: each transfer is checked and applied, and the non-negative accounts
        are checked at the end; any failure undoes what was applied (rare), so the
        common case costs one loop (this runs on every fill).
        Raises :class:`ConservationError` if, after posting, any asset's internal total
        differs from deposits minus withdrawals (impossible unless this code is wrong).
        """
        bal = self._balances
        assets = self._assets
        moved: dict[str, int] | None = None
        guarded: list[tuple[str, str]] | None = None
        done = 0
        result = Result.OK
        for debit, credit, asset, amount, _code in batch:
            if asset not in assets:
                result = Result.UNKNOWN_ASSET
                break
            if amount <= 0:
                result = Result.AMOUNT_NOT_POSITIVE
                break
            if amount > MAX_QUANTA:
                result = Result.AMOUNT_TOO_LARGE
                break
            if debit == credit:
                result = Result.SAME_ACCOUNT
                break
            # _move, inlined: this loop runs for every transfer of every fill
            key = (debit, asset)
            v = bal.get(key, 0) - amount
            if v:
                bal[key] = v
            else:
                del bal[key]
            key = (credit, asset)
            v = bal.get(key, 0) + amount
            if v:
                bal[key] = v
            else:
                del bal[key]
            done += 1
            if debit in _NON_NEGATIVE:
                if guarded is None:
                    guarded = []
                guarded.append((debit, asset))
            if EXTERNAL in (debit, credit):
                if moved is None:
                    moved = {}
                sign = 1 if debit == EXTERNAL else -1
                moved[asset] = moved.get(asset, 0) + sign * amount
        if result is Result.OK and guarded is not None and any(
                bal.get(key, 0) < 0 for key in guarded):
            result = Result.EXCEEDS_BALANCE
        if result is not Result.OK:
            for t in reversed(batch[:done]):  # undo: nothing of a refused batch remains
                _move(bal, t.credit, t.debit, t.asset, t.amount_quanta)
            return result
        if moved is None:
            return Result.OK
        for asset, delta in moved.items():
            self._external_net[asset] += delta
            if self._external_net[asset] != -bal.get((EXTERNAL, asset), 0):
                raise ConservationError(f"{asset}: external flows and balances disagree")
        return Result.OK

    def verify(self) -> dict[str, int]:
        """Re-add every balance; raise :class:`ConservationError` on any mismatch."""
        totals = self.totals()
        for asset, total in totals.items():
            if total != self._external_net[asset]:
                raise ConservationError(
                    f"{asset}: ledger total {total} != deposits - withdrawals "
                    f"{self._external_net[asset]}"
                )
        for key in _NON_NEGATIVE:
            for asset in self._assets:
                if self.balance(key, asset) < 0:
                    raise ConservationError(f"{key} {asset} is negative")
        return totals

    # ------------------------------------------------------------ persistence

    def dump(self) -> dict[str, object]:
        """Exact state as JSON-able data (sorted, so hashes are stable)."""
        return {
            "balances": [[a, s, str(v)] for (a, s), v in sorted(self._balances.items())],
            "external_net": {k: str(v) for k, v in sorted(self._external_net.items())},
        }

    @classmethod
    def load(cls, assets: Iterable[str], data: Mapping[str, object]) -> Ledger:
        """Rebuild a ledger from :meth:`dump` output."""
        ledger = cls(assets)
        rows = data["balances"]
        assert isinstance(rows, list)
        for account, asset, value in rows:
            ledger._balances[(str(account), str(asset))] = int(value)
        ext = data["external_net"]
        assert isinstance(ext, dict)
        for asset, value in ext.items():
            ledger._external_net[str(asset)] = int(value)
        ledger.verify()
        return ledger


def _move(bal: dict[tuple[str, str], int], debit: str, credit: str, asset: str,
          amount: int) -> None:
    dkey = (debit, asset)
    ckey = (credit, asset)
    v = bal.get(dkey, 0) - amount
    if v:
        bal[dkey] = v
    else:
        del bal[dkey]
    v = bal.get(ckey, 0) + amount
    if v:
        bal[ckey] = v
    else:
        del bal[ckey]
