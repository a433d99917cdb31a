"""One calibration method for the crash windows: a scenario from the window's data.

``solvency calibrate INPUTS.toml --out SCENARIO.toml`` writes a replay scenario whose every
value is either a sourced number of the inputs file or derived from the window's data by
the formulas below; each value in the written file carries a comment saying which. The
crash scenarios ``scenarios/crash_*.toml`` are this method's output for the inputs under
``scenarios/calibration/`` (a test regenerates each and compares it with the file).

The method (issue 17, item 1). Notation: ``s`` the sample share (the population as a share
of the venue's open interest, a modelling choice of the inputs), per market ``m``:

1. **Daily volume** ``V_m``: the median base volume of the calm days of the window's bars
   file (full UTC days from 28 days before the window's start to 7 days after its end,
   less the days the inputs name as the crash's); the scenario's
   ``daily_volume_base = s x V_m``.
2. **Open interest**: the venue's, sourced in USD at a stated price
   (``OI_m = open_interest_usd / open_interest_price`` base units); where the inputs give
   none, ``OI_m = V_m x (OI / V)`` of the reference window's same market (the inputs'
   ``reference``). The population holds ``s x OI_m``.
3. **Depth**: from a Binance ``bookDepth`` file where the inputs give one: the mean over
   1 % and 2 % of the median ask depth within that distance per basis point (the bid
   buckets of the 2025-10-10 file read a stale price through the crash,
   ``../shared/data/README.md``); elsewhere ``V_m x (depth per bp / V)`` of the reference
   window's book. The scenario's ``depth_per_bps_base`` is ``s x`` that. The mark
   follows the replayed bars (``oracle_weight = 0``): the bars are traded prices that
   already carry the impact of the venue's own liquidations, which the population (``s``
   of the positions on ``s`` of the book) stands for; with the lab's impact added to the
   mark they counted twice (the replay liquidated 15.6 % of open interest instead of
   11.5 % on 2025-10-10 at 5,000 accounts, docs/validation.md). The lab's impact still
   prices its own executions.
4. **Insurance fund**: the venue's published fund ``F`` against the open interest it
   covers ``OI_F`` (USD), scaled to the population: ``F x OI_pop / OI_F`` with ``OI_pop``
   the population's notional at the window's first prices; without a published fund for
   the window, the reference window's ``F / OI_F`` times ``OI_pop``.
5. **Leverage**: the published profile of the inputs (a lognormal mixture).
6. **Funding**: the venue's published rule (interval, interest rate, clamp) and as its cap
   the largest ``|fundingRate|`` of the market's symbol in the shared funding file.
7. **Behaviour** (the free parameters, fitted once on 2025-10-10 under the binance preset,
   issue 17 item 3): book thinning and impact, the agents' speeds, capital as shares of
   the population's open interest and capacity per minute, top-up behaviour, read from
   the ``behaviour`` file the inputs name and converted to the window's step.
8. **Entries** (item 2): each market's preceding bars (``history``), ``entry_history``
   before the window's start: the population's positions are opened along them and the
   accounts that path would have liquidated are not there
   (:func:`solvency.sim.population.generate_population`).
"""

from __future__ import annotations

import functools
import textwrap
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from solvency.adapters.ohlcv import Ohlcv, OhlcvError, read_ohlcv
from solvency.core.model.events import EventError, parse_ts_ms
from solvency.sim.market import BookDepthError, read_book_depth
from solvency.sim.paths import MS_PER_YEAR

__all__ = [
    "Calibration",
    "CalibrationError",
    "MarketFigures",
    "calibrate",
    "calibrate_file",
    "load_inputs",
]

DAY_MS: Final = 86_400_000
MINUTE_MS: Final = 60_000
CALM_BEFORE_DAYS: Final = 28
CALM_AFTER_DAYS: Final = 7
DEPTH_LEVELS_PCT: Final = (1.0, 2.0)


class CalibrationError(ValueError):
    """Inputs that cannot be calibrated (the message names the file and the key)."""


# ============================================================================ inputs


