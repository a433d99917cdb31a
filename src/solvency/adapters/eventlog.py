"""Event logs: JSON Lines files in and out, and venue files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from solvency.core.model.events import EventError, event_to_json
from solvency.core.model.presets import PRESETS, load_preset, venue_from_data
from solvency.core.model.venue import ConfigError, Venue
from solvency.engine.inputs import AnyInput
from solvency.engine.inputs import parse_input_line as _parse_line

__all__ = ["LineError", "load_json_file", "load_venue", "read_events", "write_events"]


@dataclass(frozen=True, slots=True)
class LineError:
    """A line of an event file that could not be parsed."""

    line: int
    reason: str
    detail: str


def read_events(path: Path) -> Iterator[AnyInput | LineError]:
    """Yield the events of a JSON Lines file, or a :class:`LineError` per bad line.

    Blank lines and lines starting with ``#`` are skipped.
    """
    # utf-8-sig: a file saved with a byte-order mark (Windows editors) reads as without
    with path.open("r", encoding="utf-8-sig") as fh:
        for n, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                yield _parse_line(line)
            except EventError as exc:
                yield LineError(n, exc.reason, exc.detail)


def write_events(path: Path, events: list[Any]) -> None:
    """Write out-events as JSON Lines."""
    with path.open("w", encoding="utf-8") as fh:
        for ev in events:
            fh.write(json.dumps(event_to_json(ev), separators=(",", ":"), default=str) + "\n")


def load_json_file(path: Path) -> Any:
    """Read a JSON (or TOML, by extension) file with exact decimals; precise errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                          ) from None
    if path.suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text, parse_float=Decimal)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                          f"{exc.msg}") from None


def load_venue(name_or_file: str) -> Venue:
    """A preset by name, or a venue file (``{"preset": NAME, ...overrides}`` or full)."""
    if name_or_file in PRESETS:
        return load_preset(name_or_file)
    path = Path(name_or_file)
    if not path.exists():
        raise ConfigError(f"venue {name_or_file!r} is neither a preset "
                          f"({', '.join(sorted(PRESETS))}) nor a file")
    data = load_json_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a venue file must hold an object")
    return venue_from_data(data, source=str(path))
