"""The `virnucpro` command line.

Each command checks what it can in milliseconds (options, the output folder, the input) before
anything slow (importing torch, loading models). Exit status: 0 success, 1 a failure that is not
the user's (a full disk, a job that failed), 2 a problem the user can fix (one line on stderr),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__
from ..errors import InputError, UserError, first_line
from ..files import NewPaths, check_writable_file, check_writable_folder, sha256_of
from ..loading import load_predictor
from ..pipeline.regions import RegionRule
from ..redact import redact_passwords
from ..sequences.chunking import CHUNK_SIZES
from ..sequences.fasta import InputLimits, check_input_file
from ..settings import Settings, load_settings

log = logging.getLogger("virnucpro")
INPUT_HELP = (
    "FASTA or FASTQ, plain or compressed (gzip, bzip2, xz: recognised by content); "
    "'-' reads standard input"
)


CONFIGURED = ""  # `predict --db` with no URL: the configured database
STANDARD_INPUT = "standard input"
# `submit --wait`: after this many seconds with no shard taken, say that no worker has come.
NO_WORKER_AFTER = 30.0


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error, naming where the help is; a password
    in a mistyped argument is hidden there too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"virnucpro: error: {redact_passwords(message)} (see `{self.prog} --help`)\n")


class Terminated(Exception):
    """SIGTERM, from a scheduler or `timeout`: unwinds like Ctrl-C, so no partial file stays."""


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


# --------------------------------------------------------------------------------------------
# Settings and inputs
# --------------------------------------------------------------------------------------------


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
    from ..attention.registry import get_backend  # discovery imports no torch

    get_backend(name)


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def _prepare(args: argparse.Namespace) -> int:
    from ..sequences.prepare import default_workers, prepare

    settings = settings_from(args)
    with input_file(args.input, settings.limits) as (path, _):
        args.new_paths.watch(args.out)
        summary = prepare(
            path, args.chunk_size, args.out, args.workers or default_workers(), settings.limits
        )
    print(
        f"{summary.records} records, {summary.bases} bp -> {summary.chunks} chunks, "
        f"{summary.frames} kept frames{_rna_note(summary.rna_records)}; wrote "
        f"{summary.files.chunks}, {summary.files.nucleotide}, {summary.files.protein}"
    )
    return 0


def _rna_note(records: int) -> str:
    if not records:
        return ""
    return f" ({records} record{'s' if records > 1 else ''} in RNA letters: U read as T)"


def _predict(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    check_backend(settings.attention)
    with input_file(args.input, settings.limits) as (path, info):
        args.new_paths.watch(args.out)
        check_writable_folder(args.out)
        from ..pipeline.provenance import input_description  # imports torch: after the checks
        from ..pipeline.run import predict_file, scan_input
        from .progress import progress_bar

        recorder = JobRecorder(settings, args) if args.database_url is not None else None
        if recorder is None:  # bad input fails before minutes of loading, before hashing
            records = scan_input(path, settings.limits).records
        info = info or input_description(path)
        if recorder is not None:  # storing the input checks it too
            records = recorder.start(path, info)
        try:
            predictor = load_predictor(settings)
            _cpu_threads(args.workers)
            extra = invocation(settings) | (recorder.extra if recorder else {})
            with progress_bar(not args.no_progress, records) as on_progress:
                run = predict_file(
                    predictor,
                    path,
                    args.chunk_size,
                    args.out,
                    keep_intermediate=args.keep_intermediate,
                    viral_fasta=args.viral_fasta,
                    on_progress=on_progress,
                    on_block=recorder.add if recorder else None,
                    limits=settings.limits,
                    block_bases=settings.block_bases,
                    input_info=info,
                    extra=extra,
                    regions=region_rule(args),
                    embeddings=args.embeddings,
                )
        except BaseException as error:
            if recorder:
                recorder.fail(error)
            raise
    if recorder:
        recorder.finish(run)
    print(run_summary(run["counts"], args.out))
    return 0


class JobRecorder:
    """`predict --db`: the run as a job of one shard in the database, its input and results."""

    def __init__(self, settings: Settings, args: argparse.Namespace) -> None:
        self.store = open_store(settings.database_url, args.new_paths)
        self.settings, self.args = settings, args
        self.job_id: int | None = None

    def start(self, path: Path, info: dict[str, Any]) -> int:
        from ..pipeline.parameters import ModelRequest
        from ..sequences.fasta import read_fasta
        from ..store.jobs import InputFile
        from ..store.models import State

        self.settings.model_files()  # models that cannot be found fail before a job is stored
        models = ModelRequest(demo=self.settings.demo_models)
        parameters = self.settings.job_parameters(
            self.args.chunk_size, models, region_rule(self.args), queued=False
        )
        self.job_id = self.store.create_job(
            read_fasta(path, self.settings.limits),
            parameters=parameters.to_json(),
            input_file=InputFile(info["path"], info["sha256"], info["bytes"]),
            shard_chunks=None,
            state=State.RUNNING,
            shard_attempts=parameters.attempts,
        )
        keep_database(self.store.url, self.args.new_paths)  # it records this job now
        log.info("job %d in %s", self.job_id, self.store.name)
        return self.store.job(self.job_id).records

    @property
    def extra(self) -> dict[str, Any]:
        return {"job_id": self.job_id}

    def add(self, block) -> None:
        self.store.write_block(self.job_id, block)

    def fail(self, error: BaseException) -> None:
        if self.job_id is not None:
            self.store.fail_job(self.job_id, first_line(error) or type(error).__name__)

    def finish(self, run: dict[str, Any]) -> None:
        self.store.finish_job(self.job_id, run)


def run_summary(counts: dict[str, int], out: Path) -> str:
    """The stdout line of a finished run; every number is one the files hold."""
    return (
        f"{counts['records']} records ({counts['bases']} bp{_rna_note(counts['rna_records'])}), "
        f"{counts['chunks']} chunks, {counts['kept_frames']} kept frames in "
        f"{counts['scored_chunks']} scored chunks, {counts['viral_chunks']} viral; "
        f"{counts['viral_records']} records called virus; results in {out}"
    )


def _cpu_threads(workers: int | None) -> None:
    if workers:
        import torch

        torch.set_num_threads(workers)


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

    from ..pipeline.compare import VALIDATE_FROM, compare_backends
    from ..pipeline.run import scan_input

    with input_file(args.input, settings.limits) as (path, _):
        scan_input(path, settings.limits)
        predictor = load_predictor(dataclasses.replace(settings, attention=first))
        if predictor.demo:
            log.warning("DEMO MODELS: this comparison is of random models")
        report = compare_backends(predictor, second, path, args.chunk_size, settings.limits)
    report["provenance"]["invocation"] = invocation(settings)
    if args.report:
        from ..files import atomic_write

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


def open_store(url: str, new_paths: NewPaths):  # -> store.Store
    """The database at `url` for a command that writes (watch_database)."""
    from ..store.store import Store

    watch_database(url, new_paths)
    return Store(url)


def watch_database(url: str, new_paths: NewPaths) -> None:
    """A SQLite file that a command creates is removed again if the command fails before it
    records anything (`keep_database` says it has)."""
    from ..store.engine import SQLITE_SIDECARS, sqlite_file

    if file := sqlite_file(url):
        new_paths.watch(file, *SQLITE_SIDECARS)


def keep_database(url: str, new_paths: NewPaths) -> None:
    from ..store.engine import sqlite_file

    if file := sqlite_file(url):
        new_paths.keep(file)


def read_store(url: str):  # -> store.Store
    """The database at `url` for a command that only reads it: it must exist."""
    from ..store.engine import check_exists

    check_exists(url)
    from ..store.store import Store  # imports torch: after the check

    return Store(url)


def _db(args: argparse.Namespace) -> int:
    from ..store import schema

    url = settings_from(args).database_url
    store = open_store(url, args.new_paths) if args.action == "upgrade" else read_store(url)
    if args.action == "upgrade":
        store.upgrade()
    revision = store.current()
    print(f"{store.name}: schema {revision or 'none'} (this version's newest: {schema.head()})")
    return 0


def _jobs(args: argparse.Namespace) -> int:
    store = read_store(settings_from(args).database_url)
    jobs = store.jobs()
    if args.last:
        jobs = jobs[-args.last :]
    print("id\tstate\tinput\trecords\tchunks\tshards_done\tframes_done\tcreated\tfinished\tlabel")
    for job in jobs:
        print(
            f"{job.id}\t{job.state}\t{job.input_name}\t{job.records}\t{job.chunks}\t"
            f"{job.shards_done}/{job.shards}\t{job.frames_done}\t"
            f"{utc_time(job.created_at)}\t{utc_time(job.finished_at)}\t{job.label or ''}"
        )
    return 0


def utc_time(moment: datetime | None) -> str:
    """A stored time in UTC, to the second: SQLite gives it back without its offset (it was
    stored in UTC), PostgreSQL in the session's time zone; both print alike."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _results(args: argparse.Namespace) -> int:
    store = read_store(settings_from(args).database_url)
    args.new_paths.watch(args.out)
    check_writable_folder(args.out)
    store.write_outputs(args.job, args.out, viral_fasta=args.viral_fasta)
    print(f"job {args.job}: results in {args.out}")
    return 0


