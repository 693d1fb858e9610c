"""What produced a result: code, models (with checksums), backend, kernels, dtype, device."""

from __future__ import annotations

import functools
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..files import sha256_of
from ..sequences.sources import Source, source_path
from .outputs import DEMO_WARNING
from .regions import RegionRule
from .results import RunTotals
from .scorer import Scorer

# The run.json entries of the run and its result, beside what ran (parameters, models): a
# job's run.json takes these from the job and all its shards, not from its first shard.
_RUN_OWN = ("tool", "code_version", "software", "started", "finished", "input")
_RESULT_OWN = ("counts", "stage_seconds", "warning")


def _git(source: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(source), *arguments],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    ).stdout.strip()


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit when the code runs from its own checkout (not
    from an installed copy that happens to sit inside some other repository). Looked up once
    per process: what runs is the code imported at its start."""
    source = Path(__file__).resolve().parents[2]
    try:
        if Path(_git(source, "rev-parse", "--show-toplevel")).resolve() != source:
            return __version__
        commit = _git(source, "rev-parse", "--short=12", "HEAD")
        dirty = _git(source, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


@functools.cache
def _software() -> tuple[tuple[str, str], ...]:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("fair-esm", "tokenizers", "triton", "flash-attn"):  # what computes results
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    if torch.version.cuda:
        versions["cuda"] = torch.version.cuda
    return tuple(versions.items())


def software() -> dict[str, str]:
    """The versions of what computes results (looked up once per process)."""
    return dict(_software())


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def input_description(source: Source) -> dict[str, Any]:
    path = source_path(source)
    if path is None:
        return {"path": None, "kind": "stream" if hasattr(source, "read") else "records"}
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def run_record(
    scorer: Scorer,
    chunk_size: int,
    input_info: dict[str, Any],
    totals: RunTotals,
    started: str,
    extra: dict[str, Any] | None = None,
    block_bases: int | None = None,
    region_rule: RegionRule = RegionRule(),  # noqa: B008 (frozen, so one shared default is safe)
) -> dict[str, Any]:
    """run.json: what produced the result, from what, when, and what it holds. `extra` holds
    what only the caller knows (the command line and config file, a job id). A queued job's
    shards each keep one; `job_run_record` merges them."""
    ran = {
        "chunk_size": chunk_size,
        "block_bases": block_bases or scorer.block_bases,
        "region_rule": region_rule.to_json(),
        **scorer.provenance(chunk_size),
    }
    seconds = {name: round(value, 3) for name, value in totals.stage_seconds.items()}
    return _assemble(started, extra, input_info, ran, totals.counts(), seconds)


def job_run_record(
    shard_records: Sequence[Mapping[str, Any]],
    shards: Sequence[Mapping[str, Any]],
    *,
    started: str,
    input_info: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """run.json of a job run in shards, from each shard's `run_record` (in shard order) and
    what the store knows of each (`shards`: index, worker ...): what ran is the first shard's
    (every shard ran the job's parameters on its one model set), counts and timings are summed,
    each shard is listed with its kernels and times."""
    first = shard_records[0]
    ran = {key: value for key, value in first.items() if key not in _RUN_OWN + _RESULT_OWN}
    counts: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for record in shard_records:
        for name, value in record["counts"].items():
            counts[name] = counts.get(name, 0) + value
        for name, value in record["stage_seconds"].items():
            seconds[name] = round(seconds.get(name, 0.0) + value, 3)
    listed = [
        {**shard, **{key: record[key] for key in ("kernels", "started", "finished")}}
        for shard, record in zip(shards, shard_records, strict=True)
    ]
    return _assemble(started, extra, input_info, ran, counts, seconds) | {"shards": listed}


def comparison_record(
    first: Scorer, second: Scorer, input_info: dict[str, Any], chunk_size: int, started: str
) -> dict[str, Any]:
    """compare-attention's provenance: the run, and what each backend ran."""
    return {
        **_produced(started),
        "input": input_info,
        "chunk_size": chunk_size,
        "first": first.provenance(chunk_size),
        "second": second.provenance(chunk_size),
    }


def _produced(started: str) -> dict[str, Any]:
    return {
        "tool": "virnucpro-worker",
        "code_version": code_version(),
        "software": software(),
        "started": started,
        "finished": now(),
    }


def _assemble(
    started: str,
    extra: dict[str, Any] | None,
    input_info: dict[str, Any],
    ran: dict[str, Any],
    counts: dict[str, int],
    seconds: dict[str, float],
) -> dict[str, Any]:
    record = {
        **_produced(started),
        **(extra or {}),
        "input": input_info,
        **ran,
        "counts": counts,
        "stage_seconds": seconds,
    }
    if ran["demo_models"]:
        record["warning"] = DEMO_WARNING
    return record
