"""The pages in a real browser: headless Chromium (Debian's `chromium`) loads the profile, the
overview and the API docs from the real server; the test reads the rendered DOM and saves
screenshots under its tmp dir.

The suite never installs system packages: without Chromium these tests skip with one line saying
what to install; .ci/run installs it so that CI always runs them. Every host name but the test
server's address resolves to nothing, so a page that needed the internet would show it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.client import Op, SyncAchievementsClient, When
from tests.realserver import RealServer
from tests.test_pages import Element, badge_named, parse_html

XSS_NAME = "<script>alert(1)</script>"
XSS_DESCRIPTION = "<img src=x onerror=\"document.body.setAttribute('data-pwned', '1')\">"
WINDOW = (1200, 900)
BROWSER_SECONDS = 90

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    # Every host name resolves to nothing, except the test server's address.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Chromium is not installed: apt-get install chromium (.ci/run does)")
    return path


class Browser:
    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir
        self.runs = 0

    def _run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        self.runs += 1
        profile = self.workdir / f"profile-{self.runs}"
        done = subprocess.run(
            [self.executable, *FLAGS, f"--user-data-dir={profile}", *arguments],
            capture_output=True,
            text=True,
            timeout=BROWSER_SECONDS,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    def dom(self, url: str, wait_ms: int = 0) -> Element:
        """The DOM after load (and after `wait_ms` of virtual time for scripts)."""
        budget = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
        done = self._run(*budget, "--dump-dom", url)
        assert "<html" in done.stdout.lower(), done.stderr[-2000:]  # else the load failed
        return parse_html(done.stdout)

    def screenshot(self, url: str, target: Path, wait_ms: int = 0) -> Path:
        budget = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
        size = f"--window-size={WINDOW[0]},{WINDOW[1]}"
        self._run(*budget, f"--screenshot={target}", size, "--hide-scrollbars", url)
        return target


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Browser]:
    yield Browser(chromium, tmp_path)


def seed(base_url: str) -> dict[str, int]:
    with SyncAchievementsClient(base_url, backoff=0) as sidecar:
        chatter = sidecar.put_definition(
            "chatterbox", "Chatterbox", description="Send 10 messages", metadata={"target": 10}
        )
        first = sidecar.put_definition("first-words", "First words", description="Say hello")
        xss = sidecar.create_definition(XSS_NAME, description=XSS_DESCRIPTION)
        for _ in range(4):
            sidecar.apply(1, chatter.id, [Op.inc("current")], unlock_when=[When.gte("current", 10)])
        for user in (1, 2, 3):
            sidecar.unlock(user, first.id)
        sidecar.unlock(2, xss.id)
        return {"chatter": chatter.id, "first": first.id, "xss": xss.id}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_no_script_ran(document: Element) -> None:
    assert document.find_all("script") == []
    body = document.find("body")
    assert "data-pwned" not in body.attrs


def test_profile_and_overview_render_in_chromium(
    server: RealServer, browser: Browser, tmp_path: Path
) -> None:
    seed(server.base_url)

    profile = browser.dom(f"{server.base_url}/users/1/profile")
    assert profile.find("h1").text() == "User 1"
    names = {
        section: [b.find("div", "name").text() for b in profile.by_id(section).find_all("li")]
        for section in ("unlocked", "locked")
    }
    assert names == {"unlocked": ["First words"], "locked": ["Chatterbox", XSS_NAME]}
    words = badge_named(profile, "First words")
    assert words.find("div", "when").text().startswith("Unlocked 20")
    assert words.find("span", "rarity").text() == "Common100% of players · 3 players"
    bar = badge_named(profile, "Chatterbox").find("progress")
    assert (bar.attrs["value"], bar.attrs["max"]) == ("4", "10")
    assert badge_named(profile, "Chatterbox").find("span", "amount").text() == "4 / 10"
    xss = badge_named(profile, XSS_NAME)  # the name is text, not an element
    assert xss.find("div", "name").children == [XSS_NAME]
    assert xss.find("div", "description").children == [XSS_DESCRIPTION]
    assert xss.find("span", "rarity").text() == "Uncommon33.3% of players · 1 player"
    assert_no_script_ran(profile)

    overview = browser.dom(f"{server.base_url}/")
    rows = overview.by_id("achievements").find("tbody").find_all("tr")
    assert [row.find("div", "name").text() for row in rows] == [
        "Chatterbox",
        XSS_NAME,
        "First words",
    ]
    assert [row.find("span", "rarity").text() for row in rows] == [
        "Not unlocked by anyone yet",
        "Uncommon33.3% of players · 1 player",
        "Common100% of players · 3 players",
    ]
    board = overview.by_id("leaderboard").find("tbody").find_all("tr")
    assert [row.find("a").text() for row in board] == ["User 2", "User 1", "User 3"]
    assert_no_script_ran(overview)

    for name, path in (("profile", "/users/1/profile"), ("index", "/")):
        shot = browser.screenshot(f"{server.base_url}{path}", tmp_path / f"{name}.png")
        assert png_size(shot) == WINDOW
        # A blank page of this size compresses to a few kB; a rendered one is far larger.
        assert shot.stat().st_size > 20_000, (name, shot.stat().st_size)


def test_api_docs_render_every_route_offline(
    server: RealServer, browser: Browser, tmp_path: Path
) -> None:
    """Swagger UI runs from the service's own files (all other hosts unreachable) and shows
    every operation of the OpenAPI document."""
    with SyncAchievementsClient(server.base_url) as sidecar:
        document = sidecar.openapi()
    expected = {(method, path) for path, item in document["paths"].items() for method in item}

    docs = browser.dom(f"{server.base_url}/schema", wait_ms=15_000)
    shown = set()
    for block in docs.find_all("div", "opblock"):
        methods = [c.removeprefix("opblock-") for c in block.classes if c != "opblock"]
        path = block.find("span", "opblock-summary-path").attrs["data-path"]
        shown.add((methods[0], path))
    assert shown == expected
    assert "Achievements sidecar" in docs.find(cls="title").text()

    shot = browser.screenshot(f"{server.base_url}/schema", tmp_path / "schema.png", 15_000)
    assert png_size(shot) == WINDOW
