"""Achievements as code: `python -m sidecar definitions import FILE [--dry-run]` and
`definitions export [--format json|toml] [--output FILE]`, run as the commands they are."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DEFINITIONS, PROGRESS, unlock, upsert

ROOT = Path(__file__).resolve().parent.parent
OUTCOMES = ("created", "updated", "unchanged")

WORKER_1 = {
    "key": "worker-1",
    "name": "Worker I",
    "description": "Complete 100 works",
    "metadata": {"icon": "hammer", "points": 10, "target": 100, "tags": ["work", "starter"]},
}
WORKER_2 = {"key": "worker-2", "name": "Worker II"}
EXPLORER = {
    "key": "explorer.north_pole",
    "name": "Explorer ❄",
    "description": "Reach the north pole",
    "metadata": {"hidden": True, "nested": {"z": 1.5, "a": "b"}},
}

TOML_TEXT = """\
[[achievements]]
key = "worker-1"
name = "Worker I"
description = "Complete 100 works"

[achievements.metadata]
icon = "hammer"
points = 10
target = 100
tags = ["work", "starter"]

[[achievements]]
key = "worker-2"
name = "Worker II"
"""


# --- helpers ------------------------------------------------------------------------------------


def run_sidecar(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def import_file(db_path: Path, path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_sidecar("definitions", "import", str(path), "--db", str(db_path), *flags)


def export(db_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_sidecar("definitions", "export", "--db", str(db_path), *flags)


def outcomes(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """key -> created/updated/unchanged, from stdout's one line per key."""
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    found: dict[str, str] = {}
    for line in lines:
        words = line.split()
        assert len(words) >= 2 and words[0] in OUTCOMES, line
        assert words[1] not in found, f"two lines for {words[1]}: {result.stdout}"
        found[words[1]] = words[0]
    return found


def write_json(path: Path, achievements: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"achievements": achievements}, indent=2), encoding="utf-8")
    return path


