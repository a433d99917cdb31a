"""Parameter sweeps and distributed Monte Carlo: one scenario over a grid of parameters.

A sweep takes a scenario file, a grid of parameters and a number of Monte Carlo paths,
and runs every (grid point, path) pair through :func:`solvency.sim.run.run_scenario`:

* **Grid.** ``--grid PARAM=V1,V2,...`` names a dotted path into the scenario's TOML
  document (``venue.insurance_fund``, ``liquidity.BTC-PERP.depth_per_bps_base``,
  ``market.markets.BTC-PERP.cascade_depth``, ``venue.preset``,
  ``population.leverage.1.median`` -- an integer segment indexes an array) and its values,
  each a TOML literal (``20000000``, ``0.12``, ``true``, ``"30m"``, ``[1, 2]``) or a bare
  word taken as a string (``binance``, ``30m``). Several ``--grid`` options span their
  cartesian product, the first one varying slowest. Every grid point is parsed and
  validated by the scenario parser before any run starts; a bad path or value is a
  :class:`~solvency.sim.scenario.ScenarioError` naming the ``--grid`` option.
* **Tasks.** Each (grid point ``p``, path ``i``) is one task: the point's scenario with
  market seed ``seeds.market + i`` (the point's seeds; the population is the same on
  every path), as in :func:`solvency.sim.run.run_monte_carlo`. A task returns the run's
  summary metrics (series dropped, nested mappings flattened to dotted keys, wall time
  left out so that results are comparable byte for byte).
* **Where.** On local processes (``concurrent.futures.ProcessPoolExecutor``, spawned
  workers) by default, or on a dask.distributed cluster: a scheduler address, or
  ``"local"`` for a :class:`distributed.LocalCluster` of single-threaded worker
  processes. A task depends only on its scenario and seed, and results are sorted by
  (point, path), so every backend gives identical tables (same software versions).
* **Tables.** :class:`SweepResult` holds one row per (point, path) and one aggregated row
  per point: the means of the metrics over paths, the bad-debt VaR95 / VaR99
  (:func:`solvency.sim.metrics.bad_debt_var`) and whether the point lies on the Pareto
  frontier of capital efficiency (initial margin per notional, lower is better) against
  bad-debt VaR99 (lower is better). Writers: :mod:`solvency.sim.sweep_report`.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Final

import numpy as np

from solvency.sim.metrics import bad_debt_var
from solvency.sim.run import run_scenario
from solvency.sim.scenario import (
    DEFAULT_SCENARIO_TOML,
    Scenario,
    ScenarioError,
    parse_scenario_data,
)

__all__ = [
    "MEAN_KEYS",
    "GridParam",
    "SweepBase",
    "SweepPlan",
    "SweepResult",
    "SweepTask",
    "TaskResult",
    "cartesian",
    "default_workers",
    "pareto_frontier",
    "parse_grid",
    "parse_grid_value",
    "plan_sweep",
    "run_sweep",
    "run_task",
]

Progress = Callable[[int, int], None]
"""Progress callback: ``(tasks done, tasks in total)``."""

MEAN_KEYS: Final[tuple[str, ...]] = (
    "liquidations", "accounts_liquidated", "liquidated_notional", "bad_debt",
    "insurance_fund_start", "insurance_fund_min", "insurance_fund_end",
    "insurance_fund_drawdown", "adl_count", "adl_notional", "adl_haircut", "adl_overshoot",
    "cascade_amplification", "capital_efficiency", "max_accounts_at_risk")
"""Metrics averaged over a grid point's paths in the aggregated table."""

_DROPPED: Final = frozenset({"wall_s"})  # not a result: differs from run to run
_RESERVED: Final = frozenset({"point", "path", "paths", "seed_market", "venue"})
"""Column names of the tables a parameter may not take (``venue`` is the venue's name)."""


# ============================================================================ grid