def client_from(args: argparse.Namespace, read: bool = True):  # -> queue.Client
    """The worker pool and its database; `read`: the database must exist already."""
    from ..store.engine import check_exists

    settings = settings_from(args)
    if read:
        check_exists(settings.database_url)
    else:
        watch_database(settings.database_url, args.new_paths)
    from ..queue.client import Client  # imports torch: after the checks

    return Client(settings.redis_url, settings.database_url, settings)


def _submit(args: argparse.Namespace) -> int:
    limits = settings_from(args).limits
    with input_file(args.input, limits) as (path, _):
        if args.out:
            args.new_paths.watch(args.out)
            check_writable_folder(args.out)
        client = client_from(args, read=False)
        named = args.models or args.esm or args.dnabert or args.classifier
        models = client.settings.model_files() if named and not args.demo_models else None
        job_id = client.submit(
            path,
            args.chunk_size,
            attention=client.settings.attention,
            demo=bool(args.demo_models),
            models=models,
            shard_chunks=args.shard_chunks,
            label=args.label,
            regions=region_rule(args),
        )
    keep_database(client.store.url, args.new_paths)
    print(job_id, flush=True)
    log.info(shards_line(client.store.job(job_id), args.shard_chunks, client.settings))
    if not (args.wait or args.out):
        return 0
    try:
        return _wait_for(client, job_id, args.out, args.viral_fasta, show=not args.no_progress)
    except KeyboardInterrupt:
        log.warning(
            "job %d stays in the queue and the workers go on with it: `virnucpro status %d` "
            "shows it, `virnucpro results %d --out DIR` writes its files once it has succeeded "
            "(`virnucpro cancel %d` stops it)",
            *[job_id] * 4,
        )
        raise


