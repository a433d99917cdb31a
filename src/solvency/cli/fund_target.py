"""``solvency fund-target``: the insurance fund a stress-lab sweep says the venue needs."""

from __future__ import annotations

import csv
import json
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from solvency.adapters.eventlog import load_json_file, load_venue
from solvency.cli.tables import print_table
from solvency.core.fund_target import FundTarget, PathLoss, fund_target
from solvency.core.model.presets import PRESETS, venue_from_data
from solvency.core.model.venue import ConfigError
from solvency.core.units import PPM

__all__ = ["fund_target_command", "read_sweep_losses", "write_policy_venue"]

console = Console()
err = Console(stderr=True, soft_wrap=True)
_CENT = Decimal("0.01")


class SweepFileError(ValueError):
    """A sweep table that cannot be read (the message says where and why)."""


def _dec(path: Path, line: int, row: dict[str, str], key: str) -> Decimal:
    text = row.get(key)
    try:
        if text is None or text == "":
            raise InvalidOperation
        value = Decimal(text)
    except InvalidOperation:
        raise SweepFileError(f"{path}:{line}: {key}: expected a number, got {text!r}"
                             ) from None
    if not value.is_finite():
        raise SweepFileError(f"{path}:{line}: {key}: must be finite")
    return value


def read_sweep_losses(folder: Path, point: int | None) -> tuple[list[PathLoss], set[Decimal]]:
    """Return each path's losses of one point of ``DIR/sweep.csv`` and the fund starts.

    The fund's drawdown is its equity's (``insurance_fund_equity_drawdown``) where the
    table has it, else its cash balance's. ``point`` may be omitted when the sweep has one.
    """
    path = folder / "sweep.csv"
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise SweepFileError(f"{path}: {exc.strerror or exc}") from None
    need = ("point", "bad_debt", "adl_haircut", "adl_overshoot", "insurance_fund_start")
    if not rows or any(k not in rows[0] for k in need):
        raise SweepFileError(f"{path}: expected the columns {', '.join(need)} "
                             "(written by `solvency sweep --out DIR`)")
    dd = ("insurance_fund_equity_drawdown" if "insurance_fund_equity_drawdown" in rows[0]
          else "insurance_fund_drawdown")
    points = sorted({r["point"] for r in rows}, key=lambda p: (len(p), p))
    if point is None and len(points) > 1:
        raise SweepFileError(f"{path}: {len(points)} grid points ({', '.join(points)}): "
                             "choose one with --point")
    want = points[0] if point is None else str(point)
    if want not in points:
        raise SweepFileError(f"{path}: no point {want} (points: {', '.join(points)})")
    losses, starts = [], set()
    for line, row in enumerate(rows, start=2):
        if row["point"] != want:
            continue
        losses.append(PathLoss(
            fund_drawdown=_dec(path, line, row, dd),
            adl_haircut=_dec(path, line, row, "adl_haircut"),
            adl_overshoot=_dec(path, line, row, "adl_overshoot"),
            bad_debt=_dec(path, line, row, "bad_debt")))
        starts.add(_dec(path, line, row, "insurance_fund_start"))
    return losses, starts


