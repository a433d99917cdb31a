"""The 2025-10-10 depeg under Binance's collateral rule of that day and of 2025-10-14.

Runs ``scenarios/contagion_2025_10_10.toml`` (its four venues, its links and the depeg of
USDe, wBETH and BNSOL on Binance's own books) twice, everything identical but the
Binance venue's preset: ``binance-2025-10-10`` (wBETH 20 % and BNSOL 30 % from the own
book) and ``binance-2025-10-14`` (0 %: redemption rate x the underlying's index; USDe
from its own book under both). Prints per rule and venue the liquidations, liquidated
notional, accounts liquidated, ADL and bad debt, then on Binance the accounts
liquidated by their collateral asset and what the 2025-10-10 rule cost the accounts
(their equity at the end under the 2025-10-14 rule less under the 2025-10-10 rule, in
USD at the end's prices), scaled to Binance's whole BTC + ETH open interest beside the
reported ~$283 M compensation (docs/contagion.md, "The depeg in the 2025-10-10
scenario")::

    .venv/bin/python scripts/depeg_rule.py \\
        --start 2025-10-10T18:00:00Z --end 2025-10-11T02:00:00Z [--json]

(about 4 minutes wall on a loaded 2-core VM; ``--accounts 10000``: about 1 minute).
``--accounts`` sets Binance's population (the other venues keep their shares of it) and
keeps the scenario's open interest (fewer, larger accounts); ``--start``/``--end`` cut
the replay's window. The liquidity and traders links of the scenario are on
(``--links none`` switches them off); the leave-one-out and single-venue runs of
``solvency simulate`` are not made.

"Liquidated" is the run's flag (``who_was_hit``, as ``accounts_liquidated``): an account
the venue closed wholly by ADL after its margin call, with no liquidation event at a
price, is not flagged; the USD figures (equity at the end) count it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from solvency.core.margin.kernels import OUT_EQUITY  # noqa: E402
from solvency.engine.engine import Engine  # noqa: E402
from solvency.sim.contagion import parse_links, run_linked  # noqa: E402
from solvency.sim.population import generate_population  # noqa: E402
from solvency.sim.run import RunResult, build_paths  # noqa: E402
from solvency.sim.scenario import Scenario, load_scenario  # noqa: E402

RULES = ("binance-2025-10-10", "binance-2025-10-14")
FIGURES = ("liquidations", "liquidated_notional", "accounts_liquidated", "adl_notional",
           "bad_debt")
# the scenario's population is 0.15 x Binance's BTC + ETH open interest (28.94 bn USD:
# the scenario file's [population.open_interest_base]); USD figures scale by 1 / 0.15
POPULATION_SHARE = 0.15
COMPENSATION_USD = 283e6  # Binance's reported compensation (docs/contagion.md, sources)


def reduced(scenario: Scenario, accounts: int | None, start: str | None,
            end: str | None) -> Scenario:
    """The scenario with Binance's population of ``accounts`` (the same open interest)
    and the replay cut to ``start``-``end``; the start price of a valued collateral
    given in ``collateral_prices`` is its book path's price at the new start."""
    out = scenario
    if accounts is not None:
        out = replace(out, population=replace(out.population, n_accounts=accounts))
    if start is not None or end is not None:
        params = {m: {**p, **({"start": start} if start else {}),
                      **({"end": end} if end else {})}
                  for m, p in out.market_params.items()}
        out = replace(out, market_params=params)
    ts0 = int(build_paths(out)[out.markets[0]].ts_ms[0])
    absolute = {p.asset: p.price(ts0) for p in out.collateral_reports if not p.relative}
    venues = []
    for v in out.venues:
        if v.collateral_prices:
            rule_of = v.scenario_of(out).venue(v.run_preset).assets
            starts = dict(v.collateral_prices)
            for path in out.collateral_reports:
                value = path.price(ts0)
                if path.asset not in starts or path.source != "book" or value is None:
                    continue
                rule = rule_of[path.asset].valuation
                if not path.relative:
                    starts[path.asset] = float(value)
                elif rule is not None:  # x rate x the underlying's own path at ts0
                    for src in rule.sources:
                        under = absolute.get(str(src.underlying))
                        if src.kind == "redemption" and src.rate and under is not None:
                            starts[path.asset] = float(value * src.rate * under)
            v = v._replace(collateral_prices=starts)
        venues.append(v)
    return replace(out, venues=tuple(venues))


def with_rule(scenario: Scenario, rule: str) -> Scenario:
    """The scenario with the ``binance`` venue's preset replaced by ``rule``."""
    return replace(scenario, venues=tuple(v._replace(preset=rule) if v.name == "binance"
                                          else v for v in scenario.venues))


