"""The `virnucpro` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..config import load_config
from ..errors import UserError
from ..sequences.chunking import CHUNK_SIZES

if TYPE_CHECKING:  # the heavy modules load only when a command needs them
    from ..pipeline.predictor import ModelChoice


def _prepare(args: argparse.Namespace) -> int:
    from ..sequences.prepare import default_workers, prepare

    workers = args.workers or default_workers()
    summary = prepare(args.input, args.chunk_size, args.out, workers=workers)
    print(
        f"{summary.records} records, {summary.bases} bp -> {summary.chunks} chunks, "
        f"{summary.frames} kept frames; wrote {summary.files.chunks}, "
        f"{summary.files.nucleotide}, {summary.files.protein}"
    )
    return 0


def _model_choice(args: argparse.Namespace) -> ModelChoice:
    from ..attention.registry import choose_backend_name
    from ..models.demo import cached_demo_models
    from ..models.devices import resolve_device, resolve_dtype
    from ..models.esm2 import DEFAULT_ESM
    from ..pipeline.predictor import ModelChoice

    config = load_config()
    if args.demo_models:
        if args.esm or args.dnabert or args.classifier:
            raise UserError("--demo-models cannot be combined with --esm, --dnabert, --classifier")
        paths = cached_demo_models()
        esm, dnabert, classifier = paths.esm, paths.dnabert, paths.classifier
    else:
        esm = args.esm or config.get("esm") or DEFAULT_ESM
        dnabert, classifier = (
            args.dnabert or config.get("dnabert"),
            args.classifier or config.get("classifier"),
        )
        if not dnabert or not classifier:
            raise UserError(
                "give --dnabert DIR and --classifier FILE (or set them in the config file), "
                "or use --demo-models"
            )
    device = resolve_device(args.device or config.get("device"))
    return ModelChoice(
        esm=esm,
        dnabert=Path(dnabert),
        classifier=Path(classifier),
        attention=choose_backend_name(
            args.attention, args.v1_attention, configured=config.get("attention")
        ),
        device=device,
        dtype=resolve_dtype(args.dtype or config.get("dtype"), device),
        demo=args.demo_models,
    )


def _predict(args: argparse.Namespace) -> int:
    from ..pipeline.predictor import Predictor
    from ..pipeline.run import predict_file, scan_input

    summary = scan_input(args.input)  # bad input fails in seconds, before minutes of loading
    run = predict_file(
        Predictor.load(_model_choice(args)),
        args.input,
        args.chunk_size,
        args.out,
        keep_intermediate=args.keep_intermediate,
        show_progress=not args.no_progress,
        summary=summary,
    )
    counts = run["counts"]
    print(
        f"{counts['records']} records -> {counts['kept_frames']} kept frames in "
        f"{counts['scored_chunks']} chunks, {counts['viral_chunks']} viral; results in {args.out}"
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..pipeline.compare import VALIDATE_FROM, compare_backends
    from ..pipeline.predictor import Predictor
    from ..pipeline.run import scan_input

    first, second = args.backends
    if first == second:
        raise UserError(f"--backends needs two different backends, not {first} twice")
    scan_input(args.input)
    args.attention, args.v1_attention = first, False
    report = compare_backends(
        Predictor.load(_model_choice(args)), second, args.input, args.chunk_size
    )
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    embedding, prediction = report["embedding"], report["prediction"]
    correlation = prediction["virus_score_correlation"]
    print(
        f"{report['frames']} frames, {first} ({report['backends'][first]}) vs "
        f"{second} ({report['backends'][second]})"
    )
    print(
        f"embedding cosine min {embedding['cosine_min']:.6f} mean {embedding['cosine_mean']:.6f}"
        f"; |diff| mean {embedding['mean_abs_diff']:.3g} max {embedding['max_abs_diff']:.3g}"
    )
    print(
        f"label agreement {prediction['label_agreement_percent']:.2f}%; virus score "
        f"correlation {'n/a' if correlation is None else f'{correlation:.6f}'}"
    )
    print(f"recommendation: {report['recommendation']}")
    return 0 if prediction["label_agreement_percent"] >= VALIDATE_FROM else 1


def _backends(args: argparse.Namespace) -> int:
    from ..attention.registry import available_backends
    from ..models.devices import dtype_name, resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    print(
        f"attention backends, with the kernels they would use on {device} in {dtype_name(dtype)}:"
    )
    for name, backend in sorted(available_backends().items()):
        esm, dnabert = backend.kernels(device, dtype)
        print(f"  {name:14} ESM-2: {esm:14} DNABERT-S: {dnabert:14} {backend.description}")
    return 0


def _demo_models(args: argparse.Namespace) -> int:
    from ..models.demo import DEMO_SEED, write_demo_models

    paths = write_demo_models(args.out, DEMO_SEED if args.seed is None else args.seed)
    print(
        f"demo models (meaningless predictions): --esm {paths.esm} --dnabert {paths.dnabert} "
        f"--classifier {paths.classifier}"
    )
    return 0


def _convert_classifier(args: argparse.Namespace) -> int:
    from ..models.classifier import convert_classifier

    model = convert_classifier(args.source, args.target)
    print(f"wrote {args.target} (from {model.format} {args.source})")
    return 0


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument(
        "--esm", help="fair-esm model name or checkpoint file (default esm2_t36_3B_UR50D)"
    )
    group.add_argument("--dnabert", type=Path, help="DNABERT-S Hugging Face folder")
    group.add_argument(
        "--classifier",
        type=Path,
        help="classifier: the original 300/500_model.pth, a state_dict or .safetensors",
    )
    group.add_argument(
        "--demo-models",
        action="store_true",
        help="tiny built-in models: runs offline, predictions are MEANINGLESS",
    )
    group.add_argument("--attention", help="attention backend (see `virnucpro backends`)")
    group.add_argument("--v1-attention", action="store_true", help="alias for --attention v1-bmm")
    group.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    group.add_argument(
        "--dtype", choices=("fp32", "fp16", "bf16"), help="default bf16 on CUDA, fp32 on CPU"
    )


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
    prepare.add_argument("--workers", type=int, help="processes (default: one per CPU)")
    prepare.set_defaults(run=_prepare)

    predict = commands.add_parser("predict", help="predict viral chunks and sequences")
    predict.add_argument("input", type=Path, help="FASTA (.fa/.fasta/.fna/.fas, optionally .gz)")
    predict.add_argument("--chunk-size", type=int, choices=CHUNK_SIZES, required=True)
    predict.add_argument("--out", type=Path, required=True, help="output directory")
    _add_model_options(predict)
    predict.add_argument(
        "--keep-intermediate",
        action="store_true",
        help="also write the chunk/frame files and STEM_merged.pt",
    )
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.set_defaults(run=_predict)

    compare = commands.add_parser(
        "compare-attention", help="measure how far two attention backends' results differ"
    )
    compare.add_argument("input", type=Path)
    compare.add_argument("--chunk-size", type=int, choices=CHUNK_SIZES, default=500)
    _add_model_options(compare)
    compare.add_argument(
        "--backends", nargs=2, metavar=("A", "B"), default=("flash-varlen", "v1-bmm")
    )
    compare.add_argument("--report", type=Path, help="write the full report as JSON")
    compare.set_defaults(run=_compare)

    backends = commands.add_parser("backends", help="list attention backends and their kernels")
    backends.add_argument("--device")
    backends.add_argument("--dtype", choices=("fp32", "fp16", "bf16"))
    backends.set_defaults(run=_backends)

    demo = commands.add_parser("demo-models", help="write the tiny demo models")
    demo.add_argument("--out", type=Path, required=True)
    demo.add_argument("--seed", type=int, help="random seed (default: the built-in one)")
    demo.set_defaults(run=_demo_models)

    convert = commands.add_parser("convert-classifier", help="classifier -> .safetensors")
    convert.add_argument("source", type=Path)
    convert.add_argument("target", type=Path)
    convert.set_defaults(run=_convert_classifier)
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
    except OSError as error:  # an output path that cannot be written, a full disk, ...
        print(f"virnucpro: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("virnucpro: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
