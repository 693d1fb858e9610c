"""The job queue against a real Redis (a private redis-server per test) and a real database
(SQLite and the machine's PostgreSQL), with real `virnucpro worker` processes."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import numpy as np
import pytest
from models_for_tests import DemoModels, model_args
from result_files import assert_same_results
from rq.exceptions import StopRequested
from rq.job import Job
from services import RedisServer, Workers
from sqlalchemy import func, select, update

import virnucpro_worker
from virnucpro_worker.errors import UserError
from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.models.model_files import ModelSet
from virnucpro_worker.pipeline.outputs import (
    PREDICTIONS_FILE,
    REGIONS_BED_FILE,
    RUN_FILE,
)
from virnucpro_worker.pipeline.parameters import JobParameters, ModelRequest
from virnucpro_worker.pipeline.regions import RegionRule
from virnucpro_worker.queue import messages
from virnucpro_worker.queue.client import Client
from virnucpro_worker.queue.worker import GpuWorker
from virnucpro_worker.settings import Settings
from virnucpro_worker.store.models import FramePrediction, Shard
from virnucpro_worker.store.store import Store

DEMO_INPUT = Path(__file__).parents[1] / "examples" / "demo_contigs.fa"
BLOCK_BASES = 4000  # small blocks: the demo input makes several shards
FAST = {"lease_seconds": 3, "heartbeat_seconds": 0.5}
DEMO_QUEUE = "virnucpro-500-demo"


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


class Service:
    def __init__(self, redis_server: RedisServer, database_url: str, models: DemoModels, **worker):
        self.redis = redis_server
        self.database_url = database_url
        self.settings = Settings(block_bases=BLOCK_BASES, shard_chunks=20, **FAST)
        self.client = Client(redis_server.url, database_url, self.settings)
        self.workers = Workers(redis_server.url, database_url, models.folder, **(FAST | worker))
        self.store = Store(database_url)

    def shards(self, job_id: int) -> list[Shard]:
        return self.store.shards(job_id)


@pytest.fixture
def service(redis_server, database_url, demo_models):
    service = Service(redis_server, database_url, demo_models)
    yield service
    service.workers.stop()


def in_process(demo_models: DemoModels, source: Path, out: Path, monkeypatch, *extra: str) -> Path:
    monkeypatch.setenv("VIRNUCPRO_BLOCK_BASES", str(BLOCK_BASES))
    options = ["--chunk-size", "500", "--out", str(out), "--no-progress", *model_args(demo_models)]
    options += extra
    assert main(["predict", str(source), *options]) == 0
    return out


def test_a_jobs_region_rule_reaches_its_workers(service, demo_models, tmp_path, monkeypatch):
    rule = RegionRule(min_chunks=1, max_gap=3)
    job = service.client.submit(DEMO_INPUT, 500, demo=True, regions=rule)
    service.workers.run_burst()
    service.client.write_outputs(job, tmp_path / "queue")
    options = ("--region-min-chunks", "1", "--region-max-gap", "3")
    local = in_process(demo_models, DEMO_INPUT, tmp_path / "local", monkeypatch, *options)
    assert_same_results(tmp_path / "queue", local)
    default = in_process(demo_models, DEMO_INPUT, tmp_path / "default", monkeypatch)
    assert (local / REGIONS_BED_FILE).read_bytes() != (default / REGIONS_BED_FILE).read_bytes()
    for folder in (tmp_path / "queue", local):
        run = json.loads((folder / RUN_FILE).read_text())
        assert run["region_rule"] == rule.to_json()
        regions = (folder / REGIONS_BED_FILE).read_text().splitlines()
        assert run["counts"]["viral_regions"] == len(regions) > 0


def test_a_job_submitted_with_embeddings_writes_predict_s_files(
    service, demo_models, tmp_path, monkeypatch, capsys
):
    """The workers keep every frame's features in the database; `virnucpro results` writes
    embeddings.safetensors (and every other file) as `predict --embeddings` does, and the
    API returns the same arrays."""
    from safetensors.numpy import load_file

    from virnucpro_worker.pipeline.embeddings import EMBEDDINGS_FILE

    job = service.client.submit(DEMO_INPUT, 500, demo=True, embeddings="float16")
    plain = service.client.submit(DEMO_INPUT, 500, demo=True)
    service.workers.run_burst()
    assert len(service.shards(job)) > 2  # features from several shards, in order
    options = ["--db", service.database_url, "--out", str(tmp_path / "queue")]
    assert main(["results", str(job), *options]) == 0
    local = in_process(
        demo_models, DEMO_INPUT, tmp_path / "local", monkeypatch, "--embeddings", "float16"
    )
    assert_same_results(tmp_path / "queue", local)
    run = json.loads((tmp_path / "queue" / RUN_FILE).read_text())
    assert EMBEDDINGS_FILE in run["outputs"]
    stored = load_file(local / EMBEDDINGS_FILE)
    arrays = service.client.results(job, embeddings=True).embeddings
    for name, values in stored.items():
        assert np.array_equal(getattr(arrays, name), values), name
    assert stored["esm2"].dtype == np.float16 and len(stored["record"]) > 0
    service.client.write_outputs(plain, tmp_path / "plain")
    assert not (tmp_path / "plain" / EMBEDDINGS_FILE).exists()
    with pytest.raises(UserError, match=f"job {plain} was not submitted with embeddings"):
        service.client.results(plain, embeddings=True)


def many_contigs(
    path: Path, count: int, seed_unit: str = "ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA"
) -> Path:
    path.write_text("".join(f">c{i}\n{seed_unit * (10 + i % 7)}\n" for i in range(count)))
    return path


def test_submit_then_a_burst_worker_gives_what_predict_gives(
    service, demo_models, tmp_path, monkeypatch
):
    job = service.client.submit(DEMO_INPUT, 500, demo=True)
    assert service.client.status(job).state == "queued" and len(service.shards(job)) > 2
    service.workers.run_burst()
    status = service.client.status(job)
    assert (status.state, status.shards_done, status.records_done) == (
        "succeeded",
        status.shards,
        24,
    )
    service.client.write_outputs(job, tmp_path / "queue")
    assert_same_results(
        tmp_path / "queue", in_process(demo_models, DEMO_INPUT, tmp_path / "local", monkeypatch)
    )
    prediction = service.client.results(job)
    assert len(prediction.records) == 24 and prediction.provenance["job_id"] == job
    shards = prediction.provenance["shards"]
    assert len(shards) == len(service.shards(job)) and all(s["worker"] for s in shards)


def test_job_parameters_read_back_what_every_version_stored():
    files = ModelSet("e" * 64, {"config.json": "c" * 64, "model.safetensors": "w" * 64}, "k" * 64)
    settings = Settings(attention="v1-bmm", block_bases=4000, shard_attempts=5, lease_seconds=7)
    rule = RegionRule(min_chunks=3, max_gap=0)
    for request in (ModelRequest(demo=True), ModelRequest(), ModelRequest(files=files)):
        for queued in (True, False):
            parameters = settings.job_parameters(300, request, rule, queued=queued)
            stored = json.loads(json.dumps(parameters.to_json()))
            assert JobParameters.from_json(stored) == parameters
    queued = settings.job_parameters(300, ModelRequest(demo=True), rule, queued=True)
    assert (queued.attempts, queued.lease_seconds) == (5, 7)
    # What `predict --db` and the queue stored before: paths beside "demo", no region rule.
    cli = {"chunk_size": 500, "attention": "v1-bmm", "block_bases": 4000}
    cli["models"] = {"demo": False, "esm": "e.pt", "dnabert": "d", "classifiers": {"500": "c"}}
    assert JobParameters.from_json(cli) == JobParameters(500, "v1-bmm", 4000, ModelRequest())
    pinned = cli | {"models": {"sha256": files.to_json()}}
    assert JobParameters.from_json(pinned).models.key == files.key != "real"
    assert messages.job_queue_name("q", JobParameters.from_json(pinned), None) == (
        f"q-500-{files.key}"
    )


def key_shape(value: object) -> object:
    """The keys of a JSON value, nested, without the values."""
    if isinstance(value, dict):
        return {key: key_shape(item) for key, item in value.items()}
    return None


def test_predict_and_a_queued_job_write_run_json_with_the_same_keys(
    service, demo_models, tmp_path, monkeypatch
):
    job = service.client.submit(DEMO_INPUT, 500, demo=True, label="keys")
    service.workers.run_burst()
    service.client.write_outputs(job, tmp_path / "queue")
    queued = json.loads((tmp_path / "queue" / RUN_FILE).read_text())
    local = in_process(demo_models, DEMO_INPUT, tmp_path / "local", monkeypatch)
    predicted = json.loads((local / RUN_FILE).read_text())
    queue_own, predict_own = {"job_id", "label", "shards"}, {"command_line", "config_file"}
    assert queue_own <= set(queued) and predict_own <= set(predicted)
    shared = set(predicted) - predict_own
    assert set(queued) - queue_own == shared
    assert {key: key_shape(queued[key]) for key in shared} == {
        key: key_shape(predicted[key]) for key in shared
    }
    assert queued["block_bases"] == predicted["block_bases"] == BLOCK_BASES


def test_two_workers_share_one_job(service, tmp_path):
    service.workers.start()
    service.workers.start()
    wait_for_workers(service, 2)
    job = service.client.submit(
        many_contigs(tmp_path / "in.fa", 60), 500, demo=True, shard_chunks=1
    )
    assert service.client.wait(job, timeout=120).state == "succeeded"
    workers = {shard.worker for shard in service.shards(job)}
    assert len(workers) == 2, workers
    assert all(shard.host and shard.device == "cpu" for shard in service.shards(job))


def wait_for_workers(service: Service, count: int, timeout: float = 60) -> None:
    from rq import Worker

    connection = messages.connect(service.redis.url)
    deadline = time.monotonic() + timeout
    while len(Worker.all(connection=connection)) < count:
        stopped = [p for p in service.workers.processes if p.poll() is not None]
        assert not stopped, stopped[0].stdout.read()
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.2)


def test_three_concurrent_submissions(service, tmp_path, demo_models, monkeypatch):
    jobs: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: jobs.append(service.client.submit(DEMO_INPUT, 500, demo=True))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    service.workers.run_burst()
    expected = in_process(demo_models, DEMO_INPUT, tmp_path / "local", monkeypatch)
    for job in jobs:
        assert service.client.status(job).state == "succeeded"
        service.client.write_outputs(job, tmp_path / f"job{job}")
        assert_same_results(tmp_path / f"job{job}", expected)


def one_long_shard(service: Service, tmp_path: Path, count: int = 400) -> int:
    """A job of one shard of many small blocks: seconds of work, a block at a time."""
    source = many_contigs(tmp_path / "long.fa", count)
    return service.client.submit(source, 500, demo=True, shard_chunks=10**9)


def wait_running(service: Service, job: int, timeout: float = 60) -> Shard:
    deadline = time.monotonic() + timeout
    while True:
        (shard,) = service.shards(job)
        if shard.state == "running" and shard.frames_done > 0:
            return shard
        assert time.monotonic() < deadline, f"shard not running: {shard.state}"
        time.sleep(0.05)


def test_progress_is_visible_while_a_shard_runs(service, tmp_path):
    job = one_long_shard(service, tmp_path)
    service.workers.start()
    running = wait_running(service, job)
    status = service.client.status(job)
    assert status.state == "running" and status.frames_done > 0
    connection = messages.connect(service.redis.url)
    message = messages.shard_message_id(running.id)
    meta = Job.fetch(message, connection=connection, serializer=messages.SERIALIZER)
    deadline = time.monotonic() + 30
    while not meta.get_meta(refresh=True).get("frames_done"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    final = service.client.wait(job, timeout=120)
    assert final.state == "succeeded" and final.frames_done > status.frames_done


def test_cancel_stops_a_running_shard_and_the_worker_goes_on(service, tmp_path, demo_models):
    job = one_long_shard(service, tmp_path)
    service.workers.start()
    wait_running(service, job)
    assert service.client.cancel(job).state == "cancelled"
    time.sleep(2)  # the shard stops at its next block
    (shard,) = service.shards(job)
    assert shard.state == "cancelled"
    frames = shard.frames_done
    time.sleep(1)
    assert service.shards(job)[0].frames_done == frames  # nothing more is written
    assert service.client.status(job).state == "cancelled"
    small = service.client.submit(DEMO_INPUT, 500, demo=True)
    assert service.client.wait(small, timeout=60).state == "succeeded"


def frame_rows(service: Service, job: int) -> int:
    with service.store.session() as session:
        query = (
            select(func.count()).select_from(FramePrediction).where(FramePrediction.job_id == job)
        )
        return session.scalar(query)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_killed_worker_s_shard_runs_again_within_two_minutes_by_default(
    redis_server, database_url, demo_models, tmp_path, monkeypatch
):
    """Default lease and heartbeats: SIGKILL a worker mid-shard; the other worker runs it."""
    service = Service(
        redis_server, database_url, demo_models, lease_seconds=30, heartbeat_seconds=5
    )
    try:
        source = many_contigs(tmp_path / "long.fa", 400)
        job = service.client.submit(source, 500, demo=True, shard_chunks=10**9)
        victim = service.workers.start()
        wait_running(service, job)
        victim.send_signal(signal.SIGKILL)
        killed = datetime.now(UTC)
        victim.wait()
        service.workers.start()
        assert service.client.wait(job, timeout=150).state == "succeeded"
        (shard,) = service.shards(job)
        assert shard.attempts == 2
        rerun_after = (shard.started_at - killed).total_seconds()
        print(f"the shard ran again {rerun_after:.1f} s after its worker was killed")
        assert 0 < rerun_after < 120
        out = tmp_path / "queue"
        service.client.write_outputs(job, out)
        assert_same_results(out, in_process(demo_models, source, tmp_path / "local", monkeypatch))
        kept = len((out / PREDICTIONS_FILE).read_text().splitlines()) - 1
        assert frame_rows(service, job) == kept  # no duplicate rows
    finally:
        service.workers.stop()


def test_recover_after_redis_lost_its_data(service, demo_models, tmp_path, monkeypatch):
    job = service.client.submit(DEMO_INPUT, 500, demo=True)
    service.redis.forget()
    service.redis.start()
    assert messages.connect(service.redis.url).keys("rq:*") == []
    shards = len(service.shards(job))
    assert service.client.recover() == shards
    assert service.client.recover() == 0  # nothing more is missing
    service.workers.run_burst()
    assert service.client.status(job).state == "succeeded"
    service.client.write_outputs(job, tmp_path / "queue")
    assert_same_results(
        tmp_path / "queue", in_process(demo_models, DEMO_INPUT, tmp_path / "local", monkeypatch)
    )


def test_a_shard_longer_than_the_worker_ttl_is_not_declared_abandoned(service, tmp_path):
    """Lease 3 s (worker TTL 18 s): a shard that runs for many leases keeps its first
    attempt while an idle second worker collects abandoned jobs every 3 s."""
    job = one_long_shard(service, tmp_path, count=2500)
    service.workers.start()
    wait_running(service, job)
    service.workers.start()  # idle: its maintenance would take over an abandoned shard
    started = time.monotonic()
    assert service.client.wait(job, timeout=300).state == "succeeded"
    (shard,) = service.shards(job)
    assert time.monotonic() - started > 3 * 3, "the shard must outlast several leases"
    assert shard.attempts == 1
    from rq.registry import FailedJobRegistry

    queue = messages.shard_queue(messages.connect(service.redis.url), DEMO_QUEUE)
    assert FailedJobRegistry(queue=queue).get_job_ids() == []


def test_bad_input_stores_and_enqueues_nothing(service, tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>b\nMKVLL\n")
    with pytest.raises(UserError, match=r"record 2 \('b'\)"):
        service.client.submit(bad, 500, demo=True)
    assert service.store.jobs() == []
    assert messages.connect(service.redis.url).keys("rq:job:*") == []


def test_the_cli_submit_wait_out_status_and_cancel(
    service, tmp_path, capsys, demo_models, monkeypatch
):
    options = ["--redis", service.redis.url, "--db", service.database_url]
    monkeypatch.setenv("VIRNUCPRO_BLOCK_BASES", str(BLOCK_BASES))
    service.workers.start()
    code = main(
        [
            "submit",
            str(DEMO_INPUT),
            "--chunk-size",
            "500",
            "--demo-models",
            "--out",
            str(tmp_path / "q"),
            *options,
        ]
    )
    assert code == 0
    job = int(capsys.readouterr().out.strip())  # only the job id on stdout
    assert_same_results(
        tmp_path / "q", in_process(demo_models, DEMO_INPUT, tmp_path / "local", monkeypatch)
    )
    capsys.readouterr()
    assert main(["status", str(job), *options]) == 0
    assert capsys.readouterr().out.startswith(f"job {job}: succeeded, shards ")
    assert main(["cancel", str(job), *options]) == 1  # a finished job stays as it is
    assert f"job {job} had already succeeded: nothing to cancel" in capsys.readouterr().err


def test_a_job_waits_for_a_worker_with_its_model_files_and_says_so(service, tmp_path, capsys):
    """Submitted with folder A's files, the job waits on A's queue: a demo worker with other
    files never takes it (it neither fails nor mixes results), `status` says that no live
    worker serves that model set, and a job pinned to the worker's own files runs."""
    from virnucpro_worker.models.demo import write_demo_models
    from virnucpro_worker.models.model_files import ModelFiles

    write_demo_models(tmp_path / "other-models", seed=7)  # another seed: other sha256
    job = service.client.submit(
        DEMO_INPUT, 500, models=ModelFiles.in_folder(tmp_path / "other-models")
    )
    service.workers.run_burst()
    status = service.client.status(job)
    assert (status.state, frame_rows(service, job)) == ("queued", 0)
    assert status.unserved.startswith("no live worker serves model set sha256-")
    assert "/ chunk size 500 (queue virnucpro-500-sha256-" in status.unserved
    options = ["--redis", service.redis.url, "--db", service.database_url]
    assert main(["status", str(job), *options]) == 0
    assert "no live worker serves model set sha256-" in capsys.readouterr().out
    pinned = service.client.submit(
        DEMO_INPUT, 500, models=ModelFiles.in_folder(service.workers.models)
    )
    service.workers.run_burst()
    assert service.client.status(pinned).state == "succeeded"
    assert service.client.status(job).state == "queued"


