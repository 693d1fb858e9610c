"""What the commands share when they run: their settings, the input file, the database."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...files import NewPaths, sha256_of
from ...sequences.fasta import InputLimits, check_input_file
from ...settings import Settings, load_settings
from .options import CONFIGURED

log = logging.getLogger("virnucpro")
STANDARD_INPUT = "standard input"


class Terminated(Exception):
    """SIGTERM, from a scheduler or `timeout`: unwinds like Ctrl-C, so no partial file stays."""


def settings_from(args: argparse.Namespace) -> Settings:
    """The command's options, the VIRNUCPRO_* environment and the config file (settings.py)."""
    options = {key: value for key, value in vars(args).items() if key not in ("run", "new_paths")}
    if options.get("database_url") == CONFIGURED:
        options["database_url"] = None
    if options.pop("v1_attention", False) and not options.get("attention"):
        options["attention"] = "v1-bmm"
    settings = load_settings(options, os.environ)
    log.debug("settings: %s", settings.described())
    return settings


def invocation(settings: Settings) -> dict[str, Any]:
    """For run.json: how the result was asked for."""
    config = (
        {"path": settings.config_file, "sha256": settings.config_sha256}
        if settings.config_file
        else None
    )
    return {"command_line": ["virnucpro", *sys.argv[1:]], "config_file": config}


@contextlib.contextmanager
def input_file(argument: str, limits: InputLimits) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """(a path to read, its run.json description or None for the default), checked as a file
    (there, a regular file, readable, not empty, not too large) before anything else. Standard
    input is copied to a temporary file first, the input being checked whole before any model
    work; errors name it "standard input", not the copy."""
    if argument != "-":
        check_input_file(Path(argument), limits)
        yield Path(argument), None
        return
    with tempfile.TemporaryDirectory(prefix="virnucpro-stdin-") as folder:
        path = Path(folder) / "stdin.fa"
        with path.open("wb") as copy:
            while piece := sys.stdin.buffer.read(1 << 22):
                copy.write(piece)
        try:
            check_input_file(path, limits)
            yield path, {"path": "-", "bytes": path.stat().st_size, "sha256": sha256_of(path)}
        except InputError as error:
            raise InputError(str(error).replace(str(path), STANDARD_INPUT)) from None


def check_backend(name: str) -> None:
    from ...attention.registry import get_backend  # discovery imports no torch

    get_backend(name)


def rna_note(records: int) -> str:
    if not records:
        return ""
    return f" ({records} record{'s' if records > 1 else ''} in RNA letters: U read as T)"


def cpu_threads(workers: int | None) -> None:
    if workers:
        import torch

        torch.set_num_threads(workers)


def open_store(url: str, new_paths: NewPaths):  # -> store.Store
    """The database at `url` for a command that writes (watch_database)."""
    from ...store.store import Store

    watch_database(url, new_paths)
    return Store(url)


def watch_database(url: str, new_paths: NewPaths) -> None:
    """A SQLite file that a command creates is removed again if the command fails before it
    records anything (`keep_database` says it has)."""
    from ...store.engine import SQLITE_SIDECARS, sqlite_file

    if file := sqlite_file(url):
        new_paths.watch(file, *SQLITE_SIDECARS)


def keep_database(url: str, new_paths: NewPaths) -> None:
    from ...store.engine import sqlite_file

    if file := sqlite_file(url):
        new_paths.keep(file)


def read_store(url: str):  # -> store.Store
    """The database at `url` for a command that only reads it: it must exist."""
    from ...store.engine import check_exists

    check_exists(url)
    from ...store.store import Store  # imports torch: after the check

    return Store(url)
