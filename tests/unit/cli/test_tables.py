"""``print_table``: a table is printed whole, with wrapped headers, or folded into records."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from rich.table import Table

from solvency.cli.tables import fit_column_widths, print_table

NUMBERS = ("93269.506456", "92769.506456", "1394", "647", "0.006974", "91375.506456")
HEADERS = ("equity", "collateral", "initial margin", "maintenance margin", "margin ratio",
           "free collateral")


def _table(rows: int = 1) -> Table:
    table = Table(title="Account margin (binance, cross)", caption="USD")
    for h in HEADERS:
        table.add_column(h, justify="right")
    for _ in range(rows):
        table.add_row(*NUMBERS)
    return table


def _render(table: Table, width: int) -> str:
    buf = io.StringIO()
    print_table(Console(file=buf, width=width, color_system=None), table)
    return buf.getvalue()


def _cell_len(line: str) -> int:
    return len(line)  # the test text is ASCII apart from box drawing (one cell each)


def _words(out: str) -> list[str]:
    """Whitespace-separated words, box drawing (U+2500-U+257F) counted as whitespace."""
    return re.sub("[\u2500-\u257f]", " ", out).split()


def test_a_table_that_fits_is_printed_as_a_table() -> None:
    out = _render(_table(), 120)
    assert "┏" in out and "…" not in out
    assert set(NUMBERS) <= set(_words(out))
    assert all(_cell_len(line) <= 120 for line in out.splitlines())


def test_headers_wrap_at_spaces_before_anything_is_cut() -> None:
    # the natural width is 119; at 84 the headers wrap but every number keeps one line
    out = _render(_table(), 84)
    assert "┏" in out and "…" not in out
    assert set(NUMBERS) | {"maintenance", "margin"} <= set(_words(out))
    assert "maintenance margin" not in out  # wrapped
    assert all(_cell_len(line) <= 84 for line in out.splitlines())


def test_a_table_too_wide_for_40_columns_folds_into_records() -> None:
    out = _render(_table(rows=2), 40)
    assert "┏" not in out and "…" not in out
    lines = out.splitlines()
    assert lines[0] == "Account margin (binance, cross)"
    assert "  equity              93269.506456" in lines
    assert "  maintenance margin  647" in lines
    # two records, one blank line between them, then the caption
    assert lines.count("  free collateral     91375.506456") == 2
    assert lines[7] == "" and lines[-2] == "USD"
    assert all(_cell_len(line) <= 40 for line in lines)
    assert all(line == line.rstrip() for line in lines)


def test_below_the_longest_header_value_pair_each_value_gets_its_own_line() -> None:
    # 14 columns cannot hold "free collateral" beside "91375.506456": the value goes under
    # its header, whole on one line, even where that line is wider than the console
    out = _render(_table(), 10)
    assert "…" not in out
    for n in NUMBERS:
        assert f"    {n}" in out.splitlines()


def test_fit_column_widths_never_goes_below_the_longest_word() -> None:
    console = Console(file=io.StringIO(), width=200)
    table = _table()
    natural = fit_column_widths(console, table, 200)
    assert natural == [12, 12, 14, 18, 12, 15]
    narrow = fit_column_widths(console, table, 84)
    assert narrow is not None and sum(narrow) <= 84 - 7 - 12  # borders and padding
    # longest words: the numbers, "initial", "maintenance", "margin"/"ratio", "collateral"
    assert all(w >= m for w, m in zip(narrow, [12, 12, 7, 11, 8, 12], strict=True))
    assert fit_column_widths(console, table, 80) is None


@pytest.mark.parametrize("width", [60, 40, 20, 8])
def test_no_width_cuts_a_cell(width: int) -> None:
    table = Table(title="Ledger")
    table.add_column("asset")
    table.add_column("total (= deposits - withdrawals)", justify="right")
    table.add_column("positions")
    table.add_row("USDT", "2166500.000000", "BTC-PERP 0.400, ETH-PERP -5.000")
    table.add_row("BTC", "20.70000000", "")
    out = _render(table, width)
    assert "…" not in out
    words = _words(out)
    for token in ("2166500.000000", "20.70000000", "BTC-PERP", "0.400,", "-5.000", "USDT"):
        assert token in words


def test_an_empty_table_that_does_not_fit_says_so() -> None:
    table = Table(title="Exceptions: fixed (0)")
    for h in ("from (UTC)", "loss", "margin"):
        table.add_column(h)
    assert "(no rows)" in _render(table, 8)
    assert "┏" in _render(table, 80)


def test_a_title_word_longer_than_the_table_goes_above_it_whole() -> None:
    table = Table(title="state 16f140baabc5ef6d5cfc8ebbf66814e37e99",
                  caption="see 0123456789abcdef01")
    table.add_column("n")
    table.add_row("1")
    out = _render(table, 60)
    assert "16f140baabc5ef6d5cfc8ebbf66814e37e99" in _words(out)
    assert "0123456789abcdef01" in _words(out)
    assert "┏" in out and "…" not in out
