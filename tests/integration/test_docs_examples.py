"""Docs as tests: the runnable examples of docs/cli.md print what the page says.

Three kinds of fenced block take part, chosen by words after the language (GitHub and
other renderers show only the language):

* ```` ```json file=NAME ````: written to ``NAME`` in the folder the commands run in;
* ```` ```console run ````: ``$ [VAR=value ...] solvency ...`` lines, each followed by the
  lines it prints (stdout and stderr). Every documented line must appear, in order, among
  the printed lines (whitespace runs compared as one space); a ``...`` line skips any
  number of lines;
* ```` ```json run="solvency ..." ````: an abbreviated ``--json`` answer. Every
  ``"key": value`` pair shown must occur in the command's JSON at some depth; a string
  value ending in ``…`` is a prefix.

Each command also has to exit 0. To refresh the numbers after a change of the engine,
run the commands shown and copy their output into the page.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).parents[2] / "docs" / "cli.md"
SOLVENCY = Path(sys.executable).parent / "solvency"
_FENCE = re.compile(r"^```(\w+)[ \t]*(.*?)\n(.*?)^```[ \t]*$", re.M | re.S)
_PAIR = re.compile(r'"([^"\\]+)":\s*("(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|true|false|null)')


@dataclass(frozen=True)
class Block:
    lang: str
    attrs: str
    body: str
    line: int


def _blocks(text: str) -> list[Block]:
    return [Block(m.group(1), m.group(2).strip(), m.group(3),
                  text.count("\n", 0, m.start()) + 1) for m in _FENCE.finditer(text)]


def _run(command: str, cwd: Path) -> tuple[str, str]:
    words = shlex.split(command)
    env = dict(os.environ)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words[:1] == ["solvency"], f"not a solvency command: {command}"
    res = subprocess.run([str(SOLVENCY), *words[1:]], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert res.returncode == 0, f"{command}: exit {res.returncode}\n{res.stdout}{res.stderr}"
    return res.stdout, res.stderr


def _norm(line: str) -> str:
    return " ".join(line.split())


def _console_cases(block: Block) -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            cases.append((line[2:], []))
        elif cases:
            cases[-1][1].append(line)
    return cases


def _check_lines(command: str, expected: list[str], output: str) -> None:
    printed = [_norm(ln) for ln in output.splitlines()]
    at = 0
    for want in (_norm(ln) for ln in expected):
        if want in ("", "..."):
            continue
        try:
            at = printed.index(want, at) + 1
        except ValueError:
            pytest.fail(f"docs/cli.md: `{command}` did not print (in this order):\n  {want}\n"
                        f"--- it printed:\n{output}")


def _pairs(doc: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((key, value))
            out += _pairs(value)
    elif isinstance(doc, list):
        for item in doc:
            out += _pairs(item)
    return out


def _check_json(command: str, documented: str, output: str) -> None:
    actual = _pairs(json.loads(output))
    for key, raw in _PAIR.findall(documented):
        want = json.loads(raw)
        found = [v for k, v in actual if k == key]
        if isinstance(want, str) and want.endswith("…"):
            ok = any(isinstance(v, str) and v.startswith(want[:-1]) for v in found)
        else:
            ok = want in found
        assert ok, (f"docs/cli.md: `{command}` --json has no \"{key}\": {raw} "
                    f"(it has {found[:5]})")


def _examples() -> list[Any]:
    blocks = _blocks(DOC.read_text(encoding="utf-8"))
    files = {m.group(1): b.body for b in blocks
             if b.lang == "json" and (m := re.fullmatch(r"file=(\S+)", b.attrs))}
    params = []
    for b in blocks:
        if b.lang == "console" and b.attrs == "run":
            for command, lines in _console_cases(b):
                params.append(pytest.param("lines", command, lines, files,
                                           id=f"L{b.line}:{command}"))
        elif b.lang == "json" and (m := re.fullmatch(r'run="([^"]+)"', b.attrs)):
            params.append(pytest.param("json", m.group(1), b.body, files,
                                       id=f"L{b.line}:{m.group(1)}"))
    return params


EXAMPLES = _examples()


def test_the_page_has_runnable_examples() -> None:
    kinds = {p.values[0] for p in EXAMPLES}
    assert kinds == {"lines", "json"} and len(EXAMPLES) >= 3


@pytest.mark.parametrize(("kind", "command", "expected", "files"), EXAMPLES)
def test_documented_example_prints_what_the_docs_show(
        tmp_path: Path, kind: str, command: str, expected: Any, files: dict[str, str]) -> None:
    for name, body in files.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    stdout, stderr = _run(command, tmp_path)
    if kind == "lines":
        _check_lines(command, expected, stdout + stderr)
    else:
        _check_json(command, expected, stdout)