def shards_line(job, shard_chunks: int | None, settings: Settings) -> str:
    """How a submitted job was cut: a shard holds whole blocks of `block_bases` bases, so
    `--shard-chunks` is an upper bound that a single block may exceed."""
    line = (
        f"job {job.id}: {job.records} records, {job.chunks} chunks in {job.shards} "
        f"shard{'s' if job.shards != 1 else ''}"
    )
    if shard_chunks and job.chunks > shard_chunks * job.shards:
        line += (
            f" (a shard holds whole blocks of {settings.block_bases:,} bases: "
            f"--shard-chunks {shard_chunks} does not cut a block)"
        )
    return line


def _wait_for(client, job_id: int, out: Path | None, viral_fasta: bool, show: bool) -> int:
    from .progress import job_progress

    no_worker = no_worker_note(job_id)
    with job_progress(show, client.status(job_id)) as show_status:

        def on_status(status) -> None:
            no_worker(status)
            show_status(status)

        status = client.wait(job_id, on_status=on_status)
    if status.state != "succeeded":
        print(f"virnucpro: {status.line()}", file=sys.stderr)
        return 1
    if out:
        client.write_outputs(job_id, out, viral_fasta=viral_fasta)
        log.info("job %d: results in %s", job_id, out)
    return 0


def no_worker_note(job_id: int):  # -> Callable[[JobStatus], None]
    """Says once, NO_WORKER_AFTER seconds into a wait, that no worker has taken the job."""
    deadline, said = time.monotonic() + NO_WORKER_AFTER, False

    def check(status) -> None:
        nonlocal said
        if not said and status.state == "queued" and time.monotonic() > deadline:
            log.warning(
                "job %d: still queued after %.0f s, no worker has taken it: is a worker with "
                "the models it asks for running (`virnucpro worker`, same --redis and --db)?",
                job_id,
                NO_WORKER_AFTER,
            )
            said = True

    return check


def _status(args: argparse.Namespace) -> int:
    status = client_from(args).status(args.job)
    print(status.line())
    return 1 if status.state == "failed" else 0


def _cancel(args: argparse.Namespace) -> int:
    client = client_from(args)
    before = client.status(args.job)
    after = before if before.finished else client.cancel(args.job)
    if after.state != "cancelled":  # it ended before the cancel reached it
        print(
            f"virnucpro: job {args.job} had already {after.state}: nothing to cancel",
            file=sys.stderr,
        )
        return 1
    print(f"job {args.job}: already cancelled" if before.finished else after.line())
    return 0


