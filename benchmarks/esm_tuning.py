"""Tuning diagnostics for the flash-varlen ESM-2 path (ESM-2 3B shape, random weights, bf16).

Run on the device machine:  PYTHONPATH=.:plugins:benchmarks python benchmarks/esm_tuning.py
- GEMM-only: the four matrix products of every layer at the pack size, nothing else: the most
  any implementation using cuBLAS for them could reach;
- the shipped path (torch.compile of whole layers, default mode);
- variants of the inductor options (`--variants`), e.g. max-autotune with Triton's persistent
  TMA GEMMs, which can fuse the bias and GELU into the GEMM.
"""

from __future__ import annotations

import argparse
import time

import torch
from esm.data import Alphabet
from esm_throughput import FLOP_PER_TOKEN, measure
from workload import esm2_3b_random, matmul_tflops, random_proteins

from virnucpro_flash_varlen import ESM_TOKEN_BUDGET, PackedEsmEncoder
from virnucpro_v1_bmm import FairEsmEncoder
from virnucpro_worker.attention.hookspecs import EncoderSettings
from virnucpro_worker.models.esm2 import Esm2Model

# torch.compile options (inductor config) tried against the shipped setting.
VARIANTS = {
    "descent": {"coordinate_descent_tuning": True},
    "autotune": {"max_autotune": True, "coordinate_descent_tuning": True},
    "autotune-tma": {
        "max_autotune": True,
        "coordinate_descent_tuning": True,
        "triton.enable_persistent_tma_matmul": True,
    },
    "autotune-tma-epilogue": {
        "max_autotune": True,
        "max_autotune_gemm_backends": "TRITON",
        "coordinate_descent_tuning": True,
        "triton.enable_persistent_tma_matmul": True,
    },
}
SHAPES = [(2560, 7680), (2560, 2560), (2560, 10240), (10240, 2560)]  # qkv, out, fc1, fc2


def gemm_only_tokens_per_s(tokens: int, device: torch.device) -> float:
    weights = [torch.randn(n, k, device=device, dtype=torch.bfloat16) for k, n in SHAPES]
    inputs = [torch.randn(tokens, k, device=device, dtype=torch.bfloat16) for k, _ in SHAPES]

    def one_model() -> None:
        for _ in range(36):
            for x, w in zip(inputs, weights, strict=True):
                torch.nn.functional.linear(x, w)

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
        prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proteins", type=int, default=6000)
    parser.add_argument("--variants", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--profile", action="store_true", help="print a kernel time profile")
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
    settings = EncoderSettings(device, torch.bfloat16)
    rows = [
        measure(
            "shipped (compiled layers)",
            PackedEsmEncoder(model, settings),
            proteins,
            reference,
            warmup,
        )
    ]
    if args.profile:
        profile(PackedEsmEncoder(model, settings), proteins[:2000])
    for name in args.variants.split(",") if args.variants else []:
        torch._dynamo.reset()
        encoder = PackedEsmEncoder(model, settings, compile_layers=False)
        for layer in encoder.network.layers:
            layer.forward = torch.compile(layer.forward, dynamic=True, options=VARIANTS[name])
        started = time.perf_counter()
        encoder.embed(warmup)
        print(f"  {name} compile: {time.perf_counter() - started:.0f} s", flush=True)
        rows.append(measure(name, encoder, proteins, reference, warmup))
    for r in rows:
        mfu = r.tokens_per_s * FLOP_PER_TOKEN / (ceiling * 1e12)
        print(
            f"{r.name:28} {r.tokens_per_s:9,.0f} tokens/s  MFU {mfu:6.1%}  "
            f"{r.tokens_per_s / gemm_only:6.1%} of GEMM-only  min cos {r.min_cosine:.6f}"
        )


if __name__ == "__main__":
    main()
