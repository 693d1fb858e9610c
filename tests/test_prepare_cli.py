"""`virnucpro prepare` through the command line: conformance, bad input, empty frame files.

Every case runs the CLI in a fresh interpreter, as a user would, and checks exit code, stderr and
the output directory.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

CONFORMANCE = Path(__file__).parent / "data" / "conformance"
STEMS = ("test_with_orfs", "test_fixed_500bp", "test_sequences_small")
OUTPUT_SUFFIXES = ("_chunked500.fa", "_identified_nucleotide.fa", "_identified_protein.faa")
MODULE_CLI = [sys.executable, "-m", "virnucpro_worker.interfaces.cli"]
CONSOLE_SCRIPT = Path(sys.executable).with_name("virnucpro")


def run_prepare(
    input_path: Path,
    out_dir: Path,
    *,
    chunk_size: str = "500",
    command: list[str] = MODULE_CLI,
    workers: str = "2",
) -> subprocess.CompletedProcess[str]:
    """The CLI with two worker processes whatever the CPU count, so that inputs of a few Mbp
    span several blocks (the "after a block" cases rely on it)."""
    return subprocess.run(
        [
            *command,
            "prepare",
            str(input_path),
            "--chunk-size",
            chunk_size,
            "--out",
            str(out_dir),
            "--workers",
            workers,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def files_in(directory: Path) -> list[str]:
    """Every entry, hidden temporary files included; a missing directory has none."""
    return sorted(os.listdir(directory)) if directory.exists() else []


# --------------------------------------------------------------------------------------------
# Conformance
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_cli_reproduces_the_original_tool(stem: str, tmp_path: Path) -> None:
    result = run_prepare(CONFORMANCE / f"{stem}.fa", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert files_in(tmp_path) == sorted(stem + suffix for suffix in OUTPUT_SUFFIXES)
    for suffix in OUTPUT_SUFFIXES:
        expected = (CONFORMANCE / f"{stem}{suffix}").read_bytes()
        assert (tmp_path / f"{stem}{suffix}").read_bytes() == expected, suffix


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="console script not installed")
def test_console_script_on_gzip_input(tmp_path: Path) -> None:
    source = CONFORMANCE / "test_with_orfs.fa"
    compressed = tmp_path / "test_with_orfs.fasta.gz"
    compressed.write_bytes(gzip.compress(source.read_bytes()))
    result = run_prepare(compressed, tmp_path / "out", command=[str(CONSOLE_SCRIPT)])
    assert result.returncode == 0, result.stderr
    for suffix in OUTPUT_SUFFIXES:
        expected = (CONFORMANCE / f"test_with_orfs{suffix}").read_bytes()
        assert (tmp_path / "out" / f"test_with_orfs{suffix}").read_bytes() == expected


# --------------------------------------------------------------------------------------------
# Bad input: one clear line, non-zero exit, nothing written
# --------------------------------------------------------------------------------------------


def assert_clean_failure(
    result: subprocess.CompletedProcess[str], out_dir: Path, *mentions: str
) -> str:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("virnucpro: error: "), line
    for mention in mentions:
        assert mention in line, (mention, line)
    assert files_in(out_dir) == []
    return line


def _random_fasta(count: int, length: int, seed: int = 7) -> bytes:
    """`count` random ACGT records, 60-column lines."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    parts = []
    for i in range(count):
        seq = letters[rng.integers(0, 4, length)].tobytes()
        lines = b"\n".join(seq[j : j + 60] for j in range(0, length, 60))
        parts.append(b">rec%d\n%s\n" % (i, lines))
    return b"".join(parts)


def _gzip_header_then_garbage() -> bytes:
    header = gzip.compress(b">a\nACGT\n")[:10]  # magic, method, flags, mtime, xfl, os
    return header + b"this is not a deflate stream \x00\xff\x13" * 20


def _truncated_gzip() -> bytes:
    # 3 Mbp: longer than one processing block, so some output was produced before the error.
    data = gzip.compress(_random_fasta(count=300, length=10_000), compresslevel=1)
    return data[: int(len(data) * 0.9)]


