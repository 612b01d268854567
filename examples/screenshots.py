"""Make the README's screenshots: a sidecar on a scratch database, some demo data, and headless
Chromium (Debian's `chromium`; `fonts-noto-color-emoji` for the icons) photographing the
profile page and the overview.

    python examples/screenshots.py [OUT_DIR]      (default: docs/screenshots)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sidecar.client import Op, SyncAchievementsClient, When

ROOT = Path(__file__).resolve().parent.parent
WINDOW = "1200,900"
PROFILE_USER = 80_351_110_224_678_912

BADGES = [
    ("first-message", "First words", "Send your first message", 1, "\U0001f44b"),
    ("regular", "Regular", "Send 100 messages", 100, "\U0001f4ac"),
    ("chatterbox", "Chatterbox", "Send 1,000 messages", 1000, "\U0001f4e3"),
    ("helper", "Helping hand", "Answer 10 questions in #help", 10, "\U0001f91d"),
    ("streak-7", "On fire", "Post on 7 days in a row", 7, "\U0001f525"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(db: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "sidecar", "serve", "--db", str(db), "--port", str(port)]
    process = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    process.terminate()
    raise SystemExit("the sidecar did not start")


def seed(url: str) -> None:
    with SyncAchievementsClient(url) as sidecar:
        for key, name, description, target, icon in BADGES:
            metadata = {"target": target, "icon": icon}
            sidecar.put_definition(key, name, description=description, metadata=metadata)
        sidecar.put_definition(
            "night-owl", "Night owl", description="Post at 3 a.m.", metadata={"hidden": True}
        )

        def count(user: int, key: str, amount: int, target: int) -> None:
            sidecar.apply(
                user,
                key,
                [Op.inc("current", amount)],
                unlock_when=[When.gte("current", target)],
            )

        members = [PROFILE_USER + n for n in range(12)]
        for n, user in enumerate(members):
            count(user, "first-message", 1, 1)
            count(user, "regular", 40 + 9 * n, 100)
            if n % 3 == 0:
                count(user, "helper", 4 + n, 10)
            if n % 5 == 0:
                count(user, "streak-7", 7 - n // 5, 7)
        count(PROFILE_USER, "chatterbox", 640, 1000)
        count(PROFILE_USER, "helper", 3, 10)
        count(PROFILE_USER, "streak-7", 0, 7)
        sidecar.unlock(PROFILE_USER + 11, "night-owl")


def shoot(chromium: str, url: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={target}",
                f"--window-size={WINDOW}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    print(f"wrote {target}")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium: apt-get install chromium fonts-noto-color-emoji")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        process, url = start(Path(scratch) / "demo.db")
        try:
            seed(url)
            shoot(chromium, f"{url}/users/{PROFILE_USER}/profile", out / "profile.png")
            shoot(chromium, f"{url}/", out / "index.png")
        finally:
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    main()
