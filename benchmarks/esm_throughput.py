"""ESM-2 3B throughput of every attention path on one GPU, in one run (issue: GPU performance).

Run on the device machine:  PYTHONPATH=.:plugins python benchmarks/esm_throughput.py
Prints tokens/s, proteins/s, MFU against the card's measured bf16 GEMM ceiling, speed-ups, each
path's minimum cosine against fair-esm fp32 on the same proteins, and the SM clock and power draw
during each path (NVML). The ceiling is a 30 ms burst of 8192^3 products; the same products
sustained for seconds are also measured, since the card's power limit lowers its clocks then.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from esm.data import Alphabet
from workload import GpuSampler, esm2_3b_random, matmul_tflops, random_proteins

from virnucpro_flash_varlen.encoders import PackedEsmEncoder
from virnucpro_v1_bmm.encoder import FairEsmEncoder
from virnucpro_worker.attention.encoding import EncoderSettings
from virnucpro_worker.attention.kernels import usable_kernels
from virnucpro_worker.models.esm2 import Esm2Model

FLOP_PER_TOKEN = 2 * 36 * (4 * 2560**2 + 2 * 2560 * 10240)  # the GEMMs: 5.66 GFLOP


@dataclass
class Result:
    name: str
    tokens_per_s: float
    proteins_per_s: float
    min_cosine: float | None
    sm_mhz: float
    watts: float


def timed_embed(encoder, proteins: list[str]) -> tuple[torch.Tensor, float]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = encoder.embed(proteins)  # returns on the CPU: the clock includes every GPU op
    return out, time.perf_counter() - start


def measure(name, encoder, proteins, reference, warmup: list[str]) -> Result:
    encoder.embed(warmup)  # compilation, cuBLAS handles, allocator growth
    with GpuSampler() as gpu:
        out, seconds = timed_embed(encoder, proteins)
    tokens = sum(len(p) + 2 for p in proteins)
    cosine = F.cosine_similarity(out[: len(reference)].double(), reference.double(), dim=1)
    print(
        f"  {name}: {tokens / seconds:,.0f} tokens/s, min cosine {cosine.min():.6f}, "
        f"SM {gpu.sm_mhz:.0f} MHz, {gpu.watts:.0f} W",
        flush=True,
    )
    return Result(
        name, tokens / seconds, len(proteins) / seconds, float(cosine.min()), gpu.sm_mhz, gpu.watts
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proteins", type=int, default=6000)
    parser.add_argument("--original-proteins", type=int, default=600)
    parser.add_argument("--reference-proteins", type=int, default=300)
    parser.add_argument("--budget", type=int, default=65536, help="tokens per pack / batch")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--packed-only",
        action="store_true",
        help="only our packed paths, each also with the means summed by index_add_ (as before "
        "the means became deterministic): an A/B of the pooling on one card",
    )
    args = parser.parse_args()

    device = torch.device("cuda")
    ceiling = matmul_tflops(device)
    print(
        f"{torch.cuda.get_device_name(device)}; bf16 GEMM ceiling {ceiling:.0f} TFLOP/s "
        f"= {ceiling * 1e12 / FLOP_PER_TOKEN:,.0f} ESM-2 3B tokens/s",
        flush=True,
    )
    with GpuSampler() as gpu:
        sustained = matmul_tflops(device, repeats=2000)
    print(
        f"the same GEMMs sustained ({gpu.seconds:.0f} s): {sustained:.0f} "
        f"TFLOP/s, SM {gpu.sm_mhz:.0f} MHz, {gpu.watts:.0f} W",
        flush=True,
    )
    proteins = random_proteins(args.proteins)
    warmup = random_proteins(64, seed=99)
    alphabet = Alphabet.from_architecture("ESM-1b")
    fp32 = Esm2Model(esm2_3b_random(device), alphabet, path=None, checksum="")

    def settings(dtype, budget=args.budget):
        return EncoderSettings(device, dtype, budget)

    original = FairEsmEncoder(fp32, settings(torch.float32, 2048))
    reference = original.embed(proteins[: args.reference_proteins])
    if args.packed_only:
        del original, fp32
        torch.cuda.empty_cache()
        packed_only(
            esm2_3b_random(device).to(torch.bfloat16),
            alphabet,
            settings,
            proteins,
            reference,
            warmup,
        )
        return
    results = [
        measure(
            "fair-esm fp32, budget 2048 (original)",
            original,
            proteins[: args.original_proteins],
            reference,
            warmup,
        )
    ]
    for dtype, label in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
        model = Esm2Model(esm2_3b_random(device).to(dtype), alphabet, None, "")
        padded = FairEsmEncoder(model, settings(dtype))
        results.append(measure(f"v1-bmm {label} padded", padded, proteins, reference, warmup))
        if dtype == torch.bfloat16:
            for kernel in usable_kernels(device, dtype):
                packed = PackedEsmEncoder(model, settings(dtype), kernel)
                name = f"flash-varlen bf16 {kernel.name}"
                results.append(measure(name, packed, proteins, reference, warmup))
                del packed
        del model, padded
        torch.cuda.empty_cache()
    report(results, ceiling, sustained)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "ceiling_tflops": ceiling,
                    "sustained_gemm_tflops": sustained,
                    "results": [r.__dict__ for r in results],
                },
                handle,
                indent=2,
            )


def packed_only(module, alphabet, settings, proteins, reference, warmup) -> None:
    """Each usable packed kernel in bf16, with the shipped means and with index_add_'s,
    interleaved twice so that drift in the card's clocks shows."""
    from unittest import mock

    from virnucpro_flash_varlen import encoders

    def index_add_mean(hidden, pack, keep):
        rows, values = len(pack.lengths), hidden.float() * keep.unsqueeze(-1)
        counts = torch.zeros(rows, device=hidden.device).index_add_(
            0, pack.sequence_index, keep.float()
        )
        sums = torch.zeros(rows, hidden.shape[-1], device=hidden.device)
        sums.index_add_(0, pack.sequence_index, values)
        return sums / counts.clamp_min(1).unsqueeze(-1)

    model = Esm2Model(module, alphabet, None, "")
    for kernel in usable_kernels(torch.device("cuda"), torch.bfloat16):
        encoder = PackedEsmEncoder(model, settings(torch.bfloat16), kernel)
        for round_ in (1, 2):
            measure(
                f"{kernel.name} segment sum, round {round_}", encoder, proteins, reference, warmup
            )
            with mock.patch.object(encoders, "segment_mean", index_add_mean):
                measure(
                    f"{kernel.name} index_add_, round {round_}",
                    encoder,
                    proteins,
                    reference,
                    warmup,
                )


