"""Two runs' outputs compared: every file but run.json, byte for byte, report.html included."""

from __future__ import annotations

import json
from pathlib import Path

from virnucpro_worker.pipeline.outputs import PREDICTIONS_FILE, RUN_FILE

# What decides the bits (README "Same bits"): shown when two runs' files differ.
_BIT_DECIDING = (
    "block_bases",
    "packing",
    "kernels",
    "dtype",
    "device",
    "cpu_threads",
    "software",
    "models",
)


def assert_same_results(a: Path, b: Path) -> None:
    """The same files in `a` and `b`, and the same bytes in each but run.json (which names the
    job, its shards and its times)."""
    names = sorted(path.name for path in a.iterdir())
    assert names == sorted(path.name for path in b.iterdir())
    assert PREDICTIONS_FILE in names
    for name in names:
        if name != RUN_FILE:
            assert (a / name).read_bytes() == (b / name).read_bytes(), (name, _differences(a, b))


def _differences(a: Path, b: Path) -> dict[str, tuple[object, object]]:
    """The bit-deciding run.json entries that differ between the two runs."""
    runs = [json.loads((folder / RUN_FILE).read_text()) for folder in (a, b)]
    return {
        key: (runs[0].get(key), runs[1].get(key))
        for key in _BIT_DECIDING
        if runs[0].get(key) != runs[1].get(key)
    }
