"""docs/results.md: every markdown table parses, and every ``seqlab COMMAND`` it quotes in code exists."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import pytest

import seqlab.bench
from seqlab.cli import COMMANDS

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results.md"

FENCE = re.compile(r"^(```|~~~)")
DELIMITER_CELL = re.compile(r"^:?-+:?$")
# `seqlab train ...`, `python -m seqlab train ...`, `OMP_NUM_THREADS=1 seqlab train ...`, `a && seqlab eval ...`;
# not seqlab.cli, src/seqlab/..., seqlab --version.
COMMAND = re.compile(r"(?:^|[\s;&|(`$])seqlab\s+([A-Za-z][\w-]*)(?:\s+([A-Za-z][\w-]*))?")


def cells(row: str) -> list[str]:
    """The cells of a table row: split at pipes that are not escaped (GFM: ``\\|`` is a pipe inside a cell)."""
    body = row.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip() for c in re.split(r"(?<!\\)\|", body)]


def tables(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each table: consecutive lines starting with '|' outside code blocks."""
    found, current, start, fenced = [], [], 0, False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.strip()):
            fenced = not fenced
        if not fenced and line.lstrip().startswith("|"):
            if not current:
                start = number
            current.append(line)
            continue
        if current:
            found.append((start, current))
            current = []
    if current:
        found.append((start, current))
    return found


def table_problems(text: str) -> list[str]:
    """One line per table that does not parse: no delimiter row, or a row whose cell count is not the header's."""
    problems = []
    for start, lines in tables(text):
        header = cells(lines[0])
        if len(lines) < 2 or not all(DELIMITER_CELL.match(c) for c in cells(lines[1])):
            problems.append(f"line {start}: a table without a delimiter row (|---|---|) under its header")
            continue
        for offset, line in enumerate(lines[1:], 1):
            if len(cells(line)) != len(header):
                problems.append(f"line {start + offset}: {len(cells(line))} cells, the header has {len(header)}")
    return problems


def code_texts(text: str) -> list[tuple[int, str]]:
    """(line number, text) of every fenced code block line and every inline code span."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if fenced:
            out.append((number, re.sub(r"(^|\s)#.*$", "", line)))  # a shell comment is prose
            continue
        for match in re.finditer(r"(`+)(.+?)\1", line):  # `code` and ``code with ` inside``
            out.append((number, match.group(2)))
    return out


def unknown_commands(text: str) -> list[str]:
    """One line per quoted ``seqlab COMMAND`` whose COMMAND the CLI has not (or ``seqlab bench NAME``, NAME)."""
    benchmarks = {m.name for m in pkgutil.iter_modules(seqlab.bench.__path__)}
    problems = []
    for number, code in code_texts(text):
        for match in COMMAND.finditer(code):
            command, argument = match.groups()
            if command not in COMMANDS:
                problems.append(
                    f"line {number}: `seqlab {command}` is not a command; commands: {', '.join(sorted(COMMANDS))}"
                )
            elif command == "bench" and argument and argument not in benchmarks and argument.islower():
                problems.append(
                    f"line {number}: `seqlab bench {argument}`: no such benchmark; "
                    f"benchmarks: {', '.join(sorted(benchmarks))}"
                )
    return problems


def test_results_page_tables_parse():
    text = RESULTS.read_text(encoding="utf-8")
    assert tables(text), "docs/results.md has no table"
    assert table_problems(text) == []


def test_results_page_quotes_only_existing_commands():
    text = RESULTS.read_text(encoding="utf-8")
    quoted = [m.group(1) for _, code in code_texts(text) for m in COMMAND.finditer(code)]
    assert "train" in quoted  # the page does quote commands: the check reads them
    assert unknown_commands(text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n", ["line 3: 3 cells, the header has 2"]),
        ("| a | b |\n| 1 | 2 |\n", ["line 1: a table without a delimiter row (|---|---|) under its header"]),
        ("| a | b |\n|:--|--:|\n| `x \\| y` | 2 |\n\n```\n| not | a table\n```\n", []),
    ],
)
def test_table_check_finds_a_broken_table(text, expected):
    assert table_problems(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Run `seqlab trian configs/x.toml`.", ["line 1: `seqlab trian` is not a command"]),
        ("```\nOMP_NUM_THREADS=1 seqlab evaluate RUN\n```\n", ["line 2: `seqlab evaluate` is not a command"]),
        ("`seqlab bench recurent --quick`", ["line 1: `seqlab bench recurent`: no such benchmark"]),
        ("```\nseqlab data list   # the datasets seqlab knows\n```\n", []),
        (
            "`seqlab train x.toml && seqlab runs`, ``python -m seqlab compare c.toml``, `seqlab --version`, "
            "seqlab frobnicate outside code, `src/seqlab/cli.py`, `seqlab.cli.COMMANDS`",
            [],
        ),
    ],
)
def test_command_check_finds_a_command_that_does_not_exist(text, expected):
    problems = unknown_commands(text)
    assert [p.split(";")[0] for p in problems] == expected
