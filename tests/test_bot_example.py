"""The discord.py example's logic (examples/discord_bot/cog.py), without Discord: its handlers
get fake message objects and talk to a real sidecar. Counting (a redelivered message counts
once), one announcement per unlock across restarts and failures, and the profile embed's data."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from examples.discord_bot.cog import (
    DEFAULT_ICON,
    MESSAGE_BADGES,
    AchievementLogic,
    Announcement,
    Badge,
    BadgeLine,
    CursorFile,
    discord_time,
    feed_end,
    field_value,
    progress_bar,
)
from sidecar.client import AchievementsClient, metadata_of
from tests.realserver import RealServer

BADGES = (
    Badge("first-message", "First words", "Send your first message", 1, "W"),
    Badge("regular", "Regular", "Send 3 messages", 3, "R"),
    Badge("chatterbox", "Chatter_box", "Send 5 messages", 5, "C"),
)
FULL, EMPTY = "\u2588", "\u2591"
ANN, BOB, CAT = 111_111_111_111_111_111, 222_222_222_222_222_222, 444_444_444_444_444_444
BOT = 333_333_333_333_333_333


def message(message_id: int, author: int, bot: bool = False) -> Any:
    """What discord.py hands to on_message, as far as the cog reads it."""
    return SimpleNamespace(
        id=message_id,
        author=SimpleNamespace(id=author, bot=bot, display_name=f"name-{author}"),
        content="hello",
    )


@pytest.fixture
async def sidecar(server: RealServer) -> AsyncIterator[AchievementsClient]:
    async with AchievementsClient(server.base_url, backoff=0) as client:
        yield client


@pytest.fixture
async def logic(sidecar: AchievementsClient, tmp_path: Path) -> AchievementLogic:
    bot_logic = AchievementLogic(sidecar, tmp_path / "cursor.json", BADGES)
    await bot_logic.setup()
    return bot_logic


class Channel:
    """Collects what the bot would post; fails on demand."""

    def __init__(self) -> None:
        self.posted: list[Announcement] = []
        self.fail_on: set[int] = set()

    async def send(self, announcement: Announcement) -> None:
        if announcement.event_id in self.fail_on:
            self.fail_on.discard(announcement.event_id)
            raise ConnectionError("Discord is away")
        self.posted.append(announcement)


async def current(sidecar: AchievementsClient, user: int, key: str) -> Any:
    row = await sidecar.get_progress(user, key)
    return None if row is None else metadata_of(row)["current"]


# --- counting -------------------------------------------------------------------------------


async def test_messages_count_once_each_and_unlock_at_their_target(
    logic: AchievementLogic, sidecar: AchievementsClient, tmp_path: Path
) -> None:
    unlocked = [await logic.handle_message(message(m, ANN)) for m in range(1, 6)]
    keys = [[(await sidecar.get_definition(c.achievement_id)).key for c in u] for u in unlocked]
    assert keys == [["first-message"], [], ["regular"], [], ["chatterbox"]]
    for badge in BADGES:
        assert await current(sidecar, ANN, badge.key) == 5
    assert all(c.user_id == ANN and c.unlocked_at for u in unlocked for c in u)

    first = await logic.handle_message(message(7001, BOB))
    assert len(first) == 1
    again = await logic.handle_message(message(7001, BOB))  # gateway replay, or a restart
    # The stored answer comes back: the same rows, no second count.
    assert [(c.id, c.newly_unlocked) for c in again] == [(c.id, True) for c in first]
    assert await current(sidecar, BOB, "regular") == 1
    await logic.handle_message(message(7002, BOB))
    assert await current(sidecar, BOB, "regular") == 2

    assert await logic.handle_message(message(9001, BOT, bot=True)) == []  # bots do not count
    assert await sidecar.list_progress(BOT) == []
    assert [(e.user_id, e.id) for e in await sidecar.events()] == [
        (ANN, 1),
        (ANN, 2),
        (ANN, 3),
        (BOB, 4),
    ]

    # A redeployed bot with other targets: definitions replaced by key, progress kept.
    before = {d.key: d.id for d in await sidecar.list_definitions()}
    redeployed = AchievementLogic(sidecar, tmp_path / "c.json")
    await redeployed.setup()
    await redeployed.setup()
    assert {d.key: d.id for d in await sidecar.list_definitions()} == before
    assert sorted(before) == sorted(b.key for b in MESSAGE_BADGES)
    chatter = await sidecar.get_definition("chatterbox")
    assert metadata_of(chatter) == {"target": 1000, "icon": "\U0001f4e3", "category": "messages"}
    assert await current(sidecar, ANN, "chatterbox") == 5


# --- announcing -----------------------------------------------------------------------------


async def test_each_unlock_is_announced_once(
    logic: AchievementLogic, sidecar: AchievementsClient, tmp_path: Path
) -> None:
    channel = Channel()
    for m in range(1, 4):
        await logic.handle_message(message(m, ANN))
    await logic.handle_message(message(10, BOB))

    posted = await logic.announce_new_unlocks(channel.send)
    assert [(a.user_id, a.name) for a in channel.posted] == [
        (ANN, "First words"),
        (ANN, "Regular"),
        (BOB, "First words"),
    ]
    assert posted == channel.posted
    assert [a.event_id for a in posted] == [1, 2, 3]
    assert (
        channel.posted[0].text == f"W <@{ANN}> unlocked **First words**! (100% of members have it)"
    )
    assert channel.posted[1].text == f"R <@{ANN}> unlocked **Regular**! (50% of members have it)"
    assert json.loads((tmp_path / "cursor.json").read_text()) == {"after": 3}

    # Nothing new: nothing posted, also by a restarted bot on the same cursor file.
    assert await logic.announce_new_unlocks(channel.send) == []
    restarted = AchievementLogic(sidecar, CursorFile(tmp_path / "cursor.json"), BADGES)
    assert await restarted.announce_new_unlocks(channel.send) == []
    assert len(channel.posted) == 3

    # Discord fails on the second of two new unlocks: the first stays announced, the second
    # comes on the next round, once.
    for m in range(4, 6):
        await logic.handle_message(message(m, ANN))  # ANN reaches 5: Chatter_box
    for m in range(11, 13):
        await logic.handle_message(message(m, BOB))  # BOB reaches 3: Regular
    channel.fail_on = {5}
    with pytest.raises(ConnectionError):
        await restarted.announce_new_unlocks(channel.send)
    assert [a.event_id for a in channel.posted] == [1, 2, 3, 4]
    assert [a.event_id for a in await restarted.announce_new_unlocks(channel.send)] == [5]
    assert [a.event_id for a in channel.posted] == [1, 2, 3, 4, 5]
    assert [(a.user_id, a.name) for a in channel.posted[3:]] == [
        (ANN, "Chatter_box"),
        (BOB, "Regular"),
    ]
    assert "**Chatter\\_box**" in channel.posted[3].text  # markdown in names escaped


async def test_first_start_begins_at_the_feed_end_and_restarts_keep_the_cursor(
    sidecar: AchievementsClient, tmp_path: Path
) -> None:
    # Unlocks from before the bot's first start: not announced as a burst into the channel.
    old = await sidecar.create_definition("Old")
    for user in range(1, 6):
        await sidecar.unlock(user, old.id)
    cursor = tmp_path / "cursor.json"
    channel = Channel()
    first = AchievementLogic(sidecar, cursor, BADGES)
    await first.setup()
    assert CursorFile(cursor).load() == 5
    assert await first.announce_new_unlocks(channel.send) == []

    await first.handle_message(message(1, ANN))
    assert [(a.event_id, a.user_id) for a in await first.announce_new_unlocks(channel.send)] == [
        (6, ANN)
    ]
    # A restart (setup again, same file) carries on from the cursor: nothing again, nothing lost.
    await first.handle_message(message(2, BOB))
    restarted = AchievementLogic(sidecar, cursor, BADGES)
    await restarted.setup()
    assert [a.event_id for a in await restarted.announce_new_unlocks(channel.send)] == [7]
    assert [a.event_id for a in channel.posted] == [6, 7]


async def test_feed_end_finds_the_newest_event(sidecar: AchievementsClient) -> None:
    badge = await sidecar.create_definition("Counted")
    assert await feed_end(sidecar) == 0
    for user in range(1, 18):
        await sidecar.unlock(user, badge.id)
        assert await feed_end(sidecar) == user


async def test_unlocks_are_announced_live_from_the_stream(
    logic: AchievementLogic, sidecar: AchievementsClient, tmp_path: Path
) -> None:
    await logic.handle_message(message(1, ANN))
    await logic.announce_new_unlocks(Channel().send)  # caught up: cursor 1

    channel = Channel()
    arrived = asyncio.Event()

    async def send(announcement: Announcement) -> None:
        await channel.send(announcement)
        arrived.set()

    watcher = asyncio.create_task(logic.watch_unlocks(send))
    try:
        await logic.handle_message(message(2, BOB))
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
    assert [(a.event_id, a.user_id, a.name) for a in channel.posted] == [(2, BOB, "First words")]
    assert CursorFile(tmp_path / "cursor.json").load() == 2


# --- the profile ----------------------------------------------------------------------------


async def test_profile_embed_data(logic: AchievementLogic, sidecar: AchievementsClient) -> None:
    for m in range(1, 4):
        await logic.handle_message(message(m, ANN))
    await logic.handle_message(message(10, BOB))
    secret = await sidecar.put_definition("secret", "Secret", metadata={"hidden": True})
    shiny = await sidecar.put_definition("shiny", "Shiny", metadata={"icon": "S"})
    await sidecar.upsert_progress(ANN, "shiny", {"current": 2, "target": 8})
    rows = {r.achievement_id: r for r in await sidecar.list_progress(ANN)}
    ids = {b.key: (await sidecar.get_definition(b.key)).id for b in BADGES}

    embed = await logic.profile(ANN, "Ann*")
    assert embed.title == "Ann\\*'s achievements"
    assert embed.description == "2 of 4 unlocked \u00b7 rank #1"  # the hidden one not counted
    assert embed.color == 0xF1C40F
    assert embed.unlocked == [
        BadgeLine(ids["regular"], "Regular", "R", 0.5, rows[ids["regular"]].unlocked_at),
        BadgeLine(
            ids["first-message"], "First words", "W", 1.0, rows[ids["first-message"]].unlocked_at
        ),
    ]
    # Definitions in name order; target from the definition, or from the row (Shiny).
    assert embed.locked == [
        BadgeLine(ids["chatterbox"], "Chatter_box", "C", 0.0, None, 3.0, 5.0),
        BadgeLine(shiny.id, "Shiny", "S", 0.0, None, 2.0, 8.0),
    ]
    assert secret.id not in [line.achievement_id for line in embed.locked]

    unlocked_field, locked_field = embed.fields
    assert unlocked_field.name == "Unlocked (2)"
    regular_at = discord_time(rows[ids["regular"]].unlocked_at or "")
    first_at = discord_time(rows[ids["first-message"]].unlocked_at or "")
    assert unlocked_field.value.splitlines() == [
        f"R **Regular** \u2014 {regular_at} \u00b7 50%",
        f"W **First words** \u2014 {first_at} \u00b7 100%",
    ]
    assert locked_field.name == "In progress (2)"
    assert locked_field.value.splitlines() == [
        "C Chatter\\_box `" + FULL * 6 + EMPTY * 4 + "` 3/5 \u00b7 0%",
        "S Shiny `" + FULL * 2 + EMPTY * 8 + "` 2/8 \u00b7 0%",
    ]

    # A member with nothing: everything (but the hidden one) in progress at 0.
    nobody = await logic.profile(CAT)
    assert (nobody.title, nobody.description, nobody.color) == (
        f"User {CAT}'s achievements",
        "0 of 4 unlocked",
        0x95A5A6,
    )
    assert nobody.unlocked == [] and nobody.fields[0].value == "\u2014"
    assert [(line.name, line.current, line.target) for line in nobody.locked] == [
        ("Chatter_box", 0.0, 5.0),
        ("First words", 0.0, 1.0),
        ("Regular", 0.0, 3.0),
        ("Shiny", 0.0, None),  # its target is in ANN's row only: no bar
    ]
    assert nobody.fields[1].value.splitlines() == [
        "C Chatter\\_box `" + EMPTY * 10 + "` 0/5 \u00b7 0%",
        "W First words `" + EMPTY * 10 + "` 0/1 \u00b7 100%",
        "R Regular `" + EMPTY * 10 + "` 0/3 \u00b7 50%",
        "S Shiny \u00b7 0%",
    ]


def test_progress_bar_and_long_fields() -> None:
    assert progress_bar(0, 10) == EMPTY * 10
    assert progress_bar(25, 10) == FULL * 10
    assert progress_bar(1, 3) == FULL * 3 + EMPTY * 7
    assert progress_bar(99, 100) == FULL * 9 + EMPTY  # full only when reached
    lines = [f"{DEFAULT_ICON} badge number {n:03d} with a long enough name" for n in range(60)]
    value = field_value(lines)
    assert len(value) <= 1024
    kept = value.splitlines()
    assert kept[:-1] == lines[: len(kept) - 1]
    assert kept[-1] == f"\u2026 and {60 - (len(kept) - 1)} more"
