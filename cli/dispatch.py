"""The command-line dispatcher shared by ``scoreid`` (``cli.main``) and ``trainer/run.py``.

Each command module defines ``NAME``, ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Errors a user can cause are raised as ``UserError`` (or the input errors of
the core, e.g. ``AudioError``) and printed as one line ``scoreid: error: ...`` with a non-zero
exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from scoreid import __version__
from scoreid.audio.io import AudioError
from scoreid.contract import ContractError
from scoreid.errors import UserError
from synthesis.synth import SynthError

USER_ERRORS: tuple[type[BaseException], ...] = (UserError, AudioError, ContractError, SynthError)


def build_parser(prog: str, description: str, modules: tuple[str, ...]) -> argparse.ArgumentParser:
    """An argparse parser with one subcommand per command module (shared with ``trainer/run.py``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"scoreid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        mod: ModuleType = importlib.import_module(name)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def run_parser(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, configure logging, run the chosen command; user errors become one line + exit code."""
    args = parser.parse_args(argv)
    logging.basicConfig(  # the console gets warnings (-v: everything); commands print what they do
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as e:
        print(f"scoreid: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        print("scoreid: interrupted", file=sys.stderr)
        return 130
