"""The MultiQC custom content beside the results, read by MultiQC itself (a test dependency)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from models_for_tests import model_args

from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.pipeline.multiqc import CALLS_FILE, GENERAL_STATS_FILE, sample_name
from virnucpro_worker.pipeline.outputs import RUN_FILE, ResultWriter
from virnucpro_worker.pipeline.results import BlockResult, ChunkCall, RecordSummary

DEMO_INPUT = Path(__file__).parents[1] / "examples" / "demo_contigs.fa"


def record(index: int, call: str, scored: int, viral: int) -> RecordSummary:
    best, fraction = (0.9, viral / scored) if scored else (None, None)
    return RecordSummary(index, f"r{index}", 1000, 2, scored, scored, viral, best, fraction, call)


def chunk_calls(records: list[RecordSummary]) -> list[ChunkCall]:
    """Each record's scored chunks, the first `viral_chunks` of them viral."""
    return [
        ChunkCall(
            r.index, r.id, n, 1, 0.5, 0.9 if n <= r.viral_chunks else 0.1, n <= r.viral_chunks
        )
        for r in records
        for n in range(1, r.scored_chunks + 1)
    ]


def write_sample(folder: Path, input_path: str, records: list[RecordSummary]) -> None:
    with ResultWriter(folder) as writer:
        writer.add(BlockResult(records, chunk_calls(records), []))
        writer.commit({"input": {"path": input_path}, "demo_models": False})


def table(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as handle:
        return {row["Sample"]: row for row in csv.DictReader(handle, delimiter="\t")}


def test_multiqc_reads_both_sections_for_every_sample(tmp_path: Path) -> None:
    write_sample(
        tmp_path / "a",
        "/data/sample_a.fasta.gz",
        [record(0, "virus", 2, 2), record(1, "others", 2, 0), record(2, "unscored", 0, 0)],
    )
    write_sample(tmp_path / "b", "/data/sample_b.fq", [record(0, "virus", 2, 1)])
    report = tmp_path / "report"
    command = [sys.executable, "-m", "multiqc", "--strict", "--no-version-check", "--no-ai"]
    command += ["--force", "--outdir", str(report), str(tmp_path / "a"), str(tmp_path / "b")]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = report / "multiqc_data"
    stats = table(data / "multiqc_general_stats.txt")
    assert set(stats) == {"sample_a", "sample_b"}
    columns = {name.rsplit("-", 1)[-1]: name for name in stats["sample_a"] if name != "Sample"}
    assert set(columns) == {
        "records",
        "viral_records",
        "percent_viral_records",
        "percent_viral_chunks",
        "viral_regions",
    }
    a = {key: float(stats["sample_a"][name]) for key, name in columns.items()}
    assert a == {
        "records": 3,
        "viral_records": 1,
        "percent_viral_records": 33.33,
        "percent_viral_chunks": 50.0,
        "viral_regions": 0,
    }
    calls = table(data / "multiqc_virnucpro_calls_plot.txt")
    assert {name: dict(row) for name, row in calls.items()} == {
        "sample_a": {"Sample": "sample_a", "virus": "1", "others": "1", "unscored": "1"},
        "sample_b": {"Sample": "sample_b", "virus": "1", "others": "0", "unscored": "0"},
    }
    html = (report / "multiqc_report.html").read_text()
    assert 'id="virnucpro_calls_plot"' in html and 'id="virnucpro_calls-section"' in html


def test_predict_writes_the_counts_its_files_hold(demo_models, tmp_path: Path) -> None:
    out = tmp_path / "out"
    options = ["--chunk-size", "500", "--out", str(out), "--no-progress"]
    assert main(["predict", str(DEMO_INPUT), *options, *model_args(demo_models)]) == 0
    run = json.loads((out / RUN_FILE).read_text())
    assert {GENERAL_STATS_FILE, CALLS_FILE} <= set(run["outputs"])
    stats = json.loads((out / GENERAL_STATS_FILE).read_text())
    assert stats["plot_type"] == "generalstats"
    (values,) = stats["data"].values()
    assert values["records"] == run["counts"]["records"] == 24
    assert values["viral_records"] == run["counts"]["viral_records"]
    assert values["viral_regions"] == run["counts"]["viral_regions"]
    calls = json.loads((out / CALLS_FILE).read_text())
    assert list(calls["data"]) == ["demo_contigs"]
    summary = (out / "sequence_summary.tsv").read_text().splitlines()[2:]
    column = {"virus": 0, "others": 0, "unscored": 0}
    for row in summary:
        column[row.split("\t")[7]] += 1
    assert calls["data"]["demo_contigs"] == column
    assert "DEMO MODELS" in calls["description"]


def test_the_sample_is_the_input_file_stem() -> None:
    assert sample_name({"input": {"path": "/x/sample1.fa.gz"}}) == "sample1"
    assert sample_name({"input": {"path": "-"}}) == "virnucpro"
    assert sample_name({"input": {"path": "<stream>"}}) == "virnucpro"
    assert sample_name({"input": {"path": None, "kind": "records"}}) == "virnucpro"
