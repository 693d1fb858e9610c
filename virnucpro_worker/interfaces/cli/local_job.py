"""`predict --db`: the run as a job of one shard in the database, held by this process and run
block by block through the queue's lifecycle (store/shards.py: claimed, each block committed,
finished or failed), and continued where it stopped when the same command runs again.

"The same command" is the same input (its sha256 and size), the same job parameters (chunk
size, attention backend, `block_bases`, the model set asked for, the region rule, the
embeddings dtype: a job asked for embeddings commits each block's features with it) and the same
models run the same way (their files' sha256, the kernels, dtype, device, packing and, on the
CPU, the thread count): what decides the results to the last bit. Output options (`--out`,
`--viral-fasta`, ...) may differ. An unfinished job of the same input run differently is not
continued, and a log line says which and why: with other parameters it is left as it is, with
other models or settings it fails ("not continued") and a new job starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UserError, first_line
from ...pipeline.parameters import JobParameters, ModelRequest
from ...settings import Settings
from .common import Terminated, keep_database, open_store
from .options import region_rule

if TYPE_CHECKING:
    import torch

    from ...pipeline.embeddings import BlockFeatures
    from ...pipeline.predictor import Predictor
    from ...pipeline.results import BlockResult, RunTotals
    from ...pipeline.run import Committed
    from ...sequences.translation import KeptFrame
    from ...store.shards import LocalRun

log = logging.getLogger("virnucpro")
# With the model files' sha256: run.json's entries that decide the last bits of the results.
SAME_RUN = (
    "attention_backend",
    "kernels",
    "packing",
    "dtype",
    "device",
    "cpu_threads",
    "demo_models",
)


class LocalJob:
    def __init__(self, settings: Settings, args: argparse.Namespace) -> None:
        self.store = open_store(settings.database_url, args.new_paths)
        self.settings, self.args = settings, args
        self.worker, self.host = f"predict-{os.getpid()}", socket.gethostname()
        models = ModelRequest(demo=settings.demo_models)
        self.parameters = settings.job_parameters(
            args.chunk_size, models, region_rule(args), queued=False, embeddings=args.embeddings
        )
        self.run: LocalRun | None = None  # this process's, once it holds the job
        self.earlier: LocalRun | None = None  # the interrupted run it continues
        self.identity: dict[str, Any] = {}
        self.features: BlockFeatures | None = None  # with --embeddings: kept with each block

    @property
    def job_id(self) -> int | None:
        return None if self.run is None else self.run.job_id

    def prepare(self, path: Path, info: dict[str, Any]) -> int:
        """Hold the job: an unfinished one of the same input and parameters whose process has
        gone, or a new one (storing the input checks it). Returns its number of records."""
        from ...store.shards import local_runs

        self.settings.model_files()  # models that cannot be found fail before a job is stored
        runs = self.store.transaction(
            lambda session: local_runs(session, info["sha256"], info["bytes"])
        )
        for earlier in runs:
            if JobParameters.from_json(earlier.parameters) == self.parameters:
                self._take_over(earlier)
                return self.store.job(earlier.job_id).records
            log.info(
                "job %d, unfinished, ran this input with other parameters (%s): not continued",
                earlier.job_id,
                _differences(earlier.parameters, self.parameters.to_json()),
            )
        return self._create(path, info)

    def _take_over(self, earlier: LocalRun) -> None:
        from ...store.shards import take_over

        _check_gone(earlier, self.settings.lease_seconds)
        taken = self.store.transaction(
            lambda session: take_over(session, earlier, self.worker, self.host)
        )
        if not taken:
            raise UserError(f"job {earlier.job_id} ended or was taken by another run meanwhile")
        self.earlier = earlier
        self.run = earlier.held_by(self.worker, self.host)

    def _create(self, path: Path, info: dict[str, Any]) -> int:
        from ...sequences.fasta import read_fasta
        from ...store.jobs import InputFile
        from ...store.shards import create_local_job

        self.run = self.store.transaction(
            lambda session: create_local_job(
                session,
                read_fasta(path, self.settings.limits),
                parameters=self.parameters,
                input_file=InputFile(info["path"], info["sha256"], info["bytes"]),
                worker=self.worker,
                host=self.host,
            )
        )
        keep_database(self.store.url, self.args.new_paths)  # it records this job now
        log.info("job %d in %s", self.job_id, self.store.name)
        return self.store.job(self.job_id).records

    def start(self, predictor: Predictor, path: Path, info: dict[str, Any]) -> Committed | None:
        """With the models loaded: what the earlier run committed, if it ran them the same way
        (None: start from the first record)."""
        from ...pipeline.embeddings import BlockFeatures
        from ...store.shards import fail_shard, pin_model_set

        self.identity = predictor.provenance(self.args.chunk_size)
        if self.parameters.embeddings is not None:
            self.features = BlockFeatures(self.parameters.embeddings, predictor.feature_widths[0])
        earlier = self.earlier
        if earlier is not None and earlier.progress is not None:
            differences = _differences(
                _same_run(earlier.progress["identity"]), _same_run(self.identity)
            )
            if differences:
                why = f"not continued: ran on other models or settings ({differences})"
                log.warning("job %d, unfinished, %s", earlier.job_id, why)
                self.store.transaction(
                    lambda session: fail_shard(session, earlier.shard_id, self.worker, why, 0)
                )
                self.earlier = None
                self._create(path, info)
        models = self.identity["models"]
        self.store.transaction(lambda session: pin_model_set(session, self.job_id, models))
        return self._committed()

    def _committed(self) -> Committed | None:
        from ...pipeline.results import RunTotals
        from ...pipeline.run import Committed

        earlier = self.earlier
        if earlier is None or earlier.progress is None or not earlier.records_done:
            return None
        if self.args.keep_intermediate:
            log.info(
                "job %d: computed again from its first record: --keep-intermediate needs "
                "every block's features as computed, which the database does not keep",
                self.job_id,
            )
            return None
        log.info(
            "job %d: continued after its first %d records (committed by %s on %s)",
            self.job_id,
            earlier.records_done,
            earlier.worker,
            earlier.host,
        )
        progress = earlier.progress
        totals = RunTotals(**progress["counts"], stage_seconds=progress["stage_seconds"])
        blocks = self.store.committed_blocks(self.job_id)
        embeddings = self.store.committed_embeddings(self.job_id)
        return Committed(earlier.records_done, blocks, totals, embeddings)

    @property
    def extra(self) -> dict[str, Any]:
        return {"job_id": self.job_id}

    @property
    def on_features(self) -> Callable[[Sequence[KeptFrame], torch.Tensor], None] | None:
        """Where the stream hands each step's features, for a job that keeps them."""
        return None if self.features is None else self.features.add

    def commit(self, block: BlockResult, totals: RunTotals) -> None:
        """The block's rows (and its frames' features), and the totals so far, in one
        transaction."""
        from ...store.shards import commit_block

        progress = {
            "identity": self.identity,
            "counts": totals.counts(),
            "stage_seconds": totals.stage_seconds,
        }
        run, parts = self.run, self.features.take() if self.features else []
        held = self.store.transaction(
            lambda session: commit_block(
                session,
                run.job_id,
                run.shard_id,
                run.worker,
                block,
                embeddings=parts,
                progress=progress,
            )
        )
        if not held:
            raise UserError(f"job {self.job_id} was cancelled or taken over by another run")

    def fail(self, error: BaseException) -> None:
        """An error fails the job; an interrupted run (Ctrl-C, SIGTERM) leaves it to be
        continued by the same command."""
        from ...store.shards import fail_shard

        if self.run is None:
            return
        if isinstance(error, KeyboardInterrupt | Terminated):
            log.warning(
                "job %d: interrupted; the same command continues it from its last block",
                self.job_id,
            )
            return
        message = first_line(error) or type(error).__name__
        self.store.transaction(
            lambda session: fail_shard(session, self.run.shard_id, self.worker, message, 0)
        )

    def finish(self, run: dict[str, Any]) -> None:
        """The job succeeded, with the run.json its files hold."""
        from ...store.shards import finish_shard

        self.store.transaction(
            lambda session: finish_shard(session, self.run.shard_id, self.worker, run, run=run)
        )


