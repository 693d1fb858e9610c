"""`predict --db` is a local job: killed (SIGKILL) mid-run and run again with the same command,
it goes on from its last committed block, and its files are byte-identical to an uninterrupted
run's; run differently, it says so and does not mix two runs' results."""

from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from models_for_tests import DemoModels, model_args
from result_files import assert_same_results
from sqlalchemy import func, select

from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.pipeline.embeddings import EMBEDDINGS_FILE
from virnucpro_worker.pipeline.outputs import PREDICTIONS_FILE, RUN_FILE
from virnucpro_worker.store.models import FramePrediction, Shard
from virnucpro_worker.store.store import Store

CLI = [sys.executable, "-m", "virnucpro_worker.interfaces.cli"]
BLOCK_BASES = "3000"  # a few records a block: the input makes dozens of blocks
# run.json entries that say when and how long, and how the reference was asked for (its own
# --out and --db): the rest is the same.
TIMES = ("started", "finished", "stage_seconds", "command_line")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setenv("VIRNUCPRO_BLOCK_BASES", BLOCK_BASES)


@pytest.fixture
def contigs(tmp_path: Path) -> Path:
    """80 contigs of stop-free codons (every chunk keeps frames), 300 to 1500 bp."""
    rng = random.Random(11)
    sense = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT"]
    sense = [codon for codon in sense if codon not in ("TAA", "TAG", "TGA")]
    path = tmp_path / "contigs.fa"
    records = (
        f">c{i}\n{''.join(rng.choices(sense, k=rng.randint(100, 500)))}\n" for i in range(80)
    )
    path.write_text("".join(records))
    return path


def command(contigs: Path, out: Path, database: str, models: DemoModels) -> list[str]:
    options = ["--chunk-size", "500", "--out", str(out), "--no-progress", "--viral-fasta"]
    return ["predict", str(contigs), *options, *model_args(models), "--db", database]


def kill_mid_run(arguments: list[str], database: str) -> tuple[int, int]:
    """Run `virnucpro ARGUMENTS` and SIGKILL it once some, not all, blocks are committed;
    returns (records committed, records)."""
    assert main(["db", "upgrade", "--db", database]) == 0
    store = Store(database)
    process = subprocess.Popen([*CLI, *arguments], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            jobs = store.jobs()
            if jobs and 0 < jobs[-1].records_done < jobs[-1].records:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()
    (job,) = store.jobs()
    assert job.state == "running"
    return job.records_done, job.records


def without_times(run_file: Path) -> dict:
    run = json.loads(run_file.read_text())
    return {key: value for key, value in run.items() if key not in TIMES}


def assert_same_files(folder: Path, reference: Path) -> None:
    """Every file byte for byte, but run.json's times (when the run was made)."""
    assert_same_results(folder, reference)
    ours, theirs = without_times(folder / RUN_FILE), without_times(reference / RUN_FILE)
    assert ours == theirs and ours["job_id"] == 1


def test_a_predict_killed_mid_run_goes_on_from_its_last_block(
    contigs, demo_models, tmp_path, caplog
):
    reference = tmp_path / "reference"
    assert main(command(contigs, reference, f"sqlite:///{tmp_path}/reference.db", demo_models)) == 0

    database = f"sqlite:///{tmp_path}/jobs.db"
    out = tmp_path / "out"
    arguments = command(contigs, out, database, demo_models)
    committed, records = kill_mid_run(arguments, database)
    assert not (out / RUN_FILE).exists()

    with caplog.at_level(logging.INFO, logger="virnucpro"):
        assert main(arguments) == 0
    assert f"job 1: continued after its first {committed} records" in caplog.text
    assert_same_files(out, reference)

    store = Store(database)
    (job,) = store.jobs()
    (shard,) = store.shards(job.id)
    assert (job.state, job.records_done, shard.attempts) == ("succeeded", records, 2)
    frames = len((out / PREDICTIONS_FILE).read_text().splitlines()) - 1
    with store.session() as session:
        rows = session.scalar(select(func.count()).select_from(FramePrediction))
    assert rows == job.frames_done == frames  # no block written twice, none missing
    # The database's results are the run's, run.json included, byte for byte.
    back = ["results", "1", "--db", database, "--out", str(tmp_path / "back"), "--viral-fasta"]
    assert main(back) == 0
    for name in (PREDICTIONS_FILE, RUN_FILE):
        assert (tmp_path / "back" / name).read_bytes() == (out / name).read_bytes()


def test_a_predict_with_embeddings_goes_on_with_the_features_it_kept(
    contigs, demo_models, tmp_path, caplog
):
    """--embeddings with --db: each block's features are committed with it, so a killed run
    goes on from its last block too, and the database gives the same embeddings file."""
    embeddings = ["--embeddings", "float16"]
    reference = tmp_path / "reference"
    options = command(contigs, reference, f"sqlite:///{tmp_path}/reference.db", demo_models)
    assert main([*options, *embeddings]) == 0

    database = f"sqlite:///{tmp_path}/jobs.db"
    out = tmp_path / "out"
    arguments = [*command(contigs, out, database, demo_models), *embeddings]
    committed, _ = kill_mid_run(arguments, database)
    with caplog.at_level(logging.INFO, logger="virnucpro"):
        assert main(arguments) == 0
    assert f"job 1: continued after its first {committed} records" in caplog.text
    assert_same_files(out, reference)
    assert (out / EMBEDDINGS_FILE).read_bytes() == (reference / EMBEDDINGS_FILE).read_bytes()

    back = tmp_path / "back"
    assert main(["results", "1", "--db", database, "--out", str(back)]) == 0
    assert (back / EMBEDDINGS_FILE).read_bytes() == (out / EMBEDDINGS_FILE).read_bytes()


def test_a_run_with_other_parameters_is_a_new_job(contigs, demo_models, tmp_path, caplog):
    database = f"sqlite:///{tmp_path}/jobs.db"
    arguments = command(contigs, tmp_path / "out", database, demo_models)
    kill_mid_run(arguments, database)
    other = [*arguments, "--region-max-gap", "2"]
    with caplog.at_level(logging.INFO, logger="virnucpro"):
        assert main(other) == 0
    assert "job 1, unfinished, ran this input with other parameters (region_rule: " in caplog.text
    assert [(job.id, job.state) for job in Store(database).jobs()] == [
        (1, "running"),
        (2, "succeeded"),
    ]


def test_a_run_still_going_is_not_taken_over(contigs, demo_models, tmp_path, capsys):
    database = f"sqlite:///{tmp_path}/jobs.db"
    arguments = command(contigs, tmp_path / "out", database, demo_models)
    kill_mid_run(arguments, database)
    store = Store(database)
    (shard,) = store.shards(1)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # as if `holder` ran the job: a process of this host that is still there
        with store.session() as session:
            session.get(Shard, shard.id).worker = f"predict-{holder.pid}"
        assert main(arguments) == 2
    finally:
        holder.kill()
        holder.wait()
    error = capsys.readouterr().err
    assert f"job 1 (this input, these parameters) is being run by predict-{holder.pid}" in error
    assert main(arguments) == 0  # its process gone, the job goes on