BAD_INPUTS: dict[str, tuple[str, Callable[[], bytes], tuple[str, ...]]] = {
    # case: (file name, content, what the message must mention besides the path)
    "empty file": ("empty.fa", lambda: b"", ("empty",)),
    "not fasta": ("notes.fa", lambda: b"Hello,\nthis is a shopping list.\n", ("FASTA",)),
    "empty sequence": ("e.fa", lambda: b">first\n>second\nACGT\n", ("first", "empty sequence")),
    "empty last sequence": ("e.fa", lambda: b">first\nACGT\n>second\n\n", ("second",)),
    "duplicate ids": ("d.fa", lambda: b">a x\nACGT\n>b\nAC\n>a y\nGG\n", ("'a'", "duplicate")),
    "duplicate after a block": (
        "late.fa",
        lambda: _random_fasta(count=250, length=10_000) + b">rec3\nACGT\n",
        ("rec3", "duplicate"),
    ),
    "protein fasta": (
        "prot.fa",
        lambda: b">sp|P69905|HBA_HUMAN Hemoglobin\nMVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTK\n",
        ("sp|P69905|HBA_HUMAN", "protein"),
    ),
    "gzip header then garbage": ("bad.fa.gz", _gzip_header_then_garbage, ("gzip",)),
    "truncated gzip": ("cut.fa.gz", _truncated_gzip, ("gzip",)),
    "binary data": ("blob.fa", lambda: bytes(range(256)) * 8, ("not FASTA or FASTQ", "binary")),
    "zip archive": ("seqs.fa", lambda: b"PK\x03\x04" + b"\x00" * 60, ("zip archive",)),
    "truncated fastq": ("r.fq", lambda: b"@r1\nACGT\n+\nIIII\n@r2\nAC\n", ("FASTQ", "truncated")),
    "fastq quality length": ("q.fq", lambda: b"@r1\nACGT\n+\nIII\n", ("r1", "3 quality")),
    "non-UTF-8 header": ("raw.fa", lambda: b">ok\nACGT\n>raw\xff\xfeid\nATGAAA\n", ("UTF-8",)),
    "control character in id": ("c.fa", lambda: b">a\x01b\nACGT\n", ("control character",)),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input(case: str, tmp_path: Path) -> None:
    name, content, mentions = BAD_INPUTS[case]
    path = tmp_path / name
    path.write_bytes(content())
    out_dir = tmp_path / "out"
    result = run_prepare(path, out_dir)
    assert_clean_failure(result, out_dir, str(path), *mentions)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "no_such.fa"
    result = run_prepare(path, tmp_path / "out")
    assert_clean_failure(result, tmp_path / "out", str(path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.fa"
    path.write_bytes(b">a\nACGT\n")
    path.chmod(0)
    try:
        result = run_prepare(path, tmp_path / "out")
    finally:
        path.chmod(0o644)
    assert_clean_failure(result, tmp_path / "out", str(path))


def test_directory_as_input(tmp_path: Path) -> None:
    path = tmp_path / "looks_like.fa"
    path.mkdir()
    result = run_prepare(path, tmp_path / "out")
    assert_clean_failure(result, tmp_path / "out", str(path))


@pytest.mark.parametrize("out_name", ["a_file", "a_file/sub"])
def test_output_path_that_is_not_a_directory(out_name: str, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a directory\n")
    result = run_prepare(CONFORMANCE / "test_with_orfs.fa", tmp_path / out_name)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("virnucpro: error: ") and "a_file" in line


def test_chunk_size_must_be_300_or_500(tmp_path: Path) -> None:
    result = run_prepare(CONFORMANCE / "test_with_orfs.fa", tmp_path / "out", chunk_size="400")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--chunk-size" in result.stderr
    assert files_in(tmp_path / "out") == []


# --------------------------------------------------------------------------------------------
# No kept frame: empty frame files, exit 0, a warning
# --------------------------------------------------------------------------------------------


TINY_NO_FRAME = b">short\nAC\n>unknown\nNNNNNNNNNNNN\n>stops\nCTAGCTAGCTAG\n"


@pytest.mark.parametrize(
    ("name", "content", "chunk_size"),
    [
        # 500 bp random records: no stop-free frame (300 bp chunks of them do have some).
        ("random.fa", (CONFORMANCE / "test_sequences_small.fa").read_bytes(), "500"),
        # Too short to translate, all N (every codon dropped), stops in all six frames.
        ("tiny.fa", TINY_NO_FRAME, "300"),
        ("tiny.fa", TINY_NO_FRAME, "500"),
    ],
)
def test_no_kept_frame_gives_empty_frame_files(
    name: str, content: bytes, chunk_size: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    stem = path.stem
    result = run_prepare(path, tmp_path / "out", chunk_size=chunk_size)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and str(path) in warnings[0], result.stderr
    out = tmp_path / "out"
    chunk_file = f"{stem}_chunked{chunk_size}.fa"
    assert files_in(out) == sorted(
        [chunk_file, f"{stem}_identified_nucleotide.fa", f"{stem}_identified_protein.faa"]
    )
    assert (out / f"{stem}_identified_nucleotide.fa").read_bytes() == b""
    assert (out / f"{stem}_identified_protein.faa").read_bytes() == b""
    assert (out / chunk_file).read_bytes().count(b">") == content.count(b">")


def test_non_ascii_ids_pass_through_unchanged(tmp_path: Path) -> None:
    """UTF-8 ids as Biopython reads them (no-break space is not a separator); the same bytes
    whatever the number of worker processes."""
    path = tmp_path / "ids.fa"
    path.write_bytes(
        b">s\xc3\xa9q1 d\nATGAAACCC\n>c\xc3\xa0t_1\nATGAAA\n>c\xc3\xa0t_2\nATGAAA\n"
        b">nb\xc2\xa0id\nATGAAA\n"
    )
    outputs = []
    for workers in ("1", "2"):
        result = run_prepare(path, tmp_path / workers, workers=workers)
        assert result.returncode == 0, result.stderr
        outputs.append((tmp_path / workers / "ids_chunked500.fa").read_bytes())
    assert outputs[0] == outputs[1]
    headers = [line for line in outputs[0].split(b"\n") if line.startswith(b">")]
    assert headers == [
        b">s\xc3\xa9q1_chunk_1",
        b">c\xc3\xa0t_1_chunk_1",
        b">c\xc3\xa0t_2_chunk_1",
        b">nb\xc2\xa0id_chunk_1",
    ]