def _same_run(provenance: dict[str, Any]) -> dict[str, Any]:
    """What decides the results' last bits: the model files by content, not by path."""
    models = provenance["models"]
    return {key: provenance.get(key) for key in SAME_RUN} | {
        "esm2": models["esm2"]["sha256"],
        "dnabert_s": models["dnabert_s"]["files"],
        "classifier": models["classifier"]["sha256"],
    }


def _differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    keys = sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))
    return "; ".join(f"{key}: {before.get(key)} then, {now.get(key)} now" for key in keys)


def _check_gone(run: LocalRun, lease_seconds: float) -> None:
    """An earlier run is continued only once its process has gone: on this host, its process
    no longer exists; on another, it has committed nothing for `lease_seconds`."""
    if run.host == socket.gethostname():
        running = _process_exists(int(run.worker.removeprefix("predict-")))
    else:
        beat = run.heartbeat_at
        if beat is not None and beat.tzinfo is None:  # SQLite gives it back without its zone
            beat = beat.replace(tzinfo=UTC)
        running = beat is not None and datetime.now(UTC) - beat < timedelta(seconds=lease_seconds)
    if running:
        raise UserError(
            f"job {run.job_id} (this input, these parameters) is being run by {run.worker} on "
            f"{run.host}: wait for it to end, or stop it and run this command again to continue it"
        )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return pid != os.getpid()