@dataclass(frozen=True, slots=True)
class MarketInputs:
    """One market of a window: its bars and the sourced numbers that go with it."""

    name: str
    bars: str
    points_per_bar: int
    history: str | None = None
    book_depth: str | None = None
    open_interest_usd: float | None = None
    open_interest_price: float | None = None
    open_interest_source: str = ""
    funding_symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Inputs:
    """A calibration inputs file, read (see ``scenarios/calibration/README.md``)."""

    path: Path
    name: str
    description: str
    start_ms: int
    end_ms: int
    venue: str
    sample_share: float
    sample_share_note: str
    n_accounts: int
    long_short_ratio: float
    long_short_note: str
    crash_days: tuple[str, ...]
    markets: tuple[MarketInputs, ...]
    leverage: tuple[tuple[float, float, float], ...]
    leverage_source: str
    fund_usd: float | None
    fund_covers_usd: float | None
    fund_source: str
    funding_file: str | None
    funding_source: str
    behaviour: str
    reference: str | None
    entry_history: str | None
    header: str
    seeds: Mapping[str, int] = field(default_factory=dict)
    run: Mapping[str, int] = field(default_factory=dict)

    def resolve(self, rel: str) -> Path:
        """Return ``rel`` against the repository root (two folders above this file)."""
        p = Path(rel)
        if p.is_absolute():
            return p
        return (self.path.resolve().parent.parent.parent / p).resolve()

    def beside(self, rel: str) -> Path:
        """Return ``rel`` against this file's folder."""
        return (self.path.resolve().parent / rel).resolve()

    @property
    def label(self) -> str:
        """The window's name in notes: the file's stem, ``2025_10_10`` -> ``2025-10-10``."""
        return self.path.stem.replace("_", "-")


def _need(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise CalibrationError(f"{where}: {key}: missing")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, kind):
        raise CalibrationError(f"{where}: {key}: expected {kind}, got {v!r}")
    return v


