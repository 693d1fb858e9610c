"""Pack variable-length token sequences into one stream (cu_seqlens layout) under a token budget."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Pack:
    """Sequences concatenated into one token stream; `order` maps rows back to input indices."""

    order: list[int]
    lengths: list[int]
    tokens: torch.Tensor  # [T] int64
    cu_seqlens: torch.Tensor  # [B+1] int32: 0, l1, l1+l2, ...
    positions: torch.Tensor  # [T] int64: position inside its own sequence
    sequence_index: torch.Tensor  # [T] int64: row of the sequence the token belongs to
    max_seqlen: int
    # Tensors derived from the layout (masks, biases), computed once and shared by all layers.
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.derived:
            self.derived[key] = compute()
        return self.derived[key]

    def to(self, device: torch.device) -> Pack:
        """Copy to `device`; from pinned memory the copies overlap with running GPU work."""
        if device.type == "cpu":
            return self
        move = {
            name: getattr(self, name).to(device, non_blocking=True)
            for name in ("tokens", "cu_seqlens", "positions", "sequence_index")
        }
        return Pack(self.order, self.lengths, max_seqlen=self.max_seqlen, **move)


def plan_packs(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Longest first, each pack filled until the next sequence would not fit (next-fit
    decreasing): a pack wastes less than one sequence's length. A sequence longer than the
    budget gets a pack of its own."""
    if token_budget < 1:
        raise ValueError("token budget must be positive")
    by_length = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    packs: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index in by_length:
        if current and used + lengths[index] > token_budget:
            packs.append(current)
            current, used = [], 0
        current.append(index)
        used += lengths[index]
    if current:
        packs.append(current)
    return packs


def build_pack(
    order: list[int],
    token_lists: Sequence[Sequence[int]] | Mapping[int, Sequence[int]],
    pin: bool = False,
) -> Pack:
    """Concatenate the token lists named by `order` into one Pack (host tensors)."""
    lengths = [len(token_lists[i]) for i in order]
    total = sum(lengths)
    tokens = np.concatenate([np.asarray(token_lists[i], dtype=np.int64) for i in order])
    ends = np.cumsum(lengths)
    starts = ends - lengths
    sequence_index = np.repeat(np.arange(len(order)), lengths)
    positions = np.arange(total) - np.repeat(starts, lengths)
    cu_seqlens = np.concatenate(([0], ends)).astype(np.int32)
    tensors = [torch.from_numpy(array) for array in (tokens, cu_seqlens, positions, sequence_index)]
    if pin:
        tensors = [tensor.pin_memory() for tensor in tensors]
    return Pack(order, lengths, *tensors, max_seqlen=max(lengths))


def segment_sum(values: torch.Tensor, pack: Pack) -> torch.Tensor:
    """Sum of `values` [T, ...] over each sequence's tokens, in token order.

    Deterministic on every device: each output element is one sequential sum over its own
    sequence's tokens, so a sequence's result does not depend on the other sequences of its pack.
    `index_add_` on CUDA adds with atomics in whatever order the threads arrive, which changed
    the last bits of scores from run to run (benchmarks/segment_mean.py measures both)."""
    return torch.segment_reduce(values, "sum", offsets=pack.cu_seqlens, axis=0)


def segment_mean(
    hidden: torch.Tensor, pack: Pack, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of `hidden` [T, D] per sequence, over the tokens where `keep` [T] is true (all if
    None), accumulated in fp32 (`segment_sum`: the same bits every run)."""
    values = hidden.float()
    if keep is None:
        counts = torch.diff(pack.cu_seqlens).float()
    else:
        values = values * keep.unsqueeze(-1)
        counts = segment_sum(keep.float(), pack)
    return segment_sum(values, pack) / counts.clamp_min(1).unsqueeze(-1)


class MeansInInputOrder:
    """Per-sequence means, a pack at a time, collected on the host in input order.

    On a GPU each pack's means start their copy to pinned host memory as soon as they are
    queued, and the host goes on packing the next pack: it waits only in `result`, and there it
    puts the early packs in place while the GPU still runs the last ones.
    """

    def __init__(self, count: int, width: int) -> None:
        self.count, self.width = count, width
        self.parts: list[tuple[list[int], torch.Tensor, torch.cuda.Event | None]] = []

    def add(self, order: list[int], means: torch.Tensor) -> None:
        """`means` [len(order), width], row i belonging to input `order[i]`."""
        if not means.is_cuda:
            self.parts.append((order, means, None))
            return
        host = torch.empty(means.shape, dtype=means.dtype, pin_memory=True)
        host.copy_(means, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record(torch.cuda.current_stream(means.device))
        self.parts.append((order, host, copied))

    def result(self) -> torch.Tensor:
        """float32 [count, width] on the CPU."""
        out = torch.empty(self.count, self.width)
        for order, means, copied in self.parts:
            if copied is not None:
                copied.synchronize()
            out[order] = means.float()
        return out
