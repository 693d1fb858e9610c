"""Alembic's entry point for virnucpro_worker's schema (store/models.py).

Run by `virnucpro db upgrade` (which hands over a connection) or, in a checkout, by
`alembic -x url=DATABASE_URL upgrade head` / `check` with the top-level alembic.ini.
"""

from __future__ import annotations

from alembic import context

from virnucpro_worker.store.engine import make_engine
from virnucpro_worker.store.models import Base


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the database: alembic -x url=DATABASE_URL ...")
    with make_engine(url).connect() as connection:
        run(connection)
