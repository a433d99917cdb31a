"""Load the scenario grids shipped as package data (``solvency/core/portfolio/grids``).

The core parses grids from text (:func:`solvency.core.portfolio.parse_grid`, schema
:class:`solvency.core.portfolio.grid.GridFile`, published as ``docs/schema/grid-v1.json``);
this adapter does the reading, through :mod:`importlib.resources` so that it works from a
wheel or a zip as well as from a source tree. :func:`load_grid` takes a shipped grid's name
or the path of a grid file of one's own (``--pm-grid NAME|FILE``, like ``--venue``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from solvency.core.portfolio import GridError, ScenarioGrid, parse_grid

__all__ = ["GRID_PACKAGE", "UnknownGridError", "grid_names", "grid_text", "load_grid",
           "load_grid_file"]

GRID_PACKAGE: Final = "solvency.core.portfolio"
_GRID_DIR: Final = "grids"


class UnknownGridError(GridError, KeyError):
    """Neither a shipped grid's name nor an existing file (a KeyError, as before)."""

    __str__ = GridError.__str__  # no quotes around the message, as KeyError would add


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


def load_grid(name_or_file: str | Path) -> ScenarioGrid:
    """Read and parse a shipped grid by name, or a grid file (TOML) by path.

    Parameters
    ----------
    name_or_file
        File stem of a shipped grid (``"cme_span_16"``, ``"deribit_pm"``,
        ``"paradex_pm"``) or the path of a TOML grid file.

    Returns
    -------
    ScenarioGrid
        The parsed grid.

    Raises
    ------
    UnknownGridError
        If it is neither a shipped grid nor an existing file (also a ``KeyError``).
    solvency.core.portfolio.GridError
        If the file is malformed: the message names the file and the dotted key.
    """
    text = str(name_or_file)
    if text in grid_names():
        return parse_grid(grid_text(text), where=f"grid {text}")
    if Path(text).is_file():
        return load_grid_file(text)
    grid_text(text)  # raises UnknownGridError
    raise AssertionError  # pragma: no cover


def grid_text(name_or_file: str | Path) -> str:
    """The TOML text of a shipped grid (by name) or of a grid file (by path): what a
    service records in its store so that a restart margins with the same grid.

    Raises
    ------
    UnknownGridError
        If it is neither a shipped grid nor an existing file.
    """
    text = str(name_or_file)
    names = grid_names()
    if text in names:
        return _grid_dir().joinpath(f"{text}.toml").read_text(encoding="utf-8")
    if Path(text).is_file():
        return Path(text).read_text(encoding="utf-8")
    msg = f"unknown grid {text!r}: neither a shipped grid ({', '.join(names)}) nor a file"
    raise UnknownGridError(msg)


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

    Raises
    ------
    solvency.core.portfolio.GridError
        If the file cannot be read or does not match the schema (file and dotted key named).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{p}: unreadable grid file ({exc})"
        raise GridError(msg) from None
    return parse_grid(text, where=str(p))