def dump(db_path: Path) -> list[str]:
    connection = sqlite3.connect(db_path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def definitions(db_path: Path) -> dict[str, tuple[Any, ...]]:
    """key -> (id, name, description, metadata as parsed JSON, created_at, updated_at)."""
    connection = sqlite3.connect(db_path)
    try:
        rows = connection.execute(
            "SELECT key, id, name, description, metadata, created_at, updated_at"
            " FROM achievements WHERE key IS NOT NULL"
        ).fetchall()
    finally:
        connection.close()
    return {row[0]: (row[1], row[2], row[3], json.loads(row[4]), row[5], row[6]) for row in rows}


def assert_line_named(stderr: str, path: Path, line: int) -> None:
    """stderr names the file and, apart from the file's name, the line number."""
    assert str(path) in stderr or path.name in stderr, stderr
    rest = stderr.replace(str(path), "").replace(path.name, "")
    assert re.search(rf"(?<!\d){line}(?!\d)", rest), stderr


# --- import -------------------------------------------------------------------------------------


def test_import_json_creates_every_definition(tmp_path: Path, db_path: Path) -> None:
    source = write_json(tmp_path / "defs.json", [WORKER_1, WORKER_2, EXPLORER])
    result = import_file(db_path, source)
    assert outcomes(result) == {
        "worker-1": "created",
        "worker-2": "created",
        "explorer.north_pole": "created",
    }
    stored = definitions(db_path)
    assert set(stored) == {"worker-1", "worker-2", "explorer.north_pole"}
    assert stored["worker-1"][1:4] == ("Worker I", "Complete 100 works", WORKER_1["metadata"])
    assert stored["worker-2"][1:4] == ("Worker II", None, {})
    assert stored["explorer.north_pole"][1:4] == (
        "Explorer ❄",
        "Reach the north pole",
        EXPLORER["metadata"],
    )
    # Key order of metadata is kept exactly.
    connection = sqlite3.connect(db_path)
    (text,) = connection.execute(
        "SELECT metadata FROM achievements WHERE key = 'explorer.north_pole'"
    ).fetchone()
    connection.close()
    assert list(json.loads(text)) == ["hidden", "nested"]
    assert list(json.loads(text)["nested"]) == ["z", "a"]


def test_import_toml_creates_every_definition(tmp_path: Path, db_path: Path) -> None:
    source = tmp_path / "defs.toml"
    source.write_text(TOML_TEXT, encoding="utf-8")
    assert outcomes(import_file(db_path, source)) == {
        "worker-1": "created",
        "worker-2": "created",
    }
    stored = definitions(db_path)
    assert stored["worker-1"][1:4] == ("Worker I", "Complete 100 works", WORKER_1["metadata"])
    assert stored["worker-2"][1:4] == ("Worker II", None, {})


def test_importing_the_same_file_twice_changes_nothing(tmp_path: Path, db_path: Path) -> None:
    source = write_json(tmp_path / "defs.json", [WORKER_1, WORKER_2, EXPLORER])
    assert set(outcomes(import_file(db_path, source)).values()) == {"created"}
    before = dump(db_path)
    second = outcomes(import_file(db_path, source))
    assert second == dict.fromkeys(["worker-1", "worker-2", "explorer.north_pole"], "unchanged")
    assert dump(db_path) == before


def test_importing_the_same_toml_twice_changes_nothing(tmp_path: Path, db_path: Path) -> None:
    source = tmp_path / "defs.toml"
    source.write_text(TOML_TEXT, encoding="utf-8")
    outcomes(import_file(db_path, source))
    before = dump(db_path)
    assert outcomes(import_file(db_path, source)) == {
        "worker-1": "unchanged",
        "worker-2": "unchanged",
    }
    assert dump(db_path) == before


async def test_renaming_updates_in_place_and_keeps_progress(
    tmp_path: Path, db_path: Path, make_client: Any
) -> None:
    source = write_json(tmp_path / "defs.json", [WORKER_1, WORKER_2])
    outcomes(import_file(db_path, source))
    before = definitions(db_path)
    worker_1 = before["worker-1"][0]
    worker_2 = before["worker-2"][0]

    async with make_client() as client:
        await upsert(client, 1, worker_1, {"current": 42})
        await unlock(client, 2, worker_1)
        await upsert(client, 1, worker_2, {"current": 1})
    connection = sqlite3.connect(db_path)
    progress_before = connection.execute("SELECT * FROM user_achievements ORDER BY id").fetchall()
    connection.close()
    assert len(progress_before) == 3

    renamed = {**WORKER_1, "name": "Worker One"}
    result = import_file(db_path, write_json(tmp_path / "renamed.json", [renamed, WORKER_2]))
    assert outcomes(result) == {"worker-1": "updated", "worker-2": "unchanged"}

    after = definitions(db_path)
    assert after["worker-1"][0] == worker_1
    assert after["worker-1"][1:4] == ("Worker One", "Complete 100 works", WORKER_1["metadata"])
    assert after["worker-1"][4] == before["worker-1"][4]  # created_at kept
    assert after["worker-1"][5] > before["worker-1"][5]  # updated_at moved
    assert after["worker-2"] == before["worker-2"]
    connection = sqlite3.connect(db_path)
    progress_after = connection.execute("SELECT * FROM user_achievements ORDER BY id").fetchall()
    connection.close()
    assert progress_after == progress_before

    async with make_client() as client:
        fetched = (await client.get(f"{DEFINITIONS}/by-key/worker-1")).json()
        assert fetched["id"] == worker_1
        assert fetched["name"] == "Worker One"
        row = (
            await client.get(PROGRESS, params={"userId": 1, "achievementKey": "worker-1"})
        ).json()
        assert row["metadata"] == {"current": 42}


def test_description_and_metadata_changes_are_updates(tmp_path: Path, db_path: Path) -> None:
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_1, WORKER_2, EXPLORER])))
    changed = [
        {**WORKER_1, "description": "Complete 200 works"},
        {**WORKER_2, "metadata": {"points": 1}},
        {key: value for key, value in EXPLORER.items() if key != "description"},
    ]
    result = import_file(db_path, write_json(tmp_path / "b.json", changed))
    assert outcomes(result) == dict.fromkeys(
        ["worker-1", "worker-2", "explorer.north_pole"], "updated"
    )
    stored = definitions(db_path)
    assert stored["worker-1"][2] == "Complete 200 works"
    assert stored["worker-2"][3] == {"points": 1}
    assert stored["explorer.north_pole"][2] is None


