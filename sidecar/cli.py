"""The command line: serve | backup | restore | check | definitions import/export."""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sqlite3
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from sidecar import backup, db, definitions_io, postgres
from sidecar.settings import (
    SETTINGS,
    SettingError,
    db_path_from,
    settings_from_env,
    unknown_variables,
    version,
)

PROGRESS_SECONDS = 1.0
MIB = 1024 * 1024


DB_HELP = "the SQLite file or postgresql:// URL (else SIDECAR_DB, else ./achievements.db)"


def _serve_epilog() -> str:
    lines = ["settings (a flag wins over its variable, which wins over the default):"]
    for setting in SETTINGS.values():
        flag = f" ({setting.flag})" if setting.flag else ""
        lines.append(f"  {setting.variable}{flag}")
        lines += textwrap.wrap(
            setting.describe(), 94, initial_indent=" " * 6, subsequent_indent=" " * 6
        )
    lines.append("A bad value stops the command with one line naming it (exit status 2).")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecar", description="Achievements sidecar: an HTTP service on one SQLite file."
    )
    parser.add_argument(
        "--version", action="version", version=f"sidecar {version()}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service.",
        epilog=_serve_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--db", help=DB_HELP)
    serve.add_argument("--host", help="address to bind (else SIDECAR_HOST, else 127.0.0.1)")
    serve.add_argument("--port", help="port to bind, 1-65535 (else SIDECAR_PORT, else 8787)")

    backup = commands.add_parser(
        "backup",
        help="write a consistent copy of the database, also while it serves",
        description="Write a consistent single-file copy of the database (0600), also while the "
        "service runs and takes writes. Refuses an OUT that is the database or its -wal/-shm "
        "(whatever its name), that is not a regular file, or whose directory does not exist.",
    )
    backup.add_argument("output", metavar="OUT", help="the copy to write")
    backup.add_argument(
        "--force", action="store_true", help="replace OUT if it exists (a regular file only)"
    )
    backup.add_argument("--db", help=DB_HELP)

    restore = commands.add_parser(
        "restore",
        help="replace the database with a backup (the service stopped)",
        description="Check BACKUP (integrity_check, foreign_key_check, schema version not newer "
        "than this release; an older one is upgraded at the next start), then replace the "
        "database with it atomically, keeping the replaced file as <db>.before-restore. Refuses "
        "while a service (or another program) has the database open.",
    )
    restore.add_argument("backup", metavar="BACKUP", help="the backup file to restore")
    restore.add_argument(
        "--force", action="store_true", help="replace an existing <db>.before-restore"
    )
    restore.add_argument("--db", help=DB_HELP)

    check = commands.add_parser(
        "check",
        help="integrity_check and foreign_key_check, read-only",
        description="Run integrity_check and foreign_key_check on the file, read-only; exit "
        "status 1 on any problem, 2 when the file is missing or empty. On PostgreSQL: the "
        "schema's version, tables, indexes, triggers and constraints, the rows' foreign keys "
        "and every counter against a recount, in one read-only snapshot (2: unreachable, or "
        "no table at all).",
    )
    check.add_argument("--db", help=DB_HELP)

    definitions = commands.add_parser(
        "definitions",
        help="achievements as code, by key",
        description="Achievements as code: import or export definitions by key.",
    )
    actions = definitions.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = actions.add_parser(
        "import",
        help="create or replace definitions from a file",
        description="Create or replace definitions by key from a file, in one transaction.",
    )
    load.add_argument("file", type=Path, help="JSON, or TOML when it ends in .toml")
    load.add_argument(
        "--dry-run", action="store_true", help="show what would change, write nothing"
    )
    load.add_argument("--db", help=DB_HELP)
    dump = actions.add_parser(
        "export",
        help="write every definition that has a key",
        description="Write every definition that has a key (read-only).",
    )
    dump.add_argument(
        "--format", choices=("json", "toml"), default="json", help="file format (default json)"
    )
    dump.add_argument("--output", type=Path, help="file to write (default: standard output)")
    dump.add_argument("--db", help=DB_HELP)

    migrate = commands.add_parser(
        "migrate",
        help="copy a SQLite file into an empty PostgreSQL database",
        description="Copy a SQLite sidecar file (also while a service serves it) into an empty "
        "PostgreSQL database, in one transaction: definitions, users, progress, the unlock "
        "feed with their ids, idempotency keys within their TTL (SIDECAR_IDEMPOTENCY_TTL), and "
        "the counters recounted; then check row counts and counters. Refuses a target that is "
        "not empty and a file of an older release (start the service on it once first).",
    )
    migrate.add_argument(
        "--from", dest="source", required=True, metavar="FILE", help="the SQLite file"
    )
    migrate.add_argument(
        "--to",
        metavar="URL",
        help="postgresql://user@host:port/dbname (else SIDECAR_DB when it is one); the password "
        "is best left to PGPASSWORD or ~/.pgpass, out of the process list",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            from sidecar.server import serve

            # Every setting is read and checked here, before the file is opened or a port bound.
            settings = settings_from_env(db=args.db, host=args.host, port=args.port)
            for name in unknown_variables():
                print(f"sidecar: warning: {name} is not a setting; ignored", file=sys.stderr)
            return serve(settings)
        if args.command == "migrate":
            return _migrate(args.source, db_path_from(args.to))
        database = db_path_from(args.db)
        refused = postgres.refusal(args.command) if postgres.is_url(database) else None
        if refused:
            raise db.DatabaseError(refused)
        if args.command == "backup":
            return _backup(database, args.output, args.force)
        if args.command == "restore":
            return _restore(args.backup, database, args.force)
        if args.command == "check":
            return _check(database)
        if args.action == "import":
            return _import(database, args.file, args.dry_run)
        return _export(database, args.format, args.output)
    except (SettingError, db.DatabaseError, definitions_io.DefinitionsFileError) as error:
        print(f"sidecar: {error}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as error:  # e.g. an --output in a missing directory
        print(f"sidecar: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a backup's temporary file is removed once its thread ends
        print("sidecar: interrupted", file=sys.stderr)
        return 130


def _backup(source: str, output: str, force: bool) -> int:
    started = time.monotonic()
    plan = backup.Backup.plan(source, output, force)
    total = os.path.getsize(source) + _size(f"{source}-wal")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        copying = pool.submit(plan.write)
        # The copy is one consistent snapshot (one step); show how far it has got meanwhile.
        while not _wait(copying, PROGRESS_SECONDS):
            done = _size(plan.temporary)
            print(f"copying: {done / MIB:.1f} of about {total / MIB:.1f} MiB", file=sys.stderr)
        pages = copying.result()
    elapsed = time.monotonic() - started
    size = os.path.getsize(output) / MIB
    print(f"backed up {source} to {output}: {pages} pages, {size:.1f} MiB in {elapsed:.1f} s")
    return 0


def _wait(future: concurrent.futures.Future[int], seconds: float) -> bool:
    done, _ = concurrent.futures.wait([future], timeout=seconds)
    return bool(done)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _restore(source: str, database: str, force: bool) -> int:
    kept = backup.restore(source, database, force)
    print(f"restored {database} from {source}")
    if kept:
        print(f"the replaced file is kept as {kept}")
    return 0


def _check(path: str) -> int:
    on_postgres = postgres.is_url(path)
    problems = postgres.load_offline().check(path) if on_postgres else backup.check(path)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{postgres.redacted(path)}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{postgres.redacted(path)}: ok")
    return 0


def _migrate(source: str, target: str) -> int:
    if postgres.is_url(source):
        raise db.DatabaseError("migrate copies from a SQLite file: give --from FILE")
    if not postgres.is_url(target):
        raise db.DatabaseError(
            "migrate copies into PostgreSQL: give --to postgresql://... (or set SIDECAR_DB to it)"
        )
    postgres.load()  # one line when psycopg is missing
    from sidecar import migrate

    ttl = int(SETTINGS["SIDECAR_IDEMPOTENCY_TTL"].read(None, os.environ))
    shown = [time.monotonic()]

    def progress(table: str, copied: int, total: int) -> None:
        # Only within a table of several batches: a small copy (or its refusal) stays quiet.
        if copied < total and time.monotonic() - shown[0] >= PROGRESS_SECONDS:
            shown[0] = time.monotonic()
            print(f"copying {table}: {copied:,} of {total:,} rows", file=sys.stderr, flush=True)

    summary = migrate.migrate(source, target, ttl, progress)
    notes = {
        "achievements": f"next id {summary.next_achievement_id}",
        "events": f"last id {summary.last_event_id}",
        "idempotency_keys": f"{summary.expired_keys} past their TTL left out",
    }
    print(f"copied {source} into {postgres.redacted(target)} in {summary.seconds:.1f} s:")
    for table, rows in summary.rows.items():
        note = f"  ({notes[table]})" if table in notes else ""
        print(f"  {table:<18} {rows:>12,}{note}")
    print(f"row counts and {summary.counters} counters checked")
    return 0


def _import(path: str, file: Path, dry_run: bool) -> int:
    def report(change: definitions_io.Change) -> None:
        print(f"{change.outcome} {change.key}", flush=True)

    counts = definitions_io.import_file(path, file, dry_run, report)
    summary = ", ".join(f"{count} {outcome}" for outcome, count in counts.items())
    suffix = " (dry run: nothing written)" if dry_run else ""
    print(f"{file}: {summary}{suffix}", file=sys.stderr)
    return 0


def _export(path: str, fmt: definitions_io.Format, output: Path | None) -> int:
    text, left_out = definitions_io.export(path, fmt)
    for achievement in left_out:
        print(
            f"left out achievement {achievement.id} ({achievement.name!r}): it has no key",
            file=sys.stderr,
        )
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    return 0
