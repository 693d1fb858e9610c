"""report.html for a large input: the time and memory its accumulators and its rendering take.

    python benchmarks/report_scale.py [--records 1000000]

Blocks of 20,000 records of three chunks each (every 50th with a viral region) go through
`ReportBuilder.add` as the stream would hand them over, then the page is rendered; prints the
seconds for each, the page size and the peak Python memory traced (tracemalloc) while the
report is built; the input blocks are made beforehand and not counted.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from virnucpro_worker.pipeline.regions import RegionRule
from virnucpro_worker.pipeline.report import ReportBuilder
from virnucpro_worker.pipeline.results import BlockResult, ChunkCall, RecordSummary, block_regions

BLOCK_RECORDS = 20_000


def block(first: int, count: int) -> BlockResult:
    records, calls = [], []
    for index in range(first, first + count):
        viral = index % 50 == 0
        score = (index * 7919 % 1000) / 1000
        records.append(
            RecordSummary(index, f"r{index}", 1200, 3, 3, 3, 2 * viral, score, 0.0, "others")
        )
        calls += [
            ChunkCall(index, f"r{index}", chunk, 1, 0.5, score, viral and chunk < 3)
            for chunk in (1, 2, 3)
        ]
    return BlockResult(records, calls, [], block_regions(records, calls, 500, RegionRule()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    blocks = [block(first, BLOCK_RECORDS) for first in range(0, args.records, BLOCK_RECORDS)]
    tracemalloc.start()
    builder = ReportBuilder()
    start = time.perf_counter()
    for item in blocks:
        builder.add(item)
    added = time.perf_counter()
    page = builder.render({"chunk_size": 500, "counts": {}})
    rendered = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1]
    print(
        f"{args.records:,} records: add {added - start:.1f} s, render {rendered - added:.1f} s, "
        f"page {len(page) / 1e6:.2f} MB, peak traced {peak / 1e6:.0f} MB (input blocks not counted)"
    )


if __name__ == "__main__":
    main()
