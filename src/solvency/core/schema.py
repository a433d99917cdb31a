"""The edge schema of the files a user writes: pydantic helpers shared by their models.

Every file format a user writes (a portfolio-margin grid, a portfolio file, ...) is read
through one pydantic model that refuses unknown keys at any depth (``extra="forbid"``),
reads decimals exactly (never through float) and publishes its JSON Schema under
``docs/schema/``. This module holds what those models share:

* :class:`Num` (``Annotated[Decimal, Num(ge=0)]``; :data:`Number`, :data:`DecimalText`):
  a decimal given as a
  TOML/JSON number (``int``, ``Decimal``; ``float`` only from the Python API, read through
  its shortest repr), with bounds; booleans and strings are refused (strings accepted
  where ``text_ok``), so are NaN and infinities; the JSON Schema says ``number`` with its
  ``minimum``/``maximum``;
* :func:`format_errors`: one line per problem, ``source: dotted.key: what was expected``,
  and for a misspelt key the keys that were expected (the closest first);
* :func:`schema_document`: the model's JSON Schema with ``$schema``, ``$id`` and title.

Pure: no IO (the adapters read the files and write the schema documents).
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Union

from pydantic import BaseModel, BeforeValidator, TypeAdapter, ValidationError, WithJsonSchema
from pydantic_core import core_schema

__all__ = [
    "SCHEMA_BASE_URL",
    "DecimalText",
    "Num",
    "Number",
    "WholeNumber",
    "format_errors",
    "schema_document",
]

SCHEMA_BASE_URL: Final = "https://github.com/solvency/solvency/docs/schema/"


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"expected a finite number, got {value}")
    return value


def _as_decimal(value: object, *, text_ok: bool, rule: str = "",
                float_ok: bool = True) -> Decimal:
    if isinstance(value, str) and text_ok:
        try:
            return _finite(Decimal(value.strip()))
        except InvalidOperation:
            raise ValueError(f"expected a decimal number, got {value!r}") from None
    # bool is an int subclass: True must not read as 1.
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        what = ("a number or a decimal string" if text_ok else "a number") + rule
        raise ValueError(f"expected {what}, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not float_ok:
        raise ValueError(f"expected a decimal string, got binary float {value!r} (it is not "
                         "the decimal it prints)")
    if isinstance(value, float):
        # Python-API callers pass floats; their shortest repr is the number they wrote.
        return _finite(Decimal(repr(value)))
    return _finite(Decimal(value))


_BOUNDS: Final = (("ge", ">=", "minimum"), ("gt", ">", "exclusiveMinimum"),
                  ("le", "<=", "maximum"), ("lt", "<", "exclusiveMaximum"))
_TEXT_PATTERN: Final = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


@dataclass(frozen=True, slots=True)
class Num:
    """Marker for ``Annotated[Decimal, Num(...)]``: exact, finite, bounded as given.

    Parameters
    ----------
    ge, gt, le, lt
        Bounds (exact: integers or decimal strings). The message and the JSON Schema
        (``minimum``, ``exclusiveMinimum``, ...) state them.
    text_ok
        Also accept a decimal string (``"0.1"``): amounts in JSON files, where a number
        would go through a float in most writers.
    float_ok
        Accept a Python ``float`` (through its shortest repr); ``False`` where the parser
        behind the schema refuses binary floats (the venue file's amounts).

    The validator and the JSON Schema are built here (not by pydantic from a ``Decimal``
    and ``Field(ge=...)``), so every supported pydantic version publishes the same schema.
    """

    ge: int | str | None = None
    gt: int | str | None = None
    le: int | str | None = None
    lt: int | str | None = None
    text_ok: bool = False
    float_ok: bool = True

    def _bounds(self) -> list[tuple[str, Decimal, str]]:
        given = {"ge": self.ge, "gt": self.gt, "le": self.le, "lt": self.lt}
        return [(op, Decimal(str(given[key])), word) for key, op, word in _BOUNDS
                if given[key] is not None]

    def check(self, value: object) -> Decimal:
        """Return ``value`` as an exact Decimal, or raise ValueError saying what was expected."""
        bounds = self._bounds()
        rule = "".join(f" {'and ' if i else ''}{o} {b}" for i, (o, b, _) in enumerate(bounds))
        d = _as_decimal(value, text_ok=self.text_ok, rule=rule, float_ok=self.float_ok)
        for op, bound, _ in bounds:
            ok = {">=": d >= bound, ">": d > bound, "<=": d <= bound, "<": d < bound}[op]
            if not ok:
                raise ValueError(f"expected a number{rule}, got {d}")
        return d

    def json_schema(self) -> dict[str, Any]:
        """Return the JSON Schema of the values :meth:`check` accepts."""
        num: dict[str, Any] = {"type": "number"}
        for _, bound, word in self._bounds():
            num[word] = int(bound) if bound == bound.to_integral_value() else float(bound)
        if not self.text_ok:
            return num
        return {"anyOf": [num, {"type": "string", "pattern": _TEXT_PATTERN}]}

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        """Validate with :meth:`check` alone (pydantic's own Decimal parsing is bypassed)."""
        return core_schema.no_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(self, core: Any, handler: Any) -> dict[str, Any]:
        """Publish :meth:`json_schema` (a fresh dict per field)."""
        return self.json_schema()


def _whole(value: object) -> int:
    # an int, or a string of one (the venue file's ppm keys have always taken both)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError("expected a whole number")


WholeNumber = Annotated[int, BeforeValidator(_whole), WithJsonSchema({
    "anyOf": [{"type": "integer"}, {"type": "string", "pattern": r"^\s*[-+]?\d+\s*$"}]})]
"""An integer, or a string of one (``"5000"``); booleans and fractions are refused."""

Number = Annotated[Decimal, Num()]
"""A finite decimal written as a number (an integer or a decimal, not a string)."""

DecimalText = Annotated[Decimal, Num(text_ok=True)]
"""A finite decimal written as a number or as a decimal string (``"0.1"``, exact)."""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None:
        return []
    if origin in (Union, types.UnionType, Annotated) or origin in (list, tuple, dict):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue  # a list index or a dict key stays inside the same item model
        field = model.model_fields.get(part)
        if field is None:
            # a mapping keyed by the user's names (markets.BTC-PERP): the value model
            continue
        found = _models_in(field.annotation)
        model = found[0] if found else None
    return model


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(root: type[BaseModel], error: Any) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        known = sorted(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown key; {hint}expected one of: {', '.join(known)}"
    kind = error["type"]
    if kind == "missing":
        return "missing (required)"
    given = error.get("input")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected an object, got {_json_type(given)}"
    if kind == "list_type":
        return f"expected a list, got {_json_type(given)}"
    text = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("literal_error", "enum", "string_type", "string_too_short",
                "string_pattern_mismatch"):
        text += f", got {given!r}"
    return text


def _json_type(value: object) -> str:
    """The JSON (or TOML) name of a parsed value's type."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"a string {value!r}"
    if isinstance(value, int | float | Decimal):
        return f"a number {value}"
    if value is None:
        return "null"
    return type(value).__name__


def format_errors(source: str, exc: ValidationError, root: type[BaseModel], *,
                  at: tuple[int | str, ...] = ()) -> str:
    """Return one line per validation error: ``source: dotted.key: what was expected``.

    Parameters
    ----------
    source
        What the input is called in the message (a file path, ``"grid"``).
    exc
        The error pydantic raised validating against ``root``.
    root
        The model validated; an unknown key's message lists the keys of the table that
        holds it, the closest to the misspelt one first.
    at
        Where ``root`` sits in the file (``("markets", "BTC-C")`` for a model validated
        inside a larger file): prefixed to every dotted key.

    Returns
    -------
    str
        The lines joined by newlines.
    """
    lines = []
    for error in exc.errors():
        where = _where((*at, *error["loc"]))
        text = _message(root, error)
        lines.append(f"{source}: {where}: {text}" if where else f"{source}: {text}")
    return "\n".join(lines)


def _types(node: dict[str, Any]) -> set[str]:
    found = {node["type"]} if isinstance(node.get("type"), str) else set()
    for alt in node.get("anyOf", []):
        found |= _types(alt)
    return found


def _number_defaults(node: Any) -> Any:
    # pydantic writes a Decimal default as a string; a number field's default is a number.
    if isinstance(node, list):
        return [_number_defaults(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _number_defaults(v) for k, v in node.items()}
    default = out.get("default")
    if isinstance(default, str) and _types(out) == {"number"}:
        d = Decimal(default)
        out["default"] = int(d) if d == d.to_integral_value() else float(d)
    return out


def schema_document(model: type[BaseModel] | TypeAdapter[Any], *, name: str, title: str,
                    description: str) -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of ``model`` as published in docs/schema.

    Parameters
    ----------
    model
        The pydantic model of the file format (or a ``TypeAdapter``: a union of models).
    name
        File name without ``.json`` (``"grid-v1"``), used in ``$id``.
    title, description
        Shown by editors.

    Returns
    -------
    dict
        ``$schema``, ``$id``, ``title``, ``description`` and the model's validation schema.
    """
    raw = (model.json_schema(mode="validation") if isinstance(model, TypeAdapter)
           else model.model_json_schema(mode="validation"))
    body = _number_defaults(raw)
    body.pop("title", None)
    body.pop("description", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE_URL}{name}.json",
        "title": title,
        "description": description,
        **body,
    }
