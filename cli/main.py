"""The ``scoreid`` command line: one subcommand per module in ``cli.commands`` (``cli.dispatch``)."""

from __future__ import annotations

from cli.dispatch import build_parser, run_parser

#: Command modules, in the order ``scoreid --help`` lists them.
COMMAND_MODULES = (
    "cli.commands.demo",
    "cli.commands.identify",
    "cli.commands.info",
    "cli.commands.library",
    "cli.commands.spectrogram",
    "cli.commands.up",
    "cli.commands.down",
    "cli.commands.web",
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        "scoreid", "Identify piano music and follow it in sheet-music images, from audio.", COMMAND_MODULES
    )
    return run_parser(parser, argv)