def write_policy_venue(path: Path, venue: str, asset: str | None,
                       t: FundTarget) -> dict[str, Any]:
    """Write ``path``: ``venue`` (a preset name, or a venue file's own data) with an
    ``insurance.policy`` that steers the fund to ``t.target``: the fee share steps up
    (a tenth of the range per review) toward the share that rebuilds the shortfall within
    ``t.days`` days (all fees when none does) while the fund is below the target, and
    back down to the venue's share above 110 % of it. Returns the data written."""
    v = load_venue(venue)
    if asset is None:
        settles = sorted({m.settle for m in v.markets.values()})
        if len(settles) != 1:
            raise ValueError(f"--asset: the venue settles in {', '.join(settles)}: "
                             "choose the fund's asset")
        asset = settles[0]
    if asset not in v.assets:
        raise ValueError(f"--asset {asset!r}: not an asset of the venue "
                         f"({', '.join(sorted(v.assets))})")
    if venue in PRESETS:
        data: dict[str, Any] = {"preset": venue}
    else:
        loaded = load_json_file(Path(venue))
        data = dict(loaded) if isinstance(loaded, dict) else {}
    insurance = dict(v.raw.get("insurance") or {})
    current = int(insurance.get("fee_share_ppm", 0))
    quantum = Decimal(1).scaleb(-v.assets[asset].decimals)
    top = PPM if t.share is None else min(
        PPM, int((t.share * PPM).to_integral_value(rounding=ROUND_CEILING)))
    top = max(top, current)
    insurance["fee_share_ppm"] = current
    insurance["policy"] = {
        "target_fund": str(t.target.quantize(quantum, rounding=ROUND_CEILING)),
        "target_asset": asset, "target_ppm": PPM, "release_ppm": PPM + PPM // 10,
        "step_ppm": max(1, (top - current) // 10), "min_share_ppm": current,
        "max_share_ppm": top}
    data["insurance"] = insurance
    venue_from_data(data, source=str(path))  # what is written loads
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return data


def _money(x: Decimal) -> str:
    return f"{x.quantize(_CENT, rounding=ROUND_CEILING):,}"


def _share(t: FundTarget) -> str:
    if t.share is None:
        return "none within the period"
    return f"{(t.share * 100).quantize(Decimal('0.0001'), rounding=ROUND_CEILING)} %"


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(2)


def fund_target_command(
    sweep: Annotated[Path, typer.Option(help="A `solvency sweep --out` folder.")],
    fee_income: Annotated[str, typer.Option(
        help="Trading-fee income per day, in the settlement asset.")],
    point: Annotated[int | None, typer.Option(
        help="Grid point of the sweep (needed when it has several).")] = None,
    fund: Annotated[str | None, typer.Option(
        help="The fund today (default: the sweep's insurance_fund_start).")] = None,
    days: Annotated[str, typer.Option(help="Rebuild the fund within this many days.")] = "30",
    measure: Annotated[str, typer.Option(help="es (expected shortfall) or var.")] = "es",
    confidence: Annotated[str, typer.Option(help="Confidence level.")] = "0.99",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    venue_out: Annotated[Path | None, typer.Option(
        "--venue-out", help="Write a venue file whose fee-share policy steers the fund to "
                            "this target (use it as --venue FILE).")] = None,
    venue: Annotated[str | None, typer.Option(
        help="The venue of --venue-out: a preset or a venue file.")] = None,
    asset: Annotated[str | None, typer.Option(
        help="The fund's asset of --venue-out (default: the venue's one settlement "
             "asset).")] = None,
) -> None:
    """The insurance-fund target (VaR99/ES99 of the fund's need over a stress sweep) and
    the fee share that rebuilds it. With --venue-out, a venue file whose fee-share policy
    reads the target: the engine raises the fund's share of fees while the fund is below
    it (docs/insurance_fund.md)."""
    if (venue_out is None) != (venue is None):
        raise _fail("--venue-out and --venue go together")
    try:
        if measure not in ("es", "var"):
            raise ValueError(f"--measure {measure!r}: expected es or var")
        losses, starts = read_sweep_losses(sweep, point)
        nums = {}
        for name, text in (("--fee-income", fee_income), ("--days", days),
                           ("--confidence", confidence), ("--fund", fund)):
            if text is None:
                continue
            try:
                nums[name] = Decimal(text)
            except InvalidOperation:
                raise ValueError(f"{name} {text!r}: expected a decimal number") from None
            if not nums[name].is_finite():
                raise ValueError(f"{name} {text!r}: must be finite")
        if "--fund" not in nums and len(starts) != 1:
            raise ValueError("the sweep's paths start with different funds: give --fund")
        t = fund_target(losses, fund=nums.get("--fund", next(iter(starts))),
                        fee_income_per_day=nums["--fee-income"], days=nums["--days"],
                        measure="es" if measure == "es" else "var",
                        confidence=nums["--confidence"])
        if venue_out is not None:
            assert venue is not None
            written = write_policy_venue(venue_out, venue, asset, t)
    except (ValueError, ConfigError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"{venue_out}: {exc.strerror or exc}") from None
    if venue_out is not None and not as_json:
        err.print(f"wrote {escape(str(venue_out))}: insurance.policy "
                  f"{escape(json.dumps(written['insurance']['policy']))}")
    if as_json:
        out: dict[str, Any] = {k: (None if v is None else str(v) if isinstance(v, Decimal)
                                   else v) for k, v in (
            ("measure", t.measure), ("confidence", t.confidence), ("paths", t.paths),
            ("var", t.var), ("es", t.es), ("target", t.target), ("fund", t.fund),
            ("shortfall", t.shortfall), ("fee_income_per_day", t.fee_income_per_day),
            ("days", t.days), ("fee_share", t.share),
            ("days_at_full_share", t.days_at_full_share))}
        out["source"] = str(sweep / "sweep.csv")
        typer.echo(json.dumps(out, indent=2))
        return
    q = format((t.confidence * 100).normalize(), "f")
    table = Table(title=f"Insurance-fund target: {sweep / 'sweep.csv'}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [("paths", str(t.paths)), (f"need VaR{q}", _money(t.var)),
            (f"need ES{q}", _money(t.es)), (f"target ({t.measure}{q})", _money(t.target)),
            ("fund today", _money(t.fund)), ("shortfall", _money(t.shortfall)),
            ("fee income per day", _money(t.fee_income_per_day)),
            (f"fee share to rebuild in {t.days} days", _share(t)),
            ("days to rebuild at a share of 100 %", str(t.days_at_full_share))]
    for k, v in rows:
        table.add_row(k, v)
    print_table(console, table)

