"""The SQL store, on SQLite and on the machine's real PostgreSQL: migrations, results that come
back as the files byte for byte, idempotent writes, concurrent writers, clean errors."""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from pathlib import Path

import pytest
from models_for_tests import DemoModels, model_args
from sqlalchemy import func, select

import virnucpro_worker
from virnucpro_worker.errors import UserError
from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.pipeline.outputs import (
    PREDICTIONS_FILE,
    RESULT_FILES,
    RUN_FILE,
)
from virnucpro_worker.pipeline.parameters import JobParameters, ModelRequest
from virnucpro_worker.pipeline.results import BlockResult, ChunkCall, RecordSummary
from virnucpro_worker.sequences.fasta import read_fasta
from virnucpro_worker.store import schema
from virnucpro_worker.store.engine import make_engine, sqlite_file
from virnucpro_worker.store.jobs import InputFile
from virnucpro_worker.store.models import (
    ChunkPrediction,
    FramePrediction,
    RecordPrediction,
    RegionPrediction,
)
from virnucpro_worker.store.results import StoredRows, read_blocks, write_block
from virnucpro_worker.store.shards import cancel_job, claim_shard, commit_block, sweep
from virnucpro_worker.store.store import Store

DEMO_INPUT = Path(__file__).parents[1] / "examples" / "demo_contigs.fa"
PARAMETERS = JobParameters(500, "flash-varlen", 5000, ModelRequest(demo=True))


def predict(models: DemoModels, out: Path, *extra: str) -> int:
    options = ["--chunk-size", "500", "--out", str(out), "--no-progress", "--viral-fasta"]
    return main(["predict", str(DEMO_INPUT), *options, *model_args(models), *extra])


def test_migrations_up_check_down_up(database_url):
    engine = make_engine(database_url)
    schema.upgrade(engine)
    assert schema.current(engine) == schema.head()
    schema.check(engine)  # the models and the migrations describe the same schema
    schema.downgrade(engine, "base")
    assert schema.current(engine) is None
    schema.upgrade(engine)
    schema.check(engine)


def test_predict_db_then_results_gives_the_same_files(demo_models, database_url, tmp_path, capsys):
    assert predict(demo_models, tmp_path / "predict", "--db", database_url) == 0
    store = Store(database_url)
    (job,) = store.jobs()
    assert (job.state, job.records, job.shards, job.shards_done) == ("succeeded", 24, 1, 1)
    assert (
        job.frames_done
        == len((tmp_path / "predict" / PREDICTIONS_FILE).read_text().splitlines()) - 1
    )
    assert job.model_set["classifier"]["sha256"]
    assert (
        main(
            [
                "results",
                str(job.id),
                "--db",
                database_url,
                "--out",
                str(tmp_path / "back"),
                "--viral-fasta",
            ]
        )
        == 0
    )
    for name in (*RESULT_FILES, RUN_FILE):
        assert (tmp_path / "back" / name).read_bytes() == (
            tmp_path / "predict" / name
        ).read_bytes(), name
    assert f'"job_id": {job.id}' in (tmp_path / "back" / RUN_FILE).read_text()
    capsys.readouterr()
    assert main(["jobs", "--db", database_url]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].split("\t")[:5] == [
        str(job.id),
        "succeeded",
        str(DEMO_INPUT.resolve()),
        "24",
        "70",
    ]


def test_the_prediction_read_back_equals_the_api(demo_models, database_url, tmp_path):
    assert predict(demo_models, tmp_path / "o", "--db", database_url) == 0
    store = Store(database_url)
    stored = store.prediction(store.jobs()[0].id)
    direct = virnucpro_worker.load_models(models=demo_models.folder).predict(DEMO_INPUT, 500)
    assert stored.frames == direct.frames
    assert stored.chunks == direct.chunks and stored.records == direct.records
    assert stored.regions == direct.regions and stored.regions  # the demo input has some
    assert sum(r.viral_regions for r in stored.records) == len(stored.regions)


def _blocks(demo_models: DemoModels, first_index: int = 0):
    predictor = virnucpro_worker.load_models(models=demo_models.folder)
    return list(
        virnucpro_worker.predict_stream(
            predictor, read_fasta(DEMO_INPUT), 500, first_index=first_index, block_bases=5000
        )
    )


def _new_job(store: Store, shard_chunks: int | None = None) -> int:
    return store.create_job(
        read_fasta(DEMO_INPUT),
        parameters=PARAMETERS,
        input_file=InputFile(str(DEMO_INPUT), "0" * 64, DEMO_INPUT.stat().st_size),
        shard_chunks=shard_chunks,
    )


