"""report.html: what it holds, that it stays bounded for large inputs, that it is self-contained,
and that a real headless browser (Debian's chromium) renders it, with and without JavaScript."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from models_for_tests import DemoModels, model_args

from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.pipeline import report as report_module
from virnucpro_worker.pipeline.outputs import (
    PREDICTIONS_FILE,
    REGIONS_BED_FILE,
    RUN_FILE,
    SUMMARY_FILE,
    read_prediction_results,
)
from virnucpro_worker.pipeline.regions import RegionRule
from virnucpro_worker.pipeline.report import REPORT_FILE, ReportBuilder
from virnucpro_worker.pipeline.results import BlockResult, ChunkCall, RecordSummary, block_regions

DEMO_INPUT = Path(__file__).parents[1] / "examples" / "demo_contigs.fa"
CHROMIUM = shutil.which("chromium") or "chromium"  # .ci/run installs Debian's chromium


@pytest.fixture(scope="module")
def demo_report(demo_models: DemoModels, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    options = ["--chunk-size", "500", "--out", str(out), "--no-progress"]
    assert main(["predict", str(DEMO_INPUT), *options, *model_args(demo_models)]) == 0
    return out


def summary_rows(out: Path) -> list[dict[str, str]]:
    lines = [line for line in (out / SUMMARY_FILE).read_text().splitlines() if line[0] != "#"]
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def browse(page: Path, *options: str) -> tuple[str, str]:
    """(the DOM after the page ran, chromium's log) from a headless chromium."""
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr"]
    done = subprocess.run(
        [*browser, "--v=0", *options, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_a_headless_browser_renders_it_with_the_key_numbers(demo_report: Path) -> None:
    dom, log = browse(demo_report / REPORT_FILE)
    assert not [line for line in log.splitlines() if ":CONSOLE" in line]  # no console message
    rows = summary_rows(demo_report)
    viral = sum(row["call"] == "virus" for row in rows)
    regions = sum(int(row["viral_regions"]) for row in rows)
    assert re.search(rf"id=\"count-records\">{len(rows)}<", dom)
    assert re.search(rf"id=\"count-viral_records\">{viral}<", dom)
    assert re.search(rf"id=\"count-viral_regions\">{regions}<", dom)
    table = dom[dom.index('<table id="records"') : dom.index("</table>", dom.index('id="records"'))]
    assert table.count("<tr>") == len(rows) + 1  # the header and every record (24 < TABLE_ROWS)
    for row in rows:
        assert f"<td>{row['record_id']}</td>" in table
    # The script ran to its end: the filter box is shown and the headers sort.
    assert re.search(r'<input id="records-filter"(?![^>]*hidden)', dom)
    assert dom.count('title="sort"') == 8
    # Every record with a region is drawn as a track, with its regions.
    drawn = set(re.findall(r"data-record=\"([^\"]+)\"", dom))
    assert {row["record_id"] for row in rows if row["viral_regions"] != "0"} <= drawn
    assert "DEMO MODELS" in dom
    assert dom.count("<svg") == 2 + len(drawn)  # calls, distributions, one per track


def test_without_javascript_the_tables_and_figures_are_there(demo_report: Path) -> None:
    """The page's source already holds every table row and figure (the script only adds
    sorting and filtering): a browser without JavaScript, or Galaxy's sanitizer dropping the
    script, shows them all."""
    page = (demo_report / REPORT_FILE).read_text()
    body = page[: page.index("<script>")]
    rows = summary_rows(demo_report)
    records = body[body.index("<table id='records'>") :]
    assert records[: records.index("</table>")].count("<tr><td>") == len(rows)
    assert body.count("<svg") == page.count("<svg") >= 3
    assert re.search(r"<input id='records-filter'[^>]* hidden>", body)  # shown by the script
    assert page.count("<script>") == 1 and "</script></body>" in page


def test_galaxy_s_sanitizer_keeps_every_table_and_number(demo_report: Path, tmp_path) -> None:
    """Galaxy shows an HTML dataset through its sanitizer (galaxy.util.sanitize_html, on by
    default): it removes every style, script and SVG element. What is left, rendered by
    chromium, still holds the counts, every record's row, the figures' numbers as tables
    (distribution bins, the drawn records' regions), the provenance and the demo warning."""
    from galaxy.util.sanitize_html import sanitize_html

    page = (demo_report / REPORT_FILE).read_text()
    cleaned = sanitize_html(page)
    assert not re.search(r"<(script|style|svg)\b", cleaned)  # what Galaxy removes
    (tmp_path / "sanitized.html").write_text(cleaned)
    dom, _ = browse(tmp_path / "sanitized.html")
    rows = summary_rows(demo_report)
    assert re.search(rf"id=\"count-records\">{len(rows)}<", dom)
    assert re.search(
        rf"id=\"count-viral_regions\">{sum(int(r['viral_regions']) for r in rows)}<", dom
    )
    records = dom[dom.index('<table id="records"') :]
    records = records[: records.index("</table>")]
    assert all(f"<td>{row['record_id']}</td>" in records for row in rows)
    bed = (demo_report / REGIONS_BED_FILE).read_text().splitlines()
    regions = dom[dom.index('<table id="regions"') :]
    regions = regions[: regions.index("</table>")]
    for line in bed:  # the demo's regions are all drawn; 1-based starts, as in GFF3
        _, start, end, name, _, _ = line.split("\t")
        assert f'<td>{name}</td><td class="n">{int(start) + 1}</td><td class="n">{end}<' in regions
    bins = dom[dom.index('<details id="bins"') :]
    frames = len(read_prediction_results(demo_report / PREDICTIONS_FILE))
    counts = re.findall(r"<tr><td>[0-9.-]+</td><td class=\"n\">(\d+)</td>", bins)
    assert len(counts) == 40 and sum(map(int, counts)) == frames
    run = json.loads((demo_report / RUN_FILE).read_text())
    assert run["models"]["esm2"]["sha256"] in dom and "DEMO MODELS" in dom


def test_it_is_self_contained(demo_report: Path) -> None:
    page = (demo_report / REPORT_FILE).read_text()
    # No file is fetched: url(#...) only points into the page (the figures' clip paths).
    assert not re.search(r"<link|<img|<iframe|\ssrc=|url\((?!#)|@import|@font-face", page)
    # The only addresses are XML namespaces, which a browser never fetches.
    addresses = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert addresses <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, addresses


def records(count: int, viral_every: int) -> BlockResult:
    """`count` records of 3 chunks; every `viral_every`-th has two viral chunks (a region)."""
    summaries, calls = [], []
    for index in range(count):
        viral = index % viral_every == 0
        score = (index % 997) / 997
        summaries.append(
            RecordSummary(
                index, f"r{index}", 1200 + index, 3, 3, 3, 2 * viral, score, 0.0, "others"
            )
        )
        for chunk in (1, 2, 3):
            is_virus = viral and chunk < 3
            calls.append(ChunkCall(index, f"r{index}", chunk, 1, 0.5, score, is_virus))
    regions = block_regions(summaries, calls, 500, RegionRule())
    return BlockResult(summaries, calls, [], regions)


def test_large_inputs_are_summarised_and_sampled(monkeypatch) -> None:
    monkeypatch.setattr(report_module, "TABLE_ROWS", 50)
    builder = ReportBuilder()
    block = records(5000, viral_every=10)
    for start in range(0, 5000, 1000):  # five blocks, as the stream gives them
        part = BlockResult(
            block.records[start : start + 1000],
            [c for c in block.chunks if start <= c.record < start + 1000],
            [],
            [r for r in block.regions if start <= r.record < start + 1000],
        )
        builder.add(part)
    table = builder.table_rows()
    assert len(table) == 50
    best = sorted(block.records, key=lambda r: (r.max_virus_score, -r.index), reverse=True)[:50]
    assert [r.index for r in table] == [r.index for r in best]
    tracks = builder.tracks()
    assert len(tracks) == report_module.TRACKS
    with_regions = tracks[: report_module.TRACKS - report_module.LONGEST]
    assert all(track.regions for track in with_regions)
    assert [t.record.index for t in tracks[-report_module.LONGEST :]] == [4999, 4998, 4997]
    page = builder.render({"chunk_size": 500, "counts": {}})
    assert "The 50 records with the highest max P(virus) of 5,000" in page
    assert page.count("<svg") == 2 + report_module.TRACKS


def test_the_same_results_give_the_same_bytes(demo_models: DemoModels, tmp_path: Path) -> None:
    """Two runs give the same page, byte for byte: the figures have fixed ids, and the
    provenance panel holds what decides the results (checksums, kernels, dtype), not what
    differs between runs (times, paths), which run.json keeps."""
    pages, runs = [], []
    for name in ("a", "b"):
        options = ["--chunk-size", "500", "--out", str(tmp_path / name), "--no-progress"]
        assert main(["predict", str(DEMO_INPUT), *options, *model_args(demo_models)]) == 0
        pages.append((tmp_path / name / REPORT_FILE).read_bytes())
        runs.append(json.loads((tmp_path / name / RUN_FILE).read_text()))
    assert pages[0] == pages[1]
    assert runs[0]["started"] != runs[1]["started"]  # what the page leaves to run.json
    page, run = pages[0].decode(), runs[0]
    panel = page[page.index("<section id='provenance'>") :]
    for value in (
        run["input"]["sha256"],
        run["models"]["esm2"]["sha256"],
        run["models"]["classifier"]["sha256"],
        run["kernels"]["esm2"],
        run["kernels"]["dnabert_s"],
        run["dtype"],
        run["code_version"],
    ):
        assert f"{value}" in panel, value
    for value in (run["started"], run["finished"], str(tmp_path), run["models"]["esm2"]["file"]):
        assert value not in page, value
