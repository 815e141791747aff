"""Every ``wherry ...`` command line shown in README.md and docs/ parses: the flags exist and take
the values shown (the ``wherry`` command is built and run up to the point where it would serve)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wherry.config import Config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"```(?:sh|bash|console|shell)\n(.*?)```", re.S)


def command_lines() -> Iterator[tuple[str, str]]:
    """(where, line) for each shell line that starts a ``wherry`` server, continuations joined."""
    for path in DOCS:
        for block in _BLOCK.findall(path.read_text(encoding="utf-8")):
            text = block.replace("\\\n", " ")
            for line in text.splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith("wherry ") and "--help" not in line and "--version" not in line:
                    yield f"{path.relative_to(ROOT)}: {line}", line


COMMANDS = list(command_lines())


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 5


@pytest.mark.parametrize(("where", "line"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_documented_command_parses(
    parse: Callable[[list[str]], Config],
    where: str,
    line: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    words = shlex.split(line, comments=True)[1:]
    monkeypatch.chdir(tmp_path)  # files the command names (certificates, a pid file) are not read here
    config = parse(words)
    assert isinstance(config, Config), where
