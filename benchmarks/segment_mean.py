"""Per-sequence sums over a packed stream, the three candidates the determinism issue named,
at the real pack shapes: time, whether repeated runs give the same bits, and error.

Run on a GPU host:  PYTHONPATH=.:plugins:benchmarks python benchmarks/segment_mean.py

- `index_add_` (what shipped before): atomic adds, in whatever order threads arrive;
- `segment_reduce` (`attention/packing.segment_sum`, shipped): one sequential sum per output
  element over its own sequence's tokens;
- an indicator matmul: a [sequences, tokens] 0/1 matrix times the bf16 stream, fp32 out.

Packs are 65,536 tokens of kept frames from 500/300 bp chunks (ESM-2: 2560 wide; DNABERT-S:
768). Error: max |x - fp64 reference| / max |reference|.
"""

from __future__ import annotations

import statistics

import torch
from workload import protein_lengths

from virnucpro_worker.attention.packing import build_pack, plan_packs, segment_sum

RUNS = 20


def index_add(values: torch.Tensor, pack) -> torch.Tensor:
    rows = len(pack.lengths)
    out = torch.zeros(rows, values.shape[1], device=values.device)
    return out.index_add_(0, pack.sequence_index, values.float())


def segment_reduce(values: torch.Tensor, pack) -> torch.Tensor:
    return segment_sum(values.float(), pack)


def indicator_matmul(values: torch.Tensor, pack) -> torch.Tensor:
    rows = torch.arange(len(pack.lengths), device=values.device)
    indicator = (pack.sequence_index[None, :] == rows[:, None]).to(values.dtype)
    return torch.mm(indicator, values, out_dtype=torch.float32)


def milliseconds(function, *args) -> float:
    times = []
    for _ in range(RUNS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function(*args)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    device = torch.device("cuda")
    lengths = [n + 2 for n in protein_lengths(2000)]
    order = plan_packs(lengths, 65536)[0]
    tokens = {i: [0] * lengths[i] for i in order}
    pack = build_pack(order, tokens).to(device)
    print(
        f"{torch.cuda.get_device_name()}; a pack of {sum(pack.lengths)} tokens, "
        f"{len(pack.lengths)} sequences"
    )
    print(f"{'width':>5} {'method':16} {'ms':>7} {'same bits in 20 runs':>21} {'error':>9}")
    for width in (2560, 768):
        torch.manual_seed(width)
        values = torch.randn(sum(pack.lengths), width, device=device).to(torch.bfloat16)
        reference = torch.zeros(len(pack.lengths), width, dtype=torch.float64, device=device)
        reference.index_add_(0, pack.sequence_index, values.double())
        for name, function in (
            ("index_add_", index_add),
            ("segment_reduce", segment_reduce),
            ("indicator mm", indicator_matmul),
        ):
            try:
                first = function(values, pack)
            except (RuntimeError, TypeError) as error:  # mm's out_dtype: newer PyTorch only
                print(f"{width:5} {name:16} not run here: {str(error).splitlines()[0][:60]}")
                continue
            same = all(torch.equal(function(values, pack), first) for _ in range(RUNS))
            error = ((first.double() - reference).abs().max() / reference.abs().max()).item()
            print(
                f"{width:5} {name:16} {milliseconds(function, values, pack):7.3f} "
                f"{'yes' if same else 'NO':>21} {error:9.2e}"
            )


if __name__ == "__main__":
    main()
