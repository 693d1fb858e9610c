"""What a process pays before its first block: no compiler imported, each file hashed once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

from virnucpro_worker.files import sha256_of, sha256_started


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