def test_a_real_models_job_waits_for_a_real_worker(service):
    """README's `client.submit(...)` without demo=True: a demo worker never takes it."""
    job = service.client.submit(DEMO_INPUT, 500)
    output = service.workers.run_burst()
    assert service.client.status(job).state == "queued"
    assert "no live worker serves model set real / chunk size 500" in (
        service.client.status(job).unserved
    )
    assert "Traceback" not in output and "refused" not in output


def test_a_worker_told_to_serve_another_model_set_s_queue_refuses_in_one_line(service, tmp_path):
    """Misrouted by hand (`--queue` of another set): each refusal is one log line, the shard is
    given back uncounted and the job keeps waiting, unfailed."""
    job = service.client.submit(DEMO_INPUT, 500, shard_chunks=10**9)
    worker = service.workers.start("--burst", "--queue", "virnucpro-500-real")
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output
    assert "Traceback" not in output
    refusals = [line for line in output.splitlines() if "given back" in line]
    assert len(refusals) == 1 and "the job asks for real models" in refusals[0], output
    (shard,) = service.shards(job)
    assert (shard.state, shard.attempts) == ("queued", 0)
    assert service.client.status(job).state == "queued"


def test_two_cpu_workers_share_a_job_evenly_and_give_what_one_gives(service, tmp_path):
    """One job of 30 shards: two workers (one CPU thread each) each run about half of them,
    and the result files equal those of the same job run by one worker."""
    source = many_contigs(tmp_path / "in.fa", 600)

    def run(workers: int) -> tuple[Path, dict[str, int]]:
        for _ in range(workers):
            service.workers.start("--workers", "1")
        wait_for_workers(service, workers)
        job = service.client.submit(source, 500, demo=True, shard_chunks=30)
        assert service.client.wait(job, timeout=300).state == "succeeded"
        service.workers.stop()
        service.workers.processes.clear()
        counts: dict[str, int] = {}
        for shard in service.shards(job):
            counts[shard.worker] = counts.get(shard.worker, 0) + 1
        service.client.write_outputs(job, tmp_path / f"out-{workers}")
        return tmp_path / f"out-{workers}", counts

    one, _ = run(1)
    wait_until_no_workers(service)
    two, counts = run(2)
    assert len(counts) == 2 and sum(counts.values()) >= 20
    assert min(counts.values()) >= sum(counts.values()) / 4  # neither waits while the other works
    assert_same_results(one, two)


