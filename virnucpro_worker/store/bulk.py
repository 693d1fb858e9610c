"""Many rows in, fast: PostgreSQL's COPY, SQLite's executemany, inside the caller's transaction.

The ORM would build an object per row; a metagenome's frames are tens of millions of rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, Table

_POSTGRES_TYPES = {
    "INTEGER": "int4",
    "BIGINT": "int8",
    "SMALLINT": "int2",
    "REAL": "float4",
    "DOUBLE PRECISION": "float8",
    "BOOLEAN": "bool",
    "TEXT": "text",
}


def _postgres_type(compiled: str) -> str:
    """psycopg's name for a column type as PostgreSQL's DDL spells it."""
    return "varchar" if compiled.startswith("VARCHAR") else _POSTGRES_TYPES[compiled]


def insert_rows(
    connection: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence]
) -> None:
    """Insert `rows` (tuples of the values of `columns`, in that order) into `table`. The
    statement names the columns: a table's column order is not its model's (a migration
    appends a column the model may declare mid-table)."""
    names = ", ".join(f'"{name}"' for name in columns)
    cursor = connection.connection.driver_connection.cursor()
    try:
        if connection.dialect.name == "postgresql":
            statement = f'COPY "{table.name}" ({names}) FROM STDIN (FORMAT BINARY)'
            with cursor.copy(statement) as copy:
                # Binary COPY needs the column types; psycopg then encodes rows in C.
                copy.set_types(
                    [
                        _postgres_type(table.c[name].type.compile(connection.dialect))
                        for name in columns
                    ]
                )
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(columns))
            cursor.executemany(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', rows)
    finally:
        cursor.close()