@dataclass(frozen=True, slots=True)
class GridParam:
    """One ``--grid`` option: a dotted path into the scenario document and its values.

    Attributes
    ----------
    name : str
        The dotted path as given (``venue.insurance_fund``); also the column name.
    keys : tuple of str
        The path's segments.
    values : tuple
        TOML values, in the order given.
    texts : tuple of str
        The values as written on the command line (for error messages).
    """

    name: str
    keys: tuple[str, ...]
    values: tuple[Any, ...]
    texts: tuple[str, ...]


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def parse_grid_value(text: str) -> Any:
    """Return the value of one grid entry: a TOML literal, else the bare word as a string.

    ``20000000`` is an int, ``0.12`` and ``1e6`` floats, ``true`` a bool, ``"30m"`` and
    ``30m`` strings, ``[1, 2]`` an array, ``2025-10-10T00:00:00Z`` a datetime.

    Raises
    ------
    ScenarioError
        If the entry is empty, spans lines, is a malformed array, table or quoted string,
        or is a non-finite number.
    """
    t = text.strip()
    if not t:
        raise ScenarioError("empty value")
    if "\n" in t or "\r" in t:
        raise ScenarioError(f"{t!r}: a value must fit on one line")
    try:
        value = tomllib.loads(f"v = {t}\n")["v"]
    except tomllib.TOMLDecodeError:
        if t[0] in "[{\"'":
            raise ScenarioError(f"{t!r} is not a valid TOML value") from None
        value = t
    if not _finite(value):
        raise ScenarioError(f"{t!r}: values must be finite")
    return value


def _keys(name: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in name.split("."))
    if not name or any(not k for k in keys):
        raise ScenarioError(f"--grid {name!r}: PARAM must be a dotted path such as "
                            "venue.insurance_fund")
    return keys


def _grid_param(spec: str) -> GridParam:
    name, sep, rest = spec.partition("=")
    name = name.strip()
    if not sep:
        raise ScenarioError(f"--grid {spec!r}: expected PARAM=V1,V2,...")
    keys = _keys(name)
    if name in _RESERVED:
        raise ScenarioError(f"--grid {name}: set a key inside it ({name}.KEY=...)")
    texts = _split_values(rest)
    if texts == [""]:
        raise ScenarioError(f"--grid {name}: no values (expected {name}=V1,V2,...)")
    values: list[Any] = []
    for t in texts:
        try:
            values.append(parse_grid_value(t))
        except ScenarioError as exc:
            raise ScenarioError(f"--grid {name}: {exc}") from None
    seen: list[Any] = []
    for t, v in zip(texts, values, strict=True):
        if any(type(v) is type(s) and v == s for s in seen):
            raise ScenarioError(f"--grid {name}: value {t} is given twice")
        seen.append(v)
    return GridParam(name=".".join(keys), keys=keys, values=tuple(values),
                     texts=tuple(texts))


def parse_grid(specs: Iterable[str]) -> tuple[GridParam, ...]:
    """Parse ``--grid PARAM=V1,V2,...`` options (see the module docstring).

    Raises
    ------
    ScenarioError
        If an option has no ``=``, an empty path or segment, no values, an empty or
        malformed value, a value given twice, or if a path is given twice or inside
        another one (``venue`` and ``venue.insurance_fund``).
    """
    params: list[GridParam] = []
    for spec in specs:
        p = _grid_param(spec)
        for q in params:
            if q.keys == p.keys:
                raise ScenarioError(f"--grid {p.name}: given twice")
            n = min(len(q.keys), len(p.keys))
            if q.keys[:n] == p.keys[:n]:
                raise ScenarioError(f"--grid {p.name}: overlaps --grid {q.name}")
        params.append(p)
    return tuple(params)


def cartesian(params: Sequence[GridParam]) -> list[dict[str, Any]]:
    """Return the grid points: the cartesian product, first parameter varying slowest.

    No parameter gives one point (the scenario as it is).
    """
    return [{p.name: v for p, v in zip(params, combo, strict=True)}
            for combo in itertools.product(*(p.values for p in params))]


# ============================================================================ overrides


def _set(data: dict[str, Any], keys: tuple[str, ...], value: Any) -> str:
    """Set ``data[k0][k1]...[kn] = value``, creating missing tables on the way.

    Returns the dotted path of the first table created ("" if none was).
    """
    node: Any = data
    created = ""
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[:depth]) or "the document"
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ScenarioError(f"{where} is an array of {len(node)}: {key!r} is not "
                                    f"an index in 0..{len(node) - 1}")
            idx: int | str = int(key)
        elif isinstance(node, dict):
            idx = key
        else:
            raise ScenarioError(f"{where} is a value ({node!r}), not a table")
        if last:
            node[idx] = copy.deepcopy(value)
        elif isinstance(node, dict) and key not in node:
            created = created or ".".join(keys[:depth + 1])
            node = node.setdefault(key, {})
        else:
            node = node[idx]
    return created


