"""``solvency prove`` (publish a proof of liabilities), ``solvency verify-proof`` (check one
account's proof against a published root) and ``solvency risk-report`` (the standard
risk report). docs/proofs.md and docs/risk_report.md say what they show."""

from __future__ import annotations

import json
import os
import secrets
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from solvency.adapters.eventlog import LineError, load_venue, read_events
from solvency.adapters.grids import load_grid
from solvency.adapters.proofs import build_proofs, load_reserves, write_proofs
from solvency.adapters.store import StoreError
from solvency.core.model.venue import ConfigError
from solvency.core.proofs import ProofError, verify_proof
from solvency.core.units import format_quanta
from solvency.engine.engine import Engine, EngineError

__all__ = ["prove", "risk_report_command", "verify_proof_command"]

console = Console()
err = Console(stderr=True)


_PM_GRID_HELP = ("Scenario grid of portfolio-mode accounts, as the state was run with "
                 "(replay/serve --pm-grid): a shipped grid (deribit_pm, cme_span_16, "
                 "paradex_pm) or a grid TOML file (docs/schema/grid-v1.json); default "
                 "deribit_pm for an event file, the store's own with --db.")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _engine_from_events(path: Path, venue: str, pm_grid: str | None
                        ) -> tuple[Engine, int]:
    engine = Engine(load_venue(venue), pm_grid=load_grid(pm_grid or "deribit_pm"))
    try:
        for item in read_events(path):
            if not isinstance(item, LineError):
                engine.apply(item)
    except UnicodeDecodeError as exc:
        raise _fail(f"{path}: not UTF-8 text ({exc.reason})") from None
    return engine, engine.counts["applied"]


def _engine_from_db(db: str, pm_grid: str | None) -> tuple[Engine, int]:
    from solvency.service.core import RecoveryError, RiskService, ServiceConfig

    svc = RiskService(ServiceConfig(db=db, pm_grid=pm_grid))
    try:
        svc.recover()
    except RecoveryError as exc:
        raise _fail(f"{db}: {exc}") from None
    finally:
        svc.store.close()
    return svc.engine, svc.seq


def _engine(events: Path | None, db: str | None, venue: str,
            pm_grid: str | None) -> tuple[Engine, int]:
    """The state to prove or report on: a service's store, an event file replayed, or
    the bundled demo; and its sequence number."""
    if events is not None and db is not None:
        raise _fail("give an event file or --db, not both")
    if db is not None:
        return _engine_from_db(db, pm_grid)
    if events is None:
        src = resources.files("solvency.data").joinpath("demo_events.jsonl")
        with resources.as_file(src) as p:
            return _engine_from_events(Path(p), venue, pm_grid)
    if not events.exists():
        raise _fail(f"{events}: no such file")
    return _engine_from_events(events, venue, pm_grid)


def _seed(path: Path | None) -> bytes:
    if path is None:
        err.print("note: a random salt seed (pass --seed-file to keep it: the same state "
                  "and seed give the same root)")
        return secrets.token_bytes(32)
    if path.exists():
        data = path.read_bytes()
        if len(data) < 16:
            raise _fail(f"{path}: a seed of {len(data)} bytes; at least 16")
        return data[:64]
    data = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    err.print(f"note: a new salt seed in {path} (keep it secret)")
    return data


