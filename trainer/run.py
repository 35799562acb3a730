#!/usr/bin/env python3
"""``python trainer/run.py COMMAND ...``: the trainer's command line.

Builds the corpus, pre-trains and fine-tunes the encoders, distils a smaller audio encoder,
evaluates, and exports engine files.
Each subcommand lives in ``trainer/commands/<name>.py``; the dispatcher is the core's
(``cli.dispatch``), so errors print as one line with a non-zero exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli.dispatch import build_parser, run_parser  # noqa: E402

#: Command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "trainer.commands.corpus",
    "trainer.commands.pretrain",
    "trainer.commands.finetune",
    "trainer.commands.distill",
    "trainer.commands.eval",
    "trainer.commands.export",
    "trainer.commands.export_incremental",
    "trainer.commands.hub_bank",
    "trainer.commands.pipeline",
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        "trainer/run.py",
        "scoreid trainer: corpus, pretrain, finetune, distill, eval, export",
        COMMAND_MODULES,
    )
    return run_parser(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