@dataclass(frozen=True, slots=True)
class SweepBase:
    """A scenario document to sweep: its TOML mapping and where relative paths resolve.

    Attributes
    ----------
    data : Mapping[str, Any]
        The document (``tomllib`` output); never modified.
    source : str
        File name for error messages.
    base_dir : Path or None
        Directory for relative data paths after the current one (as in
        :func:`solvency.sim.scenario.load_scenario`).
    """

    data: Mapping[str, Any]
    source: str
    base_dir: Path | None = None

    @classmethod
    def from_text(cls, text: str, *, source: str = "<scenario>",
                  base_dir: Path | None = None) -> SweepBase:
        """Read a scenario from TOML text.

        Raises
        ------
        ScenarioError
            If the text is not TOML.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
        return cls(data=data, source=source, base_dir=base_dir)

    @classmethod
    def from_file(cls, path: str | Path | None) -> SweepBase:
        """Read a scenario file (``None``: the bundled default scenario).

        Raises
        ------
        ScenarioError
            If the file is missing, unreadable or not TOML.
        """
        if path is None:
            return cls.from_text(DEFAULT_SCENARIO_TOML, source="<default scenario>")
        p = Path(path)
        if not p.is_file():
            raise ScenarioError(f"scenario file not found: {p}")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{p}: cannot read: {exc}") from None
        return cls.from_text(text, source=str(p), base_dir=p.resolve().parent.parent)

    def scenario(self, point: Mapping[str, Any] | None = None) -> Scenario:
        """Return the scenario with the grid point's values set (dotted paths).

        Raises
        ------
        ScenarioError
            If a path cannot be set or the resulting scenario is invalid.
        """
        data = copy.deepcopy(dict(self.data))
        created = []
        for name, value in (point or {}).items():
            made = _set(data, _keys(name), value)
            if made:
                created.append(made)
        try:
            scenario = parse_scenario_data(data, source=self.source, base_dir=self.base_dir)
        except ScenarioError as exc:
            if not created:
                raise
            raise ScenarioError(f"{exc} (table {', '.join(created)} is not in the scenario; "
                                "the sweep created it)") from None
        # files and model ranges now (replay and bootstrap paths are checked at run time)
        try:
            scenario.path_specs()
            scenario.liquidity_specs()
        except ScenarioError as exc:
            raise ScenarioError(f"{self.source}: {exc}") from None
        return scenario


# ============================================================================ plan


@dataclass(frozen=True, slots=True)
class SweepTask:
    """One run of a sweep: grid point ``point``, Monte Carlo path ``path``.

    Attributes
    ----------
    point, path : int
        Indices of the grid point and of the path.
    seed_market : int
        ``seeds.market`` of the point's scenario plus ``path``.
    scenario : Scenario
        The point's scenario.
    """

    point: int
    path: int
    seed_market: int
    scenario: Scenario


@dataclass(frozen=True, slots=True)
class SweepPlan:
    """A validated sweep: its grid points, their scenarios and the number of paths.

    Attributes
    ----------
    params : tuple of GridParam
        The grid.
    points : tuple of dict
        Parameter name -> value of each grid point (:func:`cartesian` order).
    scenarios : tuple of Scenario
        The scenario of each grid point.
    n_paths : int
        Monte Carlo paths per point.
    """

    params: tuple[GridParam, ...]
    points: tuple[dict[str, Any], ...]
    scenarios: tuple[Scenario, ...]
    n_paths: int

    @property
    def n_tasks(self) -> int:
        """Return the number of runs: points times paths."""
        return len(self.points) * self.n_paths

    def tasks(self) -> Iterator[SweepTask]:
        """Yield the tasks in (point, path) order."""
        for p, scenario in enumerate(self.scenarios):
            for i in range(self.n_paths):
                yield SweepTask(point=p, path=i, seed_market=scenario.seed_market + i,
                                scenario=scenario)


def _check_each_value(base: SweepBase, params: Sequence[GridParam]) -> None:
    # one parameter at a time first, so that an error names the value that caused it
    for p in params:
        for text, value in zip(p.texts, p.values, strict=True):
            try:
                base.scenario({p.name: value})
            except ScenarioError as exc:
                raise ScenarioError(f"--grid {p.name}={text}: {exc}") from None


def _point_text(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_cell(v)}" for k, v in point.items())


def plan_sweep(base: SweepBase, params: Sequence[GridParam], n_paths: int = 1) -> SweepPlan:
    """Validate every grid point and return the plan (nothing runs here).

    Raises
    ------
    ScenarioError
        If ``n_paths < 1``, a parameter value gives an invalid scenario (named with its
        ``--grid`` option) or a combination of values does (named with its point).
    """
    if n_paths < 1:
        raise ScenarioError(f"--paths must be >= 1, got {n_paths}")
    _check_each_value(base, params)
    points = cartesian(params)
    scenarios: list[Scenario] = []
    for point in points:
        try:
            scenarios.append(base.scenario(point))
        except ScenarioError as exc:
            raise ScenarioError(f"grid point {_point_text(point)}: {exc}") from None
    return SweepPlan(params=tuple(params), points=tuple(points), scenarios=tuple(scenarios),
                     n_paths=n_paths)


# ============================================================================ tasks


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What one task sends back.

    Attributes
    ----------
    point, path : int
        The task's indices.
    metrics : dict
        Flattened summary metrics (dotted keys; no ``wall_s``).
    wall_s : float
        Time the run took on its worker.
    cpu_s : float
        CPU time of the worker process during the run (below ``wall_s`` when the worker
        waited for a core).
    """

    point: int
    path: int
    metrics: dict[str, Any]
    wall_s: float
    cpu_s: float = 0.0


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if name in _DROPPED:
            continue
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def run_task(task: SweepTask) -> TaskResult:
    """Run one task (on a worker) and return its flattened metrics."""
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_scenario(task.scenario, seed=task.seed_market)
    return TaskResult(point=task.point, path=task.path, metrics=_flatten(res.metrics),
                      wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)