def _counts(store: Store, job_id: int) -> tuple[int, int, int, int]:
    with store.session() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(table).where(table.job_id == job_id))
            for table in (FramePrediction, ChunkPrediction, RecordPrediction, RegionPrediction)
        )


def test_writing_the_same_shard_twice_leaves_one_row_per_frame(demo_models, database_url):
    store = Store(database_url)
    job = _new_job(store)
    blocks = _blocks(demo_models)
    for _ in range(2):
        for block in blocks:
            _write(store, job, block)
    expected = (
        sum(len(b.frames) for b in blocks),
        sum(len(b.chunks) for b in blocks),
        24,
        sum(len(b.regions) for b in blocks),
    )
    assert _counts(store, job) == expected
    with store.engine.connect() as connection:
        back = list(read_blocks(connection, job, records_per_block=5))
    assert [f for b in back for f in b.frames] == [f for b in blocks for f in b.frames]
    assert [r for b in back for r in b.regions] == [r for b in blocks for r in b.regions]


def _write(store: Store, job_id: int, block: BlockResult) -> None:
    """The rows of one block, in a transaction of their own."""
    with store.session() as session:
        write_block(session.connection(), job_id, block)


def _write_blocks(url: str, job_id: int, blocks: list, repeats: int) -> None:
    store = Store(url)
    for _ in range(repeats):
        for block in blocks:
            _write(store, job_id, block)


def test_only_the_worker_holding_a_shard_writes_its_blocks(demo_models, database_url):
    """A worker that wakes after its lease ran out and its shard was taken over writes nothing
    (no row over those of the worker in its place, no counter moved), and nothing goes into a
    cancelled job: the check and the write are one transaction."""
    store = Store(database_url)
    job = store.create_job(
        read_fasta(DEMO_INPUT),
        parameters=dataclasses.replace(PARAMETERS, attempts=2),
        input_file=InputFile(str(DEMO_INPUT), "0" * 64, DEMO_INPUT.stat().st_size),
        shard_chunks=None,
    )
    (shard,) = [shard.id for shard in store.shards(job)]
    block = _blocks(demo_models)[0]

    def claim(worker: str, lease: float) -> bool:
        return bool(
            store.transaction(
                lambda session: claim_shard(
                    session, shard, worker=worker, host="h", device="cpu", lease=lease
                )
            )
        )

    def commit(worker: str) -> bool:
        return store.transaction(lambda session: commit_block(session, job, shard, worker, block))

    assert claim("asleep", lease=0.01)
    time.sleep(0.1)
    store.transaction(sweep)  # its lease ran out: queued again
    assert claim("awake", lease=60)
    assert not commit("asleep")
    assert _counts(store, job) == (0, 0, 0, 0) and store.job(job).frames_done == 0
    assert commit("awake")
    assert _counts(store, job)[0] == len(block.frames) == store.job(job).frames_done
    store.transaction(lambda session: cancel_job(session, job))
    assert not commit("awake")
    assert store.job(job).frames_done == len(block.frames)


def test_two_processes_write_different_shards_of_one_job_at_once(demo_models, database_url):
    store = Store(database_url)
    job = _new_job(store, shard_chunks=30)
    shards = store.shards(job)
    assert len(shards) >= 2
    blocks = _blocks(demo_models)
    halves = [
        [
            b
            for b in blocks
            if shard.first_record <= b.records[0].index < shard.first_record + shard.record_count
        ]
        for shard in shards[:2]
    ]
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write_blocks, args=(database_url, job, half, 3)) for half in halves
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    written = [b for half in halves for b in half]
    expected = (sum(len(b.frames) for b in written), sum(len(b.chunks) for b in written))
    expected += (sum(len(b.records) for b in written), sum(len(b.regions) for b in written))
    assert _counts(store, job) == expected


def test_a_job_that_does_not_exist(database_url, tmp_path):
    store = Store(database_url)
    with pytest.raises(UserError, match=r"no job 99 in database"):
        store.write_outputs(99, tmp_path / "o")