async def test_import_replaces_a_definition_made_over_http(
    tmp_path: Path, db_path: Path, make_client: Any
) -> None:
    async with make_client() as client:
        response = await client.put(
            f"{DEFINITIONS}/by-key/worker-2",
            json={"name": "Old", "description": "old", "metadata": {"old": True}},
        )
        assert response.status_code == 201, response.text
        made = response.json()
    result = import_file(db_path, write_json(tmp_path / "defs.json", [WORKER_2]))
    assert outcomes(result) == {"worker-2": "updated"}
    stored = definitions(db_path)
    # Declarative: what the file leaves out takes its default (null description, {} metadata).
    assert stored["worker-2"][:4] == (made["id"], "Worker II", None, {})


def test_dry_run_prints_the_same_lines_and_writes_nothing(tmp_path: Path, db_path: Path) -> None:
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_1, WORKER_2])))
    source = write_json(
        tmp_path / "b.json", [{**WORKER_1, "name": "Worker One"}, WORKER_2, EXPLORER]
    )
    before = dump(db_path)
    expected = {"worker-1": "updated", "worker-2": "unchanged", "explorer.north_pole": "created"}
    dry = import_file(db_path, source, "--dry-run")
    assert outcomes(dry) == expected
    assert dump(db_path) == before
    # The real run then reports exactly what the dry run said.
    assert outcomes(import_file(db_path, source)) == expected
    assert dump(db_path) != before


def test_bad_json_names_file_and_line(tmp_path: Path, db_path: Path) -> None:
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_2])))
    before = dump(db_path)
    source = tmp_path / "broken.json"
    source.write_text(
        '{"achievements": [\n'
        '  {"key": "new-one", "name": "New"},\n'
        '  {"key": "new-two", "name": "Two"},\n'
        '  {"key": "new-three",\n'
        '   "name": "Three"\n'
        "  },\n"
        '  {"key": "new-four" "name": "Four"}\n'
        "]}\n",
        encoding="utf-8",
    )
    result = import_file(db_path, source)
    assert result.returncode != 0
    assert_line_named(result.stderr, source, 7)
    assert not [line for line in result.stdout.splitlines() if line.startswith("created")]
    assert dump(db_path) == before


def test_bad_toml_names_file_and_line(tmp_path: Path, db_path: Path) -> None:
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_2])))
    before = dump(db_path)
    source = tmp_path / "broken.toml"
    source.write_text(
        "[[achievements]]\n"
        'key = "new-one"\n'
        'name = "New"\n'
        "\n"
        "[[achievements]]\n"
        'key = "new-two"\n'
        "name = = oops\n",
        encoding="utf-8",
    )
    result = import_file(db_path, source)
    assert result.returncode != 0
    assert_line_named(result.stderr, source, 7)
    assert dump(db_path) == before


def test_invalid_entries_apply_nothing(tmp_path: Path, db_path: Path) -> None:
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_2])))
    before = dump(db_path)
    new = {"key": "fresh", "name": "Fresh"}
    renamed = {**WORKER_2, "name": "Renamed"}
    cases = {
        "missing-name.json": [new, renamed, {"key": "nameless"}],
        "bad-key.json": [new, renamed, {"key": "Bad Key", "name": "Bad"}],
        "long-key.json": [new, renamed, {"key": "k" * 65, "name": "Long"}],
        "missing-key.json": [new, renamed, {"name": "Keyless"}],
        "empty-name.json": [new, renamed, {"key": "empty", "name": ""}],
        "bad-metadata.json": [new, renamed, {"key": "meta", "name": "M", "metadata": [1]}],
    }
    sources = [write_json(tmp_path / name, achievements) for name, achievements in cases.items()]
    not_a_list = tmp_path / "not-a-list.json"
    not_a_list.write_text('{"achievements": {"key": "x", "name": "X"}}', encoding="utf-8")
    sources.append(not_a_list)
    # Independent refusals: run side by side to keep the file fast.
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        results = list(pool.map(lambda source: import_file(db_path, source), sources))
    for source, result in zip(sources, results, strict=True):
        assert result.returncode != 0, (source.name, result.stdout)
        assert source.name in result.stderr, (source.name, result.stderr)
    assert dump(db_path) == before


