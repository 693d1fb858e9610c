"""The `virnucpro` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..errors import UserError
from ..sequences.chunking import CHUNK_SIZES

log = logging.getLogger("virnucpro")


def _prepare(args: argparse.Namespace) -> int:
    from ..sequences.prepare import prepare

    summary = prepare(args.input, args.chunk_size, args.out)
    print(
        f"{summary.records} records, {summary.bases} bp -> {summary.chunks} chunks, "
        f"{summary.frames} kept frames; wrote {summary.files.chunks}, "
        f"{summary.files.nucleotide}, {summary.files.protein}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="virnucpro", description="Find viral sequences among DNA reads and contigs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prepare = commands.add_parser(
        "prepare", help="chunk, translate and select frames exactly like the original tool"
    )
    prepare.add_argument("input", type=Path, help="FASTA (.fa/.fasta/.fna/.fas, optionally .gz)")
    prepare.add_argument("--chunk-size", type=int, choices=CHUNK_SIZES, required=True)
    prepare.add_argument("--out", type=Path, required=True, help="output directory")
    prepare.set_defaults(run=_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.run(args)
    except UserError as error:
        print(f"virnucpro: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("virnucpro: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