def prove(
    events: Annotated[Path | None, typer.Argument(
        help="Event file (JSON Lines) to replay; default the bundled demo (or --db).")] = None,
    db: Annotated[str | None, typer.Option(
        help="Prove the state of a service's store instead (sqlite:///... or "
             "postgresql+psycopg://...).")] = None,
    venue: Annotated[str, typer.Option(help="Venue preset or file (with EVENTS).")
    ] = "binance",
    out: Annotated[Path, typer.Option(help="Output folder: root.json and proofs/.")
    ] = Path("proofs"),
    reserves: Annotated[Path | None, typer.Option(
        help="Declared holdings per asset (JSON object): adds the reserve ratio.")] = None,
    seed_file: Annotated[Path | None, typer.Option(
        help="Secret salt seed (created if missing): the same state and seed give the "
             "same root.")] = None,
    pm_grid: Annotated[str | None, typer.Option(help=_PM_GRID_HELP)] = None,
) -> None:
    """Publish a proof of liabilities: a Merkle sum tree over what every account is owed
    per asset, its root (DIR/root.json) and one inclusion proof per account
    (DIR/proofs/ACCOUNT.json)."""
    try:
        held = load_reserves(reserves) if reserves is not None else None
        engine, seq = _engine(events, db, venue, pm_grid)
        proofs = build_proofs(engine, seq=seq, seed=_seed(seed_file), reserves=held)
        n = write_proofs(proofs, out)
    except (ConfigError, StoreError, EngineError, ProofError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    root = proofs.root
    typer.echo(f"root {root['root']} over {n:,} accounts at seq {root['seq']} "
               f"(state {root['state_hash'][:16]}); padding {root['padding_leaves']} leaves")
    for asset, total in root["totals_display"].items():
        ratio = root.get("reserve_ratio", {}).get(asset)
        typer.echo(f"  {asset}: liabilities {total}" + (f", reserve ratio {ratio}"
                                                         if ratio else ""))
    neg = root["negative_equity"]["accounts"]
    if neg:
        typer.echo(f"  {neg} accounts in negative equity (listed in root.json, not in the "
                   "tree)")
    typer.echo(f"wrote {out / 'root.json'} and {n:,} proofs in {out / 'proofs'}")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(f"{what} {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"{what} {path}: not JSON ({exc})") from None


def verify_proof_command(
    proof: Annotated[Path, typer.Argument(help="An account's proof (PROOF.json).")],
    root: Annotated[Path, typer.Option("--root", help="The published root.json.")],
) -> None:
    """Check an account's inclusion proof against the published root: OK with the
    account's balances, or the exact failure (exit 1)."""
    p = _read_json(proof, "proof")
    r = _read_json(root, "root")
    if not isinstance(p, dict) or not isinstance(r, dict):
        raise _fail("a proof and a root are JSON objects")
    try:
        balances = verify_proof(p, r)
    except ProofError as exc:
        err.print(f"[bold red]FAILED[/] ({exc.reason}): {exc.detail}")
        raise typer.Exit(1) from None
    units = r.get("units")
    shown = []
    for asset, q in balances.items():
        d = units.get(asset) if isinstance(units, dict) else None
        shown.append(f"{asset} {format_quanta(q, d)}" if isinstance(d, int) else
                     f"{asset} {q} quanta")
    typer.echo(f"OK: {p.get('account')} is in the tree of root {r.get('root')} "
               f"(seq {r.get('seq')}) with {', '.join(shown)}")


def risk_report_command(
    events: Annotated[Path | None, typer.Argument(
        help="Event file (JSON Lines) to replay; default the bundled demo (or --db).")] = None,
    db: Annotated[str | None, typer.Option(help="Report on a service's store instead.")
    ] = None,
    venue: Annotated[str, typer.Option(help="Venue preset or file (with EVENTS).")
    ] = "binance",
    sweep: Annotated[Path | None, typer.Option(
        help="A `solvency sweep --out` folder: adds bad-debt VaR99 and ES99 over its "
             "runs.")] = None,
    stress_asset: Annotated[str, typer.Option(
        help="Asset of --sweep's bad debt: its VaR99 and ES99 are compared with the "
             "insurance fund's balance in it (fund coverage).")] = "USDT",
    proofs: Annotated[Path | None, typer.Option(
        help="A `solvency prove --out` folder of the same state: adds its root.")] = None,
    out: Annotated[Path, typer.Option(help="Where to write the report (JSON).")
    ] = Path("risk-report.json"),
    pm_grid: Annotated[str | None, typer.Option(help=_PM_GRID_HELP)] = None,
) -> None:
    """Write the standard risk report (docs/schema/risk-report-v1.json): open interest and
    long/short split per market, leverage distribution, insurance fund and coverage,
    liquidations at risk at -30..+30 %, bad-debt VaR99/ES99 from a sweep, ADL exposure by
    rank, breakers, the proof-of-liabilities root."""
    from solvency.adapters.risk_report import bad_debt_from_sweep, risk_report

    try:
        engine, seq = _engine(events, db, venue, pm_grid)
        bad_debt = bad_debt_from_sweep(sweep) if sweep is not None else None
        root = None
        if proofs is not None:
            root = _read_json(proofs / "root.json", "proof root")
            if not isinstance(root, dict) or root.get("state_hash") != engine.state_hash():
                raise _fail(f"{proofs / 'root.json'} is not a proof of this state (its "
                            "state_hash differs)")
        report = risk_report(engine, seq, bad_debt=bad_debt, proof_root=root,
                             stress_asset=stress_asset)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except (ConfigError, StoreError, EngineError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"risk report at seq {seq} ({report['accounts']:,} accounts, "
               f"{len(report['markets'])} markets) written to {out}")
    for row in report["liquidations_at_risk"]:
        typer.echo(f"  {row['shock']:>5}: {row['accounts']:,} accounts liquidatable, "
                   f"notional {row['notional_usd']} USD, shortfall {row['shortfall_usd']}")
