"""ESM-2 3B's fc1 with its bias and exact GELU at a 65,536-token pack: cuBLAS then PyTorch's GELU,
against the fused Triton GEMM at each tile (and the shipped tile).

Run on the device machine:  PYTHONPATH=.:plugins:benchmarks python benchmarks/fc1_gelu.py
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from attention_kernels import microseconds

from virnucpro_flash_varlen import fused_ops

TILES = [
    {"BLOCK_M": 128, "BLOCK_N": n, "BLOCK_K": 64, "num_warps": w, "num_stages": s}
    for n, w, s in itertools.product((128, 256), (4, 8), (3, 4))
    if not (n == 256 and w == 4)
]


def main() -> None:
    device = torch.device("cuda")
    print(torch.cuda.get_device_name(device), flush=True)
    torch.manual_seed(0)
    linear = torch.nn.Linear(2560, 10240).requires_grad_(False).to(device, torch.bfloat16)
    x = torch.randn(65536, 2560, device=device, dtype=torch.bfloat16)
    flop = 2 * x.shape[0] * linear.in_features * linear.out_features
    expected = F.gelu(linear(x))
    separate = microseconds(lambda: F.gelu(linear(x)), 10)
    gemm = microseconds(lambda: linear(x), 10)
    print(
        f"cuBLAS linear {gemm:.0f} us ({flop / gemm / 1e6:.0f} TFLOP/s), + GELU {separate:.0f} us"
    )
    for tile in [*TILES, fused_ops.GEMM_TILE]:
        try:
            out = fused_ops._triton_linear_gelu(x, linear, tile)
            us = microseconds(lambda tile=tile: fused_ops._triton_linear_gelu(x, linear, tile), 10)
        except Exception as error:  # a tile that does not fit the SM's resources
            print(f"  {tile}: {type(error).__name__}")
            continue
        same = (out == expected).float().mean()
        shipped = " (shipped)" if tile is fused_ops.GEMM_TILE else ""
        print(
            f"  fused {us:6.0f} us = {us / separate:.3f} of cuBLAS + GELU, identical {same:.4%}"
            f"  {tile}{shipped}",
            flush=True,
        )


if __name__ == "__main__":
    main()
