"""The README is the way in: short, with the two commands users and CI copy, and no dead links.

The rest of the manual is checked by `mkdocs build --strict` in scripts/test.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

INSTALL_AND_RUN = 'python -m venv .venv && . .venv/bin/activate && pip install . && carbonfast run -- python -c "sum(i * i for i in range(10**7))"'  # noqa: E501
TEST_COMMAND = "./scripts/test"

# [text](target) and [text](target "title"); images too.
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _fenced_blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _prose(text: str) -> str:
    """The README without its code blocks, where a bracket is code, not a link."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the manual belongs in docs/"


def test_readme_has_the_two_commands_as_whole_lines() -> None:
    blocks = _fenced_blocks(README.read_text(encoding="utf-8"))
    assert [INSTALL_AND_RUN] in blocks
    assert [TEST_COMMAND] in blocks


def test_readme_relative_links_point_at_files() -> None:
    text = _prose(README.read_text(encoding="utf-8"))
    targets = LINK.findall(text)
    assert targets, "no links found: the pattern or the README changed"
    dead = []
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL, or an anchor in the README itself
        path = unquote(target.split("#", 1)[0])
        if not (README.parent / path).exists():
            dead.append(target)
    assert not dead, f"README.md links to missing files: {dead}"
