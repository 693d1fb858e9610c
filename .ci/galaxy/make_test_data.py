#!/usr/bin/env python3
"""Regenerate galaxy_tool/test-data (inputs and tiny demo models); the files are committed.

    python .ci/galaxy/make_test_data.py [--virnucpro PATH]

Only the `virnucpro demo-models` command is used, so this needs the CLI, not its internals.
The demo models are random networks: their calls mean nothing, but they are deterministic,
and the inputs below were chosen so that the calls come out with wide margins (>= 0.05
between the max virus and the max others score of every chunk) and differ between the two
classifiers, so a test notices a wrapper that hands the 500 bp classifier to a 300 bp run
(after a change to the demo architecture, check the margins again):

- ESM-2 and DNABERT-S: the default demo seed (the committed files come from virnucpro 0.1.0's
  demo-models, with the demo mark added to the DNABERT-S config);
- 300_model.pth: the classifier of `demo-models --seed 4`;
- 500_model.pth: the classifier of `demo-models --seed 1`.

Calls (record: chunks at 300 -> call | chunks at 500 -> call):
  contig_A (random stop-free ORF, 1234 bp): 5 -> others | 3 -> others
  contig_B (GCC repeat, 650 bp):            3 -> virus  | 2 -> virus
  contig_M (500 bp ORF + 501 bp GCC):       4, 2 viral -> virus (half) | 3, 1 viral -> others
  read_C (random stop-free ORF, 180 bp):    1 -> others | 1 -> others
  junk_D (AT-rich, stops in every frame):   2 -> unscored | 1 -> unscored
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_DATA = ROOT / "galaxy_tool" / "test-data"
MODELS = TEST_DATA / "demo_models"
CLASSIFIER_SEEDS = {"300_model.pth": 4, "500_model.pth": 1}
STOPS = {"TAA", "TAG", "TGA"}
CODONS = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT" if a + b + c not in STOPS]


def records() -> list[tuple[str, str]]:
    rng = random.Random(20260524)

    def orf(length: int) -> str:
        return "".join(rng.choice(CODONS) for _ in range(length // 3 + 1))[:length]

    return [
        ("contig_A sample=1 description kept out of the id", orf(1234)),
        ("contig_B", ("GCC" * 217)[:650]),
        ("contig_M", orf(500) + "GCC" * 167),
        ("read_C", orf(180)),
        ("junk_D", "".join(rng.choice("AATTTAGC") for _ in range(420))),
    ]


def wrap(sequence: str, width: int = 60) -> str:
    return "\n".join(sequence[i : i + width] for i in range(0, len(sequence), width))


def write_inputs() -> None:
    recs = records()
    fasta = "".join(f">{name}\n{wrap(seq)}\n" for name, seq in recs)
    (TEST_DATA / "contigs.fasta").write_text(fasta)
    # mtime 0 and no name: the same bytes on every run
    with (
        (TEST_DATA / "contigs.fasta.gz").open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle,
    ):
        handle.write(fasta.encode())
    fastq = "".join(
        f"@{name.split()[0]}\n{seq}\n+\n{'I' * len(seq)}\n"
        for name, seq in recs
        if name.split()[0] in ("contig_B", "read_C", "junk_D")
    )
    (TEST_DATA / "reads.fastqsanger").write_text(fastq)
    (TEST_DATA / "reads.fastqsanger.bz2").write_bytes(bz2.compress(fastq.encode()))
    (TEST_DATA / "protein.fasta").write_text(
        ">not_dna a protein record\nMKVLAAGIVGLLLAQEPRSWTYHHHHHH\n"
    )


def write_models(virnucpro: str) -> None:
    shutil.rmtree(MODELS, ignore_errors=True)
    subprocess.run([virnucpro, "demo-models", "--out", str(MODELS)], check=True)
    for stale in ("300_model.pth", "500_model.pth"):
        (MODELS / stale).unlink(missing_ok=True)
    for name, seed in CLASSIFIER_SEEDS.items():
        with tempfile.TemporaryDirectory() as scratch:
            subprocess.run(
                [virnucpro, "demo-models", "--out", scratch, "--seed", str(seed)], check=True
            )
            source = Path(scratch) / "500_model.pth"  # the one the margins were measured with
            shutil.copyfile(source, MODELS / name)
    # the demo mark (virnucpro >= 0.2 writes it itself): the CLI then heads the summary with
    # "# DEMO MODELS ..." and writes DEMO_MODELS_PREDICTIONS_ARE_MEANINGLESS.txt
    config_path = MODELS / "dnabert_s_demo" / "config.json"
    config = json.loads(config_path.read_text())
    config["virnucpro_demo"] = True
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    for path in MODELS.rglob("*"):
        if path.is_file():
            path.chmod(0o644)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--virnucpro", default=str(ROOT / ".venv" / "bin" / "virnucpro"))
    parser.add_argument("--inputs-only", action="store_true", help="leave the models alone")
    args = parser.parse_args()
    TEST_DATA.mkdir(parents=True, exist_ok=True)
    write_inputs()
    if not args.inputs_only:
        write_models(args.virnucpro)
    for path in sorted(TEST_DATA.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size:>8}  {path.relative_to(TEST_DATA)}")


if __name__ == "__main__":
    main()
