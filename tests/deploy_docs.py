"""The configurations of docs/deploy.md, read from the file so that the tests run what it shows."""

from __future__ import annotations

import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"


def config_block(name: str) -> str:
    """The fenced block after ``<!-- config: NAME -->`` in docs/deploy.md."""
    text = DEPLOY.read_text()
    match = re.search(rf"<!-- config: {re.escape(name)} -->\n```\w*\n(.*?)```", text, re.DOTALL)
    assert match, f"no '{name}' configuration in {DEPLOY}"
    return match[1]


def replace_all(text: str, replacements: dict[str, str]) -> str:
    """Replace each key, which must occur in ``text`` (so a changed document fails loudly)."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in the documented configuration"
        text = text.replace(old, new)
    return text
