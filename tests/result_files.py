"""Two runs' result files compared: those of pipeline/outputs.RESULT_FILES that either wrote."""

from __future__ import annotations

from pathlib import Path

from virnucpro_worker.pipeline.outputs import PREDICTIONS_FILE, RESULT_FILES
from virnucpro_worker.pipeline.report import PROVENANCE_END, PROVENANCE_START, REPORT_FILE


def without_provenance(report: Path) -> str:
    """report.html less its provenance panel (run.json's content, which names the run)."""
    page = report.read_text()
    return page[: page.index(PROVENANCE_START)] + page[page.index(PROVENANCE_END) :]


def assert_same_results(a: Path, b: Path) -> None:
    """The same result files in `a` and `b`, byte for byte (report.html but its provenance)."""
    written = [name for name in RESULT_FILES if (a / name).exists()]
    assert written == [name for name in RESULT_FILES if (b / name).exists()]
    assert PREDICTIONS_FILE in written and REPORT_FILE in written
    for name in written:
        if name == REPORT_FILE:
            assert without_provenance(a / name) == without_provenance(b / name)
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