def wait_until_no_workers(service: Service, timeout: float = 60) -> None:
    from rq import Worker

    connection = messages.connect(service.redis.url)
    deadline = time.monotonic() + timeout
    while Worker.all(connection=connection):
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_rq_s_own_command_line_runs_the_gpu_worker(service, demo_models, tmp_path, monkeypatch):
    """`rq worker -w virnucpro_worker.interfaces.rq_worker.GpuWorker`: settings from VIRNUCPRO_*
    variables, JSON whatever rq's default serializer is, and what `virnucpro worker` gives."""
    import os
    import subprocess
    import sys

    job = service.client.submit(DEMO_INPUT, 500, demo=True)
    env = {
        **os.environ,
        "VIRNUCPRO_MODELS": str(demo_models.folder),
        "VIRNUCPRO_DATABASE_URL": service.database_url,
        "VIRNUCPRO_LEASE_SECONDS": "3",
    }
    rq = Path(sys.executable).with_name("rq")
    command = [
        str(rq),
        "worker",
        "-w",
        "virnucpro_worker.interfaces.rq_worker.GpuWorker",
        "--burst",
    ]
    command += ["--url", service.redis.url, DEMO_QUEUE]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert service.client.status(job).state == "succeeded"
    service.client.write_outputs(job, tmp_path / "rq")
    assert_same_results(
        tmp_path / "rq", in_process(demo_models, DEMO_INPUT, tmp_path / "local", monkeypatch)
    )


