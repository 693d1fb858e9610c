"""Bad input through every door (the command line, the Python API, the queue): one clear line
naming the file, the record and the problem, exit status 2 or a UserError, and nothing else
touched: no job stored or queued, an earlier job's results unchanged."""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from models_for_tests import DemoModels, model_args
from services import RedisServer

import virnucpro_worker
from virnucpro_worker.errors import UserError
from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.models.classifier import MLPClassifier, save_original_pickle
from virnucpro_worker.queue import messages
from virnucpro_worker.queue.client import Client
from virnucpro_worker.settings import Settings

GOOD = b">good\n" + b"ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA" * 9 + b"\n"


def truncated_gzip() -> bytes:
    data = gzip.compress(GOOD * 2000)
    return data[: len(data) // 2]


@dataclass(frozen=True)
class Case:
    content: bytes = GOOD
    message: str = ""
    settings: dict = field(default_factory=dict)  # VIRNUCPRO_* settings of this case


INPUT_CASES = {
    "empty file": Case(b"", "the file is empty"),
    "no header": Case(
        b"ACGTACGT\nACGT\n", "not FASTA or FASTQ: text whose first line is 'ACGTACGT'"
    ),
    "binary data": Case(bytes(range(256)) * 4, "not FASTA or FASTQ: binary data"),
    "protein FASTA": Case(
        b">p1\nMKVLAAGGHW\n", "record 1 ('p1'): 'L' at position 4 is not a nucleotide"
    ),
    "empty record": Case(b">a\n>b\nACGT\n", "record 1 ('a'): empty sequence"),
    "duplicate ids": Case(b">a\nACGT\n>a\nACGT\n", "record 2 ('a'): duplicate record id"),
    "record over the maximum length": Case(
        GOOD,
        "record 1 ('good'): 297 bases, over this site's limit of 100",
        {"max_record_length": 100},
    ),
    "file over the maximum size": Case(
        GOOD,
        "bytes, over this site's limit of 50 (setting max_input_bytes)",
        {"max_input_bytes": 50},
    ),
    "truncated gzip": Case(truncated_gzip(), "corrupt or truncated gzip data"),
    "non-UTF-8 header": Case(
        b">ok\nACGT\n>r\xff\xfe\nACGT\n", "record 2: the header is not UTF-8 text"
    ),
    "control character in an id": Case(b">a\x07b\nACGT\n", "holds a control character (U+0007)"),
    "truncated FASTQ": Case(b"@r1\nACGT\n+\n", "FASTQ record 1: truncated"),
}


def write_input(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / "input.fa"
    path.write_bytes(case.content)
    return path


def one_line(stderr: str) -> str:
    """The one error line among the log lines (a worker's carry a timestamp first)."""
    lines = [line for line in stderr.splitlines() if not re.match(r"(\S+ )?(INFO|WARNING): ", line)]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def case_settings(monkeypatch):
    def apply(case: Case) -> None:
        for key, value in case.settings.items():
            monkeypatch.setenv(f"VIRNUCPRO_{key.upper()}", str(value))

    return apply


@pytest.mark.parametrize("database", [False, True])
@pytest.mark.parametrize("name", list(INPUT_CASES))
def test_the_command_line(name, database, demo_models, tmp_path, capsys, case_settings):
    """One line, exit 2, and nothing made: no output folder, no database file."""
    case = INPUT_CASES[name]
    case_settings(case)
    path = write_input(tmp_path, case)
    options = ["--chunk-size", "500", "--out", str(tmp_path / "out"), *model_args(demo_models)]
    if database:
        options += ["--db", f"sqlite:///{tmp_path}/db/jobs.db"]
    assert main(["predict", str(path), *options]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"virnucpro: error: {path}") and case.message in line, line
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.fixture(scope="module")
def predictor(demo_models):
    return virnucpro_worker.load_models(models=demo_models.folder)


@pytest.mark.parametrize("name", [n for n, c in INPUT_CASES.items() if not c.settings])
def test_the_python_api(name, predictor, tmp_path):
    case = INPUT_CASES[name]
    with pytest.raises(UserError) as caught:
        predictor.predict(write_input(tmp_path, case), 500)
    assert case.message in str(caught.value) and "\n" not in str(caught.value)


@dataclass
class QueueService:
    client: Client
    redis: RedisServer
    done: int  # a job already done, which bad submissions must not touch
    done_results: dict[str, bytes]

    def untouched(self, tmp_path: Path) -> bool:
        self.client.write_outputs(self.done, tmp_path / "done-again")
        now = {name: (tmp_path / "done-again" / name).read_bytes() for name in self.done_results}
        return [job.id for job in self.client.store.jobs()] == [
            self.done
        ] and now == self.done_results


@pytest.fixture
def queue_service(tmp_path, database_url, demo_models):
    redis = RedisServer(tmp_path / "redis").start()
    good = tmp_path / "done.fa"
    good.write_bytes(GOOD)
    options = ["--chunk-size", "500", "--out", str(tmp_path / "done"), "--no-progress"]
    assert (
        main(["predict", str(good), *options, *model_args(demo_models), "--db", database_url]) == 0
    )
    client = Client(redis.url, database_url, Settings())
    (done,) = (job.id for job in client.store.jobs())
    results = {p.name: p.read_bytes() for p in (tmp_path / "done").iterdir() if p.suffix != ".json"}
    yield QueueService(client, redis, done, results)
    redis.kill()


@pytest.mark.parametrize("name", list(INPUT_CASES))
def test_the_queue(name, queue_service, tmp_path):
    client = queue_service.client
    case = INPUT_CASES[name]
    client.settings = Settings(**case.settings)
    with pytest.raises(UserError) as caught:
        client.submit(write_input(tmp_path, case), 500, demo=True)
    assert case.message in str(caught.value) and "\n" not in str(caught.value)
    assert queue_service.untouched(tmp_path)  # nothing stored, the done job as it was
    assert messages.connect(queue_service.redis.url).keys("rq:job:*") == []  # nothing queued


# Problems with what is asked rather than with the input -----------------------------------


def wrong_classifier(tmp_path: Path, demo_models: DemoModels) -> list[str]:
    wrong = tmp_path / "wrong.pth"
    save_original_pickle(MLPClassifier(input_dim=10, hidden_dim=4), wrong)
    return [
        "--esm",
        str(demo_models.esm),
        "--dnabert",
        str(demo_models.dnabert),
        "--classifier",
        str(wrong),
    ]


REQUESTS = {
    "unknown chunk size": (["--chunk-size", "400"], "invalid choice: 400"),
    "unknown attention backend": (["--attention", "nope"], "unknown attention backend 'nope'"),
    "missing model files": (
        ["--models", "/no/such/models"],
        "model folder /no/such/models: no such folder",
    ),
    "a classifier of the wrong shape": (
        None,
        "the classifier takes 10 features, but DNABERT-S (32) + ESM-2 (64) give 96",
    ),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_bad_requests_on_the_command_line(name, demo_models, tmp_path, capsys):
    extra, message = REQUESTS[name]
    good = tmp_path / "good.fa"
    good.write_bytes(GOOD)
    arguments = ["predict", str(good), "--out", str(tmp_path / "out")]
    if extra is None:
        arguments += ["--chunk-size", "500", *wrong_classifier(tmp_path, demo_models)]
    else:
        arguments += extra if "--chunk-size" in extra else ["--chunk-size", "500", *extra]
        if "--models" not in extra:
            arguments += model_args(demo_models)
    try:
        code = main(arguments)
    except SystemExit as stopped:  # argparse refuses an option's value before `main` runs
        code = stopped.code
    assert code == 2
    assert message in one_line(capsys.readouterr().err)


def test_bad_requests_through_the_api_and_the_queue(demo_models, queue_service, tmp_path):
    client = queue_service.client
    good = tmp_path / "good.fa"
    good.write_bytes(GOOD)
    with pytest.raises(UserError, match="chunk size must be one of"):
        client.submit(good, 400, demo=True)
    with pytest.raises(UserError, match="unknown attention backend 'nope'"):
        client.submit(good, 500, demo=True, attention="nope")
    with pytest.raises(UserError, match="unknown attention backend 'nope'"):
        virnucpro_worker.load_models(demo=True, attention="nope")
    with pytest.raises(UserError, match="no such folder"):
        virnucpro_worker.load_models(models="/no/such/models")
    with pytest.raises(UserError, match="the classifier takes 10 features"):
        virnucpro_worker.load_models(*wrong_classifier(tmp_path, demo_models)[1::2])
    assert queue_service.untouched(tmp_path)


def test_a_worker_with_a_wrong_classifier_stops_at_once(
    demo_models, queue_service, tmp_path, capsys
):
    client, redis = queue_service.client, queue_service.redis
    arguments = ["worker", "--redis", redis.url, "--db", client.store.url, "--burst"]
    assert main([*arguments, *wrong_classifier(tmp_path, demo_models)]) == 2
    assert "the classifier takes 10 features" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", ["status", "cancel", "results"])
def test_a_job_that_does_not_exist(command, queue_service, tmp_path, capsys):
    client, redis = queue_service.client, queue_service.redis
    arguments = [command, "999", "--redis", redis.url, "--db", client.store.url]
    if command == "results":
        arguments = ["results", "999", "--db", client.store.url, "--out", str(tmp_path / "o")]
    assert main(arguments) == 2
    assert "no job 999 in database" in one_line(capsys.readouterr().err)
    with pytest.raises(UserError, match="no job 999"):
        client.status(999)
    assert queue_service.untouched(tmp_path)


@pytest.mark.parametrize("command", ["jobs", "submit", "worker"])
def test_a_database_that_cannot_be_reached(command, tmp_path, capsys, demo_models):
    url = "postgresql://virnucpro:hunter2@127.0.0.1:9/nowhere"
    redis = RedisServer(tmp_path / "redis").start()
    try:
        arguments = {
            "jobs": ["jobs", "--db", url],
            "submit": ["submit", str(tmp_path / "good.fa"), "--chunk-size", "500", "--demo-models"],
            "worker": ["worker", "--burst", "--models", str(demo_models.folder)],
        }[command]
        (tmp_path / "good.fa").write_bytes(GOOD)
        if command != "jobs":
            arguments += ["--redis", redis.url, "--db", url]
        assert main(arguments) == 2
        line = one_line(capsys.readouterr().err)
        assert "database postgresql://virnucpro:***@127.0.0.1:9/nowhere: connection failed" in line
        assert "hunter2" not in line
    finally:
        redis.kill()