def test_missing_name_in_toml_applies_nothing(tmp_path: Path, db_path: Path) -> None:
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_2])))
    before = dump(db_path)
    source = tmp_path / "nameless.toml"
    source.write_text(
        '[[achievements]]\nkey = "fresh"\nname = "Fresh"\n\n[[achievements]]\nkey = "nameless"\n',
        encoding="utf-8",
    )
    result = import_file(db_path, source)
    assert result.returncode != 0
    assert source.name in result.stderr
    assert dump(db_path) == before


def bad(fields: str) -> str:
    """The refused entry (index 1, key "bad"), with `fields` after its key and name."""
    return '{"key": "bad", "name": "B", ' + fields + "}"


# What the HTTP API refuses, the import refuses: (case, entry as JSON text, what the line names:
# the field; LINE for what is not JSON at all, as the API's 400; FILE for nesting too deep to
# find its entry).
LINE, FILE = "line", "file"
REFUSED_JSON_ENTRIES = [
    ("NaN", bad('"metadata": {"x": NaN}'), LINE),
    ("Infinity", bad('"metadata": {"x": [1, -Infinity]}'), LINE),
    ("1e400", bad('"metadata": {"x": 1e400}'), "metadata"),
    ("1e-999999", bad('"metadata": {"x": 1e-999999}'), "metadata"),
    ("5,000 digits", bad('"metadata": {"x": ' + "9" * 5000 + "}"), "metadata"),
    ("200 levels", bad('"metadata": {"x": ' + "[" * 199 + "]" * 199 + "}"), "metadata"),
    ("100,000 levels", bad('"metadata": ' + "[" * 100_000 + "]" * 100_000), FILE),
    ("duplicate keys", bad('"metadata": {"a": 1, "a": 2}'), "metadata"),
    ("nested duplicate", bad('"metadata": {"n": [{"k": 1, "k": 1}]}'), "metadata"),
    ("lone surrogate", bad('"metadata": {"s": "\\ud800"}'), LINE),
    ("lone surrogate key", bad('"metadata": {"\\udfff": 1}'), LINE),
    ("surrogate in description", bad('"description": "B \\ud800"'), LINE),
    ("metadata not an object", bad('"metadata": [1]'), "metadata"),
    ("metadata over 64 KiB", bad('"metadata": {"s": "' + "x" * 70_000 + '"}'), "metadata"),
    ("key with a newline", '{"key": "bad\\n", "name": "B"}', "key"),
    ("name too long", '{"key": "bad", "name": "' + "n" * 256 + '"}', "name"),
    ("description too long", bad('"description": "' + "d" * 10_001 + '"'), "description"),
    ("unknown field", bad('"colour": 1'), "colour"),
]


def assert_one_line_naming(
    result: subprocess.CompletedProcess[str], source: Path, *names: str
) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert len(lines[0]) < 1000, lines[0][:300]
    for name in (source.name, *names):
        assert name in lines[0], (name, lines[0])


@pytest.mark.parametrize(
    ("entry", "field"),
    [case[1:] for case in REFUSED_JSON_ENTRIES],
    ids=[case[0] for case in REFUSED_JSON_ENTRIES],
)
def test_import_refuses_what_the_api_refuses(
    tmp_path: Path, db_path: Path, entry: str, field: str
) -> None:
    """One line naming the file, the entry (index and key) and the field; nothing written."""
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_2])))
    before = dump(db_path)
    source = tmp_path / "refused.json"
    source.write_text(
        '{"achievements": [\n  {"key": "fresh", "name": "Fresh"},\n  ' + entry + "\n]}\n",
        encoding="utf-8",
    )
    result = import_file(db_path, source)
    if field in (LINE, FILE):
        assert_one_line_naming(result, source)
        if field == LINE:
            assert_line_named(result.stderr, source, 3)
    else:
        assert_one_line_naming(result, source, "achievements.1", "'bad", field)
    assert dump(db_path) == before