def report(results: list[Result], ceiling: float, sustained: float) -> None:
    original = results[0].tokens_per_s
    fp16_padded = next(r.tokens_per_s for r in results if r.name.startswith("v1-bmm fp16"))
    print(
        f"\n{'path':40} {'tokens/s':>10} {'prot/s':>8} {'MFU':>6} {'x orig':>7} "
        f"{'x fp16pad':>9} {'min cos':>9} {'SM MHz':>7} {'W':>5}"
    )
    for r in results:
        mfu = r.tokens_per_s * FLOP_PER_TOKEN / (ceiling * 1e12)
        print(
            f"{r.name:40} {r.tokens_per_s:10,.0f} {r.proteins_per_s:8,.0f} {mfu:6.1%} "
            f"{r.tokens_per_s / original:7.1f} {r.tokens_per_s / fp16_padded:9.2f} "
            f"{r.min_cosine:9.6f} {r.sm_mhz:7.0f} {r.watts:5.0f}"
        )
    best = max(results, key=lambda r: r.tokens_per_s)
    print(
        f"\nfastest path against the sustained GEMMs ({sustained:.0f} TFLOP/s): "
        f"{best.tokens_per_s * FLOP_PER_TOKEN / (sustained * 1e12):.1%}"
    )


if __name__ == "__main__":
    main()
