"""Print rich tables without ever cutting a cell.

Rich shrinks a table that is wider than the console by cutting cells with an ellipsis
(``80302…``), which is wrong for a risk tool: a cut number is a wrong number. The width is
``COLUMNS`` when set, else that of a terminal on stdin, stdout or stderr, else 80 (a pipe
or a log file with no terminal). :func:`print_table` picks one of three layouts at that
width:

1. the table at its natural width, when that fits;
2. the table with wrapping columns narrowed and long headers wrapped at their spaces,
   when every column still holds its longest word (a number never has a space, so it
   stays on one line);
3. otherwise a vertical fold: the title, then one record per row, ``header  value`` lines
   (records separated by a blank line), and the caption. Where even the records do not fit,
   each value goes on its own line under its header, printed without wrapping or cropping.

No layout cuts a cell or marks it with an ellipsis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.style import StyleType
from rich.table import Column, Table
from rich.text import Text

__all__ = ["fit_column_widths", "print_table"]

_UNBOUNDED = 10_000
_GAP = 2  # between a header and its value in the vertical fold
_INDENT = "  "  # a value under its header in the narrowest fold


@dataclass(frozen=True, slots=True)
class _Span:
    """Content width of a column (padding excluded): longest word and longest line."""

    need: int
    full: int


def _measure(console: Console, renderable: RenderableType) -> _Span:
    m = Measurement.get(console, console.options.update_width(_UNBOUNDED), renderable)
    return _Span(m.minimum, m.maximum)


def _span(console: Console, table: Table, column: Column) -> _Span:
    items: list[RenderableType] = list(column.cells)
    if table.show_header:
        items.append(column.header)
    if table.show_footer:
        items.append(column.footer)
    spans = [_measure(console, r) for r in items]
    floor = column.min_width or 0
    return _Span(max([floor, *(s.need for s in spans)]), max([floor, *(s.full for s in spans)]))


def fit_column_widths(console: Console, table: Table, width: int) -> list[int] | None:
    """Content widths that fit ``table`` into ``width`` columns without cutting a word.

    Each column gets at least its longest word (header included) and at most its longest
    line; when not every column gets its longest line, the widest columns are narrowed to a
    common width. Return None when even the longest words do not fit.
    """
    spans = [_span(console, table, c) for c in table.columns]
    # padding and borders exactly as rich lays out a table (Table.__rich_console__)
    pads = sum(table._get_padding_width(i) for i in range(len(table.columns)))
    room = width - table._extra_width - pads
    need = sum(s.need for s in spans)
    if need > room:
        return None
    if sum(s.full for s in spans) <= room:
        return [s.full for s in spans]

    def capped(cap: int) -> list[int]:
        return [max(s.need, min(s.full, cap)) for s in spans]

    # the widest columns give way first: cap every column at the largest common width
    # that fits (never below its longest word), as rich itself shrinks wrapping columns
    lo, hi = 0, max(s.full for s in spans)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(capped(mid)) <= room:
            lo = mid
        else:
            hi = mid - 1
    widths = capped(lo)
    spare = room - sum(widths)
    for i, s in enumerate(spans):
        if spare and widths[i] < s.full:
            widths[i] += 1
            spare -= 1
    return widths


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` on ``console`` at its width, folding it when it does not fit.

    The columns of ``table`` are set in place to fixed widths with ``overflow="fold"``.
    """
    if not table.columns:
        console.print(table)
        return
    widths = fit_column_widths(console, table, console.width)
    if widths is None:
        _print_records(console, table)
        return
    for column, w in zip(table.columns, widths, strict=True):
        column.width = w
        column.min_width = column.max_width = None
        column.overflow = "fold"
    # rich sets the title and caption within the table's width: one with a longer word goes
    # above (below) the table instead, wrapped at the console's width
    span = (sum(widths) + table._extra_width
            + sum(table._get_padding_width(i) for i in range(len(widths))))
    title, caption = table.title, table.caption
    if title is not None and _measure(console, title).need > span:
        table.title = None
        _print_wrapped(console, _text(console, title, table.title_style or "table.title"))
    if caption is not None and _measure(console, caption).need > span:
        table.caption = None
    console.print(table)
    if caption is not None and table.caption is None:
        _print_wrapped(console, _text(console, caption, table.caption_style or "table.caption"))


def _text(console: Console, renderable: RenderableType, style: StyleType = "") -> Text:
    if isinstance(renderable, Text):
        return renderable
    if isinstance(renderable, str):
        return console.render_str(renderable, style=style)
    return Text(str(renderable), style=style)


def _print_records(console: Console, table: Table) -> None:
    width = console.width - len(_INDENT)
    header_style = table.header_style or "table.header"
    keys = [_text(console, c.header if table.show_header else "", c.header_style or header_style)
            for c in table.columns]
    rows = [[_text(console, v, c.style or "") for v, c in zip(row, table.columns, strict=True)]
            for row in zip(*(list(c.cells) for c in table.columns), strict=True)]
    if table.title is not None:
        _print_wrapped(console, _text(console, table.title, table.title_style or "table.title"))
    key_spans = [_measure(console, k) for k in keys] or [_Span(0, 0)]
    value_spans = [_measure(console, v) for row in rows for v in row] or [_Span(0, 0)]
    k_need, k_full = max(s.need for s in key_spans), max(s.full for s in key_spans)
    v_need, v_full = max(s.need for s in value_spans), max(s.full for s in value_spans)
    key_w = min(k_full, max(k_need, width - _GAP - v_full))
    value_w = min(v_full, width - _GAP - key_w)
    side_by_side = value_w >= v_need
    for n, row in enumerate(rows):
        if n:
            console.print()
        for key, value in zip(keys, row, strict=True):
            if side_by_side:
                lines = _side_by_side(key, key_w, value, value_w)
            else:  # even the longest value word does not fit beside its header
                lines = [Text(_INDENT) + key, Text(_INDENT * 2) + value]
            for line in lines:
                console.print(line, soft_wrap=True)  # no further wrapping nor cropping
    if not rows:
        console.print(_INDENT + "(no rows)", soft_wrap=True)
    if table.caption is not None:
        _print_wrapped(console, _text(console, table.caption,
                                      table.caption_style or "table.caption"))
    console.print()


def _print_wrapped(console: Console, text: Text) -> None:
    for line in _wrap(text, console.width):
        console.print(line, soft_wrap=True)


def _wrap(text: Text, width: int) -> list[Text]:
    """Lines of at most ``width`` cells broken at spaces only; a longer word keeps a line."""
    lines: list[Text] = []
    for para in text.split(allow_blank=True):
        plain = para.plain
        breaks: list[int] = []
        start, has_word = 0, False
        for word in re.finditer(r"\S+", plain):
            if has_word and cell_len(plain[start:word.end()]) > width:
                breaks.append(word.start())
                start = word.start()
            has_word = True
        for line in para.divide(breaks):
            line.rstrip()
            lines.append(line)
    return lines


def _side_by_side(key: Text, key_w: int, value: Text, value_w: int) -> list[Text]:
    """``key  value`` lines: both wrapped at spaces within their widths, value aligned."""
    key_lines = _wrap(key, key_w)
    value_lines = _wrap(value, value_w)
    lines = []
    for i in range(max(len(key_lines), len(value_lines))):
        line = Text(_INDENT)
        if i < len(key_lines):
            line.append_text(key_lines[i])
        if i < len(value_lines):
            line.pad_right(len(_INDENT) + key_w + _GAP - line.cell_len)
            line.append_text(value_lines[i])
        line.rstrip()
        lines.append(line)
    return lines