def test_a_message_for_a_shard_leased_elsewhere_is_not_lost_when_that_lease_runs_out(service):
    """Issue 23 (1), made deterministic: a message arrives for a shard whose database lease is
    still live, held by a worker that is gone (as when RQ's registry cleanup, scoring in whole
    seconds, re-enqueued it early). A live worker takes the message at once and leaves the
    shard alone; once the lease runs out, the sweep queues it again and the job succeeds, with
    no `recover`."""
    job = service.client.submit(DEMO_INPUT, 500, demo=True, shard_chunks=10**9)
    (shard,) = service.shards(job)
    lease_until(service, shard.id, timedelta(hours=1), state="running", attempts=1, worker="gone")
    worker = service.workers.start()
    connection = messages.connect(service.redis.url)
    message = Job.fetch(
        messages.shard_message_id(shard.id), connection=connection, serializer=messages.SERIALIZER
    )
    deadline = time.monotonic() + 60
    while message.get_status(refresh=True) != "finished":  # consumed, and the shard left alone
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert service.shards(job)[0].worker == "gone"
    ends = lease_until(service, shard.id, timedelta(seconds=2))  # the gone worker's lease ends
    assert service.client.wait(job, timeout=60).state == "succeeded"
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    assert f"shard {shard.id}: ended, cancelled or leased to a worker; nothing to do" in output
    assert "sweep queued 1 shard(s) again" in output
    (shard,) = service.shards(job)
    assert shard.attempts == 2 and shard.worker != "gone"
    started = shard.started_at.replace(tzinfo=shard.started_at.tzinfo or UTC)  # SQLite: naive
    assert started >= ends  # run again once the lease ran out, not before


