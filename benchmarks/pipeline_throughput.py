"""Whole `predict` pipeline throughput on one GPU with the real model shapes (random weights).

Run on the device machine:  PYTHONPATH=.:plugins:benchmarks python benchmarks/pipeline_throughput.py
ESM-2 3B, DNABERT-S (117M, BPE vocabulary 4096 trained on the input) and the MLP, on a generated
coding-rich FASTA. Prints chunks/s, bp/s, per-stage seconds, GPU busy share, and the end-to-end
throughput as a share of the ESM-2 stage alone on the same kept frames (target >= 95%).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from esm.data import Alphabet
from tokenizers import Tokenizer
from workload import GpuSampler, esm2_3b_random

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models_for_tests import bpe_tokenizer, coding_fasta

from virnucpro_worker.models.classifier import ClassifierModel, MLPClassifier
from virnucpro_worker.models.dnabert import DnabertConfig, DnabertS
from virnucpro_worker.models.dnabert_pretrained import DnabertModel
from virnucpro_worker.models.esm2 import Esm2Model
from virnucpro_worker.models.model_files import ModelFiles
from virnucpro_worker.pipeline.predictor import Predictor
from virnucpro_worker.pipeline.run import predict_file
from virnucpro_worker.pipeline.scorer import LoadedModels
from virnucpro_worker.sequences.fasta import read_fasta
from virnucpro_worker.sequences.prepare import prepared_blocks


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

    frames = [f for b in prepared_blocks(read_fasta(fasta), 500) for f in b.frames]
    proteins = [frame.protein for frame in frames]
    torch.cuda.synchronize()
    start = time.perf_counter()
    predictor.protein_encoder.embed(proteins)
    esm_alone = time.perf_counter() - start
    start = time.perf_counter()
    predictor.nucleotide_encoder.embed([frame.nucleotide for frame in frames])
    dnabert_alone = time.perf_counter() - start

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
        f"{esm_alone / total:.1%} of the ESM-2 stage alone (target >= 95%)"
    )
    print(
        f"DNABERT-S alone on the same frames: {dnabert_alone:.1f} s: with nothing else at all, "
        f"end to end could reach {esm_alone / (esm_alone + dnabert_alone):.1%} of ESM-2 alone"
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
                    "dnabert_alone_seconds": dnabert_alone,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