def holders(scenario: Scenario, name: str) -> dict[str, str]:
    """Venue ``name``'s accounts -> the collateral asset each posted (the population
    ``venue_steps`` loads: the same spec, venue, first prices, seed and history)."""
    spec = next(v for v in scenario.venues if v.name == name)
    sub = spec.scenario_of(scenario)
    paths = build_paths(sub)
    ts = paths[sub.markets[0]].ts_ms
    step_ms = int(np.median(np.diff(ts))) if ts.shape[0] > 1 else sub.step_ms
    venue = sub.venue(spec.run_preset, step_ms=step_ms)
    pop = generate_population(sub.population, venue,
                              {m: float(paths[m].prices[0][0]) for m in sub.markets},
                              sub.seed_population, history=sub.entry_history(int(ts[0])))
    return {a: pop.collateral_assets[int(k)]
            for a, k in zip(pop.accounts, pop.collateral_asset.tolist(), strict=True)}


def end_equity(engine: Engine) -> dict[str, float]:
    """Each account's equity in USD at the engine's prices (its cross and isolated rows
    summed; ``Book.aggregate``, the engine's own valuation)."""
    book = engine.book
    n = len(book.rows)
    rows = np.flatnonzero(~book.row_system[:n])
    eq = book.aggregate(rows)[:, OUT_EQUITY]
    out: dict[str, float] = {}
    for r, e in zip(rows.tolist(), eq.tolist(), strict=True):
        account = book.rows[r].name.split("/")[0]
        out[account] = out.get(account, 0.0) + e
    return out


def without_depeg(scenario: Scenario) -> Scenario:
    """The scenario without the books' depeg: its ``book`` paths removed (the staking
    tokens' books at their redemption value, USDe at its start price 1), SOL's index
    kept."""
    return replace(scenario, collateral_reports=tuple(
        p for p in scenario.collateral_reports if p.source != "book"))


VARIANTS = (*RULES, "no-depeg")


def compare(scenario: Scenario, links: Sequence[str]) -> dict[str, Any]:
    """Run both rules and the 2025-10-10 rule without the depeg; the figures of each and
    what the 2025-10-10 rule alone did (``rule_alone``: 10-10 less 10-14) and what the
    depeg did under it (``depeg``: 10-10 less no-depeg)."""
    paths = build_paths(scenario)
    kinds = holders(scenario, "binance")
    per_rule: dict[str, Any] = {}
    state: dict[str, tuple[set[str], dict[str, float]]] = {}
    for variant in VARIANTS:
        sc = (with_rule(scenario, variant) if variant in RULES
              else without_depeg(with_rule(scenario, RULES[0])))
        runs = {v.name: (v.scenario_of(sc), v.run_preset) for v in sc.venues}
        engines: dict[str, Engine] = {}
        results, _ = run_linked(sc, runs, links, paths, engines=engines)
        liq = {a for a, flag in _hit(results["binance"]).items() if flag}
        per_rule[variant] = {
            "venues": {n: {f: r.metrics[f] for f in FIGURES} | {
                "conserved": r.metrics["conserved"]} for n, r in results.items()},
            "binance_liquidated_by_collateral": _count(kinds, sorted(liq))}
        state[variant] = (liq, end_equity(engines["binance"]))
    return {"rules": per_rule,
            "rule_alone": difference(per_rule, state, kinds, RULES[0], RULES[1]),
            "depeg": difference(per_rule, state, kinds, RULES[0], "no-depeg")}


def difference(per_rule: Mapping[str, Any],
               state: Mapping[str, tuple[set[str], dict[str, float]]],
               kinds: Mapping[str, str], a: str, b: str) -> dict[str, Any]:
    """What run ``a`` did that run ``b`` did not: each venue's figures (a less b), the
    Binance accounts liquidated in one run only, and what ``a`` cost Binance's accounts
    (their equity at the end in ``b`` less in ``a``, USD), scaled to Binance's whole
    BTC + ETH open interest beside the reported compensation."""
    liq_a, eq_a = state[a]
    liq_b, eq_b = state[b]
    only_a = sorted(liq_a - liq_b)
    only_b = sorted(liq_b - liq_a)
    cost = {k: eq_b.get(k, 0.0) - eq_a.get(k, 0.0) for k in kinds}
    valued = {k for k, v in kinds.items() if v != "USDT"}
    lost = sum(cost[k] for k in only_a)
    holders_lost = sum(cost[k] for k in valued)
    va, vb = per_rule[a]["venues"], per_rule[b]["venues"]
    return {
        "runs": [a, b],
        "venue_figures": {n: {f: va[n][f] - vb[n][f] for f in FIGURES} for n in va},
        "accounts_liquidated_only_in_a": len(only_a),
        "only_in_a_by_collateral": _count(kinds, only_a),
        "accounts_liquidated_only_in_b": len(only_b),
        "only_in_b_by_collateral": _count(kinds, only_b),
        "only_in_a": {k: {"collateral": kinds[k], "usd_lost": cost[k]} for k in only_a},
        "usd_lost_by_accounts_liquidated_only_in_a": lost,
        "usd_lost_by_valued_collateral_holders": holders_lost,
        "usd_lost_by_usdt_accounts": sum(cost[k] for k in kinds if k not in valued),
        "scaled_holders_loss_usd": holders_lost / POPULATION_SHARE,
        "reported_compensation_usd": COMPENSATION_USD,
        "ratio_to_compensation": holders_lost / POPULATION_SHARE / COMPENSATION_USD,
    }


