"""Reading PyTorch weight files without running their code, with one-line errors that say what
the file is and what was refused.

Unpickling is code execution. Every `.pt`/`.pth`/`.bin` the project reads goes through
`load_weights`: `torch.load(weights_only=True)` with only the classes the caller names allowed,
after a look at the first bytes so that a text file, random bytes or a plain Python pickle are
named as such instead of surfacing as an unpickler's opcode error.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

_ZIP = b"PK\x03\x04"
_PICKLE = b"\x80"  # the PROTO opcode opens every pickle of protocol 2 or later
_TORCH_LEGACY = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # torch.save's magic number, pickled
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module)")
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(\S.*)")


def file_kind(path: Path) -> str:
    """What the file is, from its first bytes: 'torch' (a zip archive, as torch.save writes by
    default), 'torch-legacy' (the format before PyTorch 1.6) or a description for an error."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if head.startswith(_ZIP):
        return "torch"
    if head.startswith(_TORCH_LEGACY):
        return "torch-legacy"
    if head.startswith(_PICKLE):
        return "a plain Python pickle, not a torch.save file"
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data of no known format"
    return "a text file"


def load_weights(
    path: Path, expected: str, allowed: list[Any] | None = None, mmap: bool = False
) -> Any:
    """The content of a torch.save file; `allowed` lists the classes (or (class, name) pairs)
    it may hold beyond tensors and plain containers. `expected` names the file for errors,
    e.g. "a fair-esm ESM-2 checkpoint".

    With `mmap`, a zip-format file is memory-mapped: its tensors are read from the page cache
    when they are first used, not copied into memory first. Only for weights that pass through
    on their way to a GPU: a model computed on from mapped pages (fp32 on the CPU) would see a
    file rewritten in place under it."""
    kind = file_kind(path)
    if kind not in ("torch", "torch-legacy"):
        raise UserError(f"{path}: not {expected}: it is {kind}")
    try:
        with torch.serialization.safe_globals(allowed or []), warnings.catch_warnings():
            # torch warns about pickle protocols it may not read; its error, if any, is enough
            warnings.simplefilter("ignore")
            mapped = mmap and kind == "torch"
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mapped)
    except pickle.UnpicklingError as error:
        raise UserError(refusal(path, error, expected)) from None
    except Exception as error:  # corrupt archives surface as RuntimeError, EOFError, ...
        raise UserError(f"{path}: not {expected}: unreadable ({_reason(error)})") from None


def refusal(path: Path, error: pickle.UnpicklingError, expected: str) -> str:
    refused = _REFUSED_GLOBAL.search(str(error))
    if refused:
        return (
            f"{path}: refused to load: the pickle asks for {refused.group(1)}, which "
            f"{expected} never holds (unpickling it could run arbitrary code)"
        )
    return f"{path}: refused to load as {expected}: {_reason(error)}"


def _reason(error: Exception) -> str:
    """The informative part of torch's message, without its advice to drop weights_only."""
    text = str(error)
    unpickler = _UNPICKLER_REASON.search(text)
    if unpickler:
        return unpickler.group(1).strip()
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and "weights_only" not in line and "documentation of torch.load" not in line
    ]
    return lines[0] if lines else type(error).__name__
