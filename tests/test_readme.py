"""The README stays true: generated tables match the code, CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

from features.docs import GENERATED

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block(text: str, begin: str, end: str) -> str:
    return text[text.index(begin) : text.index(end) + len(end)]


def test_generated_tables_match_the_code() -> None:
    for begin, end, render in GENERATED:
        assert _block(README, begin, end) == render(), (
            f"README block {begin[:20]} is stale: run `.venv/bin/riskctl docs`"
        )


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = re.findall(r"^(bash \.ci/setup && .+?)\s+#", README, flags=re.MULTILINE)
    assert len(commands) == 2, commands
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_commands = [
        line
        for line in ci.splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_commands == [test_command]


def test_every_cli_command_in_the_readme_exists() -> None:
    from serving.cli import app

    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    registered |= {g.name for g in app.registered_groups}
    mentioned = set(re.findall(r"`riskctl ([\w-]+)", README))
    assert mentioned <= registered, mentioned - registered