REFUSED_TOML_ENTRIES = [
    ("nan", "[achievements.metadata]\nx = nan\n", "metadata.x"),
    ("inf", "[achievements.metadata]\ny = [1, -inf]\n", "metadata.y.1"),
    ("1e400", "[achievements.metadata]\nx = 1e400\n", "metadata"),
    (
        "exponent beyond any decimal",
        "[achievements.metadata]\nx = 1e99999999999999999999\n",
        "metadata.x",
    ),
    ("200 levels", "[achievements.metadata]\nx = " + "[" * 199 + "]" * 199 + "\n", "metadata"),
    ("too long a name", "", "name"),
]


@pytest.mark.parametrize(
    ("table", "field"),
    [case[1:] for case in REFUSED_TOML_ENTRIES],
    ids=[case[0] for case in REFUSED_TOML_ENTRIES],
)
def test_toml_import_refuses_what_the_api_refuses(
    tmp_path: Path, db_path: Path, table: str, field: str
) -> None:
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_2])))
    before = dump(db_path)
    source = tmp_path / "refused.toml"
    name = "n" * 256 if field == "name" else "B"
    source.write_text(
        '[[achievements]]\nkey = "fresh"\nname = "Fresh"\n\n'
        f'[[achievements]]\nkey = "bad"\nname = "{name}"\n{table}',
        encoding="utf-8",
    )
    result = import_file(db_path, source)
    assert_one_line_naming(result, source, "achievements.1", "'bad'", field)
    assert dump(db_path) == before


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "9" * 5000], ids=["deep", "digits"])
def test_what_toml_itself_cannot_read_is_one_line(
    tmp_path: Path, db_path: Path, value: str
) -> None:
    """Nesting beyond the TOML reader's recursion, an integer beyond int()'s 4,300 digits."""
    source = tmp_path / "unreadable.toml"
    source.write_text(
        f'[[achievements]]\nkey = "bad"\nname = "B"\nmetadata = {{x = {value}}}\n',
        encoding="utf-8",
    )
    assert_one_line_naming(import_file(db_path, source), source)


def test_import_prints_after_its_commit(tmp_path: Path, db_path: Path) -> None:
    """A caller that does not read the output (a blocked pipe) must not hold the database: the
    import printed each change inside its write transaction, so a full pipe kept it locked."""
    count = 1500  # 1500 lines of 73 bytes: more than a pipe's 64 KiB buffer
    entries = [{"key": f"k{n:04d}-" + "x" * 58, "name": f"N{n}"} for n in range(count)]
    source = write_json(tmp_path / "many.json", entries)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "sidecar",
        "definitions",
        "import",
        str(source),
        "--db",
        str(db_path),
    ]
    process = subprocess.Popen(
        [*command, "--db", str(db_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Nobody reads stdout yet: the import's lines fill the pipe, and it blocks writing them.
        # By then its changes must be committed and the database free for another writer.
        deadline = time.monotonic() + 60
        committed = 0
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with closing(sqlite3.connect(db_path, timeout=0)) as connection:
                    connection.execute("BEGIN IMMEDIATE")
                    committed = connection.execute("SELECT count(*) FROM achievements").fetchone()[
                        0
                    ]
                    connection.execute("ROLLBACK")
            except sqlite3.OperationalError:  # locked, or not created yet
                committed = 0
            if committed == count:
                break
            time.sleep(0.05)
        assert committed == count, "the import held the database while its output was unread"
    finally:
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stdout.decode().count("created ") == count


# --- export -------------------------------------------------------------------------------------


def entries_by_key(document: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """key -> (name, description or None, metadata or {}) of an exported document."""
    assert set(document) == {"achievements"}
    result = {}
    for entry in document["achievements"]:
        assert set(entry) <= {"key", "name", "description", "metadata"}, entry
        result[entry["key"]] = (entry["name"], entry.get("description"), entry.get("metadata", {}))
    return result


def test_export_json_round_trips(tmp_path: Path, db_path: Path) -> None:
    big = {**WORKER_2, "metadata": {"big": 2**70, "ratio": 0.1, "none": None, "deep": {"a": [{}]}}}
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_1, big, EXPLORER])))
    exported = export(db_path)
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert entries_by_key(document) == {
        "worker-1": ("Worker I", "Complete 100 works", WORKER_1["metadata"]),
        "worker-2": ("Worker II", None, big["metadata"]),
        "explorer.north_pole": ("Explorer ❄", "Reach the north pole", EXPLORER["metadata"]),
    }

    before = dump(db_path)
    again = tmp_path / "exported.json"
    again.write_text(exported.stdout, encoding="utf-8")
    assert outcomes(import_file(db_path, again)) == dict.fromkeys(
        ["worker-1", "worker-2", "explorer.north_pole"], "unchanged"
    )
    assert dump(db_path) == before

    # Into an empty database, the export recreates the same definitions.
    fresh = tmp_path / "fresh.db"
    assert set(outcomes(import_file(fresh, again)).values()) == {"created"}
    assert {k: v[1:4] for k, v in definitions(fresh).items()} == {
        k: v[1:4] for k, v in definitions(db_path).items()
    }