def test_bad_input_stores_nothing(database_url, tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>b\nMKVLL\n")
    store = Store(database_url)
    with pytest.raises(UserError, match="not a nucleotide"):
        store.create_job(
            read_fasta(bad),
            parameters=PARAMETERS,
            input_file=InputFile("bad", "", 1),
            shard_chunks=None,
        )
    assert store.jobs() == []


def test_a_database_that_cannot_be_reached_is_one_line_without_the_password(capsys, tmp_path):
    url = "postgresql://virnucpro:s3cret-pw@127.0.0.1:1/nowhere"
    assert main(["jobs", "--db", url]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    where = "database postgresql://virnucpro:***@127.0.0.1:1/nowhere"
    assert line.startswith(f"virnucpro: error: {where}: connection failed")
    assert "s3cret" not in line


def test_an_older_schema_must_be_upgraded_first(database_url):
    engine = make_engine(database_url)
    schema.upgrade(engine)
    with engine.begin() as connection:  # a schema this version does not have
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    with pytest.raises(UserError, match="run `virnucpro db upgrade"):
        Store(database_url).jobs()


def test_db_upgrade_and_current_commands(database_url, capsys):
    file = sqlite_file(database_url)
    if file is not None:  # reading never creates a database: a missing file is an error
        assert main(["db", "current", "--db", database_url]) == 2 and not file.exists()
        assert "no such file" in capsys.readouterr().err
        file.touch()  # an empty SQLite database
    assert main(["db", "current", "--db", database_url]) == 0
    assert f"schema none (this version's newest: {schema.head()})" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", database_url]) == 0
    assert f"schema {schema.head()}" in capsys.readouterr().out


def test_an_installed_copy_upgrades_a_database_outside_the_checkout(tmp_path):
    """The wheel ships the migrations: `virnucpro db upgrade` from the built package, run
    from another folder, creates the schema."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("virnucpro_worker-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "virnucpro_worker/store/alembic/env.py" in names
    assert any(name.startswith("virnucpro_worker/store/alembic/versions/0001") for name in names)
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    script = (
        f"import sys; sys.path.insert(0, {str(installed)!r}); import virnucpro_worker; "
        f"assert virnucpro_worker.__file__.startswith({str(installed)!r}); "
        "from virnucpro_worker.interfaces.cli import main; "
        f"sys.exit(main(['db', 'upgrade', '--db', {url!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"schema {schema.head()}" in result.stdout


def test_a_column_a_migration_appended_keeps_its_values_where_the_model_declares_it(
    database_url,
):
    """A migration adds a column at the end of its table; the model declares it where it
    belongs, mid-table (here `max_virus_score`, dropped and added again as such a migration
    would). Rows go in and come out by column name, so no value lands in a neighbour's column
    (a positional SQLite INSERT puts the score into `call` and the call into the score)."""
    engine = make_engine(database_url)
    schema.upgrade(engine)
    with engine.begin() as connection:
        for statement in (
            "ALTER TABLE record_predictions DROP COLUMN max_virus_score",
            "ALTER TABLE record_predictions ADD COLUMN max_virus_score REAL",
        ):
            connection.exec_driver_sql(statement)
    records = [
        RecordSummary(0, "r0", 1000, 2, 7, 2, 1, 0.75, 0.5, "virus"),
        RecordSummary(1, "r1", 200, 1, 3, 1, 0, 0.25, 0.0, "others"),
    ]
    block = BlockResult(records=records, chunks=[], frames=[])
    with engine.begin() as connection:
        write_block(connection, 1, block)
    columns = [RecordPrediction.record_id, RecordPrediction.max_virus_score]
    columns += [RecordPrediction.viral_chunk_fraction, RecordPrediction.call]
    with engine.connect() as connection:
        rows = connection.execute(select(*columns).order_by(RecordPrediction.record)).all()
        assert [tuple(row) for row in rows] == [
            ("r0", 0.75, 0.5, "virus"),
            ("r1", 0.25, 0.0, "others"),
        ]
        (back,) = read_blocks(connection, 1)
    assert back.records == records
    engine.dispose()


def test_a_row_field_without_a_column_or_a_column_without_a_field_is_an_error():
    """Adding a field to a row type without its column (or the reverse) fails at import, with
    the names, instead of leaving the field unstored."""

    @dataclasses.dataclass
    class Extended(RecordSummary):
        mean_virus_score: float = 0.0

    renamed = {"record": "index", "record_id": "id"}
    with pytest.raises(TypeError, match=r"fields without a column \['mean_virus_score'\]"):
        StoredRows(RecordPrediction, Extended, not_stored=["viral_regions"], renamed=renamed)
    with pytest.raises(TypeError, match=r"columns without a field \['length', 'chunks'"):
        StoredRows(RecordPrediction, ChunkCall, not_stored=["record_id"])
