"""What a job asks for, as one typed value: the contract between whoever submits a job (the
queue's `Client`, `predict --db`) and whoever runs it, kept as JSON with the job.

`Settings.job_parameters` builds it; the store keeps `to_json()`; a worker reads it back with
`from_json` (which also reads what earlier versions stored).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..models.model_files import ModelSet
from .regions import RegionRule


@dataclass(frozen=True)
class ModelRequest:
    """The models a job runs on: demo or real ones, or exactly the model set `files` (then
    `demo` plays no part: the files decide)."""

    demo: bool = False
    files: ModelSet | None = None

    @property
    def key(self) -> str:
        """Which workers serve it, as a queue name says: "demo", "real" or the files' key."""
        if self.files is not None:
            return self.files.key
        return "demo" if self.demo else "real"

    def to_json(self) -> dict[str, Any]:
        if self.files is not None:
            return {"sha256": self.files.to_json()}
        return {"demo": self.demo}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelRequest:
        """Also reads the paths `predict --db` once stored beside `demo` (unused: run.json and
        the job's model set say which files ran)."""
        if "sha256" in data:
            return cls(files=ModelSet.from_json(data["sha256"]))
        return cls(demo=bool(data.get("demo", False)))


@dataclass(frozen=True)
class JobParameters:
    chunk_size: int
    attention: str  # the attention backend
    block_bases: int  # bases embedded together: decides the last bits (settings `block_bases`)
    models: ModelRequest
    region_rule: RegionRule = RegionRule()  # noqa: RUF009 (frozen: one shared default is safe)
    # A queued job: tries per shard and the seconds its messages have to reach a worker
    # (settings `shard_attempts`, `lease_seconds`); a job run where it was submitted
    # (`predict --db`): one try, no message.
    attempts: int = 1
    lease_seconds: float | None = None
    # Keep every frame's features in this dtype (float16, float32) beside the results; None: not.
    embeddings: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "chunk_size": self.chunk_size,
            "attention": self.attention,
            "block_bases": self.block_bases,
            "models": self.models.to_json(),
            "region_rule": self.region_rule.to_json(),
            "attempts": self.attempts,
            "lease_seconds": self.lease_seconds,
            "embeddings": self.embeddings,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobParameters:
        """A job stored before regions, attempts or leases were parameters gets the defaults
        (its attempts are kept with the job row too)."""
        return cls(
            chunk_size=int(data["chunk_size"]),
            attention=str(data["attention"]),
            block_bases=int(data["block_bases"]),
            models=ModelRequest.from_json(data["models"]),
            region_rule=RegionRule.from_json(data.get("region_rule")),
            attempts=int(data.get("attempts", 1)),
            lease_seconds=data.get("lease_seconds"),
            embeddings=data.get("embeddings"),
        )
