"""What produced a result: code, models (with checksums), backend, kernels, dtype, device."""

from __future__ import annotations

import functools
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import __version__
from ..files import sha256_of
from ..sequences.sources import Source, source_path
from .outputs import DEMO_WARNING
from .regions import RegionRule
from .results import RunTotals

if TYPE_CHECKING:
    from .predictor import Predictor


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
    predictor: Predictor,
    chunk_size: int,
    input_info: dict[str, Any],
    totals: RunTotals,
    started: str,
    extra: dict[str, Any] | None = None,
    block_bases: int | None = None,
    region_rule: RegionRule = RegionRule(),  # noqa: B008 (frozen, so one shared default is safe)
) -> dict[str, Any]:
    """run.json: what produced the result, from what, when, and what it holds. `extra` holds
    what only the caller knows (the command line and config file, a job id)."""
    record = {
        "tool": "virnucpro-worker",
        "code_version": code_version(),
        "software": software(),
        "started": started,
        "finished": now(),
        **(extra or {}),
        "input": input_info,
        "chunk_size": chunk_size,
        "block_bases": block_bases or predictor.block_bases,
        "region_rule": region_rule.to_json(),
        **predictor.provenance(chunk_size),
        "counts": totals.counts(),
        "stage_seconds": {name: round(value, 3) for name, value in totals.stage_seconds.items()},
    }
    if predictor.demo:
        record["warning"] = DEMO_WARNING
    return record
