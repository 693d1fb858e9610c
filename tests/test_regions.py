"""Viral regions (docs/ALGORITHM.md 10): the rule, the coordinates from the real chunk windows,
and the BED and GFF3 files (the GFF3 read back by gffutils, a well-kept GFF parser; the BED by
bedtools)."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path
from urllib.parse import unquote

import gffutils
import pytest
from hypothesis import given
from hypothesis import strategies as st

from virnucpro_worker.pipeline.outputs import (
    GFF3_HEADER,
    REGIONS_BED_FILE,
    REGIONS_GFF3_FILE,
    SUMMARY_FILE,
    ResultWriter,
    gff3_seqid,
)
from virnucpro_worker.pipeline.regions import RegionRule, record_regions
from virnucpro_worker.pipeline.results import BlockResult, ChunkCall, RecordSummary, block_regions
from virnucpro_worker.sequences.chunking import chunk_starts

VIRAL, HOST = (0.1, 0.9), (0.8, 0.2)


def calls(pattern: str, record_id: str = "c", record: int = 0) -> list[ChunkCall]:
    """Chunk calls from a pattern: V viral, H scored but not viral, . unscored (chunk 1 first)."""
    scores = {"V": VIRAL, "H": HOST}
    return [
        ChunkCall(record, record_id, number, 1, *scores[mark], mark == "V")
        for number, mark in enumerate(pattern, start=1)
        if mark != "."
    ]


def spans(pattern: str, length: int, rule: RegionRule, size: int = 500) -> list[tuple]:
    regions = record_regions(0, "c", length, calls(pattern), size, rule)
    return [(r.first_chunk, r.last_chunk, r.start, r.end, r.viral_chunks) for r in regions]


def test_the_default_rule_is_two_viral_chunks_bridging_one() -> None:
    assert RegionRule() == RegionRule(min_chunks=2, max_gap=1)
    length = 10 * 500
    # A lone viral chunk is no region; two adjacent ones are; one gap is bridged, two are not.
    assert spans("VHHHHHHHHH", length, RegionRule()) == []
    assert spans("VVHHHHHHHH", length, RegionRule()) == [(1, 2, 0, 1000, 2)]
    assert spans("VHVHHV.VHH", length, RegionRule()) == [(1, 3, 0, 1500, 2), (6, 8, 2500, 4000, 2)]
    assert spans("VHHVHHHHHH", length, RegionRule()) == []


def test_unscored_and_non_viral_chunks_are_bridged_alike() -> None:
    rule = RegionRule(min_chunks=2, max_gap=2)
    assert spans("V.HV", 2000, rule) == spans("VHHV", 2000, rule) == [(1, 4, 0, 2000, 2)]


def test_min_chunks_one_keeps_single_viral_chunks() -> None:
    assert spans("HVH", 1500, RegionRule(min_chunks=1, max_gap=0)) == [(2, 2, 500, 1000, 1)]


def test_coordinates_come_from_the_real_overlapping_windows() -> None:
    # 1200 bp in 500 bp chunks: windows [0, 500), [399, 899), [798, 1200) (ALGORITHM.md 3).
    assert chunk_starts(1200, 500) == [0, 399, 798]
    assert spans("HVV", 1200, RegionRule()) == [(2, 3, 399, 1200, 2)]
    assert spans("VVH", 1200, RegionRule()) == [(1, 2, 0, 899, 2)]
    # 501 bp: the second window starts at 250 and is clipped at the record's end.
    assert spans("VV", 501, RegionRule()) == [(1, 2, 0, 501, 2)]


def test_scores_and_share_of_the_record() -> None:
    chunk_calls = [
        ChunkCall(3, "r", 1, 2, 0.3, 0.7, True),
        ChunkCall(3, "r", 2, 1, 0.9, 0.1, False),
        ChunkCall(3, "r", 3, 1, 0.05, 0.95, True),
    ]
    (region,) = record_regions(3, "r", 2000, chunk_calls, 500, RegionRule())
    assert (region.id, region.record, region.number) == ("r_region_1", 3, 1)
    assert (region.chunks, region.viral_chunks, region.scored_chunks) == (3, 2, 3)
    assert region.mean_virus_score == pytest.approx((0.7 + 0.1 + 0.95) / 3, abs=1e-7)
    assert region.max_virus_score == 0.95
    assert region.record_fraction == 1500 / 2000


@pytest.mark.parametrize(
    "rule", [{"min_chunks": 0, "max_gap": 1}, {"min_chunks": 2, "max_gap": -1}]
)
def test_a_bad_rule_is_refused(rule) -> None:
    with pytest.raises(ValueError, match="min_chunks >= 1 and max_gap >= 0"):
        RegionRule(**rule)


def test_rule_round_trips_through_json_and_old_jobs_get_the_default() -> None:
    rule = RegionRule(min_chunks=3, max_gap=0)
    assert RegionRule.from_json(rule.to_json()) == rule
    assert RegionRule.from_json(None) == RegionRule()


@given(
    pattern=st.text(alphabet="VH.", min_size=1, max_size=40),
    min_chunks=st.integers(1, 4),
    max_gap=st.integers(0, 3),
    size=st.sampled_from([300, 500]),
    trim=st.integers(0, 299),
)
def test_regions_follow_the_rule(pattern, min_chunks, max_gap, size, trim) -> None:
    length = max(1, len(pattern) * size - trim)
    starts = chunk_starts(length, size)
    pattern = pattern[: len(starts)]
    rule = RegionRule(min_chunks, max_gap)
    regions = record_regions(0, "c", length, calls(pattern), size, rule)
    viral = [number for number, mark in enumerate(pattern, 1) if mark == "V"]
    covered = set()
    for region in regions:
        inside = [n for n in viral if region.first_chunk <= n <= region.last_chunk]
        assert pattern[region.first_chunk - 1] == pattern[region.last_chunk - 1] == "V"
        assert len(inside) == region.viral_chunks >= min_chunks
        assert all(b - a - 1 <= max_gap for a, b in itertools.pairwise(inside))
        assert region.start == starts[region.first_chunk - 1]
        assert region.end == min(starts[region.last_chunk - 1] + size, length)
        assert 0 <= region.start < region.end <= length
        covered.update(inside)
    for a, b in itertools.pairwise(regions):
        assert b.first_chunk - a.last_chunk - 1 > max_gap  # otherwise they would be one
    # A viral chunk left out belongs to a chain (viral chunks at most max_gap apart) too short.
    chains: list[list[int]] = []
    for number in viral:
        if chains and number - chains[-1][-1] - 1 <= max_gap:
            chains[-1].append(number)
        else:
            chains.append([number])
    for chain in chains:
        assert (len(chain) >= min_chunks) == (set(chain) <= covered)


def summary(index: int, record_id: str, length: int, chunks: int) -> RecordSummary:
    return RecordSummary(index, record_id, length, chunks, 0, 0, 0, None, None, "others")


def write_regions(out: Path, records: list[tuple[str, int, str]]) -> list[RecordSummary]:
    """Writes a run whose records are (id, length, chunk pattern); returns the summaries."""
    summaries, chunk_calls = [], []
    for index, (record_id, length, pattern) in enumerate(records):
        summaries.append(summary(index, record_id, length, len(pattern)))
        chunk_calls += calls(pattern, record_id, index)
    regions = block_regions(summaries, chunk_calls, 500, RegionRule())
    with ResultWriter(out) as writer:
        writer.add(BlockResult(summaries, chunk_calls, [], regions))
        writer.commit({})
    return summaries


ODD_ID = "weird;id=1,%x|é"  # GFF3 escapes all but | here


def test_bed_and_gff3_files(tmp_path: Path) -> None:
    records = [("plain", 1200, "HVV"), ("none", 500, "V"), (ODD_ID, 2800, "VVHVV.")]
    summaries = write_regions(tmp_path, records)
    assert [s.viral_regions for s in summaries] == [1, 0, 1]
    bed = [line.split("\t") for line in (tmp_path / REGIONS_BED_FILE).read_text().splitlines()]
    assert bed == [
        ["plain", "399", "1200", "plain_region_1", "900", "."],
        [ODD_ID, "0", "2364", f"{ODD_ID}_region_1", "760", "."],
    ]
    for chrom, start, end, _name, score, strand in bed:  # BED6, strictly
        assert chrom and not any(c.isspace() for c in chrom)
        assert 0 <= int(start) < int(end) and 0 <= int(score) <= 1000 and strand in "+-."
    summary_rows = (tmp_path / SUMMARY_FILE).read_text().splitlines()
    assert [row.split("\t")[-1] for row in summary_rows] == ["viral_regions", "1", "0", "1"]

    gff3 = (tmp_path / REGIONS_GFF3_FILE).read_text()
    assert gff3.startswith(GFF3_HEADER + "\n")
    assert f"##sequence-region {gff3_seqid(ODD_ID)} 1 2800\n" in gff3
    database = gffutils.create_db(
        str(tmp_path / REGIONS_GFF3_FILE), ":memory:", merge_strategy="error"
    )
    features = sorted(database.all_features(), key=lambda f: f.start)
    # gffutils keeps GFF3's %-escapes: undoing them gives the record id back.
    assert [(unquote(f.seqid), f.start, f.end, f.featuretype, f.source) for f in features] == [
        (ODD_ID, 1, 2364, "region", "VirNucPro"),
        ("plain", 400, 1200, "region", "VirNucPro"),
    ]
    odd = features[0]
    assert unquote(odd.id) == f"{ODD_ID}_region_1"
    assert odd.attributes["viral_chunks"] == ["4"] and odd.attributes["chunks"] == ["1-5"]
    assert odd.attributes["scored_chunks"] == ["5"]
    assert odd.attributes["record_fraction"] == [f"{2364 / 2800:.4f}"]
    assert odd.attributes["mean_virus_score"] == ["0.76"]


def test_bedtools_reads_the_bed_and_every_region_lies_inside_its_record(tmp_path: Path) -> None:
    """bedtools (Debian's; .ci/run installs it) parses the BED against a genome file of the
    records' lengths: `slop -b 0` refuses a record it does not know and clips a region that
    runs past its record's end, so unchanged output means every line is valid and inside."""
    records = [("plain", 1200, "HVV"), ("long", 2400, "VVHVV"), (ODD_ID, 2800, "VVHVV.")]
    write_regions(tmp_path, records)
    genome = tmp_path / "records.genome"
    genome.write_text("".join(f"{name}\t{length}\n" for name, length, _ in records))
    bed = tmp_path / REGIONS_BED_FILE
    bedtools = ["bedtools", "slop", "-b", "0", "-i", str(bed), "-g", str(genome)]
    done = subprocess.run(bedtools, capture_output=True, text=True, check=True)
    assert done.stdout == bed.read_text() and done.stdout.count("\n") == 3
    genome.write_text("plain\t1200\n")  # a record missing from the genome: refused
    assert subprocess.run(bedtools, capture_output=True, text=True).returncode != 0


def test_no_regions_give_header_only_files(tmp_path: Path) -> None:
    write_regions(tmp_path, [("a", 500, "V"), ("b", 1000, "HH")])
    assert (tmp_path / REGIONS_BED_FILE).read_text() == ""
    assert (tmp_path / REGIONS_GFF3_FILE).read_text() == GFF3_HEADER + "\n"
