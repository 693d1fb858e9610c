"""Sequence preparation: chunking, six-frame translation, frame selection, `prepare` (in-process).

Independent reimplementations of docs/ALGORITHM.md sections 3-4 live in this file: the chunk
loop copied verbatim from the pseudo-code, a Biopython six-frame translation and a per-codon
dictionary translation. The package's vectorised code must agree with them exactly.
"""

from __future__ import annotations

import gzip
import itertools
import math
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from Bio.Data.CodonTable import unambiguous_dna_by_id
from Bio.Seq import Seq
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from virnucpro_worker.sequences.chunking import Chunk, chunk_record, chunk_starts
from virnucpro_worker.sequences.fasta import FastaRecord, read_fasta
from virnucpro_worker.sequences.prepare import prepare, prepared_blocks
from virnucpro_worker.sequences.translation import kept_frames

CONFORMANCE = Path(__file__).parent / "data" / "conformance"
STEMS = ("test_with_orfs", "test_fixed_500bp", "test_sequences_small")
OUTPUT_SUFFIXES = ("_chunked500.fa", "_identified_nucleotide.fa", "_identified_protein.faa")


# --------------------------------------------------------------------------------------------
# Independent reference implementations
# --------------------------------------------------------------------------------------------


def reference_chunks(record_id: str, seq: str, c: int) -> list[tuple[str, int, str]]:
    """docs/ALGORITHM.md 3, the pseudo-code loop kept verbatim: (id, start, chunk) triples."""
    n = len(seq)
    k = math.ceil(n / c)
    R = k * c - n
    lo = int(R / k)
    need = R - lo * (k - 1)
    shifts = [lo + 1] * need + [lo] * (k - 1 - need) + [0]
    out = []
    moved = 0
    for a, s in zip(range(0, n, c), shifts):  # noqa: B905 - verbatim: lengths may differ
        start = a - moved if a > 1 else a
        chunk = seq[start : start + c]
        out.append((f"{record_id}_chunk_{a // c + 1}", start, chunk))
        moved += s
    return out


_STANDARD = unambiguous_dna_by_id[1]
CODON_TABLE: dict[str, str] = {
    **_STANDARD.forward_table,
    **dict.fromkeys(_STANDARD.stop_codons, "*"),
}
assert len(CODON_TABLE) == 64
NON_STOP_CODONS = sorted(codon for codon, aa in CODON_TABLE.items() if aa != "*")
FRAME_NAMES = ("F1", "F2", "F3", "R1", "R2", "R3")
_DICT_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A", "a": "t", "c": "g", "g": "c", "t": "a"}


def dict_reverse_complement(seq: str) -> str:
    return "".join(_DICT_COMPLEMENT.get(base, base) for base in reversed(seq))


def select_frames(
    chunk_id: str, strands: list[str], proteins: list[str]
) -> list[tuple[str, str, str]]:
    """docs/ALGORITHM.md 4, steps 4-6: (frame id, nucleotide slice, protein) of the kept frames."""
    kept = []
    for number, (strand, protein) in enumerate(zip(strands, proteins, strict=True)):
        if protein and "*" not in protein:
            f = number % 3
            kept.append(
                (chunk_id + FRAME_NAMES[number], strand[f : f + 3 * len(protein) + 1], protein)
            )
    return kept


