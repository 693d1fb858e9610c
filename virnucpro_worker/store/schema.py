"""The database's schema version, through Alembic (the migrations in the top-level alembic/
folder, shipped inside the package as virnucpro_worker/store/alembic)."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).parent / "alembic"
# Alembic keeps the running migration's context in module globals: one at a time per process.
_ALEMBIC = threading.Lock()


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with _ALEMBIC, engine.begin() as connection:
        command.upgrade(_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with _ALEMBIC, engine.begin() as connection:
        command.downgrade(_config(connection), revision)


def check(engine: Engine) -> None:
    """Raise alembic's error when the models and the migrations differ."""
    with _ALEMBIC, engine.connect() as connection:
        command.check(_config(connection))