def lease_until(service: Service, shard_id: int, left: timedelta, **values) -> datetime:
    ends = datetime.now(UTC) + left
    with service.store.session() as session:
        session.execute(
            update(Shard).where(Shard.id == shard_id).values(lease_expires_at=ends, **values)
        )
    return ends


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_cancel_racing_first_claims_always_wins_and_never_deadlocks(
    redis_server, database_url, tmp_path
):
    """Issue 23 (3): 30 rounds of a cancel at the same moment as the first claims of a job's
    shards. Job and shard rows are locked in one order: never a deadlock, and the job always
    ends cancelled with none of its shards still claimable."""
    settings = Settings(block_bases=BLOCK_BASES, shard_chunks=1)
    client = Client(redis_server.url, database_url, settings)
    source = many_contigs(tmp_path / "in.fa", 12)
    for _ in range(30):
        job = client.submit(source, 500, demo=True)
        shards = [shard.id for shard in client.store.shards(job)][:3]
        assert race_cancel_and_claims(client, job, shards) == []
        assert client.status(job).state == "cancelled"
        assert {shard.state for shard in client.store.shards(job)} == {"cancelled"}


def race_cancel_and_claims(client: Client, job: int, shards: list[int]) -> list[BaseException]:
    """Cancel the job and claim its shards at the same moment, each from its own thread;
    returns what they raised."""
    from virnucpro_worker.store.shards import claim_shard

    start = threading.Barrier(len(shards) + 1)
    errors: list[BaseException] = []

    def claim(shard_id: int) -> None:
        start.wait()
        try:
            client.store.transaction(
                lambda session: claim_shard(
                    session, shard_id, worker=f"w{shard_id}", host="h", device="cpu", lease=30
                )
            )
        except BaseException as error:
            errors.append(error)

    def cancel() -> None:
        start.wait()
        try:
            client.cancel(job)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=claim, args=(shard_id,)) for shard_id in shards]
    threads.append(threading.Thread(target=cancel))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_sigterm_stops_an_idle_worker_within_5_seconds_and_quietly(service):
    """Issue 23 (4) and 24 (7): an idle worker (and a burst worker at its end) stops promptly,
    without waiting on RQ's command-channel thread, and prints no traceback."""
    for _ in range(3):
        worker = service.workers.start()
        wait_for_workers(service, 1)
        time.sleep(0.5)
        asked = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
        stopped_in = time.monotonic() - asked
        assert worker.returncode == 0 and "Traceback" not in output, output
        assert stopped_in < 5, f"stopped {stopped_in:.1f} s after SIGTERM"
        service.workers.processes.remove(worker)
        wait_until_no_workers(service)
    burst = service.workers.start("--burst")
    lines = iter(burst.stdout.readline, "")
    assert any("done, quitting" in line for line in lines)
    quitting = time.monotonic()
    burst.send_signal(signal.SIGTERM)  # as it ends (RQ raised StopRequested inside a log line)
    rest = "".join(lines)
    assert burst.wait(timeout=60) == 0
    assert time.monotonic() - quitting < 5 and "Traceback" not in rest, rest


