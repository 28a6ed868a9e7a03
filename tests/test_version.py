"""The version moves with the changelog: pyproject, seqlab.__version__ and CHANGELOG.md agree."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import seqlab

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_version_matches_pyproject_and_the_newest_changelog_entry():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    entries = re.findall(r"^## (\d+\.\d+\.\d+)", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert entries, "CHANGELOG.md has no '## x.y.z' entry"
    assert seqlab.__version__ == project == entries[0], (seqlab.__version__, project, entries[0])
    as_tuples = [tuple(map(int, v.split("."))) for v in entries]
    assert as_tuples == sorted(as_tuples, reverse=True), f"changelog entries out of order: {entries}"
