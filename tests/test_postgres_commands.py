"""The commands on a PostgreSQL URL: serve refuses an unreachable server in one line, backup and
restore name PostgreSQL's own tools, and no line shows the password."""

from __future__ import annotations

import pytest

from tests.clirun import refusal, run
from tests.realserver import free_port

SECRET = "s3cret-pw"


def unreachable() -> str:
    return f"postgresql://bot:{SECRET}@127.0.0.1:{free_port()}/achievements"


def test_serve_refuses_an_unreachable_server_in_one_line_without_the_password() -> None:
    line = refusal(run("serve", "--db", unreachable(), "--port", str(free_port())), "127.0.0.1")
    assert SECRET not in line
    assert "bot:***@" in line


@pytest.mark.parametrize(
    ("command", "tool"),
    [(["backup", "out.db"], "pg_dump"), (["restore", "backup.db"], "pg_restore")],
)
def test_backup_and_restore_name_the_postgresql_tool(command: list[str], tool: str) -> None:
    line = refusal(run(*command, "--db", unreachable()), tool)
    assert SECRET not in line


@pytest.mark.parametrize("command", [["check"], ["definitions", "export"]])
def test_other_commands_say_they_do_not_run_on_postgresql_yet(command: list[str]) -> None:
    line = refusal(run(*command, "--db", unreachable()), "PostgreSQL")
    assert SECRET not in line
