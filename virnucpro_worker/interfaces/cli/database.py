"""Commands that read or set up the database: db, jobs, results."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from ...files import check_writable_folder
from .common import open_store, read_store, settings_from
from .options import Commands, add_service_options, positive


def add_commands(commands: Commands) -> None:
    db = commands.add_parser("db", help="the database's schema: upgrade it, or show it")
    db.add_argument("action", choices=("upgrade", "current"), help="upgrade, or show the schema")
    add_service_options(db, uses_redis=False)
    db.set_defaults(run=_db)

    jobs = commands.add_parser("jobs", help="list the jobs in the database")
    jobs.add_argument("--last", type=positive, metavar="N", help="only the newest N jobs")
    add_service_options(jobs, uses_redis=False)
    jobs.set_defaults(run=_jobs)

    results = commands.add_parser("results", help="write a job's result files from the database")
    results.add_argument("job", type=positive, help="the job id")
    results.add_argument("--out", type=Path, required=True, help="output folder")
    results.add_argument("--viral-fasta", action="store_true", help="also write viral_sequences.fa")
    add_service_options(results, uses_redis=False)
    results.set_defaults(run=_results)


def _db(args: argparse.Namespace) -> int:
    from ...store import schema

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
