"""What a process pays before its first block: no compiler imported, each file hashed once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

from virnucpro_worker.files import sha256_of, sha256_started
from virnucpro_worker.interfaces.loading import load_predictor
from virnucpro_worker.pipeline.warmup import synthetic_records
from virnucpro_worker.sequences.fasta import FastaRecord
from virnucpro_worker.sequences.prepare import prepared_blocks
from virnucpro_worker.settings import load_settings


def test_a_run_imports_no_compiler(demo_models):
    """torch._dynamo, the inductor and sympy cost seconds to import and compute nothing here:
    loading the models and predicting must not import them."""
    script = textwrap.dedent(
        f"""
        import sys
        import virnucpro_worker
        predictor = virnucpro_worker.load_models(models={str(demo_models.folder)!r}, device="cpu")
        predictor.predict([("r1", "ATG" * 200)], chunk_size=500)
        compilers = ("torch._dynamo", "torch._inductor", "sympy")
        print(",".join(name for name in compilers if name in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    assert result.stdout.strip() == ""


def test_a_file_is_hashed_once_until_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 1000)
    first = sha256_of(path)
    assert sha256_started(path).result() == first
    assert sha256_started(path) is sha256_started(tmp_path / "." / "weights.bin")
    path.write_bytes(b"b" * 1000)  # same size: the times and the content change
    os.utime(path, ns=(1, 1))
    assert sha256_of(path) != first
    assert sha256_of(path) == hashlib.sha256(b"b" * 1000).hexdigest()


@pytest.mark.parametrize(("chunk_size", "classes"), [(500, {1, 2, 3}), (300, {1, 2})])
def test_the_warm_up_input_reaches_every_kernel_variant(chunk_size, classes):
    """The Triton attention kernel is compiled once per number of 64-key chunks a sequence
    spans: the synthetic records give ESM-2 frames of every class a run of this chunk size
    has, so a worker compiles them all before its first shard."""
    records = [FastaRecord(name, sequence) for name, sequence in synthetic_records()]
    frames = [frame for block in prepared_blocks(records, chunk_size) for frame in block.frames]
    assert {-(-(len(frame.protein) + 2) // 64) for frame in frames} == classes
    assert len(frames) % 16  # counts that are not multiples of 16: Triton specialises on them


def test_a_worker_s_predictor_is_warmed_up_and_the_triton_cache_is_a_setting(
    demo_models, tmp_path, monkeypatch
):
    from virnucpro_worker.pipeline import warmup

    seen = []
    monkeypatch.setattr(warmup, "warm_up", lambda predictor: seen.append(predictor) or 0.0)
    monkeypatch.setenv("TRITON_CACHE_DIR", "/elsewhere")
    environ = {"HOME": str(tmp_path), "VIRNUCPRO_TRITON_CACHE": "~/triton"}
    settings = load_settings({"models": str(demo_models.folder), "device": "cpu"}, environ)
    assert settings.triton_cache == f"{tmp_path}/triton"
    predictor = load_predictor(settings, warm_up=True)
    assert seen == [predictor]
    assert os.environ["TRITON_CACHE_DIR"] == f"{tmp_path}/triton"
    load_predictor(settings)
    assert seen == [predictor]