def biopython_frames(chunk_id: str, seq: str) -> list[tuple[str, str, str]]:
    """Six frames with Bio.Seq.translate (valid for ACGT-only input)."""
    upper = seq.upper()
    reverse = str(Seq(upper).reverse_complement())
    strands = [upper] * 3 + [reverse] * 3
    proteins = []
    for number, strand in enumerate(strands):
        part = strand[number % 3 :]
        proteins.append(str(Seq(part[: len(part) // 3 * 3]).translate()))
    return select_frames(chunk_id, strands, proteins)


def dict_frames(chunk_id: str, seq: str) -> list[tuple[str, str, str]]:
    """Six frames, codon by codon through a dictionary; codons with a non-ACGT letter dropped."""
    upper = seq.upper()
    reverse = dict_reverse_complement(upper)
    strands = [upper] * 3 + [reverse] * 3
    proteins = []
    for number, strand in enumerate(strands):
        codons = (strand[i : i + 3] for i in range(number % 3, len(strand) - 2, 3))
        proteins.append("".join(CODON_TABLE.get(codon, "") for codon in codons))
    return select_frames(chunk_id, strands, proteins)


def package_frames(chunk_id: str, seq: str) -> list[tuple[str, str, str]]:
    record_id, number = chunk_id.rsplit("_chunk_", 1)
    frames = kept_frames([Chunk(record_id, int(number), 0, seq)])
    assert all(frame.record_id == record_id and frame.chunk == int(number) for frame in frames)
    event(f"{len(frames)} kept frames")  # --hypothesis-show-statistics shows the spread
    return [(frame.id, frame.nucleotide, frame.protein) for frame in frames]


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

IUPAC = "NRYSWKMBDHVU"


def _mixed_case(draw: st.DrawFn, seq: str) -> str:
    lower = draw(st.lists(st.booleans(), min_size=len(seq), max_size=len(seq)))
    return "".join(b.lower() if low else b for b, low in zip(seq, lower, strict=True))


@st.composite
def coding_dna(draw: st.DrawFn, ambiguous: bool = False) -> str:
    """DNA that often has stop-free frames: runs of non-stop codons, random bases, IUPAC codons."""
    pieces = [draw(st.text("ACGT", max_size=2))]
    codon = st.sampled_from(NON_STOP_CODONS) | st.text("ACGT", min_size=3, max_size=3)
    if ambiguous:
        codon = codon | st.text("ACGT" + IUPAC, min_size=3, max_size=3)
    pieces += draw(st.lists(codon, max_size=70))
    pieces.append(draw(st.text("ACGT", max_size=2)))
    return _mixed_case(draw, "".join(pieces))


@st.composite
def long_coding_dna(draw: st.DrawFn, ambiguous: bool = False) -> str:
    """Chunk-sized DNA (up to ~600 bp) built from a drawn seed: mostly non-stop codons, a few
    stop codons (and IUPAC letters), random case. Cheap to generate at realistic lengths."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    length = draw(st.integers(0, 600))
    stop_rate = draw(st.sampled_from([0.0, 0.002, 0.01]))
    letters = []
    while len(letters) < length:
        if rng.random() < stop_rate:
            letters += rng.choice(["TAA", "TAG", "TGA"])
        elif ambiguous and rng.random() < 0.01:
            letters += rng.choice(IUPAC)
        else:
            letters += rng.choice(NON_STOP_CODONS)
    seq = "".join(letters[:length])
    if draw(st.booleans()):
        seq = "".join(b.lower() if rng.random() < 0.3 else b for b in seq)
    return seq


acgt_chunks = st.text("ACGTacgt", max_size=300) | coding_dna() | long_coding_dna()
ambiguous_chunks = (
    st.text("ACGTacgt" + IUPAC + IUPAC.lower(), max_size=300)
    | coding_dna(True)
    | long_coding_dna(True)
)


# --------------------------------------------------------------------------------------------
# Chunking
# --------------------------------------------------------------------------------------------

chunk_sizes = st.sampled_from([300, 500]) | st.integers(1, 1000)


@given(n=st.integers(1, 20_000), size=chunk_sizes)
@example(n=1200, size=500)
@example(n=501, size=500)
@example(n=1, size=1)
def test_chunk_starts_match_reference_loop(n: int, size: int) -> None:
    expected = [start for _, start, _ in reference_chunks("r", "A" * n, size)]
    assert chunk_starts(n, size) == expected


@given(n=st.integers(1, 5_000), size=chunk_sizes, seed=st.integers(0, 2**32))
def test_chunk_record_matches_reference_loop(n: int, size: int, seed: int) -> None:
    seq = "".join(random.Random(seed).choices("ACGTacgtN", k=n))
    got = [(c.id, c.start, c.sequence) for c in chunk_record("contig7", seq, size)]
    assert got == reference_chunks("contig7", seq, size)


@given(n=st.integers(1, 20_000), size=chunk_sizes)
def test_chunks_cover_the_record(n: int, size: int) -> None:
    seq = "".join(random.Random(n).choices("ACGT", k=n))
    chunks = list(chunk_record("r", seq, size))
    assert [c.id for c in chunks] == [f"r_chunk_{k}" for k in range(1, len(chunks) + 1)]
    assert len(chunks) == math.ceil(n / size)
    covered = np.zeros(n, dtype=bool)
    for c in chunks:
        assert 0 <= c.start < n
        assert c.sequence == seq[c.start : c.start + size]
        covered[c.start : c.start + len(c.sequence)] = True
    assert covered.all()
    lengths = [len(c.sequence) for c in chunks]
    assert max(lengths) <= size
    if n >= size:
        assert all(length == size for length in lengths[:-1])
    else:
        assert lengths == [n]


@pytest.mark.parametrize(
    ("n", "size", "starts", "lengths"),
    [
        (1200, 500, [0, 399, 798], [500, 500, 402]),
        (501, 500, [0, 250], [500, 251]),
        (500, 500, [0], [500]),
        (499, 500, [0], [499]),
        (1, 300, [0], [1]),
        (1000, 500, [0, 500], [500, 500]),
    ],
)
def test_reference_chunk_examples(n: int, size: int, starts: list[int], lengths: list[int]) -> None:
    chunks = list(chunk_record("seq", "ACGT" * (n // 4) + "A" * (n % 4), size))
    assert [c.start for c in chunks] == starts
    assert [len(c.sequence) for c in chunks] == lengths
    assert [c.id for c in chunks] == [f"seq_chunk_{k}" for k in range(1, len(starts) + 1)]


def test_chunk_keeps_letter_case() -> None:
    (chunk,) = chunk_record("r", "acgtNNACGTrykm", 300)
    assert chunk.sequence == "acgtNNACGTrykm"


# --------------------------------------------------------------------------------------------
# Six-frame translation and frame selection
# --------------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(seq=acgt_chunks)
@example(seq="")
@example(seq="AC")
@example(seq="ATG")
@example(seq="TAA")
@example(seq="atggcc")
def test_kept_frames_match_biopython(seq: str) -> None:
    assert package_frames("c_chunk_1", seq) == biopython_frames("c_chunk_1", seq)


@settings(max_examples=300)
@given(seq=ambiguous_chunks)
@example(seq="NNNNNNNNN")
@example(seq="ATGNNNGCC")
@example(seq="ATGNTAA")
@example(seq="rykmATGGCCnnn")
def test_kept_frames_match_codon_dictionary_with_ambiguous_bases(seq: str) -> None:
    assert package_frames("c_chunk_1", seq) == dict_frames("c_chunk_1", seq)


@settings(max_examples=300)
@given(seqs=st.lists(ambiguous_chunks, max_size=12))
def test_kept_frames_over_many_chunks_equals_chunk_by_chunk(seqs: list[str]) -> None:
    chunks = [Chunk(f"r{i // 3}", i % 3 + 1, 0, seq) for i, seq in enumerate(seqs)]
    together = kept_frames(chunks)
    one_by_one = [frame for chunk in chunks for frame in kept_frames([chunk])]
    assert together == one_by_one


def test_frame_ids_order_and_slices() -> None:
    # Every frame of both strands is stop-free; the +1 base is clipped at the chunk end.
    frames = kept_frames([Chunk("contig7", 3, 1000, "GCCGCCGCC")])
    assert [f.id for f in frames] == [f"contig7_chunk_3{name}" for name in FRAME_NAMES]
    assert [(f.chunk, f.strand, f.frame) for f in frames] == [
        (3, strand, frame) for strand in "FR" for frame in (1, 2, 3)
    ]
    assert [f.protein for f in frames] == ["AAA", "PP", "RR", "GGG", "AA", "RR"]
    assert [f.nucleotide for f in frames] == [
        "GCCGCCGCC",
        "CCGCCGC",
        "CGCCGCC",
        "GGCGGCGGC",
        "GCGGCGG",
        "CGGCGGC",
    ]
    assert {f.record_id for f in frames} == {"contig7"}


def test_one_stop_codon_discards_the_frame() -> None:
    # F1 = M * A: a single stop anywhere discards the frame (no ORF finding).
    ids = [f.id for f in kept_frames([Chunk("x", 1, 0, "ATGTAAGCC")])]
    assert "x_chunk_1F1" not in ids


# --------------------------------------------------------------------------------------------
# prepare(): conformance with the original tool and input variants
# --------------------------------------------------------------------------------------------


def assert_outputs_match(out_dir: Path, stem: str, expected_stem: str) -> None:
    for suffix in OUTPUT_SUFFIXES:
        got = (out_dir / f"{stem}{suffix}").read_bytes()
        assert got == (CONFORMANCE / f"{expected_stem}{suffix}").read_bytes(), suffix
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(stem + s for s in OUTPUT_SUFFIXES)


@pytest.mark.parametrize("stem", STEMS)
def test_prepare_reproduces_the_original_tool(stem: str, tmp_path: Path) -> None:
    summary = prepare(CONFORMANCE / f"{stem}.fa", 500, tmp_path)
    assert_outputs_match(tmp_path, stem, stem)
    expected_frames = (CONFORMANCE / f"{stem}_identified_protein.faa").read_text().count(">")
    assert summary.frames == expected_frames
    assert summary.chunks == (CONFORMANCE / f"{stem}_chunked500.fa").read_text().count(">")


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize(
    "name", ["{}.fa.gz", "{}.fasta", "{}.fna", "{}.fas", "{}.fasta.gz", "{}.fna.gz"]
)
def test_compressed_input_and_other_suffixes(stem: str, name: str, tmp_path: Path) -> None:
    source = CONFORMANCE / f"{stem}.fa"
    target = tmp_path / "in" / name.format(stem)
    target.parent.mkdir()
    if target.name.endswith(".gz"):
        target.write_bytes(gzip.compress(source.read_bytes()))
    else:
        shutil.copy(source, target)
    prepare(target, 500, tmp_path / "out")
    assert_outputs_match(tmp_path / "out", stem, stem)


def _reformat(text: str) -> str:
    """Same records, messier file: descriptions, blank lines, other wrapping, CRLF."""
    out = ["", "   "]
    for number, block in enumerate(text.split(">")[1:]):
        header, *lines = block.splitlines()
        seq = "".join(lines)
        out.append(f">{header} description {number} with\tspaces  ")
        width = (7, 80, len(seq) or 1)[number % 3]
        out += [seq[i : i + width] for i in range(0, len(seq), width)]
        out += ["", ""]
    return "\r\n".join(out) + "\r\n"


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("compressed", [False, True])
def test_messy_formatting_gives_identical_outputs(
    stem: str, compressed: bool, tmp_path: Path
) -> None:
    text = _reformat((CONFORMANCE / f"{stem}.fa").read_text())
    assert "\r\n\r\n" in text and " description " in text
    data = text.encode()
    target = tmp_path / (f"{stem}.fa.gz" if compressed else f"{stem}.fa")
    target.write_bytes(gzip.compress(data) if compressed else data)
    prepare(target, 500, tmp_path / "out")
    assert_outputs_match(tmp_path / "out", stem, stem)


def test_read_fasta_drops_descriptions_and_joins_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.fa"
    path.write_bytes(b"\n>a desc here\r\nAC\r\n\r\ngt\r\n>b\nNNN\n")
    assert list(read_fasta(path)) == [FastaRecord("a", "ACgt"), FastaRecord("b", "NNN")]


# --------------------------------------------------------------------------------------------
# Streaming: bounded memory
# --------------------------------------------------------------------------------------------


def _random_records(count: int, length: int, seed: int) -> list[FastaRecord]:
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    return [
        FastaRecord(f"rec{i}", letters[rng.integers(0, 4, length)].tobytes().decode())
        for i in range(count)
    ]


def test_prepared_blocks_streams_the_input(tmp_path: Path) -> None:
    records = _random_records(count=300, length=10_000, seed=1)  # 3 Mbp
    path = tmp_path / "big.fa"
    path.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))

    consumed = 0

    def counting(source: Iterator[FastaRecord]) -> Iterator[FastaRecord]:
        nonlocal consumed
        for record in source:
            consumed += 1
            yield record

    blocks = prepared_blocks(counting(read_fasta(path)), 500, block_bases=250_000)
    first = next(blocks)
    # The first block is produced after reading about its own records, not the whole file.
    assert len(first.records) <= consumed <= len(first.records) + 1 < 50
    rest = list(blocks)
    assert len(rest) + 1 >= 10
    assert consumed == 300
    sizes = [sum(info.length for info in block.records) for block in [first, *rest]]
    assert sum(sizes) == 3_000_000
    assert max(sizes) <= 250_000 + 10_000  # a block ends with the record that fills it
    # Block boundaries do not change the result.
    streamed = list(itertools.chain(first.frames, *(block.frames for block in rest)))
    (whole,) = prepared_blocks(iter(records), 500, block_bases=10**9)
    assert streamed == whole.frames
    assert [c for block in [first, *rest] for c in block.chunks] == whole.chunks