def _hit(result: RunResult) -> dict[str, bool]:
    """Account -> whether any of its rows was liquidated (who_was_hit's rows at the
    start, names in order, with the liquidated flags)."""
    hit = result.series.extra["who_was_hit"]
    names = hit["rows"]
    out: dict[str, bool] = {}
    for r, h in zip(names, hit["liquidated"].tolist(), strict=True):
        a = r.split("/")[0]
        out[a] = out.get(a, False) or bool(h)
    return out


def _count(kinds: Mapping[str, str], accounts: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in accounts:
        out[kinds[a]] = out.get(kinds[a], 0) + 1
    return out


def _print(out: Mapping[str, Any]) -> None:
    for rule, r in out["rules"].items():
        print(f"\n{rule}")
        print(f"{'venue':<12} {'liqs':>6} {'notional M':>11} {'accounts':>8} "
              f"{'ADL M':>8} {'bad debt M':>10}")
        for n, v in r["venues"].items():
            print(f"{n:<12} {v['liquidations']:>6} {v['liquidated_notional'] / 1e6:>11.3f} "
                  f"{v['accounts_liquidated']:>8} {v['adl_notional'] / 1e6:>8.3f} "
                  f"{v['bad_debt'] / 1e6:>10.3f}")
        print("binance accounts liquidated by collateral:",
              r["binance_liquidated_by_collateral"])
    for key, title in (("rule_alone", "the 2025-10-10 rule alone (10-10 less 10-14)"),
                       ("depeg", "the depeg under the 2025-10-10 rule (less no-depeg)")):
        d = out[key]
        print(f"\n{title}:")
        for n, v in d["venue_figures"].items():
            print(f"  {n:<12} liqs {v['liquidations']:+d}, notional "
                  f"{v['liquidated_notional'] / 1e6:+.3f} M, accounts "
                  f"{v['accounts_liquidated']:+d}, ADL {v['adl_notional'] / 1e6:+.3f} M")
        print(f"  binance accounts liquidated only with it: "
              f"{d['accounts_liquidated_only_in_a']} {d['only_in_a_by_collateral']}; "
              f"only without: {d['accounts_liquidated_only_in_b']} "
              f"{d['only_in_b_by_collateral']}")
        print(f"  USD lost by those liquidated only with it: "
              f"{d['usd_lost_by_accounts_liquidated_only_in_a']:,.0f}; by every holder of "
              f"valued collateral: {d['usd_lost_by_valued_collateral_holders']:,.0f}; by "
              f"USDT accounts: {d['usd_lost_by_usdt_accounts']:,.0f}")
        print(f"  holders' loss / {POPULATION_SHARE}: {d['scaled_holders_loss_usd']:,.0f} USD "
              f"against the reported {COMPENSATION_USD:,.0f} "
              f"(ratio {d['ratio_to_compensation']:.4f})")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", nargs="?",
                    default=str(REPO / "scenarios" / "contagion_2025_10_10.toml"))
    ap.add_argument("--accounts", type=int, default=None,
                    help="Binance's accounts (default: the scenario's 50,000)")
    ap.add_argument("--start", default=None, help="replay window start (UTC)")
    ap.add_argument("--end", default=None, help="replay window end (UTC)")
    ap.add_argument("--links", default=None,
                    help="'none' or some of liquidity,traders (default: the scenario's)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    scenario = reduced(load_scenario(args.scenario), args.accounts, args.start, args.end)
    links = scenario.links.active if args.links is None else parse_links(args.links)
    out = compare(scenario, links)
    if args.json:
        print(json.dumps(out, indent=1, sort_keys=True))
    else:
        _print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
