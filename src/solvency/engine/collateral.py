"""Collateral valued by rule: oracle reports of a collateral asset's sources -> its USD
price -> the holders re-margined, margin calls and liquidations.

An asset with a ``valuation`` (venue file, ``assets.X.valuation``) takes its USD price
from weighted sources (:func:`~solvency.core.oracle.collateral.collateral_price`): its
own spot book and external indices report through ``oracle`` events naming the asset and
the source (``{"type": "oracle", "asset": "WBETH", "source": "book", "price": "430",
"ts": ...}``), redemption sources multiply a rate by the underlying asset's USD price
(which moves with that asset's market, so an ETH mark revalues wBETH too). A new price
re-margins the accounts holding the asset in one kernel call over their rows
(:meth:`~solvency.engine.state.Book.aggregate`), then margin calls and liquidations as
any mark does (``marks.revalue_collateral``).

Venues without a valuation rule never reach this module: their state and its hash are
as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from solvency.core.model.assets import CollateralValuation
from solvency.core.oracle import OracleReport
from solvency.core.oracle.collateral import collateral_price
from solvency.engine.state import Book

__all__ = ["CollateralValuer"]


class CollateralValuer:
    """The valuation rules of a venue's collateral assets and their sources' last reports."""

    def __init__(self, book: Book) -> None:
        self.book = book
        venue = book.venue
        self.rules: dict[int, CollateralValuation] = {}
        for a, sym in enumerate(book.asset_names):
            rule = venue.assets[sym].valuation
            if rule is not None:
                self.rules[a] = rule
        # asset -> source name -> (last reported value, its ts_ms)
        self.reports: dict[int, dict[str, tuple[Decimal, int]]] = {a: {} for a in self.rules}
        # underlying asset -> the valued assets whose redemption sources read it
        self.dependents: dict[int, list[int]] = {}
        for a, rule in sorted(self.rules.items()):
            for src in rule.sources:
                if src.underlying is not None:
                    u = book.asset_index[src.underlying]
                    if a not in self.dependents.setdefault(u, []):
                        self.dependents[u].append(a)

        # assets whose rule drops stale sources: time passing may move their price
        self.stale_rules = [a for a, rule in sorted(self.rules.items())
                            if rule.stale_ms is not None]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def refusal(self, a: int, ev: OracleReport) -> tuple[str, str] | None:
        """Why the rule cannot take a report (reason, detail), or None."""
        sym = self.book.asset_names[a]
        src = self.rules[a].source(ev.source)
        if src is None:
            return ("unknown_source", f"asset {sym} is valued from sources "
                                      f"{[s.source for s in self.rules[a].sources]}, not "
                                      f"{ev.source!r}")
        if not ev.price.is_finite() or ev.price <= 0:
            return "invalid_price", f"price {ev.price} of {sym} from {ev.source}"
        last = self.reports[a].get(ev.source)
        if last is not None and ev.ts_ms < last[1]:
            return ("out_of_order", f"ts {ev.ts_ms} is before {sym}'s last report from "
                                    f"{ev.source} ({last[1]})")
        return None

    def record(self, a: int, ev: OracleReport) -> None:
        """Keep a checked report as its source's last value."""
        self.reports[a][ev.source] = (ev.price, ev.ts_ms)

    def usd_exact(self, a: int) -> Decimal | None:
        """Exact USD price of asset ``a`` (:meth:`Book.usd_price_exact`)."""
        return self.book.usd_price_exact(a)

    def revalue(self, assets: list[int], now_ms: int | None) -> list[int]:
        """Price ``assets`` by their rules; return those whose price changed."""
        book = self.book
        moved: list[int] = []
        todo = list(assets)
        while todo:
            a = todo.pop(0)
            rule = self.rules[a]
            under: dict[str, Decimal | None] = {
                str(s.underlying): self.usd_exact(book.asset_index[str(s.underlying)])
                for s in rule.sources if s.underlying is not None}
            price = collateral_price(rule, self.reports[a], under, now_ms=now_ms)
            if price is None or price == book.asset_price_exact[a]:
                continue
            book.asset_price_exact[a] = price
            book.asset_price[a] = float(price)
            moved.append(a)
            # a valued underlying moved: the assets redeemed into it too (one level deep,
            # build_venue refuses chains)
            todo.extend(d for d in self.dependents.get(a, ()) if d not in todo)
        return moved

    def dependents_of(self, assets: list[int]) -> list[int]:
        """Valued assets whose redemption sources read one of ``assets``."""
        out: list[int] = []
        for u in assets:
            out.extend(a for a in self.dependents.get(u, ()) if a not in out)
        return out

    def dump(self) -> dict[str, Any]:
        """Prices and last reports by asset name (exact decimals as text)."""
        book = self.book
        return {book.asset_names[a]: {
            "price": (None if book.asset_price_exact[a] is None
                      else str(book.asset_price_exact[a])),
            "reports": {k: [str(p), t] for k, (p, t) in sorted(self.reports[a].items())}}
            for a in sorted(self.rules)}

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore what :meth:`dump` saved."""
        book = self.book
        for sym, entry in data.items():
            a = book.asset_index[sym]
            self.reports[a] = {k: (Decimal(p), int(t)) for k, (p, t) in
                               entry["reports"].items()}
            if entry["price"] is not None:
                book.asset_price_exact[a] = Decimal(entry["price"])
                book.asset_price[a] = float(book.asset_price_exact[a])  # type: ignore[arg-type]
