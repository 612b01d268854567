"""The README's curl lines run as a reader runs them: the quick start's calls, then every row of
"API at a glance" in order, with `H` set as the README says, against a real server on a fresh
file. Each must give what the text says: a 2xx answer (the live feed: its first event)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.realserver import start_server

README = Path(__file__).resolve().parent.parent / "README.md"
README_PORT = "localhost:8787"
CURL_SECONDS = 20
# The live feed never ends by itself: cut it after this long and look at what arrived.
STREAM_SECONDS = 3
STATUS_MARK = "\nHTTP-STATUS:"

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None, reason="curl is not installed (apt-get install curl)"
)


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def quick_start_calls(text: str) -> list[str]:
    """The curl commands of the quick start's second sh block (the first is install and test)."""
    blocks = re.findall(r"```sh\n(.*?)```", section(text, "Quick start"), re.DOTALL)
    calls = re.split(r"\n(?=curl )", blocks[1].strip())
    assert calls and all(call.startswith("curl ") for call in calls), calls
    return calls


def table_calls(text: str) -> list[tuple[str, str]]:
    """(row title, command) for every curl code span of the table, in order."""
    calls = []
    for line in section(text, "API at a glance").splitlines():
        if not line.startswith("| ") or "`curl " not in line:
            continue
        title = line.split(" | ")[0].removeprefix("| ")
        calls.extend((title, span) for span in re.findall(r"`(curl [^`]+)`", line))
    return calls


def run(command: str, port: int) -> tuple[int, str, str]:
    """The command with the README's base URL on the test server; (exit status, body, status)."""
    command = command.replace(README_PORT, f"localhost:{port}")
    assert f"localhost:{port}" in command, command
    streaming = " -N " in command
    limit = f" --max-time {STREAM_SECONDS}" if streaming else ""
    env = {**os.environ, "H": "content-type: application/json"}
    done = subprocess.run(
        ["bash", "-c", f"{command} -s{limit} -w '{STATUS_MARK}%{{http_code}}'"],
        env=env,
        capture_output=True,
        text=True,
        timeout=CURL_SECONDS,
    )
    body, _, status = done.stdout.rpartition(STATUS_MARK)
    return done.returncode, body, status


def test_readme_curl_lines_run_in_order(tmp_path: Path) -> None:
    text = README.read_text()
    calls = [("quick start", call) for call in quick_start_calls(text)] + table_calls(text)
    # Every row of the table is there (a row's command left out would go untested).
    assert len(calls) >= 20, calls
    server = start_server(tmp_path / "achievements.db")
    try:
        for title, command in calls:
            code, body, status = run(command, server.port)
            if " -N " in command:
                # curl's exit status 28: cut off by --max-time, as Ctrl-C would.
                assert (code, status) == (28, "200"), (title, code, status, body)
                assert "id: 1\ndata: {" in body, (title, body)
                continue
            assert code == 0, (title, command, code)
            assert status.startswith("2"), (title, command, status, body)
    finally:
        server.stop()


def test_readme_links_the_reference_inside_the_repository() -> None:
    text = README.read_text()
    assert "](docs/api.md)" in text
    assert "../shared" not in text