def test_export_toml_to_a_file_imports_unchanged(tmp_path: Path, db_path: Path) -> None:
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_1, WORKER_2, EXPLORER])))
    target = tmp_path / "out.toml"
    exported = export(db_path, "--format", "toml", "--output", str(target))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == ""
    document = tomllib.loads(target.read_text(encoding="utf-8"))
    assert entries_by_key(document) == {
        "worker-1": ("Worker I", "Complete 100 works", WORKER_1["metadata"]),
        "worker-2": ("Worker II", None, {}),
        "explorer.north_pole": ("Explorer ❄", "Reach the north pole", EXPLORER["metadata"]),
    }
    before = dump(db_path)
    assert outcomes(import_file(db_path, target)) == dict.fromkeys(
        ["worker-1", "worker-2", "explorer.north_pole"], "unchanged"
    )
    assert dump(db_path) == before


def test_export_json_to_a_file(tmp_path: Path, db_path: Path) -> None:
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [WORKER_1])))
    target = tmp_path / "out.json"
    exported = export(db_path, "--format", "json", "--output", str(target))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == ""
    assert entries_by_key(json.loads(target.read_text(encoding="utf-8"))) == {
        "worker-1": ("Worker I", "Complete 100 works", WORKER_1["metadata"]),
    }


async def test_export_leaves_out_definitions_without_a_key(
    tmp_path: Path, db_path: Path, make_client: Any
) -> None:
    async with make_client() as client:
        for body in (
            {"name": "Keyless Wonder"},
            {"name": "Keyed", "key": "keyed"},
            {"name": "Another Unkeyed"},
        ):
            response = await client.post(DEFINITIONS, json=body)
            assert response.status_code == 201, response.text
    exported = export(db_path)
    assert exported.returncode == 0, exported.stderr
    assert entries_by_key(json.loads(exported.stdout)) == {"keyed": ("Keyed", None, {})}
    assert "Keyless Wonder" in exported.stderr
    assert "Another Unkeyed" in exported.stderr

    toml_export = export(db_path, "--format", "toml")
    assert toml_export.returncode == 0, toml_export.stderr
    assert entries_by_key(tomllib.loads(toml_export.stdout)) == {"keyed": ("Keyed", None, {})}
    assert "Keyless Wonder" in toml_export.stderr


def test_export_of_an_empty_database(tmp_path: Path, db_path: Path) -> None:
    outcomes(import_file(db_path, write_json(tmp_path / "a.json", [])))
    exported = export(db_path)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == {"achievements": []}
