"""Nobody in: model files that would run code are refused before anything runs, nothing but a
shard id reaches a worker through Redis, record ids cannot break the outputs, and passwords in
Redis and database URLs never leave the process."""

from __future__ import annotations

import http.server
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import redis as redis_client
import torch
from rq import Callback, Queue, Retry
from rq.registry import FailedJobRegistry
from rq.webhook import Webhook
from services import RedisServer, Workers
from sqlalchemy import text

import virnucpro_worker
from virnucpro_worker.errors import UserError
from virnucpro_worker.models.classifier import load_classifier
from virnucpro_worker.models.dnabert_pretrained import load_dnabert
from virnucpro_worker.models.esm2 import load_esm2
from virnucpro_worker.queue import messages
from virnucpro_worker.queue.client import Client
from virnucpro_worker.settings import Settings
from virnucpro_worker.store.store import Store

DEMO_INPUT = Path(__file__).parents[1] / "examples" / "demo_contigs.fa"
CLI = [sys.executable, "-m", "virnucpro_worker.interfaces.cli"]


class WritesAFile:
    """A pickle payload: unpickling it would create `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


# No model file runs code ---------------------------------------------------------------------


def test_a_classifier_pickle_with_a_payload_is_refused_and_never_runs(tmp_path):
    marker, path = tmp_path / "PWNED", tmp_path / "500_model.pth"
    torch.save({"hidden_layer.weight": WritesAFile(marker)}, path, pickle_module=pickle)
    with pytest.raises(UserError, match=r"refused to load: the pickle asks for posix\.system"):
        load_classifier(path)
    assert not marker.exists()


def test_an_esm_checkpoint_with_a_payload_is_refused_and_never_runs(tmp_path):
    marker, path = tmp_path / "PWNED", tmp_path / "esm2_t2_evil.pt"
    torch.save({"cfg": {"model": WritesAFile(marker)}, "model": {}}, path, pickle_module=pickle)
    with pytest.raises(UserError, match=r"refused to load: the pickle asks for posix\.system"):
        load_esm2(path)
    assert not marker.exists()


def test_a_dnabert_bin_with_a_payload_is_refused_and_never_runs(demo_models, tmp_path):
    folder, marker = tmp_path / "DNABERT-S", tmp_path / "PWNED"
    shutil.copytree(demo_models.dnabert, folder)
    (folder / "model.safetensors").unlink()
    torch.save({"bert.x": WritesAFile(marker)}, folder / "pytorch_model.bin", pickle_module=pickle)
    with pytest.raises(UserError, match=r"refused to load: the pickle asks for posix\.system"):
        load_dnabert(folder)
    assert not marker.exists()


# Nothing but a shard id through Redis --------------------------------------------------------
#
# One worker serves a queue planted with every poison of issue 23 (and a real job); each test
# below checks what became of one of them.

DEMO_QUEUE = "virnucpro-500-demo"
CALLBACK = "poison_callbacks.mark"  # tests/poison_callbacks.py: leaves a marker if ever called


class Requests(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.received.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@dataclass
class Poisoned:
    """What a burst worker left of a queue full of poison."""

    output: str
    redis: redis_client.Redis
    markers: Path
    webhook_requests: list[str]
    job_state: str

    def refusals_of(self, message_id: str) -> list[str]:
        return [line for line in self.output.splitlines() if f"message {message_id!r}" in line]

    def gone(self, key: str | bytes) -> bool:
        return not self.redis.exists(key)


@pytest.fixture(scope="module")
def poisoned(demo_models, tmp_path_factory) -> Iterator[Poisoned]:
    tmp = tmp_path_factory.mktemp("poison")
    server = RedisServer(tmp / "redis").start()
    hooks = http.server.HTTPServer(("127.0.0.1", 0), Requests)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{hooks.server_port}/hook"
    webhooks = [Webhook(url, "finished", method="POST"), Webhook(url, "failed", method="POST")]
    markers = tmp / "markers"
    markers.mkdir()
    database = f"sqlite:///{tmp / 'db.sqlite'}"
    try:
        connection = messages.connect(server.url)
        pickled = Queue(DEMO_QUEUE, connection=connection)  # RQ's default serializer: pickle
        pickled.enqueue("os.system", f"touch {markers / 'pickled'}", job_id="pickled")
        plain = Queue(DEMO_QUEUE, connection=connection, serializer=messages.SERIALIZER)
        plain.enqueue("os.system", f"touch {markers / 'os'}", job_id="not-allowed")
        plain.enqueue(messages.RUN_SHARD, "1; drop table jobs", job_id="not-an-id")
        plain.enqueue(messages.RUN_SHARD, 1, extra=True, job_id="extra-argument")
        plain.enqueue(
            messages.RUN_SHARD,
            999_999,
            job_id="with-callbacks",
            on_success=Callback(CALLBACK),
            on_failure=Callback(CALLBACK),
            on_stopped=Callback(CALLBACK),
            webhooks=webhooks,
        )
        plain.enqueue(
            "os.system",
            "true",
            job_id="retry-bomb",
            retry=Retry(max=100_000),
            on_failure=Callback(CALLBACK),
            webhooks=webhooks,
        )
        plain.enqueue(messages.RUN_SHARD, 999_998, job_id="bad-date")
        connection.hset("rq:job:bad-date", "created_at", "the day before yesterday")
        connection.hset(b"rq:job:\xff\xfeid", "data", b"not even json")
        connection.rpush(f"rq:queue:{DEMO_QUEUE}", b"\xff\xfeid")
        connection.set("rq:job:wrong-type", "a string, not a hash")
        connection.rpush(f"rq:queue:{DEMO_QUEUE}", "wrong-type")
        # A message with a dependent that must never be enqueued.
        plain.enqueue(messages.RUN_SHARD, 999_997, job_id="has-dependents")
        dependent = plain.enqueue(messages.RUN_SHARD, 999_996, job_id="dependent", at_front=False)
        plain.remove(dependent)
        connection.sadd("rq:job:has-dependents:dependents", "dependent")
        # A started-registry entry of a "dead worker", whose message names a failure callback.
        plain.enqueue(
            messages.RUN_SHARD, 999_995, job_id="planted-started", on_failure=Callback(CALLBACK)
        )
        plain.remove("planted-started")
        connection.zadd(f"rq:wip:{DEMO_QUEUE}", {"planted-started:execution": 1})

        client = Client(server.url, database, Settings(block_bases=4000))
        job = client.submit(DEMO_INPUT, 500, demo=True)
        workers = Workers(server.url, database, demo_models.folder, lease_seconds=3)
        workers.env["PYTHONPATH"] = str(Path(__file__).parent)
        workers.env["VIRNUCPRO_TEST_MARKERS"] = str(markers)
        output = workers.run_burst()
        yield Poisoned(
            output, connection, markers, list(Requests.received), client.status(job).state
        )
    finally:
        hooks.shutdown()
        server.kill()


def test_the_worker_went_on_through_every_poison(poisoned):
    assert poisoned.job_state == "succeeded"
    assert "Traceback" not in poisoned.output and "unhandled exception" not in poisoned.output


@pytest.mark.parametrize(
    "message_id", ["pickled", "not-allowed", "not-an-id", "extra-argument", "retry-bomb"]
)
def test_a_message_that_is_not_a_shard_id_is_refused_once_and_deleted(poisoned, message_id):
    assert len(poisoned.refusals_of(message_id)) == 1, poisoned.output
    assert poisoned.gone(f"rq:job:{message_id}")
    failed = FailedJobRegistry(DEMO_QUEUE, connection=poisoned.redis)
    assert message_id not in failed.get_job_ids()
    assert not any(poisoned.markers.iterdir())  # nothing it asked for ran


def test_callbacks_carried_by_an_allowed_message_are_never_called(poisoned):
    assert not (poisoned.markers / "called-by-with-callbacks").exists()
    assert "nothing to do" in poisoned.output  # the shard id itself was looked up


def test_a_failure_callback_of_a_planted_started_registry_entry_is_never_called(poisoned):
    assert not (poisoned.markers / "called-by-planted-started").exists()
    assert poisoned.gone("rq:job:planted-started")
    assert poisoned.redis.zcard(f"rq:wip:{DEMO_QUEUE}") == 0


def test_webhooks_carried_by_messages_are_never_sent(poisoned):
    assert poisoned.webhook_requests == []


def test_a_retry_setting_is_never_honoured(poisoned):
    assert len(poisoned.refusals_of("retry-bomb")) == 1
    assert not (poisoned.markers / "called-by-retry-bomb").exists()
    assert poisoned.redis.zcard(f"rq:scheduled:{DEMO_QUEUE}") == 0


def test_dependents_of_a_message_are_never_enqueued(poisoned):
    assert "dependent" not in [
        raw.decode() for raw in poisoned.redis.lrange(f"rq:queue:{DEMO_QUEUE}", 0, -1)
    ]
    assert "999996" not in poisoned.output


@pytest.mark.parametrize(
    "key, shown",
    [
        ("rq:job:bad-date", "'bad-date'"),
        (b"rq:job:\xff\xfeid", "b'\\xff\\xfeid'"),
        ("rq:job:wrong-type", "'wrong-type'"),
    ],
)
def test_a_malformed_message_is_logged_once_and_removed(poisoned, key, shown):
    lines = [line for line in poisoned.output.splitlines() if f"refused message {shown}" in line]
    assert len(lines) == 1, poisoned.output
    assert poisoned.gone(key)


# Record ids cannot corrupt the outputs -------------------------------------------------------


def test_ids_with_tabs_newlines_or_controls_never_reach_a_file(demo_models, tmp_path):
    predictor = virnucpro_worker.load_models(models=demo_models.folder)
    sequence = "ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA" * 9
    for bad in ("a\tb", "a\nb", "a\rb", "a\x00b", "a\x1bb", "a\u2028b"):
        with pytest.raises(UserError):
            predictor.predict([(bad, sequence)], 500)
    # In a file, whitespace (a tab, a vertical tab) ends the id, as Biopython reads it.
    path = tmp_path / "ids.fa"
    path.write_bytes(f">one\tdescription\n{sequence}\n>two\x0bthree\n{sequence}\n".encode())
    prediction = predictor.predict(path, 500)
    prediction.write(tmp_path / "out")
    assert [record.id for record in prediction.records] == ["one", "two"]
    for name in ("prediction_results.txt", "prediction_results_highestscore.csv"):
        rows = (tmp_path / "out" / name).read_text().splitlines()
        assert {len(row.split("\t")) for row in rows} == {len(rows[0].split("\t"))}


def test_limits_have_sane_defaults():
    settings = Settings()
    assert settings.max_input_bytes == 64 << 30 and settings.max_record_length == 250_000_000


# Passwords never leave the process -----------------------------------------------------------


def test_passwords_in_urls_work_and_never_show(demo_models, tmp_path, postgres_url):
    redis_password, db_password = "r3dis-Secret", "pg-Secret-42"
    redis = RedisServer(tmp_path / "redis", password=redis_password).start()
    database = postgres_url.replace("postgres@", f"postgres:{db_password}@")  # trust: accepted
    env = {**os.environ, "VIRNUCPRO_BLOCK_BASES": "4000", "VIRNUCPRO_LEASE_SECONDS": "3"}
    service = ["--redis", redis.url, "--db", database]

    def cli(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *arguments], capture_output=True, text=True, env=env)

    try:
        submit = cli(
            "-v", "submit", str(DEMO_INPUT), "--chunk-size", "500", "--demo-models", *service
        )
        job = submit.stdout.strip()
        worker = cli("-v", "worker", "--burst", "--models", str(demo_models.folder), *service)
        status = cli("-v", "status", job, *service)
        results = cli("-v", "results", job, "--out", str(tmp_path / "o"), "--db", database)
        wrong = redis.url.replace(redis_password, "wrong-" + redis_password)
        refused = cli("recover", "--redis", wrong, "--db", database)
        assert (submit.returncode, worker.returncode, results.returncode) == (0, 0, 0)
        assert "succeeded" in status.stdout and refused.returncode == 2
        outputs = [
            part
            for run in (submit, worker, status, results, refused)
            for part in (run.stdout, run.stderr)
        ]
        outputs.append((tmp_path / "o" / "run.json").read_text())
        with Store(database).engine.connect() as connection:
            for table in ("jobs", "shards", "provenance"):
                outputs.append(
                    json.dumps(
                        [
                            list(map(str, row))
                            for row in connection.execute(text(f"SELECT * FROM {table}"))
                        ]
                    )
                )
        everything = "\n".join(outputs)
        assert "DEBUG" in everything and "job " in everything  # there was something to look at
        assert redis_password not in everything and db_password not in everything
    finally:
        redis.kill()


def test_a_wrong_redis_password_is_one_line_without_it(tmp_path):
    redis = RedisServer(tmp_path / "redis", password="right-one").start()
    try:
        url = redis.url.replace("right-one", "guessed-one")
        Store(f"sqlite:///{tmp_path / 'db'}").upgrade()  # recover reads an existing database
        result = subprocess.run(
            [*CLI, "recover", "--redis", url, "--db", f"sqlite:///{tmp_path / 'db'}"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        (line,) = result.stderr.strip().splitlines()
        assert (
            "guessed-one" not in line and "right-one" not in line and "Redis redis://:***@" in line
        )
    finally:
        redis.kill()


def test_a_worker_checks_redis_before_loading_its_models(tmp_path, demo_models):
    result = subprocess.run(
        [*CLI, "worker", "--redis", "redis://127.0.0.1:9/0", "--models", str(demo_models.folder)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Redis redis://127.0.0.1:9/0" in result.stderr
    assert "loading models" not in result.stderr
