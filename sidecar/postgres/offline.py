"""The commands other than serve on a PostgreSQL database (check, definitions import and export,
migrate's target), from outside the service: the backend's connections, and every failure one
line that names the database without its password. The twin of sidecar/readonly.py and the
check of sidecar/backup.py for a file.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg

from sidecar.db import DatabaseError, DatabaseUnavailable, Parameters
from sidecar.postgres import COUNTER_CHECKS, SCHEMA_VERSION, redacted, schema_sql
from sidecar.postgres.backend import Connection, _first_line, connect

T = TypeVar("T")

SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


@contextlib.contextmanager
def connected(url: str) -> Iterator[Connection]:
    """A connection to the database. A server that cannot be reached, and any error of
    PostgreSQL's meanwhile, is a DatabaseError of one line; closing the connection rolls back
    a transaction left open (a failure leaves the database as it was)."""
    try:
        connection = connect(url)
    except DatabaseUnavailable as error:
        raise DatabaseError(str(error)) from None
    try:
        yield connection
    except psycopg.Error as error:
        raise DatabaseError(f"{redacted(url)}: {_first_line(error)}") from None
    finally:
        connection.close()


def value(connection: Connection, sql: str, parameters: Parameters = ()) -> Any:
    """The first column of the one row that `sql` gives."""
    row = connection.execute(sql, parameters).fetchone()
    assert row is not None, sql
    return row[0]


def schema_version(connection: Connection) -> int | None:
    """The schema's version; None when the database has no schema_version table."""
    if not value(connection, "SELECT to_regclass('schema_version') IS NOT NULL"):
        return None
    return int(value(connection, "SELECT coalesce(max(version), 0) FROM schema_version"))


