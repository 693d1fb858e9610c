"""Attention alone, per layer, on one realistic pack: every kernel, and the Triton kernel's tiles.

Run on the device machine:  PYTHONPATH=.:plugins:benchmarks python benchmarks/attention_kernels.py
For ESM-2 3B (40 heads x 64, rotary) and DNABERT-S (12 x 64, ALiBi) shapes, on a 65,536-token pack
of the benchmark protein mix: microseconds per layer of (a) each kernel's `attend` from the fused
qkv projection's output, rotary included (what a layer pays), and
(b) the Triton kernel at several tile shapes. Also the largest difference from fp32 attention.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools

import numpy as np
import torch
from workload import protein_lengths

from virnucpro_worker.attention import triton_varlen
from virnucpro_worker.attention.kernels import select_kernel, usable_kernels
from virnucpro_worker.attention.packing import build_pack, plan_packs
from virnucpro_worker.attention.rotary import rotary_tables

REGISTER_CAPS = (None, 168, 128, 112)  # None: as many as the compiler wants
SHORT_TILES = [
    {"BLOCK_M": m, "CHUNK": 64, "num_warps": w, "num_stages": s, "maxnreg": r}
    for m, w, s, r in itertools.product((32, 64), (4, 8), (1, 2), REGISTER_CAPS)
]
LONG_TILES = [
    {"BLOCK_M": m, "BLOCK_N": n, "num_warps": w, "num_stages": s, "maxnreg": r}
    for m, n, w, s, r in itertools.product((64, 128), (32, 64), (4, 8), (1, 2), REGISTER_CAPS)
    if not (m == 128 and w == 4)
]


def one_pack(budget: int, lengths: list[int], device: torch.device):
    tokens = [np.zeros(n + 2, dtype=np.int64) for n in lengths]
    order = plan_packs([len(t) for t in tokens], budget)[0]
    return build_pack(order, tokens).to(device)


def microseconds(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / repeats


def compare(name: str, heads: int, rotary: bool, alibi: bool, pack, device, sweep: bool) -> None:
    tokens, head_dim = int(pack.cu_seqlens[-1]), 64
    torch.manual_seed(0)
    qkv = torch.randn(tokens, 3 * heads * head_dim, device=device, dtype=torch.bfloat16)
    q, k, v = qkv.view(tokens, 3, heads, head_dim).unbind(1)
    tables = rotary_tables(torch.arange(pack.max_seqlen, device=device), head_dim)
    slopes = torch.rand(heads, device=device) if alibi else None
    kw = {"alibi_slopes": slopes, "rotary": tables if rotary else None}
    exact = select_kernel(device, torch.float32, needs_alibi=True)
    reference = exact.attend(q.float(), k.float(), v.float(), pack, 0.125, **kw)
    print(f"\n{name}: {tokens} tokens in {len(pack.lengths)} sequences, {heads} heads", flush=True)
    for kernel in usable_kernels(device, torch.bfloat16):
        if alibi and not kernel.supports_alibi:
            continue
        out = kernel.attend(q, k, v, pack, 0.125, **kw)
        error = (out.float() - reference).abs().max().item()
        us = microseconds(lambda kernel=kernel: kernel.attend(q, k, v, pack, 0.125, **kw))
        print(f"  {kernel.name:14} {us:8.0f} us/layer  max|diff| {error:.2e}")
    if sweep:
        sweep_tiles(lambda: triton_varlen.varlen_attention(q, k, v, pack, 0.125, **kw))


def sweep_tiles(run) -> None:
    """Time the Triton kernels at each tile: the short-sequence kernel (keys in chunks) and
    the general one, forced."""
    results = []
    with shipped_tiles() as shipped:
        for tile in SHORT_TILES:
            triton_varlen.SHORT_TILE = tile
            results.append((time_or_none(run), "short", tile))
        triton_varlen.MAX_CHUNKS = 0  # every pack to the general kernel
        for tile in LONG_TILES:
            triton_varlen.LONG_TILE = tile
            results.append((time_or_none(run), "long", tile))
    print(f"  shipped: short {shipped[0]}, long {shipped[1]}")
    for us, kind, tile in sorted((r for r in results if r[0] is not None), key=lambda r: r[0])[:8]:
        print(f"  {kind:5} {us:6.0f} us  {tile}")


@contextlib.contextmanager
def shipped_tiles():
    """The module's tile settings, put back however the sweep ends."""
    saved = triton_varlen.SHORT_TILE, triton_varlen.LONG_TILE, triton_varlen.MAX_CHUNKS
    try:
        yield saved
    finally:
        triton_varlen.SHORT_TILE, triton_varlen.LONG_TILE, triton_varlen.MAX_CHUNKS = saved


def time_or_none(run) -> float | None:
    try:
        return microseconds(run, 10)
    except Exception as error:  # a tile that does not fit the SM's resources
        print(f"  {type(error).__name__}: {str(error)[:80]}")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=int, default=65536)
    parser.add_argument("--sweep", action="store_true", help="time the Triton kernel's tiles")
    args = parser.parse_args()
    device = torch.device("cuda")
    print(torch.cuda.get_device_name(device), flush=True)
    proteins = one_pack(args.budget, protein_lengths(2000), device)
    compare("ESM-2 3B attention", 40, True, False, proteins, device, args.sweep)
    # DNABERT-S tokens of 300/500 bp chunks: about one BPE token per 4-5 bases, plus [CLS]/[SEP]
    rng = np.random.default_rng(0)
    reads = one_pack(args.budget, list(rng.integers(60, 125, 4000)), device)
    compare("DNABERT-S attention", 12, False, True, reads, device, args.sweep)


if __name__ == "__main__":
    main()
