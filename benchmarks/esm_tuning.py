"""Where the flash-varlen ESM-2 path stands against its bound (ESM-2 3B shape, bf16).

Run on the device machine:  PYTHONPATH=.:plugins:benchmarks python benchmarks/esm_tuning.py
- GEMM-only: the four matrix products of every layer at the pack size, nothing else: the most
  any implementation using cuBLAS for them could reach;
- the shipped path, and (`--profile`) where its GPU time goes, by kernel;
- (`--ablate`) the shipped path without each of its fused kernels, in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from esm.data import Alphabet
from esm_throughput import FLOP_PER_TOKEN, measure
from workload import esm2_3b_random, matmul_tflops, random_proteins

from virnucpro_flash_varlen import packed_esm2
from virnucpro_flash_varlen.encoders import ESM_TOKEN_BUDGET, PackedEsmEncoder
from virnucpro_v1_bmm.encoder import FairEsmEncoder
from virnucpro_worker.attention import fused_ops
from virnucpro_worker.attention.encoding import EncoderSettings
from virnucpro_worker.models.esm2 import Esm2Model

SHAPES = [(2560, 7680), (2560, 2560), (2560, 10240), (10240, 2560)]  # qkv, out, fc1, fc2


def gemm_only_tokens_per_s(tokens: int, device: torch.device) -> float:
    weights = [torch.randn(n, k, device=device, dtype=torch.bfloat16) for k, n in SHAPES]
    inputs = [torch.randn(tokens, k, device=device, dtype=torch.bfloat16) for k, _ in SHAPES]

    def one_model() -> None:
        for _ in range(36):
            for x, w in zip(inputs, weights, strict=True):
                F.linear(x, w)

    one_model()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(3):
        one_model()
    torch.cuda.synchronize()
    return 3 * tokens / (time.perf_counter() - start)


def profile(encoder: PackedEsmEncoder, proteins: list[str]) -> None:
    """Where the GPU time of the shipped path goes, by kernel."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    encoder.embed(proteins)
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        encoder.embed(proteins)
    print(
        prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=70)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proteins", type=int, default=6000)
    parser.add_argument("--profile", action="store_true", help="print a kernel time profile")
    parser.add_argument("--ablate", action="store_true", help="also without each fused kernel")
    args = parser.parse_args()
    device = torch.device("cuda")
    ceiling = matmul_tflops(device)
    gemm_only = gemm_only_tokens_per_s(ESM_TOKEN_BUDGET, device)
    print(
        f"ceiling {ceiling:.0f} TFLOP/s; GEMM-only {gemm_only:,.0f} tokens/s = MFU "
        f"{gemm_only * FLOP_PER_TOKEN / (ceiling * 1e12):.1%}",
        flush=True,
    )
    proteins, warmup = random_proteins(args.proteins), random_proteins(64, seed=99)
    alphabet = Alphabet.from_architecture("ESM-1b")
    reference = FairEsmEncoder(
        Esm2Model(esm2_3b_random(device), alphabet, None, ""),
        EncoderSettings(device, torch.float32, 2048),
    ).embed(proteins[:300])
    torch.cuda.empty_cache()
    model = Esm2Model(esm2_3b_random(device).to(torch.bfloat16), alphabet, None, "")
    encoder = PackedEsmEncoder(model, EncoderSettings(device, torch.bfloat16))
    shipped = measure(f"shipped ({encoder.kernel})", encoder, proteins, reference, warmup)
    mfu = shipped.tokens_per_s * FLOP_PER_TOKEN / (ceiling * 1e12)
    print(
        f"{shipped.name}: {shipped.tokens_per_s:,.0f} tokens/s  MFU {mfu:.1%}  "
        f"{shipped.tokens_per_s / gemm_only:.1%} of GEMM-only  min cos {shipped.min_cosine:.6f}"
    )
    if args.profile:
        profile(encoder, proteins[:2000])
    if args.ablate:
        for name, unfused in ablations():
            with unfused:
                row = measure(name, encoder, proteins, reference, warmup)
            print(f"{name}: {row.tokens_per_s / shipped.tokens_per_s:.3f} of shipped", flush=True)


def ablations():
    """(name, context in which the shipped encoder runs without one of its fused kernels)."""
    from unittest import mock

    plain = mock.patch.object(fused_ops, "_triton_fused", unfused_add_norm)
    yield "without fused add + norm", plain
    yield "without the table GELU", mock.patch.object(packed_esm2, "exact_gelu", F.gelu)


def unfused_add_norm(x, deltas, norm, keep_sum):
    """Plain PyTorch ops in the stream's dtype: an add per delta, then the norm."""
    for delta in deltas:
        x = x + delta
    return x, norm(x)


if __name__ == "__main__":
    main()