def tables(connection: Connection) -> int:
    """How many tables the database's current schema holds (the service's or not)."""
    return int(
        value(connection, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
    )


def version_problem(version: int | None) -> str | None:
    """What is wrong with a schema of `version` for this release; None when it is current."""
    if not version:
        return "is not an achievements database (no schema_version)"
    if version > SCHEMA_VERSION:
        return f"has schema version {version}; this release knows up to {SCHEMA_VERSION}"
    if version < SCHEMA_VERSION:
        return f"has schema version {version}: start the service once to upgrade it"
    return None


def read(url: str, work: Callable[[Connection], T]) -> T:
    """`work(connection)` in one read-only snapshot of a database of this release's schema;
    writes nothing, creates nothing."""
    with connected(url) as connection:
        connection.execute(SNAPSHOT)
        problem = version_problem(schema_version(connection))
        if problem is not None:
            raise DatabaseError(f"{redacted(url)} {problem}")
        return work(connection)  # the snapshot ends with the connection


# --- check --------------------------------------------------------------------------------

_OBJECT = re.compile(r"^CREATE (TABLE|(?:UNIQUE )?INDEX|TRIGGER|FUNCTION) (\w+)", re.MULTILINE)
_TABLE = re.compile(r"^CREATE TABLE (\w+) \((.*?)^\);", re.MULTILINE | re.DOTALL)
_CONSTRAINTS = {
    "p": ("primary key", re.compile(r"\bPRIMARY KEY\b")),
    "u": ("unique", re.compile(r"\bUNIQUE\b")),
    "f": ("foreign key", re.compile(r"\bREFERENCES\b")),
    "c": ("check", re.compile(r"\bCHECK\b")),
}
# Rows whose foreign key points nowhere (PostgreSQL enforces the keys; these find rows written
# while they were off, e.g. under session_replication_role = replica): foreign_key_check's twin.
_ORPHANS = {
    "user_achievements.user_id": "SELECT count(*) FROM user_achievements p "
    "WHERE NOT EXISTS (SELECT FROM users u WHERE u.id = p.user_id)",
    "user_achievements.achievement_id": "SELECT count(*) FROM user_achievements p "
    "WHERE NOT EXISTS (SELECT FROM achievements a WHERE a.id = p.achievement_id)",
    "user_stats.user_id": "SELECT count(*) FROM user_stats s "
    "WHERE NOT EXISTS (SELECT FROM users u WHERE u.id = s.user_id)",
}


@functools.cache
def _expected() -> tuple[list[tuple[str, str]], dict[tuple[str, str], int]]:
    """schema.sql's tables, indexes, triggers and functions, and each table's constraints by
    kind (a count, since PostgreSQL names most of them itself)."""
    text = schema_sql()
    objects = [(kind.removeprefix("UNIQUE ").lower(), name) for kind, name in _OBJECT.findall(text)]
    constraints = {
        (table, kind): len(pattern.findall(body))
        for table, body in _TABLE.findall(text)
        for kind, (_, pattern) in _CONSTRAINTS.items()
    }
    return objects, constraints


def _schema_problems(connection: Connection) -> list[str]:
    objects, constraints = _expected()
    present = set(
        connection.execute(
            "SELECT CASE relkind WHEN 'r' THEN 'table' ELSE 'index' END, relname FROM pg_class "
            "WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'i') "
            "UNION ALL SELECT 'trigger', tgname FROM pg_trigger t JOIN pg_class c "
            "ON c.oid = t.tgrelid WHERE c.relnamespace = current_schema()::regnamespace "
            "AND NOT t.tgisinternal AND t.tgenabled <> 'D' "
            "UNION ALL SELECT 'function', proname FROM pg_proc "
            "WHERE pronamespace = current_schema()::regnamespace"
        ).fetchall()
    )
    problems = [
        f"{kind} {name} is missing" + (" or disabled" if kind == "trigger" else "")
        for kind, name in objects
        if (kind, name) not in present
    ]
    valid = {
        (table, kind): count
        for table, kind, count in connection.execute(
            "SELECT c.relname, k.contype::text, count(*) FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND k.convalidated "
            "GROUP BY 1, 2"
        ).fetchall()
    }
    problems += [
        f"table {table}: {count} {_CONSTRAINTS[kind][0]} constraint(s) expected, "
        f"{valid.get((table, kind), 0)} valid"
        for (table, kind), count in constraints.items()
        if valid.get((table, kind), 0) < count
    ]
    return problems


def counter_problems(connection: Connection) -> list[str]:
    """Each trigger-kept counter that differs from a recount of the rows (COUNTER_CHECKS),
    compared in the server: no row of either side comes to this process."""
    problems = []
    for name, (kept, recount) in COUNTER_CHECKS.items():
        differing = value(
            connection,
            f"SELECT count(*) FROM (((({kept}) EXCEPT ALL ({recount})) "
            f"UNION ALL (({recount}) EXCEPT ALL ({kept})))) AS differences",
        )
        if differing:
            problems.append(f"counter {name} differs from a recount of the rows ({differing} rows)")
    return problems


def check(url: str) -> list[str]:
    """The schema's version, its tables, indexes, triggers and constraints, the foreign keys of
    the rows and every counter, in one read-only snapshot: the problems found (empty when
    sound). An unreachable server, or a database without any table, is a DatabaseError."""
    with connected(url) as connection:
        connection.execute(SNAPSHOT)
        version = schema_version(connection)
        if version is None and not tables(connection):
            raise DatabaseError(f"{redacted(url)} is empty: no achievements schema in it")
        problem = version_problem(version)
        if problem is not None:
            return [problem.removeprefix("is ").removeprefix("has ")]
        problems = _schema_problems(connection)
        if any(problem.startswith("table ") and "missing" in problem for problem in problems):
            return problems  # the row checks below would read the missing table
        for name, sql in _ORPHANS.items():
            orphans = value(connection, sql)
            if orphans:
                problems.append(f"foreign key: {orphans} row(s) of {name} reference a missing row")
        return problems + counter_problems(connection)
