"""Whole `predict` pipeline throughput on one GPU with the real model shapes (random weights).

Run on the device machine:  PYTHONPATH=.:plugins python benchmarks/pipeline_throughput.py
ESM-2 3B, DNABERT-S (117M, BPE vocabulary 4096 trained on the input) and the MLP, on a generated
coding-rich FASTA. Prints chunks/s, bp/s, per-stage seconds, GPU busy share, and the end-to-end
throughput as a share of the ESM-2 stage alone on the same kept frames (target >= 85%).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from esm.data import Alphabet
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from workload import GpuSampler, esm2_3b_random

from virnucpro_worker.models.classifier import ClassifierModel, MLPClassifier
from virnucpro_worker.models.dnabert import DnabertConfig, DnabertModel, DnabertS
from virnucpro_worker.models.esm2 import Esm2Model
from virnucpro_worker.models.model_files import ModelFiles
from virnucpro_worker.pipeline.predictor import LoadedModels, Predictor
from virnucpro_worker.pipeline.run import predict_file
from virnucpro_worker.sequences.fasta import read_fasta
from virnucpro_worker.sequences.prepare import prepared_blocks

SENSE_CODONS = [
    a + b + c
    for a in "ACGT"
    for b in "ACGT"
    for c in "ACGT"
    if a + b + c not in ("TAA", "TAG", "TGA")
]
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def coding_fasta(path: Path, chunks: int, seed: int = 0) -> int:
    """Records of 1-4 kb made of sense codons (an open frame on a random strand), plus short
    reads: nearly every chunk keeps one or two frames. Returns the number of 500 bp chunks."""
    rng = random.Random(seed)
    written = 0
    with path.open("w") as out:
        record = 0
        while written < chunks:
            length = rng.choice((150, 1000, 2000, 4000))
            sequence = "".join(rng.choices(SENSE_CODONS, k=length // 3))
            if rng.random() < 0.5:
                sequence = sequence.translate(COMPLEMENT)[::-1]
            out.write(f">contig_{record}\n{sequence}\n")
            written += -(-len(sequence) // 500)
            record += 1
    return written


def bpe_tokenizer(fasta: Path) -> Tokenizer:
    """A 4096-token BPE like DNABERT-2's, trained on the benchmark's own sequences."""
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=special, show_progress=False)
    tokenizer.train_from_iterator((r.sequence[:2000] for r in read_fasta(fasta)), trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tokenizer


def random_models(device: torch.device, dtype: torch.dtype, tokenizer: Tokenizer):
    esm = Esm2Model(
        esm2_3b_random(device).to(dtype), Alphabet.from_architecture("ESM-1b"), None, ""
    )
    config = DnabertConfig(
        vocab_size=4096,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
    )
    with device:
        dnabert = DnabertModel(DnabertS(config).eval().to(dtype), tokenizer, Path("random"), {})
        classifier = MLPClassifier(input_dim=768 + 2560, hidden_dim=512).eval()
    classifier = ClassifierModel(classifier, Path("random"), "", "random")
    files = ModelFiles.explicit("random", "random", "random")
    return LoadedModels(files, esm, dnabert, {500: classifier}, device, dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    device, dtype = torch.device("cuda"), torch.bfloat16
    work = Path(tempfile.mkdtemp())
    fasta, warmup = work / "coding.fa", work / "warmup.fa"
    chunks = coding_fasta(fasta, args.chunks)
    coding_fasta(warmup, 200, seed=1)
    bases = sum(len(r.sequence) for r in read_fasta(fasta))
    predictor = Predictor(random_models(device, dtype, bpe_tokenizer(fasta)), "flash-varlen")
    predict_file(predictor, warmup, 500, work / "warmup-out")  # compile, allocator, cuBLAS

    torch.cuda.synchronize()
    start = time.perf_counter()
    with GpuSampler() as gpu:
        run = predict_file(predictor, fasta, 500, work / "out")
    total = time.perf_counter() - start

    proteins = [f.protein for b in prepared_blocks(read_fasta(fasta), 500) for f in b.frames]
    torch.cuda.synchronize()
    start = time.perf_counter()
    predictor.protein_encoder.embed(proteins)
    esm_alone = time.perf_counter() - start

    stages = run["stage_seconds"]
    print(f"{torch.cuda.get_device_name(device)}; kernels {run['kernels']}, {run['dtype']}")
    print(
        f"input: {run['counts']['records']} records, {bases:,} bp, {chunks} chunks, "
        f"{len(proteins)} kept frames, {sum(len(p) + 2 for p in proteins):,} ESM tokens"
    )
    print(
        f"end to end: {total:.1f} s = {chunks / total:,.1f} chunks/s, {bases / total:,.0f} bp/s,"
        f" {len(proteins) / total:,.1f} frames/s; GPU busy {gpu.busy:.0%}, SM {gpu.sm_mhz:.0f} MHz,"
        f" {gpu.watts:.0f} W"
    )
    print("stage seconds (inside the run): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    print(
        f"ESM-2 alone on the same frames: {esm_alone:.1f} s; end-to-end throughput = "
        f"{esm_alone / total:.1%} of the ESM-2 stage alone (target >= 85%)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "seconds": total,
                    "chunks": chunks,
                    "bases": bases,
                    "frames": len(proteins),
                    "gpu_busy": gpu.busy,
                    "sm_mhz": gpu.sm_mhz,
                    "watts": gpu.watts,
                    "stages": stages,
                    "esm_alone_seconds": esm_alone,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
