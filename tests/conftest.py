"""Shared test configuration.

Hypothesis runs derandomized by default so that CI runs are reproducible (same examples every
run, no example database). Set HYPOTHESIS_PROFILE=explore locally to search with fresh random
examples.

Without a GPU, Triton kernels run in Triton's interpreter on the CPU (set before they are
imported: the interpreter is chosen when a kernel is defined).
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from models_for_tests import DemoModels

settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> DemoModels:
    """The demo models (tiny, random, real file formats), written once per test session."""
    return DemoModels.write(tmp_path_factory.mktemp("demo-models"))
