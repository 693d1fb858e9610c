"""Real services for the integration tests and benchmarks: a scratch PostgreSQL database, a
private redis-server on a free port (never the machine's shared one) and `virnucpro worker`
processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def scratch_postgres(admin_url: str, name: str) -> Iterator[str]:
    """A new database `name` beside the one `admin_url` names, dropped on exit even while
    workers still hold connections to it; yields its URL."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class RedisServer:
    """redis-server on its own port, its data in `folder`; `appendonly` keeps what it was
    told across a kill (AOF, fsync every second), as production should run it."""

    def __init__(self, folder: Path, appendonly: bool = False, password: str | None = None):
        self.folder, self.appendonly, self.password = Path(folder), appendonly, password
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        options += ["--save", "", "--appendonly", "yes" if self.appendonly else "no"]
        options += ["--maxmemory-policy", "noeviction"]
        if self.password:
            options += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            [REDIS_SERVER, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """As a crash: no shutdown, no save (with AOF, what was fsynced stays)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def forget(self) -> None:
        """Kill it and lose every key, as a Redis without persistence that restarted."""
        self.kill()
        for path in self.folder.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


class Workers:
    """`virnucpro worker` processes on a demo model folder, stopped at the end."""

    def __init__(self, redis_url: str, database_url: str, models: Path, **settings: object):
        self.env = {
            **os.environ,
            "VIRNUCPRO_REDIS_URL": redis_url,
            "VIRNUCPRO_DATABASE_URL": database_url,
            **{f"VIRNUCPRO_{key.upper()}": str(value) for key, value in settings.items()},
        }
        self.models = models
        self.processes: list[subprocess.Popen] = []

    def start(self, *extra: str, script: list[str] | None = None) -> subprocess.Popen:
        command = script or [sys.executable, "-m", "virnucpro_worker.interfaces.cli"]
        process = subprocess.Popen(
            [*command, "worker", "--models", str(self.models), *extra],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def run_burst(self, timeout: float = 120) -> str:
        process = self.start("--burst")
        output, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, output
        return output

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