def _recover(args: argparse.Namespace) -> int:
    queued = client_from(args).recover()
    print(f"queued again: {queued} shard{'s' if queued != 1 else ''}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    from ..queue import messages
    from ..queue.worker import serve
    from ..store.engine import sqlite_file
    from ..store.store import Store

    with messages.redis_errors(settings.redis_url):
        messages.connect(settings.redis_url).ping()
    file = sqlite_file(settings.database_url)
    if file is None or file.exists():  # a new SQLite file waits for the first job
        Store(settings.database_url).jobs()  # the database answers, its schema is current
    # Once, kernels compiled: every shard of every job reuses it, the first as fast as the rest.
    predictor = load_predictor(settings, warm_up=True)
    _cpu_threads(args.workers)
    queues = [args.queue_name] if args.queue_name else None
    return serve(settings, predictor, queues, burst=args.burst)


def _backends(args: argparse.Namespace) -> int:
    from ..attention.registry import available_backends
    from ..models.devices import dtype_name, resolve_device, resolve_dtype

    try:
        device = resolve_device(args.device)
    except UserError as error:  # e.g. --device cuda on a machine without CUDA: still list them
        print(f"{args.device}: {error}")
        print("attention backends:")
        for name, backend in sorted(available_backends().items()):
            print(f"  {name:14} {backend.description}")
        return 0
    dtype = resolve_dtype(args.dtype, device)
    print(
        f"attention backends, with the kernels they would use on {device} in {dtype_name(dtype)}:"
    )
    for name, backend in sorted(available_backends().items()):
        esm, dnabert = backend.kernels(device, dtype)
        print(f"  {name:14} ESM-2: {esm:14} DNABERT-S: {dnabert:14} {backend.description}")
    return 0


def _demo_models(args: argparse.Namespace) -> int:
    args.new_paths.watch(args.out)
    check_writable_folder(args.out)
    from ..models.demo import DEMO_SEED, write_demo_models

    write_demo_models(args.out, DEMO_SEED if args.seed is None else args.seed)
    print(f"demo models (their predictions are meaningless): --models {args.out}")
    return 0


def _convert_classifier(args: argparse.Namespace) -> int:
    args.new_paths.watch(args.target)
    check_writable_file(args.target)
    from ..models.classifier import convert_classifier

    source, converted = convert_classifier(args.source, args.target)
    print(
        f"wrote {args.target} (safetensors, sha256 {converted.sha256[:12]}) from the "
        f"{source.format} file {args.source}"
    )
    return 0


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


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
        type=_positive,
        default=RegionRule.min_chunks,
        metavar="N",
        help="viral chunks a region must hold (default: %(default)s)",
    )
    group.add_argument(
        "--region-max-gap",
        type=_non_negative,
        default=RegionRule.max_gap,
        metavar="N",
        help="non-viral or unscored chunks bridged between viral ones (default: %(default)s)",
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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="virnucpro", description="Find viral sequences among DNA reads and contigs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prepare = commands.add_parser(
        "prepare", help="chunk, translate and select frames exactly like the original tool"
    )
    prepare.add_argument("input", help=INPUT_HELP)
    add_chunk_size(prepare)
    prepare.add_argument("--out", type=Path, required=True, help="output folder")
    prepare.add_argument(
        "--workers", type=_positive, help="worker processes (default: one per CPU)"
    )
    prepare.set_defaults(run=_prepare)

    predict = commands.add_parser("predict", help="predict viral chunks and sequences")
    predict.add_argument("input", help=INPUT_HELP)
    add_chunk_size(predict)
    predict.add_argument("--out", type=Path, required=True, help="output folder")
    add_model_options(predict)
    predict.add_argument(
        "--workers", type=_positive, help="CPU threads for the models (default: torch's)"
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
    predict.add_argument(
        "--embeddings",
        nargs="?",
        const="float32",
        choices=("float16", "float32"),
        help="also write embeddings.safetensors: every kept frame's DNABERT-S and ESM-2 "
        "features, in this dtype (default float32)",
    )
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_region_options(predict)
    predict.add_argument(
        "--db",
        dest="database_url",
        nargs="?",
        const=CONFIGURED,
        metavar="URL",
        help="also record the job and its results in this database (no URL: the configured one)",
    )
    predict.set_defaults(run=_predict)

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

    db = commands.add_parser("db", help="the database's schema: upgrade it, or show it")
    db.add_argument("action", choices=("upgrade", "current"), help="upgrade, or show the schema")
    add_service_options(db, uses_redis=False)
    db.set_defaults(run=_db)

    jobs = commands.add_parser("jobs", help="list the jobs in the database")
    jobs.add_argument("--last", type=_positive, metavar="N", help="only the newest N jobs")
    add_service_options(jobs, uses_redis=False)
    jobs.set_defaults(run=_jobs)

    results = commands.add_parser("results", help="write a job's result files from the database")
    results.add_argument("job", type=_positive, help="the job id")
    results.add_argument("--out", type=Path, required=True, help="output folder")
    results.add_argument("--viral-fasta", action="store_true", help="also write viral_sequences.fa")
    add_service_options(results, uses_redis=False)
    results.set_defaults(run=_results)

    submit = commands.add_parser("submit", help="queue an input for the GPU worker pool")
    submit.add_argument("input", help=INPUT_HELP)
    add_chunk_size(submit)
    submit.add_argument(
        "--shard-chunks",
        type=_positive,
        metavar="N",
        help="the most chunks per shard (default: about a GPU minute). A shard holds whole "
        "blocks of block_bases bases (setting; default 2,000,000), so that results equal "
        "`predict`'s: a block never splits, and an input under one block is one shard",
    )
    submit_models = submit.add_argument_group(
        "models: the workers' (default); --demo-models for workers with demo models; files "
        "(--models or --esm/--dnabert/--classifier, readable here) to run only where the same "
        "files are loaded"
    )
    for option, text in (
        ("--models", "a model folder"),
        ("--esm", "an ESM-2 checkpoint file"),
        ("--dnabert", "a DNABERT-S folder"),
        ("--classifier", "the classifier file"),
    ):
        submit_models.add_argument(option, metavar="PATH", help=text)
    submit_models.add_argument(
        "--demo-models", action="store_true", default=None, help="run on workers with demo models"
    )
    submit.add_argument("--attention", metavar="NAME", help="attention backend for the job")
    submit.add_argument("--label", help="a label of yours, kept with the job")
    submit.add_argument("--wait", action="store_true", help="wait until the job has ended")
    submit.add_argument("--out", type=Path, help="wait, then write the result files here")
    submit.add_argument(
        "--viral-fasta", action="store_true", help="with --out: also write viral_sequences.fa"
    )
    submit.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_region_options(submit)
    add_service_options(submit)
    submit.set_defaults(run=_submit)

    for name, function, text in (
        ("status", _status, "a queued job's state and progress (exit status 1: it failed)"),
        (
            "cancel",
            _cancel,
            "cancel a queued job (running shards stop at their next block; exit status 1: "
            "it had already succeeded or failed)",
        ),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("job", type=_positive, help="the job id")
        add_service_options(command)
        command.set_defaults(run=function)

    recover = commands.add_parser(
        "recover", help="queue again what the database says is unfinished (after Redis lost it)"
    )
    add_service_options(recover)
    recover.set_defaults(run=_recover)

    worker = commands.add_parser("worker", help="run a GPU worker: load the models, serve shards")
    add_model_options(worker)
    worker.add_argument(
        "--queue",
        dest="queue_name",
        metavar="NAME",
        help="one queue to serve (default: those of its models: <queue>-<size>-<model set>)",
    )
    worker.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    worker.add_argument(
        "--workers", type=_positive, help="CPU threads for the models (default: torch's)"
    )
    add_service_options(worker)
    worker.set_defaults(run=_worker)

    backends = commands.add_parser("backends", help="list attention backends and their kernels")
    backends.add_argument("--device", help="the device to list kernels for (default: cuda if any)")
    backends.add_argument(
        "--dtype", choices=("fp32", "fp16", "bf16"), help="the dtype to list kernels for"
    )
    backends.set_defaults(run=_backends)

    demo = commands.add_parser("demo-models", help="write the tiny demo models (a model folder)")
    demo.add_argument("--out", type=Path, required=True, help="the folder to write them into")
    demo.add_argument("--seed", type=_non_negative, help="random seed (default: the built-in one)")
    demo.set_defaults(run=_demo_models)

    convert = commands.add_parser(
        "convert-classifier", help="rewrite a classifier as .safetensors (no pickle)"
    )
    convert.add_argument("source", type=Path, help="the classifier: .pth (pickle) or .safetensors")
    convert.add_argument("target", type=Path, help="the new file; must end in .safetensors")
    convert.set_defaults(run=_convert_classifier)
    for command in commands.choices.values():
        add_global_options(command, default=argparse.SUPPRESS)
    return parser


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


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


if __name__ == "__main__":
    sys.exit(main())
