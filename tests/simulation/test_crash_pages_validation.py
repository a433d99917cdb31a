"""scripts/crash_pages.py rewrites docs/validation.md's generated crash-window block: a run
of some windows (``--windows D``) replaces those windows' sections and keeps the others'
as they were (before, it wrote the block from the run's windows only, so ``--windows D``
dropped every other window's verdicts from the page)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _crash_pages() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_pages_script",
                                                  REPO / "scripts" / "crash_pages.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _block(cp: ModuleType, text: str) -> str:
    return str(text.split(cp._BEGIN, 1)[1].split(cp._END, 1)[0])


def test_the_generated_block_keeps_the_windows_a_run_did_not_cover() -> None:
    cp = _crash_pages()
    text = cp.VALIDATION.read_text(encoding="utf-8")
    kept = cp.kept_sections(text)
    assert sorted(kept) == sorted(cp.WINDOWS)  # every window's section is found
    for date, lines in kept.items():
        assert lines[0].startswith("### ") and f"(crashes/{date}.md)" in lines[0]
        assert any(line.startswith("| ") for line in lines)
    # no window run: the block comes back as it was, byte for byte
    assert _block(cp, "\n".join(cp.validation_lines([], kept))) == _block(cp, text)
    # a window with no section and no run is named as missing; the others stay in order
    some = {d: v for d, v in kept.items() if d != "2024-08-05"}
    lines = cp.validation_lines([], some)
    assert "Not in this run (their pages predate it): 2024-08-05." in lines
    heads = [line for line in lines if line.startswith("### ")]
    assert heads == [kept[d][0] for d in cp.WINDOWS if d != "2024-08-05"]
