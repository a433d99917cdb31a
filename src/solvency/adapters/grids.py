"""Load the scenario grids shipped as package data (``solvency/core/portfolio/grids``).

The core parses grids from text (:func:`solvency.core.portfolio.parse_grid`); this
adapter does the reading, through :mod:`importlib.resources` so that it works from a
wheel or a zip as well as from a source tree. A grid file of one's own is read with
:func:`load_grid_file`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from solvency.core.portfolio import ScenarioGrid, parse_grid

__all__ = ["GRID_PACKAGE", "grid_names", "load_grid", "load_grid_file"]

GRID_PACKAGE: Final = "solvency.core.portfolio"
_GRID_DIR: Final = "grids"


def _grid_dir() -> resources.abc.Traversable:
    return resources.files(GRID_PACKAGE).joinpath(_GRID_DIR)


def grid_names() -> list[str]:
    """Return the names of the shipped grids (file stems, e.g. ``"cme_span_16"``), sorted.

    Returns
    -------
    list of str
        One name per ``*.toml`` file in the package's grid folder.
    """
    return sorted(
        p.name.removesuffix(".toml") for p in _grid_dir().iterdir() if p.name.endswith(".toml")
    )


def load_grid(name: str) -> ScenarioGrid:
    """Read and parse a shipped grid by name.

    Parameters
    ----------
    name
        File stem: ``"cme_span_16"``, ``"deribit_pm"`` or ``"paradex_pm"``.

    Returns
    -------
    ScenarioGrid
        The parsed grid.

    Raises
    ------
    KeyError
        If no shipped grid has that name.
    solvency.core.portfolio.GridError
        If the file is malformed.
    """
    if name not in grid_names():
        msg = f"unknown grid {name!r}; shipped grids: {', '.join(grid_names())}"
        raise KeyError(msg)
    return parse_grid(_grid_dir().joinpath(f"{name}.toml").read_text(encoding="utf-8"))


def load_grid_file(path: str | Path) -> ScenarioGrid:
    """Read and parse a grid from a TOML file.

    Parameters
    ----------
    path
        Path of the file.

    Returns
    -------
    ScenarioGrid
        The parsed grid.
    """
    return parse_grid(Path(path).read_text(encoding="utf-8"))
