"""The discord.js example's logic (examples/discord_js/src/achievements.ts), without Discord: its
own tests (node --test, examples/discord_js/test/) drive it with fake messages against a real
sidecar, a fresh one per test file, as tests/test_bot_example.py does for the discord.py one:
counting (a redelivered message counts once), one announcement per unlock across restarts and
failures, a first start at the feed's end, the live stream, and the profile embed's data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.nodejs import CLIENT, ROOT, client_compiled, node_test, tsc
from tests.realserver import RealServer

EXAMPLE = ROOT / "examples" / "discord_js"


@pytest.fixture(scope="module")
def compiled() -> Path:
    """The logic and its tests compiled with the client's node_modules (discord.js, which only
    src/bot.ts imports, is not installed)."""
    client_compiled()
    # What `npm install` makes of the example's `file:` dependency on the client: a link.
    link = EXAMPLE / "node_modules" / "achievements-sidecar-client"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(CLIENT, link.parent), target_is_directory=True)
    tsc(EXAMPLE / "tsconfig.test.json")
    return EXAMPLE / "dist" / "test"


@pytest.mark.parametrize("name", ["counting", "announcing", "profile"])
def test_discord_js_example(name: str, compiled: Path, server: RealServer) -> None:
    report = node_test(
        [compiled / f"{name}.test.js"], cwd=EXAMPLE, env={"SIDECAR_URL": server.base_url}
    )
    assert "# fail 0" in report
