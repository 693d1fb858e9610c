"""Commands that run the pipeline on this machine: prepare, predict, compare-attention."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from ...errors import UserError
from ...files import check_writable_file, check_writable_folder
from ..loading import load_predictor
from .common import (
    check_backend,
    cpu_threads,
    input_file,
    invocation,
    rna_note,
    settings_from,
)
from .options import (
    CONFIGURED,
    INPUT_HELP,
    Commands,
    add_chunk_size,
    add_embeddings_option,
    add_model_options,
    add_region_options,
    positive,
    region_rule,
)

log = logging.getLogger("virnucpro")


def add_commands(commands: Commands) -> None:
    _add_prepare(commands)
    _add_predict(commands)
    _add_compare(commands)


def _add_prepare(commands: Commands) -> None:
    prepare = commands.add_parser(
        "prepare", help="chunk, translate and select frames exactly like the original tool"
    )
    prepare.add_argument("input", help=INPUT_HELP)
    add_chunk_size(prepare)
    prepare.add_argument("--out", type=Path, required=True, help="output folder")
    prepare.add_argument("--workers", type=positive, help="worker processes (default: one per CPU)")
    prepare.set_defaults(run=_prepare)


def _add_predict(commands: Commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="predict viral chunks and sequences",
        description="Predict viral chunks and sequences. With --db the run is a job in the "
        "database, committed block by block: run again with the same input, parameters and "
        "models after a kill or a crash, it goes on from the last committed block and writes "
        "the files an uninterrupted run would have.",
    )
    predict.add_argument("input", help=INPUT_HELP)
    add_chunk_size(predict)
    predict.add_argument("--out", type=Path, required=True, help="output folder")
    add_model_options(predict)
    predict.add_argument(
        "--workers", type=positive, help="CPU threads for the models (default: torch's)"
    )
    predict.add_argument(
        "--viral-fasta",
        action="store_true",
        help="also write viral_sequences.fa: the input records called virus",
    )
    predict.add_argument(
        "--keep-intermediate",
        action="store_true",
        help="also write the original's chunk and frame files and STEM_merged.pt",
    )
    add_embeddings_option(predict)
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_region_options(predict)
    predict.add_argument(
        "--db",
        dest="database_url",
        nargs="?",
        const=CONFIGURED,
        metavar="URL",
        help="also record the job and its results in this database (no URL: the configured "
        "one). Killed or interrupted, the same command (same input content, parameters and "
        "models) continues the job from its last committed block; see README 'The database'",
    )
    predict.set_defaults(run=_predict)


def _add_compare(commands: Commands) -> None:
    compare = commands.add_parser(
        "compare-attention", help="measure how far two attention backends' results differ"
    )
    compare.add_argument("input", help=INPUT_HELP)
    add_chunk_size(compare, default=500)
    add_model_options(compare, attention=False)
    compare.add_argument(
        "--backends",
        nargs=2,
        metavar=("A", "B"),
        default=("flash-varlen", "v1-bmm"),
        help="the two backends to compare (default: flash-varlen v1-bmm)",
    )
    compare.add_argument("--report", type=Path, help="also write the full report (JSON) here")
    compare.set_defaults(run=_compare)


def _prepare(args: argparse.Namespace) -> int:
    from ...sequences.prepare import default_workers, prepare

    settings = settings_from(args)
    with input_file(args.input, settings.limits) as (path, _):
        args.new_paths.watch(args.out)
        summary = prepare(
            path, args.chunk_size, args.out, args.workers or default_workers(), settings.limits
        )
    print(
        f"{summary.records} records, {summary.bases} bp -> {summary.chunks} chunks, "
        f"{summary.frames} kept frames{rna_note(summary.rna_records)}; wrote "
        f"{summary.files.chunks}, {summary.files.nucleotide}, {summary.files.protein}"
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    check_backend(settings.attention)
    with input_file(args.input, settings.limits) as (path, info):
        args.new_paths.watch(args.out)
        check_writable_folder(args.out)
        from ...pipeline.provenance import input_description  # imports torch: after the checks
        from ...pipeline.run import predict_file, scan_input
        from ..progress import progress_bar
        from .local_job import LocalJob

        job = LocalJob(settings, args) if args.database_url is not None else None
        if job is None:  # bad input fails before minutes of loading, before hashing
            records = scan_input(path, settings.limits).records
        info = info or input_description(path)
        if job is not None:  # storing the input checks it too
            records = job.prepare(path, info)
        try:
            predictor = load_predictor(settings)
            cpu_threads(args.workers)
            committed = job.start(predictor, path, info) if job else None
            extra = invocation(settings) | (job.extra if job else {})
            to_do = records - (committed.records if committed else 0)
            with progress_bar(not args.no_progress, to_do) as on_progress:
                run = predict_file(
                    predictor,
                    path,
                    args.chunk_size,
                    args.out,
                    keep_intermediate=args.keep_intermediate,
                    viral_fasta=args.viral_fasta,
                    on_progress=on_progress,
                    on_block=job.commit if job else None,
                    on_features=job.on_features if job else None,
                    limits=settings.limits,
                    block_bases=settings.block_bases,
                    input_info=info,
                    extra=extra,
                    regions=region_rule(args),
                    embeddings=args.embeddings,
                    committed=committed,
                )
        except BaseException as error:
            if job:
                job.fail(error)
            raise
    if job:
        job.finish(run)
    print(run_summary(run["counts"], args.out))
    return 0


def run_summary(counts: dict[str, int], out: Path) -> str:
    """The stdout line of a finished run; every number is one the files hold."""
    return (
        f"{counts['records']} records ({counts['bases']} bp{rna_note(counts['rna_records'])}), "
        f"{counts['chunks']} chunks, {counts['kept_frames']} kept frames in "
        f"{counts['scored_chunks']} scored chunks, {counts['viral_chunks']} viral; "
        f"{counts['viral_records']} records called virus; results in {out}"
    )


def _compare(args: argparse.Namespace) -> int:
    first, second = args.backends
    if first == second:
        raise UserError(f"--backends needs two different backends, not {first} twice")
    settings = settings_from(args)
    if args.report:
        args.new_paths.watch(args.report)
        check_writable_file(args.report)
    for name in args.backends:
        check_backend(name)
    import json

    from ...pipeline.compare import VALIDATE_FROM, compare_backends
    from ...pipeline.run import scan_input

    with input_file(args.input, settings.limits) as (path, _):
        scan_input(path, settings.limits)
        predictor = load_predictor(dataclasses.replace(settings, attention=first))
        if predictor.demo:
            log.warning("DEMO MODELS: this comparison is of random models")
        report = compare_backends(predictor, second, path, args.chunk_size, settings.limits)
    report["provenance"]["invocation"] = invocation(settings)
    if args.report:
        from ...files import atomic_write

        with atomic_write(args.report) as handle:
            handle.write(json.dumps(report, indent=2) + "\n")
    for line in report_lines(report, first, second):
        print(line)
    return 0 if report["prediction"]["label_agreement_percent"] >= VALIDATE_FROM else 1


def report_lines(report: dict[str, Any], first: str, second: str) -> list[str]:
    embedding, prediction = report["embedding"], report["prediction"]
    correlation = prediction["virus_score_correlation"]
    kernels = report["backends"]
    return [
        f"{report['frames']} frames, {first} ({kernels[first]}) vs {second} ({kernels[second]})",
        f"ESM-2 embedding cosine min {embedding['cosine_min']:.6f} mean "
        f"{embedding['cosine_mean']:.6f}; |diff| mean {embedding['mean_abs_diff']:.3g} max "
        f"{embedding['max_abs_diff']:.3g}",
        f"label agreement {prediction['label_agreement_percent']:.2f}%; virus score "
        f"correlation {'n/a' if correlation is None else f'{correlation:.6f}'}",
        f"recommendation: {report['recommendation']}",
    ]
