"""Nobody in: model files that would run code are refused before anything runs, nothing but a
shard id reaches a worker through Redis, record ids cannot break the outputs, and passwords in
Redis and database URLs never leave the process."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rq import Queue
from rq.registry import FailedJobRegistry
from services import RedisServer, Workers
from sqlalchemy import text

import virnucpro_worker
from virnucpro_worker.errors import UserError
from virnucpro_worker.models.classifier import load_classifier
from virnucpro_worker.models.dnabert import load_dnabert
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


def test_a_worker_refuses_every_message_but_a_shard_id(demo_models, tmp_path, database_url):
    redis = RedisServer(tmp_path / "redis").start()
    workers = Workers(redis.url, database_url, demo_models.folder, lease_seconds=3)
    marker = tmp_path / "PWNED"
    try:
        connection = messages.connect(redis.url)
        name = messages.queue_name("virnucpro", 500)
        pickled = Queue(name, connection=connection)  # RQ's default serializer: pickle
        pickled.enqueue("os.system", f"touch {marker}", job_id="pickled")
        json_queue = Queue(name, connection=connection, serializer=messages.SERIALIZER)
        json_queue.enqueue("os.system", f"touch {marker}", job_id="not-allowed")
        json_queue.enqueue(messages.RUN_SHARD, "1; drop table jobs", job_id="not-an-id")
        json_queue.enqueue(messages.RUN_SHARD, 1, extra=True, job_id="extra-argument")
        client = Client(redis.url, database_url, Settings(block_bases=4000))
        job = client.submit(DEMO_INPUT, 500, demo=True)
        workers.run_burst()
        assert not marker.exists()
        failed = FailedJobRegistry(queue=json_queue)
        assert set(failed.get_job_ids()) == {
            "pickled",
            "not-allowed",
            "not-an-id",
            "extra-argument",
        }
        for message_id in ("not-allowed", "not-an-id", "extra-argument"):
            job_message = json_queue.fetch_job(message_id)
            assert "refused" in job_message.latest_result().exc_string
        assert client.status(job).state == "succeeded"  # and the worker went on
    finally:
        workers.stop()
        redis.kill()


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
