#!/usr/bin/env bash
# Set up a bare GPU host of this workplace (PyTorch and Triton installed, no registry) and run
# the GPU benchmarks and tests named as arguments, in order. What it needs travels with the call:
#   .whl/  the pure-Python and cp312 wheels the package and the tests need beyond the host's
#          (fair-esm, pluggy, rq, redis, SQLAlchemy, Alembic, psycopg, rich, pytest, hypothesis...)
#   .deb/  Debian's redis-server, unpacked here (the queue benchmark and test need a private one)
# Outputs go to $OUT (or out/) as STEP.txt. Steps: segment_mean cold_start queue_gpu esm
# pipeline gpu_tests.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT" .models
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
for deb in .deb/*.deb; do dpkg -x "$deb" /tmp/redis; done
export PYTHONPATH=/tmp/site:.:plugins:benchmarks:tests PYTHONUNBUFFERED=1
export PATH=/tmp/redis/usr/bin:$PATH LD_LIBRARY_PATH=/tmp/redis/usr/lib/x86_64-linux-gnu
export TRITON_CACHE_DIR=$PWD/.models/triton-cache
nvidia-smi --query-gpu=name,serial,driver_version,power.limit --format=csv,noheader
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
WORK=.models/work
for step in "$@"; do
    echo "=== $step $(date -u +%FT%TZ)"
    case $step in
        segment_mean) python3 benchmarks/segment_mean.py ;;
        cold_start) python3 benchmarks/cold_start.py --work $WORK --json "$OUT/cold_start.json" ;;
        queue_gpu) python3 benchmarks/queue_gpu.py --work $WORK --json "$OUT/queue_gpu.json" ;;
        esm) python3 benchmarks/esm_throughput.py --packed-only ;;
        pipeline) python3 benchmarks/pipeline_throughput.py --json "$OUT/pipeline.json" ;;
        gpu_tests) python3 -m pytest tests/test_gpu.py -q -s -p no:cacheprovider ;;
        *) echo "unknown step $step"; exit 2 ;;
    esac 2>&1 | tee "$OUT/$step.txt"
done
