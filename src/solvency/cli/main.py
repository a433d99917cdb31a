"""The ``solvency`` command."""

from __future__ import annotations

import typer

from solvency.cli.backtest import backtest
from solvency.cli.calibrate import calibrate_command
from solvency.cli.core_commands import margin, rebalance, replay, venues
from solvency.cli.data import data_app
from solvency.cli.fund_target import fund_target_command
from solvency.cli.greeks import greeks
from solvency.cli.proofs import prove, risk_report_command, verify_proof_command
from solvency.cli.serve import follow, keys_app, serve
from solvency.cli.shard import shard_app
from solvency.cli.simulate import simulate
from solvency.cli.sweep import sweep
from solvency.cli.train_margin import train_margin

app = typer.Typer(
    name="solvency",
    help="Risk engine and stress lab for crypto derivatives venues.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# --- command registrations (one line per command module) ---
app.command("margin")(margin)
app.command("rebalance")(rebalance)
app.command("replay")(replay)
app.command("venues")(venues)
app.command("backtest")(backtest)
app.add_typer(data_app, name="data")
app.command("greeks")(greeks)
app.command("simulate")(simulate)
app.command("sweep")(sweep)
app.command("serve")(serve)
app.command("follow")(follow)
app.add_typer(shard_app, name="shard")
app.command("prove")(prove)
app.command("verify-proof")(verify_proof_command)
app.command("risk-report")(risk_report_command)
app.add_typer(keys_app, name="keys")
app.command("train-margin")(train_margin)
app.command("fund-target")(fund_target_command)
app.command("calibrate")(calibrate_command)
# --- end of command registrations ---


def main() -> None:
    """Entry point of the ``solvency`` console script."""
    app()
