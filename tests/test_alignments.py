"""Unaligned BAM and CRAM input (the `bam` extra, pysam): the reads, named as `samtools fastq`
names them, give what the same reads as FASTA give."""

from __future__ import annotations

from pathlib import Path

import pysam
import pytest
from models_for_tests import DemoModels, model_args

from virnucpro_worker.errors import InputError
from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.pipeline.outputs import (
    HIGHEST_SCORE_FILE,
    PREDICTIONS_FILE,
    REGIONS_BED_FILE,
    SUMMARY_FILE,
)
from virnucpro_worker.sequences.fasta import read_fasta

UNIT = "ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA"
COMPLEMENT = str.maketrans("ACGT", "TGCA")
# (name, flag, sequence as sequenced): a lone read, a pair, a read stored reverse-complemented,
# and a secondary record (a repeat of the lone read), which is skipped
READS = [
    ("lone", 4, UNIT * 20),
    ("pair", 77, UNIT * 9 + "ACGT"),
    ("pair", 141, "TTGA" + UNIT * 11),
    ("flipped", 4 | 16, UNIT * 15 + "GG"),
    ("lone", 4 | 256, UNIT * 20),
]
NAMES = ["lone", "pair/1", "pair/2", "flipped"]


def write_alignments(path: Path, mode: str) -> Path:
    header = {"HD": {"VN": "1.6", "SO": "unknown"}}
    with pysam.AlignmentFile(str(path), mode, header=header) as out:
        for name, flag, sequence in READS:
            read = pysam.AlignedSegment(out.header)
            read.query_name, read.flag = name, flag
            # as stored: a read flagged reverse is kept reverse-complemented
            read.query_sequence = sequence[::-1].translate(COMPLEMENT) if flag & 16 else sequence
            read.query_qualities = pysam.qualitystring_to_array("I" * len(sequence))
            out.write(read)
    return path


def as_fasta(path: Path) -> Path:
    kept = [(name, sequence) for name, flag, sequence in READS if not flag & 256]
    path.write_text("".join(f">{n}\n{s}\n" for n, (_, s) in zip(NAMES, kept, strict=True)))
    return path


@pytest.mark.parametrize("suffix, mode", [("bam", "wb"), ("cram", "wc")])
def test_reads_come_named_and_in_sequencing_orientation(tmp_path, suffix, mode) -> None:
    records = list(read_fasta(write_alignments(tmp_path / f"reads.{suffix}", mode)))
    assert [r.id for r in records] == NAMES
    assert [r.sequence for r in records] == [s for _, f, s in READS if not f & 256]


def test_predict_on_a_bam_gives_what_the_fasta_gives(demo_models: DemoModels, tmp_path) -> None:
    bam = write_alignments(tmp_path / "reads.bam", "wb")
    for source, out in ((bam, "bam"), (as_fasta(tmp_path / "reads.fa"), "fasta")):
        options = ["--chunk-size", "300", "--out", str(tmp_path / out), "--no-progress"]
        assert main(["predict", str(source), *options, *model_args(demo_models)]) == 0
    for name in (PREDICTIONS_FILE, HIGHEST_SCORE_FILE, SUMMARY_FILE, REGIONS_BED_FILE):
        assert (tmp_path / "bam" / name).read_bytes() == (tmp_path / "fasta" / name).read_bytes()


def test_a_truncated_bam_is_one_line(tmp_path) -> None:
    whole = write_alignments(tmp_path / "reads.bam", "wb").read_bytes()
    cut = tmp_path / "cut.bam"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"cut\.bam: .*"):
        list(read_fasta(cut))
