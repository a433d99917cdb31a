"""``solvency calibrate``: a crash window's scenario from its data and sourced numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from solvency.sim.calibrate import CalibrationError, calibrate_file

__all__ = ["calibrate_command"]

err = Console(stderr=True, soft_wrap=True)


def calibrate_command(
    inputs: Annotated[Path, typer.Argument(help="calibration inputs file "
                                           "(scenarios/calibration/*.toml)")],
    out: Annotated[Path | None, typer.Option("--out", help="write the scenario here "
                                             "(default: print it)")] = None,
    check: Annotated[bool, typer.Option("--check", help="exit 1 if --out differs from what "
                                        "the method writes (nothing is written)")] = False,
) -> None:
    """Write a replay scenario whose every value is sourced or derived from the window's
    data by one method (docs/stress_lab.md, "Calibrated crash windows")."""
    try:
        text = calibrate_file(inputs).text
    except CalibrationError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    if out is None:
        typer.echo(text, nl=False)
        return
    if check:
        same = out.is_file() and out.read_text(encoding="utf-8") == text
        if not same:
            err.print(f"{out}: differs from `solvency calibrate {inputs}`", markup=False)
            raise typer.Exit(1)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(f"error: {out}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(2) from None
    err.print(f"wrote {out}", markup=False)
