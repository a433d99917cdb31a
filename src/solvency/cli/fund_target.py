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
from solvency.adapters.ohlcv import OhlcvError, parse_interval_ms
from solvency.cli.tables import print_table
from solvency.core.fund_target import FundTarget, PathLoss, fund_target, largest_episode_loss
from solvency.core.model.events import EventError, parse_ts_ms
from solvency.core.model.presets import PRESETS, venue_from_data
from solvency.core.model.venue import ConfigError
from solvency.core.units import PPM

__all__ = ["fund_target_command", "read_realized_losses", "read_sweep_losses",
           "write_policy_venue"]

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
    except UnicodeDecodeError as exc:
        raise SweepFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
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


def read_realized_losses(path: Path) -> list[tuple[int, Decimal]]:
    """Return the realized losses ``(ts_ms, amount)`` of ``path``: a CSV with columns
    ``time`` (ISO-8601 UTC or epoch ms) and ``loss`` (>= 0, in the fund's asset), or an
    engine snapshot (JSON) whose ``liquidation.losses`` the engine recorded under
    ``insurance.policy.target_from_losses`` (quanta of the policy's ``target_asset``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepFileError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SweepFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix.lower() == ".json":
        snap = load_json_file(path)
        try:
            venue = venue_from_data(snap["venue"], source=str(path))
            asset = str(venue.raw["insurance"]["policy"]["target_asset"])
            scale = Decimal(1).scaleb(-venue.assets[asset].decimals)
            return [(int(t), int(q) * scale) for t, q in snap["liquidation"].get("losses", [])]
        except (KeyError, TypeError) as exc:
            raise SweepFileError(f"{path}: not an engine snapshot with a fund target "
                                 f"({exc})") from None
    out = []
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or "time" not in rows[0] or "loss" not in rows[0]:
        raise SweepFileError(f"{path}: expected the columns time, loss")
    for line, row in enumerate(rows, start=2):
        try:
            ts = parse_ts_ms(row["time"].strip() if not row["time"].strip().isdigit()
                             else int(row["time"]))
        except EventError as exc:
            raise SweepFileError(f"{path}:{line}: time: {exc}") from None
        loss = _dec(path, line, row, "loss")
        if loss < 0:
            raise SweepFileError(f"{path}:{line}: loss: must be >= 0")
        out.append((ts, loss))
    return out


def write_policy_venue(path: Path, venue: str, asset: str | None, t: FundTarget,
                       from_losses: dict[str, int] | None = None) -> dict[str, Any]:
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
    if from_losses is not None:
        insurance["policy"]["target_from_losses"] = from_losses
    data["insurance"] = insurance
    venue_from_data(data, source=str(path))  # what is written loads
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return data


def _realized(path: Path | None, cover: str | None, episode: str, history: str
              ) -> tuple[Decimal, Decimal, dict[str, int]] | None:
    """``(largest episode loss, cover x it, the policy's target_from_losses)`` of
    --losses with --cover (None without either; both or neither)."""
    if (path is None) != (cover is None):
        raise ValueError("--losses and --cover go together")
    if path is None or cover is None:
        return None
    try:
        factor = Decimal(cover)
        if not factor.is_finite() or factor <= 0:
            raise InvalidOperation
    except InvalidOperation:
        raise ValueError(f"--cover {cover!r}: expected a positive number") from None
    try:
        episode_ms, history_ms = parse_interval_ms(episode), parse_interval_ms(history)
    except OhlcvError as exc:
        raise ValueError(f"--episode/--history: {exc}") from None
    if episode_ms > history_ms:
        raise ValueError("--episode must not exceed --history")
    xs = read_realized_losses(path)
    now = max((t for t, _ in xs), default=0)
    big = largest_episode_loss(xs, now_ms=now, episode_ms=episode_ms, history_ms=history_ms)
    rule = {"cover_ppm": int((factor * PPM).to_integral_value(rounding=ROUND_CEILING)),
            "episode_ms": episode_ms, "history_ms": history_ms}
    return big, big * factor, rule


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
    losses: Annotated[Path | None, typer.Option(
        help="Realized losses: a CSV (time, loss) or an engine snapshot (JSON) with "
             "liquidation.losses; with --cover the target is also estimated from them.")
    ] = None,
    cover: Annotated[str | None, typer.Option(
        help="Cover factor on the largest episode's realized losses (2: twice); the "
             "target is the larger of the sweep's and this. With --venue-out the engine "
             "keeps re-estimating it (insurance.policy.target_from_losses).")] = None,
    episode: Annotated[str, typer.Option(help="Length of a loss episode.")] = "1d",
    history: Annotated[str, typer.Option(help="How far back losses count.")] = "365d",
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
        paths, starts = read_sweep_losses(sweep, point)
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
        realized = _realized(losses, cover, episode, history)
        t = fund_target(paths, fund=nums.get("--fund", next(iter(starts))),
                        fee_income_per_day=nums["--fee-income"], days=nums["--days"],
                        measure="es" if measure == "es" else "var",
                        confidence=nums["--confidence"],
                        loss_target=None if realized is None else realized[1])
        if venue_out is not None:
            assert venue is not None
            written = write_policy_venue(venue_out, venue, asset, t,
                                         None if realized is None else realized[2])
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
        if realized is not None:
            out["sweep_target"] = str(t.sweep_target)
            out["largest_episode_loss"] = str(realized[0])
            out["loss_target"] = str(t.loss_target)
        out["source"] = str(sweep / "sweep.csv")
        typer.echo(json.dumps(out, indent=2))
        return
    q = format((t.confidence * 100).normalize(), "f")
    table = Table(title=f"Insurance-fund target: {sweep / 'sweep.csv'}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [("paths", str(t.paths)), (f"need VaR{q}", _money(t.var)),
            (f"need ES{q}", _money(t.es))]
    if realized is not None:
        assert t.sweep_target is not None
        rows += [(f"sweep target ({t.measure}{q})", _money(t.sweep_target)),
                 (f"largest realized loss in {episode}", _money(realized[0])),
                 (f"loss-history target ({cover} x)", _money(realized[1])),
                 ("target (the larger)", _money(t.target))]
    else:
        rows += [(f"target ({t.measure}{q})", _money(t.target))]
    rows += [
            ("fund today", _money(t.fund)), ("shortfall", _money(t.shortfall)),
            ("fee income per day", _money(t.fee_income_per_day)),
            (f"fee share to rebuild in {t.days} days", _share(t)),
            ("days to rebuild at a share of 100 %", str(t.days_at_full_share))]
    for k, v in rows:
        table.add_row(k, v)
    print_table(console, table)

