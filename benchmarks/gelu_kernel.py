"""The exact GELU alone, at the size of ESM-2 3B's fc1 output for one 65,536-token pack: PyTorch's
F.gelu against the table kernel at several launch shapes, each checked bit for bit against F.gelu.

Run on the device machine:  PYTHONPATH=.:plugins:benchmarks python benchmarks/gelu_kernel.py
The kernel works in place, so every repeat starts from a fresh copy; times are medians of 20.
In the model, `esm_tuning.py --ablate` measures the shipped path with F.gelu instead.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from unittest import mock

import torch
import torch.nn.functional as F

from virnucpro_flash_varlen.encoders import ESM_TOKEN_BUDGET
from virnucpro_worker.attention import fused_ops

TILES = [
    {"BLOCK": block, "num_warps": warps}
    for block, warps in itertools.product((8192, 16384, 32768), (8, 16, 32))
]


def microseconds(run: Callable[[torch.Tensor], object], source: torch.Tensor) -> float:
    work, times = torch.empty_like(source), []
    for _ in range(20):
        work.copy_(source)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run(work)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    return statistics.median(times)


def same_as_pytorch(x: torch.Tensor) -> bool:
    expected, actual = F.gelu(x), fused_ops.exact_gelu(x.clone())
    nan = expected.isnan()
    same = actual[~nan].view(torch.int16) == expected[~nan].view(torch.int16)
    return bool(torch.equal(actual.isnan(), nan) and same.all())


def main() -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    fc1 = (torch.randn(ESM_TOKEN_BUDGET, 10240, device=device) * 2 - 0.5).bfloat16()
    every = fused_ops.every_16_bit_value(torch.bfloat16, device)
    print(f"{torch.cuda.get_device_name(device)}; fc1 output {tuple(fc1.shape)} bf16")
    print(f"F.gelu: {microseconds(F.gelu, fc1):.0f} us")
    shipped_tile = fused_ops.GELU_TILE
    for tile in TILES:
        with mock.patch.object(fused_ops, "GELU_TILE", tile):
            exact = same_as_pytorch(every) and same_as_pytorch(fc1)
            shipped = " (shipped)" if tile == shipped_tile else ""
            us = microseconds(fused_ops.exact_gelu, fc1)
            print(f"table {tile}{shipped}: {us:.0f} us, bit for bit F.gelu: {exact}")


if __name__ == "__main__":
    main()
