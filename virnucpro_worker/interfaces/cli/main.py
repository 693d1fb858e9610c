"""The entry point: the parser of every command, exit statuses, signals and logging."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from ... import __version__
from ...errors import UserError, first_line
from ...files import NewPaths
from ...redact import redact_passwords
from . import database, local, service, tools
from .common import Terminated
from .options import Parser, add_global_options


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="virnucpro", description="Find viral sequences among DNA reads and contigs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (local, database, service, tools):
        group.add_commands(commands)
    for command in commands.choices.values():
        add_global_options(command, default=argparse.SUPPRESS)
    return parser


def _terminate(_signal: int, _frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_db_before_input(sys.argv[1:] if argv is None else list(argv)))
    if args.verbose and args.quiet:
        parser.error("-v and -q: give one of them")
    _log_to_stderr(args)
    args.new_paths = NewPaths()  # what the command creates, removed again if it fails
    previous = signal.signal(signal.SIGTERM, _terminate)
    code = 1
    try:
        code = _run(args)
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)
        if code != 0:
            args.new_paths.remove()


def _run(args: argparse.Namespace) -> int:
    try:
        return args.run(args)
    except UserError as error:
        print(f"virnucpro: error: {redact_passwords(str(error))}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a folder that vanished, ...
        print(f"virnucpro: error: {redact_passwords(first_line(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("virnucpro: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("virnucpro: terminated", file=sys.stderr)
        return 143


def _log_to_stderr(args: argparse.Namespace) -> None:
    """Log lines on stderr; a worker's carry the time (it runs for days, its log is read
    later)."""
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    form = "%(levelname)s: %(message)s"
    if args.command == "worker":
        form = "%(asctime)s " + form
    logging.basicConfig(format=form, datefmt="%Y-%m-%dT%H:%M:%S%z", stream=sys.stderr)
    logging.getLogger().setLevel(level)
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))  # its INFO is chatter


def _db_before_input(argv: list[str]) -> list[str]:
    """`predict --db in.fa ...`: predict's `--db` takes an optional URL, and a next word that
    is the input (`-`, or a file other than a SQLite database) is not the URL, as argparse
    would take it; any other word stays the URL, to be checked as one."""
    words = iter(argv)
    command = None
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            command = word
            break
    if command != "predict":
        return argv
    return [
        "--db=" if word == "--db" and index + 1 < len(argv) and _is_input(argv[index + 1]) else word
        for index, word in enumerate(argv)
    ]


def _is_input(word: str) -> bool:
    if word == "-":
        return True
    try:
        with open(word, "rb") as file:
            return file.read(16) != b"SQLite format 3\0"
    except OSError:
        return False
