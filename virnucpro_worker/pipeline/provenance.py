"""What produced a result: code, models (with checksums), backend, kernels, dtype, device."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import torch

from .. import __version__


def _git(source: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(source), *arguments],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    ).stdout.strip()


def code_version() -> str:
    """The package version, plus the git commit when the code runs from its own checkout (not
    from an installed copy that happens to sit inside some other repository)."""
    source = Path(__file__).resolve().parents[2]
    try:
        if Path(_git(source, "rev-parse", "--show-toplevel")).resolve() != source:
            return __version__
        commit = _git(source, "rev-parse", "--short=12", "HEAD")
        dirty = _git(source, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


def software() -> dict[str, str]:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("fair-esm", "tokenizers", "triton", "flash-attn"):  # what computes results
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    if torch.version.cuda:
        versions["cuda"] = torch.version.cuda
    return versions


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