# ============================================================================ backends


def _run_processes(tasks: list[SweepTask], workers: int,
                   progress: Progress | None) -> list[TaskResult]:
    out: list[TaskResult] = []
    # spawned, not forked: the parent may hold threads (a Dask client, numba) and locks
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        futures = [pool.submit(run_task, t) for t in tasks]
        for fut in as_completed(futures):
            out.append(fut.result())
            if progress is not None:
                progress(len(out), len(tasks))
    finally:
        # on a failed task or Ctrl-C, drop the tasks not started instead of running them
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def _run_on_client(client: Any, tasks: list[SweepTask],
                   progress: Progress | None) -> list[TaskResult]:
    from distributed import as_completed as dask_completed

    futures = client.map(run_task, tasks, pure=False)
    out: list[TaskResult] = []
    for fut in dask_completed(futures):  # type: ignore[no-untyped-call]
        out.append(fut.result())
        if progress is not None:
            progress(len(out), len(tasks))
    return out


def _run_dask(tasks: list[SweepTask], address: str, workers: int,
              progress: Progress | None) -> list[TaskResult]:
    import logging

    from distributed import Client, LocalCluster

    if address == "local":
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            # a free port for the HTTP server: ":8787" may be taken by another cluster
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR)
        with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
            return _run_on_client(client, tasks, progress)
    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as exc:
        raise ScenarioError(f"--dask {address}: cannot connect to the scheduler: "
                            f"{exc}") from None
    with client:
        return _run_on_client(client, tasks, progress)


def default_workers() -> int:
    """Return the default number of local workers: ``os.cpu_count()`` (at least 1)."""
    return max(os.cpu_count() or 1, 1)


# ============================================================================ result


@dataclass(frozen=True, slots=True)
class SweepResult:
    """The tables of a sweep.

    Attributes
    ----------
    params : tuple of str
        Grid parameter names (their columns come first).
    rows : list of dict
        One row per (point, path), sorted: ``point``, ``path``, ``seed_market``, the
        parameters, then the flattened metrics of the run.
    points : list of dict
        One row per grid point: ``point``, the parameters, ``paths``, the means of
        :data:`MEAN_KEYS` (``cascade_amplification`` is null when a path's is),
        ``conserved`` (all paths), ``var95_bad_debt``, ``var99_bad_debt``,
        ``mean_bad_debt``, ``max_bad_debt``, ``p_bad_debt``, ``venue`` and
        ``on_frontier``.
    backend : str
        ``processes``, ``dask-local``, ``dask <address>`` or ``dask client``.
    workers : int or None
        Workers used (None on a scheduler address).
    wall_s : float
        Time of the whole sweep, from the first submission to the last result.
    task_wall_s : float
        Sum over tasks of their run time on the workers.
    task_cpu_s : float
        Sum over tasks of their workers' CPU time (``task_cpu_s / task_wall_s`` is the
        share of a core the tasks got).
    """

    params: tuple[str, ...]
    rows: list[dict[str, Any]]
    points: list[dict[str, Any]]
    backend: str
    workers: int | None
    wall_s: float
    task_wall_s: float
    task_cpu_s: float = 0.0

    @property
    def conserved(self) -> bool:
        """Return whether every run passed its invariant checks."""
        return all(bool(r.get("conserved", True)) for r in self.rows)


