"""The CPU time the prediction stream spends per kept frame outside the models: applying the
call rules (`block_result`: frame scores, chunk calls, record summaries) and writing the result
files (`ResultWriter.add`), measured on blocks the size a GPU run makes (6,000 frames).

    python benchmarks/stream_overhead.py [--frames 600000]

This work runs in the stream's main thread between the GPU's steps, so it adds to the wall
time; the script prints it as a share of the H200's measured end-to-end frame rate
(benchmarks/RESULTS.md section 3: 641 frames/s, 1.56 ms of GPU work per frame).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from virnucpro_worker.pipeline.outputs import ResultWriter
from virnucpro_worker.pipeline.results import block_result
from virnucpro_worker.sequences.prepare import PreparedBlock, RecordInfo
from virnucpro_worker.sequences.translation import KeptFrame

H200_FRAMES_PER_SECOND = 641.4  # RESULTS.md section 3, pipeline_h200_run11.txt


def prepared_blocks(frames: int, seed: int = 0) -> list[tuple[PreparedBlock, np.ndarray, int]]:
    rng = random.Random(seed)
    blocks, record = [], 0
    while sum(len(b.frames) for b, _, _ in blocks) < frames:
        infos, sequences, kept, first = [], [], [], record
        while len(kept) < 6000:
            chunks = rng.randint(1, 8)
            name = f"contig_{record}"
            infos.append(RecordInfo(name, chunks * 500, chunks))
            sequences.append("")
            for chunk in range(1, chunks + 1):
                for strand, frame in sorted(
                    rng.sample([(s, f) for s in "FR" for f in (1, 2, 3)], 2)
                ):
                    kept.append(KeptFrame(name, chunk, strand, frame, "", "", 0))
            record += 1
        others = np.array([rng.random() for _ in kept], dtype=np.float32)
        scores = np.stack([others, 1 - others], axis=1)
        blocks.append((PreparedBlock(infos, sequences, frames=kept), scores, first))
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=600_000)
    args = parser.parse_args()
    blocks = prepared_blocks(args.frames)
    frames = sum(len(block.frames) for block, _, _ in blocks)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        results = [block_result(block, scores, first, 500) for block, scores, first in blocks]
        rules = time.perf_counter() - start
        with ResultWriter(Path(folder)) as writer:
            start = time.perf_counter()
            for result in results:
                writer.add(result)
            writer.commit({})
            files = time.perf_counter() - start
    per_frame = (rules + files) / frames
    share = per_frame * H200_FRAMES_PER_SECOND
    print(f"{frames:,} frames in {len(blocks)} blocks (Python {sys.version.split()[0]})")
    print(f"call rules and result rows: {rules / frames * 1e6:.2f} us/frame")
    print(f"result files: {files / frames * 1e6:.2f} us/frame")
    print(f"together {per_frame * 1e6:.2f} us/frame = {share:.2%} of the H200's end-to-end time")


if __name__ == "__main__":
    main()