def test_a_stop_landing_between_rq_steps_stops_the_worker_at_its_next_wait(
    demo_models: DemoModels, tmp_path
):
    """Issue 24 (7), the race CI met: SIGTERM lands while RQ writes a log line, not while the
    worker waits or runs a shard. Raising there would be printed and lost; it is kept instead."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    predictor = virnucpro_worker.load_models(models=demo_models.folder)
    worker = GpuWorker(settings=settings, predictor=predictor, connection=fakeredis.FakeRedis())
    worker.request_stop(signal.SIGTERM, None)  # between steps: nothing raised here
    assert worker.stop_asked
    with pytest.raises(StopRequested):
        worker.dequeue_job_and_maintain_ttl(timeout=1)
    assert not worker.waiting


def test_sigterm_stops_a_busy_worker_after_its_block_and_another_finishes_the_shard(
    service, tmp_path, demo_models, monkeypatch
):
    job = one_long_shard(service, tmp_path)
    busy = service.workers.start()
    wait_running(service, job)
    busy.send_signal(signal.SIGTERM)
    output, _ = busy.communicate(timeout=30)
    assert busy.returncode == 0 and "the worker is stopping; given back" in output, output
    (shard,) = service.shards(job)
    assert shard.state == "queued" and shard.attempts == 0  # given back, not counted
    service.workers.start()
    assert service.client.wait(job, timeout=120).state == "succeeded"
    service.client.write_outputs(job, tmp_path / "queue")
    expected = in_process(demo_models, tmp_path / "long.fa", tmp_path / "local", monkeypatch)
    assert_same_results(tmp_path / "queue", expected)


def test_after_redis_lost_its_data_the_workers_queue_the_shards_again(service):
    """No `recover`: a worker's sweep finds the queued shards whose messages are gone."""
    job = service.client.submit(DEMO_INPUT, 500, demo=True)
    service.redis.forget()
    service.redis.start()
    service.workers.start()
    assert service.client.wait(job, timeout=120).state == "succeeded"
