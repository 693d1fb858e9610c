"""Commands of the queued service: submit, status, cancel, recover, worker."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ...files import check_writable_folder
from ...settings import Settings
from ..loading import load_predictor
from .common import (
    cpu_threads,
    input_file,
    keep_database,
    settings_from,
    watch_database,
)
from .options import (
    INPUT_HELP,
    Commands,
    add_chunk_size,
    add_embeddings_option,
    add_model_options,
    add_region_options,
    add_service_options,
    positive,
    region_rule,
)

log = logging.getLogger("virnucpro")
# `submit --wait`: after this many seconds with no shard taken, say that no worker has come.
NO_WORKER_AFTER = 30.0


def add_commands(commands: Commands) -> None:
    _add_submit(commands)
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
        command.add_argument("job", type=positive, help="the job id")
        add_service_options(command)
        command.set_defaults(run=function)

    recover = commands.add_parser(
        "recover", help="queue again what the database says is unfinished (after Redis lost it)"
    )
    add_service_options(recover)
    recover.set_defaults(run=_recover)

    _add_worker(commands)


def _add_submit(commands: Commands) -> None:
    submit = commands.add_parser("submit", help="queue an input for the GPU worker pool")
    submit.add_argument("input", help=INPUT_HELP)
    add_chunk_size(submit)
    submit.add_argument(
        "--shard-chunks",
        type=positive,
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
    add_embeddings_option(submit)
    add_service_options(submit)
    submit.set_defaults(run=_submit)


def _add_worker(commands: Commands) -> None:
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
        "--workers", type=positive, help="CPU threads for the models (default: torch's)"
    )
    add_service_options(worker)
    worker.set_defaults(run=_worker)


def client_from(args: argparse.Namespace, read: bool = True):  # -> queue.Client
    """The worker pool and its database; `read`: the database must exist already."""
    from ...store.engine import check_exists

    settings = settings_from(args)
    if read:
        check_exists(settings.database_url)
    else:
        watch_database(settings.database_url, args.new_paths)
    from ...queue.client import Client  # imports torch: after the checks

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
            embeddings=args.embeddings,
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
    from ..progress import job_progress

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
    from ...queue import messages
    from ...queue.worker import serve
    from ...store.engine import sqlite_file
    from ...store.store import Store

    with messages.redis_errors(settings.redis_url):
        messages.connect(settings.redis_url).ping()
    file = sqlite_file(settings.database_url)
    if file is None or file.exists():  # a new SQLite file waits for the first job
        Store(settings.database_url).jobs()  # the database answers, its schema is current
    # Once, kernels compiled: every shard of every job reuses it, the first as fast as the rest.
    predictor = load_predictor(settings, warm_up=True)
    cpu_threads(args.workers)
    queues = [args.queue_name] if args.queue_name else None
    return serve(settings, predictor, queues, burst=args.burst)