def _opt(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    return _need(d, key, kind, where) if key in d else None


def _ts(text: Any, where: str) -> int:
    try:
        if isinstance(text, datetime):
            return int(text.timestamp() * 1000)
        return parse_ts_ms(str(text))
    except (EventError, ValueError) as exc:
        raise CalibrationError(f"{where}: {exc}") from None


_TOP: Final = frozenset({"name", "description", "header", "window", "population", "markets",
                         "fund", "leverage", "funding", "behaviour", "reference", "seeds",
                         "run"})


def load_inputs(path: str | Path) -> Inputs:
    """Read a calibration inputs file.

    Raises
    ------
    CalibrationError
        If the file is missing, not TOML, or a key is missing, unknown or mistyped.
    """
    p = Path(path)
    src = str(p)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CalibrationError(f"{src}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{src}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                               ) from None
    except tomllib.TOMLDecodeError as exc:
        raise CalibrationError(f"{src}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise CalibrationError(f"{src}: unknown keys {unknown}")
    w = _need(data, "window", dict, src)
    pop = _need(data, "population", dict, src)
    fund = _need(data, "fund", dict, src)
    lev = _need(data, "leverage", dict, src)
    funding = data.get("funding", {})
    markets = []
    for name, m in _need(data, "markets", dict, src).items():
        at = f"{src}: markets.{name}"
        if not isinstance(m, dict):
            raise CalibrationError(f"{at}: expected a table")
        extra = sorted(set(m) - {"bars", "points_per_bar", "history", "book_depth",
                                 "open_interest_usd", "open_interest_price",
                                 "open_interest_source", "funding_symbol"})
        if extra:
            raise CalibrationError(f"{at}: unknown keys {extra}")
        oi = _opt(m, "open_interest_usd", (int, float), at)
        oi_px = _opt(m, "open_interest_price", (int, float), at)
        if (oi is None) != (oi_px is None):
            raise CalibrationError(f"{at}: give open_interest_usd and open_interest_price "
                                   "together")
        markets.append(MarketInputs(
            name=name, bars=_need(m, "bars", str, at),
            points_per_bar=_need(m, "points_per_bar", int, at),
            history=_opt(m, "history", str, at), book_depth=_opt(m, "book_depth", str, at),
            open_interest_usd=None if oi is None else float(oi),
            open_interest_price=None if oi_px is None else float(oi_px),
            open_interest_source=m.get("open_interest_source", ""),
            funding_symbol=_opt(m, "funding_symbol", str, at)))
    if not markets:
        raise CalibrationError(f"{src}: markets: name at least one market")
    comps = []
    for i, c in enumerate(_need(lev, "components", list, f"{src}: leverage")):
        at = f"{src}: leverage.components[{i}]"
        comps.append((float(_need(c, "weight", (int, float), at)),
                      float(_need(c, "median", (int, float), at)),
                      float(_need(c, "sigma", (int, float), at))))
    fund_usd = _opt(fund, "usd", (int, float), f"{src}: fund")
    covers = _opt(fund, "covers_open_interest_usd", (int, float), f"{src}: fund")
    if (fund_usd is None) != (covers is None):
        raise CalibrationError(f"{src}: fund: give usd and covers_open_interest_usd together")
    share = float(_need(pop, "sample_share", (int, float), f"{src}: population"))
    if not 0 < share <= 1:
        raise CalibrationError(f"{src}: population.sample_share: must be in (0, 1]")
    reference = data.get("reference")
    return Inputs(
        path=p, name=_need(data, "name", str, src),
        description=_need(data, "description", str, src),
        header=data.get("header", ""),
        start_ms=_ts(_need(w, "start", (str, datetime), f"{src}: window"), f"{src}: window.start"),
        end_ms=_ts(_need(w, "end", (str, datetime), f"{src}: window"), f"{src}: window.end"),
        venue=_need(w, "venue", str, f"{src}: window"),
        crash_days=tuple(w.get("crash_days", ())),
        sample_share=share, sample_share_note=pop.get("sample_share_note", ""),
        n_accounts=int(_need(pop, "n_accounts", int, f"{src}: population")),
        long_short_ratio=float(_need(pop, "long_short_ratio", (int, float),
                                     f"{src}: population")),
        long_short_note=pop.get("long_short_note", ""),
        entry_history=pop.get("entry_history"),
        markets=tuple(markets), leverage=tuple(comps),
        leverage_source=_need(lev, "source", str, f"{src}: leverage"),
        fund_usd=None if fund_usd is None else float(fund_usd),
        fund_covers_usd=None if covers is None else float(covers),
        fund_source=fund.get("source", ""),
        funding_file=funding.get("file"), funding_source=funding.get("source", ""),
        behaviour=_need(data, "behaviour", str, src),
        reference=reference if isinstance(reference, str) else None,
        seeds=dict(data.get("seeds", {})), run=dict(data.get("run", {})))


# ============================================================================ data


def _bars(inputs: Inputs, rel: str, where: str) -> Ohlcv:
    try:
        return read_ohlcv(inputs.resolve(rel))
    except OhlcvError as exc:
        raise CalibrationError(f"{inputs.path}: {where}: {exc}") from None


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def calm_daily_volume(bars: Ohlcv, start_ms: int, end_ms: int,
                      crash_days: Sequence[str]) -> tuple[float, tuple[str, ...], float]:
    """Return the median daily base volume of the calm days, those days, and the
    annualized realized volatility of their bars' closes (``sqrt(sum r^2 / years)``).

    Calm days: full UTC days (every bar of the day present at the file's interval) from
    ``CALM_BEFORE_DAYS`` before ``start_ms`` to ``CALM_AFTER_DAYS`` after ``end_ms``,
    less ``crash_days``.
    """
    step = int(np.median(np.diff(bars.ts_ms))) if bars.ts_ms.shape[0] > 1 else DAY_MS
    lo = start_ms - CALM_BEFORE_DAYS * DAY_MS
    hi = end_ms + CALM_AFTER_DAYS * DAY_MS
    keep = (bars.ts_ms >= lo) & (bars.ts_ms < hi)
    day = bars.ts_ms[keep] // DAY_MS
    vol = bars.volume[keep]
    days, inv, count = np.unique(day, return_inverse=True, return_counts=True)
    total = np.bincount(inv, weights=vol, minlength=days.shape[0])
    names = [_day(int(d) * DAY_MS) for d in days]
    full = count == DAY_MS // step
    ok = [i for i in range(days.shape[0]) if full[i] and names[i] not in crash_days]
    if not ok:
        raise CalibrationError("no calm full day in the bars file around the window")
    calm = np.isin(inv, ok)
    close = bars.close[keep]
    r = np.diff(np.log(close))
    same = calm[1:] & calm[:-1] & (np.diff(day) == 0)
    years = float(same.sum()) * step / MS_PER_YEAR
    sigma = float(np.sqrt(np.sum(r[same] ** 2) / years)) if years > 0 else 0.0
    return float(np.median(total[ok])), tuple(names[i] for i in ok), sigma


def book_depth_per_bp(path: Path) -> float:
    """Return the mean over 1 % and 2 % of the median ask depth within it, per bp."""
    try:
        _, pc, dp = read_book_depth(path)
    except BookDepthError as exc:
        raise CalibrationError(str(exc)) from None
    per = [float(np.median(dp[pc == lv])) / (lv * 100.0) for lv in DEPTH_LEVELS_PCT
           if (pc == lv).any()]
    if not per:
        raise CalibrationError(f"{path}: no ask bucket at 1 % or 2 %")
    return float(np.mean(per))


def funding_cap(path: Path, symbol: str) -> float:
    """Return the largest ``|funding_rate|`` of ``symbol`` in the shared funding file."""
    caps = _funding_caps(str(path), path.stat().st_mtime_ns if path.is_file() else 0)
    if symbol not in caps:
        raise CalibrationError(f"{path}: no funding rows for {symbol}")
    return caps[symbol]


@functools.lru_cache(maxsize=4)
def _funding_caps(path: str, _mtime: int) -> dict[str, float]:
    try:
        table = pa_csv.read_csv(path)
        symbol = table.column("symbol").to_numpy(zero_copy_only=False).astype(str)
        rate = table.column("funding_rate").to_numpy().astype(np.float64)
    except (OSError, KeyError, pa.ArrowException) as exc:
        raise CalibrationError(f"{path}: {exc}") from None
    return {str(s): float(np.max(np.abs(rate[symbol == s]))) for s in np.unique(symbol)}


# ============================================================================ method


@dataclass(frozen=True, slots=True)
class MarketFigures:
    """What the method derived for one market (before the sample share)."""

    name: str
    first_price: float
    step_ms: int
    daily_volume: float
    calm_days: tuple[str, ...]
    open_interest_base: float
    open_interest_note: str
    depth_per_bp: float
    depth_note: str
    from_book: bool
    vol_annual: float
    funding_cap: float | None


@dataclass(frozen=True, slots=True)
class Calibration:
    """The method's result: the scenario text and the figures it came from."""

    inputs: Inputs
    markets: tuple[MarketFigures, ...]
    population_oi_usd: float
    fund: float
    fund_note: str
    text: str


def _reference(inputs: Inputs) -> Calibration | None:
    if inputs.reference is None:
        return None
    ref = load_inputs(inputs.beside(inputs.reference))
    if ref.reference is not None:
        raise CalibrationError(f"{ref.path}: a reference window must not name a reference")
    return calibrate(ref)


def _fmt(x: float, digits: int = 6) -> str:
    """A float as TOML, to ``digits`` significant digits (the written file is the record)."""
    if x == 0:
        return "0.0"
    r = float(f"{x:.{digits}g}")
    return repr(r)


def _market(inputs: Inputs, m: MarketInputs, ref: Calibration | None,
            book: tuple[str, MarketFigures] | None) -> MarketFigures:
    bars = _bars(inputs, m.bars, f"markets.{m.name}.bars")
    inside = (bars.ts_ms >= inputs.start_ms) & (bars.ts_ms < inputs.end_ms)
    if not inside.any():
        raise CalibrationError(f"{inputs.path}: markets.{m.name}.bars: no bar inside the "
                               "window")
    first = float(bars.open[np.flatnonzero(inside)[0]])
    step = int(np.median(np.diff(bars.ts_ms))) // m.points_per_bar
    vol, days, sigma = calm_daily_volume(bars, inputs.start_ms, inputs.end_ms,
                                         inputs.crash_days)
    ref_m = None if ref is None else next(
        (x for x in ref.markets if x.name == m.name), None)
    if m.open_interest_usd is not None and m.open_interest_price is not None:
        oi = m.open_interest_usd / m.open_interest_price
        oi_note = (f"{m.open_interest_usd / 1e9:.4g} bn USD / {m.open_interest_price:,.0f} "
                   f"({m.open_interest_source})")
    elif ref_m is not None and ref is not None:
        ratio = ref_m.open_interest_base / ref_m.daily_volume
        oi = vol * ratio
        oi_note = (f"derived: V x (OI / V) of {ref.inputs.label}'s {m.name} = {vol:,.0f} x "
                   f"{ratio:.4f} (no open-interest figure found for this window)")
    else:
        raise CalibrationError(f"{inputs.path}: markets.{m.name}: no open_interest_usd and "
                               "no reference window with this market")
    if m.book_depth is not None:
        depth = book_depth_per_bp(inputs.resolve(m.book_depth))
        depth_note = (f"{m.book_depth}: median ask depth within 1 % and 2 %, per bp, mean "
                      f"= {depth:.4g}")
    else:
        if book is None:
            raise CalibrationError(f"{inputs.path}: markets.{m.name}: no book_depth and no "
                                   "market with a bookDepth file here or in the reference")
        where, ref_book = book
        k = ref_book.depth_per_bp / ref_book.daily_volume
        depth = vol * k
        depth_note = (f"derived: V x (depth per bp / V) of {where}{ref_book.name} book = "
                      f"{vol:,.0f} x {k:.4g}")
    cap = None
    if m.funding_symbol is not None:
        if inputs.funding_file is None:
            raise CalibrationError(f"{inputs.path}: markets.{m.name}.funding_symbol needs "
                                   "funding.file")
        cap = funding_cap(inputs.resolve(inputs.funding_file), m.funding_symbol)
    return MarketFigures(name=m.name, first_price=first, step_ms=step, daily_volume=vol,
                         calm_days=days, open_interest_base=oi, open_interest_note=oi_note,
                         depth_per_bp=depth, depth_note=depth_note,
                         from_book=m.book_depth is not None, vol_annual=sigma, funding_cap=cap)


def _behaviour(inputs: Inputs) -> dict[str, Any]:
    p = inputs.beside(inputs.behaviour)
    try:
        beh = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CalibrationError(f"{inputs.path}: behaviour: {p}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{inputs.path}: behaviour: {p}: not UTF-8 text "
                               f"({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CalibrationError(f"{p}: invalid TOML: {exc}") from None
    if "oracle_weight" in beh.get("liquidity", {}):
        # a replay's mark follows its bars (method step 3): not a free parameter
        raise CalibrationError(f"{p}: liquidity.oracle_weight: set by the method (0: the "
                               "replayed bars already carry the liquidations' impact)")
    return beh


def calibrate(inputs: Inputs) -> Calibration:
    """Apply the method to ``inputs`` (see the module docstring).

    Raises
    ------
    CalibrationError
        If a file is missing or unreadable, or a figure cannot be derived.
    """
    beh = _behaviour(inputs)  # first: a refused behaviour file reads no data
    ref = _reference(inputs)
    # markets with a book file first: the others' depth is scaled from the first of them
    # (this window's, else the reference window's)
    books = {m.name: _market(inputs, m, ref, None) for m in inputs.markets
             if m.book_depth is not None}
    book: tuple[str, MarketFigures] | None = None
    if books:
        book = ("the ", next(iter(books.values())))
    elif ref is not None:
        first = next((x for x in ref.markets if x.from_book), None)
        book = None if first is None else (f"{ref.inputs.label}'s ", first)
    figs = tuple(books[m.name] if m.name in books else _market(inputs, m, ref, book)
                 for m in inputs.markets)
    steps = {f.step_ms for f in figs}
    if len(steps) != 1:
        raise CalibrationError(f"{inputs.path}: the markets' steps differ: {sorted(steps)} "
                               "ms (set points_per_bar so that they agree)")
    s = inputs.sample_share
    oi_usd = sum(s * f.open_interest_base * f.first_price for f in figs)
    if inputs.fund_usd is not None and inputs.fund_covers_usd is not None:
        ratio = inputs.fund_usd / inputs.fund_covers_usd
        fund_note = (f"{inputs.fund_usd / 1e9:.4g} bn USD over {inputs.fund_covers_usd / 1e9:.4g}"
                     f" bn USD of open interest ({inputs.fund_source}) = {ratio:.4%} of the "
                     f"population's {oi_usd / 1e9:.4g} bn USD")
    elif ref is not None:
        ratio = ref.fund / ref.population_oi_usd
        fund_note = (f"derived: the reference window's fund / OI, {ratio:.4%}, of the "
                     f"population's {oi_usd / 1e9:.4g} bn USD (no published fund found for "
                     "this window)")
    else:
        raise CalibrationError(f"{inputs.path}: fund: no usd figure and no reference window")
    fund = round(oi_usd * ratio)
    text = _scenario_text(inputs, figs, oi_usd, fund, fund_note, beh)
    return Calibration(inputs=inputs, markets=figs, population_oi_usd=oi_usd, fund=fund,
                       fund_note=fund_note, text=text)


def calibrate_file(path: str | Path) -> Calibration:
    """:func:`load_inputs` then :func:`calibrate`."""
    return calibrate(load_inputs(path))


# ============================================================================ writing


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _per_step(speed_per_minute: float, step_ms: int) -> float:
    # a share closed per minute, compounded to the step: 1 - (1 - s)^(step / 1 min)
    return 1.0 - float((1.0 - speed_per_minute) ** (step_ms / MINUTE_MS))


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _fmt(v)
    if isinstance(v, int):
        return str(v)
    return f'"{v}"'


def _scenario_text(inputs: Inputs, figs: Sequence[MarketFigures], oi_usd: float, fund: int,
                   fund_note: str, beh: Mapping[str, Any]) -> str:
    s = inputs.sample_share
    step = figs[0].step_ms
    out: list[str] = []
    w = out.append
    w(f"# Written by `solvency calibrate {_rel(inputs)}`: do not edit, edit the inputs and")
    w("# run it again (solvency.sim.calibrate: the method; docs/stress_lab.md, \"Calibrated")
    w("# crash windows\"). Every value says where it comes from: a source, \"derived:\" and its")
    w("# formula, or \"behaviour\": scenarios/calibration/behaviour.toml, the free parameters,")
    w("# one set for every window, fitted on 2025-10-10 under binance only.")
    for line in inputs.header.strip().splitlines():
        w(f"# {line}".rstrip())
    w("")
    w(f'name = "{inputs.name}"')
    w(f'description = "{inputs.description}"')
    w("")
    w("[seeds]")
    for k in ("market", "population", "agents"):
        w(f"{k} = {int(inputs.seeds.get(k, {'market': 1, 'population': 7, 'agents': 3}[k]))}")
    w("")
    w("[run]")
    hour_steps = max(3_600_000 // step, 1)
    w(f"# derived: hourly Engine.verify() at {step // 1000} s steps")
    w(f"verify_every = {int(inputs.run.get('verify_every', hour_steps))}")
    vw = int(beh.get("run", {}).get("vol_window_minutes", 30))
    w(f"# behaviour: the realized volatility's window, {vw} minutes")
    w(f"vol_window = {max(vw * MINUTE_MS // step, 2)}")
    w("")
    w("[market]")
    w('model = "replay"')
    for m, f in zip(inputs.markets, figs, strict=True):
        w("")
        w(f"[market.markets.{m.name}]")
        w(f'source = "{m.bars}"')
        w(f"# {m.points_per_bar} points per bar: {f.step_ms // 1000} s steps")
        w(f"points_per_bar = {m.points_per_bar}")
        w(f'start = "{_iso(inputs.start_ms)}"')
        w(f'end = "{_iso(inputs.end_ms)}"')
        if m.history is not None and inputs.entry_history is not None:
            w("# the preceding bars the positions were opened along (population.entry_history)")
            w(f'history = "{m.history}"')
    w("")
    w("[population]")
    w(f"n_accounts = {inputs.n_accounts}")
    w(f"# {inputs.long_short_note or 'assumed'}")
    w(f"long_short_ratio = {_value(inputs.long_short_ratio)}")
    if inputs.entry_history is not None:
        w("# positions opened along the preceding bars over this span, the accounts that path")
        w("# liquidated replaced (issue 17 item 2)")
        w(f'entry_history = "{inputs.entry_history}"')
    w(f"# {' '.join(inputs.leverage_source.split())}")
    w("leverage = [")
    for wt, med, sig in inputs.leverage:
        w(f"  {{ weight = {_value(wt)}, median = {_value(med)}, sigma = {_value(sig)} }},")
    w("]")
    w("")
    w("[population.open_interest_base]")
    w(f"# {s:.4g} of the venue's open interest ({inputs.sample_share_note or 'assumed'}):")
    w(f"# {oi_usd / 1e9:.4g} bn USD at the window's first prices")
    for f in figs:
        w(f"# {f.name}: {s:.4g} x {f.open_interest_base:,.0f}; {f.open_interest_note}")
        w(f"{f.name} = {_fmt(s * f.open_interest_base)}")
    w("")
    w("[venue]")
    w(f'preset = "{inputs.venue}"')
    w(f"# {fund_note}")
    w(f"insurance_fund = {fund}")
    liq = beh.get("liquidity", {})
    for f, m in zip(figs, inputs.markets, strict=True):
        w("")
        w(f"[liquidity.{f.name}]")
        w(f"# {s:.4g} x {f.depth_note}")
        w(f"depth_per_bps_base = {_fmt(s * f.depth_per_bp)}")
        w(f"# {s:.4g} x the median daily volume of {', '.join(f.calm_days)} "
          f"({f.daily_volume:,.0f}, {m.bars})")
        w(f"daily_volume_base = {_fmt(s * f.daily_volume)}")
        w("# derived: the annualized realized volatility of the same days' bars (the calm")
        w("# book's volatility)")
        w(f"vol_ref_annual = {_fmt(f.vol_annual, 3)}")
        for key, v in liq.items():
            if key == "note" or isinstance(v, dict):
                continue
            w(f"{key} = {_value(v)}  # behaviour")
        w("# derived (the method, not behaviour): the replayed bars are traded prices that")
        w("# already carry the impact of the liquidations this population stands for (s of")
        w("# the venue's positions on s of its book), so the mark follows the bars and the")
        w("# lab's impact moves only its own executions (docs/validation.md, \"Why the replay")
        w("# liquidated 1.8x\")")
        w("oracle_weight = 0.0")
    _agents_text(w, beh.get("agents", {}), oi_usd, step, figs, inputs)
    return "\n".join(_wrap(line) for line in out) + "\n"


def _wrap(line: str, width: int = 96) -> str:
    """Wrap a comment line (or a value's trailing comment stays as it is) at ``width``."""
    if not line.startswith("# ") or len(line) <= width:
        return line
    return "\n".join(textwrap.wrap(line[2:], width - 2, initial_indent="# ",
                                    subsequent_indent="# ", break_long_words=False,
                                    break_on_hyphens=False))


def _rel(inputs: Inputs) -> str:
    parts = inputs.path.resolve().parts
    if "scenarios" in parts:
        return "/".join(parts[parts.index("scenarios"):])
    return inputs.path.name


def _agents_text(w: Any, agents: Mapping[str, Any], oi_usd: float, step: int,
                 figs: Sequence[MarketFigures], inputs: Inputs) -> None:
    step_min = step / MINUTE_MS
    for name, table in agents.items():
        if not isinstance(table, dict):
            continue
        w("")
        w(f"[agents.{name}]")
        for key, v in table.items():
            if key == "capital_share_of_oi":
                w(f"# derived: behaviour {v} x the population's {oi_usd / 1e9:.4g} bn USD")
                w(f"capital_quote = {_fmt(v * oi_usd)}")
            elif key == "capacity_share_per_minute":
                cap = v * table.get("capital_share_of_oi", 0.0) * oi_usd * step_min
                w(f"# derived: behaviour {v} of the capital a minute, at {step // 1000} s steps")
                w(f"capacity_per_step_quote = {_fmt(cap)}")
            elif key == "speed_per_minute":
                w(f"# derived: behaviour {v} of the premium a minute, at {step // 1000} s steps")
                w(f"speed = {_fmt(_per_step(float(v), step))}")
            else:
                w(f"{key} = {_value(v)}  # behaviour")
    caps = [f.funding_cap for f in figs if f.funding_cap is not None]
    if caps and inputs.funding_file is not None:
        w("")
        w("[agents.funding]")
        w(f"# {inputs.funding_source}")
        w('interval = "8h"')
        w("interest_rate = 0.0001")
        w("clamp = 0.0005")
        symbols = ", ".join(m.funding_symbol for m in inputs.markets if m.funding_symbol)
        w(f"# derived: the largest |fundingRate| of {symbols}")
        w(f"# in {inputs.funding_file}")
        w(f"cap = {_fmt(max(caps))}")
        w("rate_decimals = 8")


