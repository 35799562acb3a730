"""README.md: every command runs as written from the repository root in a fresh shell.

A fresh shell has no activated venv, so a command must name the venv's programs (``.venv/bin/…``)
or be a script of the repository; placeholders (``HOST:PORT``, ``[--flag]``, ``PIECE_ID``) cannot
run as written. The commands' subcommands must exist (``scoreid --help``, ``trainer/run.py``).
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = (
    ".venv/bin/",
    "./setup.sh",
    "trainer/reproduce_default.sh",
    "curl ",
    'R=".venv/bin/python ',
    "$R ",
)
PLACEHOLDER = re.compile(r"HOST:PORT|\[--|\bPIECE_ID\b|\bDATA_DIR/|\bLIB_DIR\b|\bAUDIO\b|my-sheets|my-lib")


def readme_commands() -> list[str]:
    """Shell commands of README.md: the lines of ```bash blocks (continuations joined) and the
    ``$ `` lines of transcript blocks."""
    out, block, lang = [], False, ""
    pending = ""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            block, lang = (not block), line[3:].strip()
            continue
        if not block:
            continue
        if lang != "bash":
            if line.startswith("$ "):
                out.append(line[2:])
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line and not line.startswith("#"):
            out.append(line)
    return out


def test_readme_commands_run_in_a_fresh_shell():
    cmds = readme_commands()
    assert len(cmds) > 20
    for cmd in cmds:
        for part in re.split(r"&&|\|", cmd.split(" #")[0]):
            part = part.strip()
            if part.startswith("grep "):
                continue
            assert part.startswith(RUNNABLE), f"not runnable in a fresh shell: {cmd!r}"
        assert not PLACEHOLDER.search(cmd.split(" #")[0]), f"placeholder in a README command: {cmd!r}"


def command_names(modules: tuple[str, ...]) -> set[str]:
    return {importlib.import_module(m).NAME for m in modules}


def test_readme_subcommands_exist():
    from cli.main import COMMAND_MODULES
    from trainer.run import COMMAND_MODULES as TRAINER_MODULES

    scoreid_cmds, trainer_cmds = command_names(COMMAND_MODULES), command_names(TRAINER_MODULES)
    seen = 0
    for cmd in readme_commands():
        words = shlex.split(cmd.split(" #")[0])
        for w, nxt in zip(words, words[1:]):
            if w == ".venv/bin/scoreid":
                assert nxt in scoreid_cmds, cmd
                seen += 1
            if w in ("$R", "trainer/run.py"):
                assert nxt in trainer_cmds, cmd
                seen += 1
    assert seen > 15