def _cell(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _rows(plan: SweepPlan, results: list[TaskResult]) -> list[dict[str, Any]]:
    rows = []
    for r in sorted(results, key=lambda t: (t.point, t.path)):
        row: dict[str, Any] = {"point": r.point, "path": r.path,
                               "seed_market": r.metrics["seed_market"]}
        row.update(plan.points[r.point])
        row.update({k: v for k, v in r.metrics.items() if k not in row})
        rows.append(row)
    return rows


def _mean(values: list[Any]) -> float | None:
    if any(v is None for v in values):
        return None
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def _aggregate(plan: SweepPlan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p, point in enumerate(plan.points):
        mine = [r for r in rows if r["point"] == p]
        agg: dict[str, Any] = {"point": p, **point, "paths": len(mine)}
        for key in MEAN_KEYS:
            agg[key] = _mean([r.get(key) for r in mine])
        agg["conserved"] = all(bool(r["conserved"]) for r in mine)
        agg.update(bad_debt_var(np.asarray([r["bad_debt"] for r in mine], dtype=np.float64)))
        agg["venue"] = mine[0]["venue"]
        out.append(agg)
    on = pareto_frontier([(a["capital_efficiency"], a["var99_bad_debt"]) for a in out])
    for i, agg in enumerate(out):
        agg["on_frontier"] = i in on
    return out


def pareto_frontier(xy: Sequence[tuple[float | None, float | None]]) -> set[int]:
    """Return the indices of the points no other point dominates (both lower is better).

    ``q`` dominates ``p`` when ``q.x <= p.x`` and ``q.y <= p.y`` with one of them strict;
    equal points are all kept; points with a missing coordinate are never on it.
    """
    ok = [i for i, (x, y) in enumerate(xy) if x is not None and y is not None]
    front = set()
    for i in ok:
        xi, yi = xy[i]
        assert xi is not None and yi is not None
        dominated = False
        for j in ok:
            xj, yj = xy[j]
            assert xj is not None and yj is not None
            if xj <= xi and yj <= yi and (xj < xi or yj < yi):
                dominated = True
                break
        if not dominated:
            front.add(i)
    return front


def run_sweep(plan: SweepPlan, *, workers: int | None = None, dask: str | None = None,
              client: Any = None, progress: Progress | None = None) -> SweepResult:
    """Run every task of ``plan`` and return the sorted tables.

    Parameters
    ----------
    plan : SweepPlan
        From :func:`plan_sweep`.
    workers : int or None
        Local worker processes (process pool, or ``dask="local"``); default
        :func:`default_workers`, never more than the tasks. Not used with a scheduler
        address (the cluster's workers run the tasks).
    dask : str or None
        ``None``: a local process pool; ``"local"``: a ``LocalCluster``; else the address
        of a dask.distributed scheduler (``tcp://host:8786``), whose workers must have
        solvency installed and the scenario's data files at the same paths.
    client : distributed.Client or None
        An existing client to run on instead (``dask`` and ``workers`` must be None);
        it stays open.
    progress : Progress or None
        Called with ``(tasks done, tasks in total)`` as results arrive.

    Raises
    ------
    ScenarioError
        If ``workers < 1``, the scheduler cannot be reached or a run cannot be built.
    """
    if workers is not None and workers < 1:
        raise ScenarioError(f"--workers must be >= 1, got {workers}")
    if client is not None and (dask is not None or workers is not None):
        raise ValueError("run_sweep: give either client or dask/workers")
    tasks = list(plan.tasks())
    n = min(workers or default_workers(), len(tasks))
    t0 = time.perf_counter()
    if client is not None:
        results = _run_on_client(client, tasks, progress)
        backend, used = "dask client", len(client.nthreads())
    elif dask is None:
        results, backend, used = _run_processes(tasks, n, progress), "processes", n
    elif dask == "local":
        results, backend, used = _run_dask(tasks, "local", n, progress), "dask-local", n
    else:
        results = _run_dask(tasks, dask, n, progress)
        backend, used = f"dask {dask}", None
    wall = time.perf_counter() - t0
    rows = _rows(plan, results)
    return SweepResult(params=tuple(p.name for p in plan.params), rows=rows,
                       points=_aggregate(plan, rows), backend=backend, workers=used,
                       wall_s=wall, task_wall_s=float(sum(r.wall_s for r in results)),
                       task_cpu_s=float(sum(r.cpu_s for r in results)))
