"""`virnucpro worker` with fault injection, for the reliability tests: the model work fails on
records whose id names a fault (POISON: an exception every time; OOM: out of GPU memory;
GPULOST: a CUDA error that leaves the device unusable; SLOW: takes 0.2 s a step).

    python tests/faulty_worker.py worker --models DIR ...    (the CLI's own arguments)
"""

from __future__ import annotations

import sys
import time

import torch

from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.pipeline.predictor import Predictor

FAULTS = {
    "POISON": lambda: RuntimeError("poisoned record: the model cannot take it"),
    "OOM": lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    "GPULOST": lambda: RuntimeError("CUDA error: an illegal memory access was encountered"),
}
_protein_features = Predictor.protein_features


def faulty_protein_features(self, frames):
    for frame in frames:
        for word, fault in FAULTS.items():
            if word in frame.record_id:
                raise fault()
        if "SLOW" in frame.record_id:
            time.sleep(0.2)
            break
    return _protein_features(self, frames)


if __name__ == "__main__":
    Predictor.protein_features = faulty_protein_features
    sys.exit(main(sys.argv[1:]))
