"""Several venues on one price path and one clock (issue 22, the lab's first slice).

A scenario's ``[[venues]]`` names the venues (``name``, ``preset``, optionally its own
``insurance_fund`` and ``population_share``); :func:`run_venues`
drives each venue's real engine over the same paths, built once from the scenario's
seeds, on the same steps. The links between venues (liquidity through arbitrageurs,
shared traders, shared collateral: docs/contagion.md) are not modelled yet: the only
setting is ``links=()`` (``--links none``), under which nothing one venue does reaches
another, so each venue's run *is* its single-venue run and its figures equal
``solvency simulate --venue PRESET`` exactly (a test holds them equal). The result keeps
both views the linked runs will need: ``venues`` (the run with the links) and
``isolated`` (each venue alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from solvency.sim.run import Progress, RunResult, run_named
from solvency.sim.scenario import Scenario, ScenarioError

__all__ = ["LINKS", "MultiVenueResult", "parse_links", "run_venues"]

LINKS: Final = ("liquidity", "traders", "collateral")
"""The links between venues the issue names; none is modelled yet."""


@dataclass(frozen=True, slots=True)
class MultiVenueResult:
    """A multi-venue run: each venue's run with ``links`` and each venue alone, by name."""

    links: tuple[str, ...]
    venues: dict[str, RunResult]
    isolated: dict[str, RunResult]


def parse_links(text: str) -> tuple[str, ...]:
    """``--links``: ``none``, or link names separated by commas (refused: not modelled).

    Raises
    ------
    ScenarioError
        For an unknown link, or one not modelled yet, naming both lists.
    """
    names = [x.strip() for x in text.split(",") if x.strip()]
    if names == ["none"]:
        return ()
    unknown = sorted(set(names) - set(LINKS))
    if unknown or not names:
        raise ScenarioError(f"--links: {unknown or text!r} unknown; give none or some of "
                            f"{', '.join(LINKS)}")
    raise ScenarioError(f"--links: {', '.join(names)} not modelled yet (docs/contagion.md: "
                        "only --links none runs today)")


def run_venues(scenario: Scenario, *, links: Sequence[str] = (), jobs: int = 1,
               progress: Progress | None = None) -> MultiVenueResult:
    """Run the scenario's ``[[venues]]`` on one path and one clock.

    Parameters
    ----------
    scenario : Scenario
        A scenario with ``venues``.
    links : Sequence[str]
        The links between venues; only ``()`` (none) runs today.
    jobs : int
        Processes to run the venues in (as ``simulate --compare``: the same results).
    progress : Progress or None
        Called with ``(done, total)`` points.

    Raises
    ------
    ScenarioError
        If the scenario lists no venues, or ``links`` names any link.
    """
    if not scenario.venues:
        raise ScenarioError("the scenario lists no [[venues]]")
    if links:
        raise ScenarioError(f"links {', '.join(links)} not modelled yet (docs/contagion.md)")
    runs = {v.name: (v.scenario_of(scenario), v.preset) for v in scenario.venues}
    # one path set for every venue, built once from the scenario's seeds
    venues = run_named(scenario, runs, jobs=jobs, progress=progress)
    # no link: nothing one venue does reaches another, so each venue's run with the
    # links is its run alone (the same result, not a second computation)
    return MultiVenueResult(links=(), venues=venues, isolated=dict(venues))
