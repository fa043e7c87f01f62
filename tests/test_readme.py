"""README stays true: its op table is what the registry holds, and it opens with the two commands."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import op_table  # noqa: E402


def test_op_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(op_table.BEGIN) + len(op_table.BEGIN)
    end = readme.index(op_table.END)
    assert readme[start:end].strip() == op_table.table(), "run: python tools/op_table.py --update"


def test_readme_opens_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1:lines.index("```bash") + 3]
    assert block[0].startswith("bash tools/dev.sh demo") and block[1].startswith("bash tools/dev.sh test")


def test_worked_example_diff_is_the_code() -> None:
    """Every added line of the README's worked example ("How it works") is in the file its hunk names."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("```diff") + len("```diff"):]
    block = block[:block.index("```")]
    path, checked = None, 0
    for line in block.splitlines():
        if line.startswith("+++ b/"):
            path = ROOT / line[len("+++ b/"):]
        elif line.startswith("+") and line[1:].strip():
            assert path is not None and line[1:] in path.read_text(), f"{line!r} is not in {path}"
            checked += 1
    assert checked >= 10
