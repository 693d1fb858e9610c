"""Shared test configuration.

Hypothesis runs derandomized by default so that CI runs are reproducible (same examples every
run, no example database). Set HYPOTHESIS_PROFILE=explore locally to search with fresh random
examples.

Without a GPU, Triton kernels run in Triton's interpreter on the CPU (set before they are
imported: the interpreter is chosen when a kernel is defined).

Some tests press Ctrl-C on a child process (SIGINT). A shell starts a background job with SIGINT
ignored, and every child inherits that: a suite started that way (`make test &`) gets SIGINT
back to Python's handler here, which each child then starts with, as under a terminal.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal

import pytest
import torch
from hypothesis import HealthCheck, settings

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from models_for_tests import DemoModels
from services import scratch_postgres

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


# --------------------------------------------------------------------------------------------
# Real services: a PostgreSQL database per test, dropped afterwards
# --------------------------------------------------------------------------------------------

POSTGRES = os.environ.get(
    "VIRNUCPRO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_SESSION = f"virnucpro_test_{os.getpid()}_{secrets.token_hex(3)}"
_databases = itertools.count()


@pytest.fixture
def postgres_url():
    """A new, uniquely named database on the machine's PostgreSQL; dropped after the test."""
    import psycopg

    try:
        with scratch_postgres(POSTGRES, f"{_SESSION}_{next(_databases)}") as url:
            yield url
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL at {POSTGRES} does not answer ({error}); .ci/run starts it")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Each test that takes it runs on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'virnucpro.db'}"
    return request.getfixturevalue("postgres_url")
