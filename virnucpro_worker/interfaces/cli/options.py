"""The options several commands share, the parser class and the argument types."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from ...pipeline.regions import RegionRule
from ...redact import redact_passwords
from ...sequences.chunking import CHUNK_SIZES

INPUT_HELP = (
    "FASTA or FASTQ, plain or compressed (gzip, bzip2, xz: recognised by content), or "
    "unaligned BAM/CRAM (the bam extra); '-' reads standard input"
)


# What `add_subparsers` returns: each command module adds its commands to it.
Commands = argparse._SubParsersAction
CONFIGURED = ""  # `predict --db` with no URL: the configured database


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error, naming where the help is; a password
    in a mistyped argument is hidden there too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"virnucpro: error: {redact_passwords(message)} (see `{self.prog} --help`)\n")


def positive(text: str) -> int:
    value = non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def add_model_options(parser: argparse.ArgumentParser, attention: bool = True) -> None:
    group = parser.add_argument_group("models (default: the config file's)")
    group.add_argument(
        "--models",
        metavar="DIR",
        help="a model folder: one esm2_*.pt, one DNABERT-S sub-folder, 300_model.pth and/or "
        "500_model.pth (see README)",
    )
    group.add_argument(
        "--esm",
        metavar="NAME|FILE",
        help="ESM-2: a fair-esm checkpoint file or model name (default esm2_t36_3B_UR50D, "
        "looked up in the torch hub cache)",
    )
    group.add_argument("--dnabert", metavar="DIR", help="DNABERT-S: a Hugging Face folder")
    group.add_argument(
        "--classifier",
        metavar="FILE",
        help="the classifier: the original 300_model.pth/500_model.pth, a state dict or "
        ".safetensors",
    )
    group.add_argument(
        "--demo-models",
        action="store_true",
        default=None,
        help="tiny built-in models: runs offline, predictions are MEANINGLESS",
    )
    run = parser.add_argument_group("how to run them")
    if attention:
        run.add_argument(
            "--attention", metavar="NAME", help="attention backend (see `virnucpro backends`)"
        )
        run.add_argument(
            "--v1-attention", action="store_true", help="the same as --attention v1-bmm"
        )
    run.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    run.add_argument(
        "--dtype", choices=("fp32", "fp16", "bf16"), help="default bf16 on CUDA, fp32 on the CPU"
    )


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        dest="database_url",
        metavar="URL",
        help="sqlite:///FILE or postgresql://... (default: $VIRNUCPRO_DATABASE_URL, the config "
        "file, else SQLite in ~/.local/share/virnucpro)",
    )


def add_service_options(parser: argparse.ArgumentParser, uses_redis: bool = True) -> None:
    """--redis and --db: every command that works with the service takes both, so that one
    set of options (or an alias) serves them all."""
    parser.add_argument(
        "--redis",
        dest="redis_url",
        metavar="URL",
        help="redis://[:PASSWORD@]HOST:PORT/DB (default: $VIRNUCPRO_REDIS_URL, the config file, "
        "else redis://127.0.0.1:6379/0)"
        + ("" if uses_redis else "; accepted and checked, but this command does not use Redis"),
    )
    add_database_option(parser)


def add_global_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """--config, -v and -q, before the command or after it (there `default` is SUPPRESS, so
    that a command's parser does not overwrite what was given before it)."""
    parser.add_argument(
        "--config", metavar="FILE", default=default, help="settings file (default: see README)"
    )
    loudness = parser.add_mutually_exclusive_group()
    flag = {"action": "store_true", "default": False if default is None else default}
    loudness.add_argument("-v", "--verbose", help="debug messages too", **flag)
    loudness.add_argument("-q", "--quiet", help="warnings and errors only", **flag)


def add_region_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("viral regions (docs/ALGORITHM.md 10)")
    group.add_argument(
        "--region-min-chunks",
        type=positive,
        default=RegionRule.min_chunks,
        metavar="N",
        help="viral chunks a region must hold (default: %(default)s)",
    )
    group.add_argument(
        "--region-max-gap",
        type=non_negative,
        default=RegionRule.max_gap,
        metavar="N",
        help="non-viral or unscored chunks bridged between viral ones (default: %(default)s)",
    )


def add_embeddings_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--embeddings",
        nargs="?",
        const="float32",
        choices=("float16", "float32"),
        help="also write embeddings.safetensors: every kept frame's DNABERT-S and ESM-2 "
        "features, in this dtype (default float32)",
    )


def region_rule(args: argparse.Namespace) -> RegionRule:
    return RegionRule(args.region_min_chunks, args.region_max_gap)


def add_chunk_size(parser: argparse.ArgumentParser, default: int | None = None) -> None:
    parser.add_argument(
        "--chunk-size",
        type=int,
        choices=CHUNK_SIZES,
        required=default is None,
        default=default,
        help="chunk length in bp; selects the classifier trained on it"
        + (f" (default {default})" if default else ""),
    )
