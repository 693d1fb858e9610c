"""A callback that a planted message names, for tests/test_security.py: called, it leaves a file
named after the message in $VIRNUCPRO_TEST_MARKERS. No worker may ever call it."""

from __future__ import annotations

import os
from pathlib import Path


def mark(job, *args) -> None:
    (Path(os.environ["VIRNUCPRO_TEST_MARKERS"]) / f"called-by-{job.id}").touch()
