"""Achievements for a discord.py bot, kept by the achievements sidecar.

- Counts each member's messages with one atomic `apply` per badge (`inc current`, unlocking
  when `current >= target`), all in one batch whose Idempotency-Key is the message id: a
  message that Discord delivers twice, or that the bot handles again after a restart, counts once.
- Announces each unlock from the sidecar's unlock feed, never from `newly_unlocked`, with the
  position in the feed kept in a small file. What holds: every unlock after the bot's first
  start is posted, in order, and once, but for the one that was being posted if the bot dies
  between Discord's answer and writing the file (that one is posted again after the restart).
  `newly_unlocked` cannot do as well: a redelivered message gets the stored answer back, with
  `newly_unlocked` true again (`sidecar.detailed.batch(...)` says `replayed`), and an unlock
  that the bot did not see the answer of (a crash, a timeout) would never be announced.
- On its first start (no cursor file), it begins at the feed's end: unlocks from before the bot
  existed are not announced as a burst into the channel.
- `/achievements [user]` answers with an embed: unlocked badges with their dates, progress bars
  for the locked ones (`current` of the row, `target` of the row or the definition), rarity.

The logic (`AchievementLogic`) is plain Python on `sidecar.client`, testable without Discord;
only `build_cog`, `setup` and `main` import discord.py.

Run it on its own:     DISCORD_TOKEN=... ANNOUNCE_CHANNEL_ID=... python cog.py
or load it in a bot:   await bot.load_extension("cog")   (with this folder on sys.path)
Settings: SIDECAR_URL, SIDECAR_TOKEN (the sidecar), ANNOUNCE_CHANNEL_ID (where unlocks are
announced), ACHIEVEMENTS_CURSOR_FILE (default ./achievements-cursor.json).
"""

# No `from __future__ import annotations`: discord.py reads the slash command's parameter
# annotations at runtime, and `discord` is only imported inside build_cog.

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sidecar.client import (
    AchievementsClient,
    Batch,
    Op,
    UserNotFound,
    When,
    metadata_of,
)
from sidecar.models import Achievement, Event, UserAchievementChange

log = logging.getLogger("achievements.cog")

BAR_WIDTH = 10
FIELD_LIMIT = 1024  # characters in one embed field's value
GOLD, GREY = 0xF1C40F, 0x95A5A6
DEFAULT_ICON = "\U0001f3c6"


@dataclass(frozen=True)
class Badge:
    """A message-count badge: synced to the sidecar by key at start-up."""

    key: str
    name: str
    description: str
    target: int
    icon: str = DEFAULT_ICON

    def metadata(self) -> dict[str, Any]:
        return {"target": self.target, "icon": self.icon, "category": "messages"}


MESSAGE_BADGES = (
    Badge("first-message", "First words", "Send your first message", 1, "\U0001f44b"),
    Badge("regular", "Regular", "Send 100 messages", 100, "\U0001f4ac"),
    Badge("chatterbox", "Chatterbox", "Send 1,000 messages", 1000, "\U0001f4e3"),
)


# --- what the bot sends --------------------------------------------------------------------


@dataclass(frozen=True)
class Announcement:
    event_id: int
    user_id: int
    achievement_id: int
    name: str
    icon: str
    unlock_rate: float
    text: str


@dataclass(frozen=True)
class BadgeLine:
    achievement_id: int
    name: str
    icon: str
    unlock_rate: float
    unlocked_at: str | None = None
    current: float | None = None
    target: float | None = None


@dataclass(frozen=True)
class EmbedField:
    name: str
    value: str
    inline: bool = False


@dataclass
class ProfileEmbed:
    """Everything the `/achievements` embed shows, as plain data."""

    title: str
    description: str
    color: int
    unlocked: list[BadgeLine] = field(default_factory=list)
    locked: list[BadgeLine] = field(default_factory=list)
    fields: list[EmbedField] = field(default_factory=list)
    footer: str = "Rarity: the share of members with any progress who unlocked it"


class Author(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def bot(self) -> bool: ...


class Message(Protocol):
    """What the cog reads of a discord.Message."""

    @property
    def id(self) -> int: ...

    @property
    def author(self) -> Author: ...


# --- small helpers -------------------------------------------------------------------------


def escape_markdown(text: str) -> str:
    for mark in ("\\", "*", "_", "~", "`", "|", ">"):
        text = text.replace(mark, "\\" + mark)
    return text


def progress_bar(current: float, target: float, width: int = BAR_WIDTH) -> str:
    # Rounded down: the bar is full only when the target is reached.
    filled = 0 if target <= 0 else int(width * max(0.0, min(1.0, current / target)))
    return "\u2588" * filled + "\u2591" * (width - filled)


def percent(rate: float) -> str:
    if 0 < rate < 0.001:
        return "<0.1%"
    return f"{rate * 100:.1f}%".replace(".0%", "%")


def show_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def discord_time(stamp: str) -> str:
    """A Discord timestamp tag: every reader sees the date in their own time zone."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return f"<t:{int(moment.timestamp())}:d>"


def icon_of(metadata: dict[str, Any]) -> str:
    icon = metadata.get("icon")
    return icon if isinstance(icon, str) and 0 < len(icon) <= 16 else DEFAULT_ICON


def field_value(lines: Sequence[str]) -> str:
    """Lines joined, cut to what one embed field holds."""
    shown: list[str] = []
    for index, line in enumerate(lines):
        rest = len(lines) - index
        tail = f"\u2026 and {rest} more"
        if len("\n".join([*shown, line])) + len(tail) + 1 > FIELD_LIMIT:
            return "\n".join([*shown, tail])
        shown.append(line)
    return "\n".join(shown) or "\u2014"


class CursorFile:
    """The id of the last announced unlock event, in a small JSON file (replaced atomically)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def load(self) -> int | None:
        """The saved id; None before the first save."""
        try:
            return int(json.loads(self.path.read_text())["after"])
        except FileNotFoundError:
            return None

    def save(self, after: int) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w") as handle:
            json.dump({"after": after}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


Send = Callable[[Announcement], Awaitable[None]]


async def feed_end(sidecar: AchievementsClient) -> int:
    """The id of the newest unlock event, 0 when there is none. Event ids start at 1 and grow by
    one, none skipped (API.md), so whether id N exists is one `events(after=N-1, limit=1)`; the
    end is found by doubling, then halving: about 2 log2(N) small requests, not N/1000 pages."""

    async def exists(event_id: int) -> bool:
        return bool(await sidecar.events(after=event_id - 1, limit=1))

    low, high = 0, 1  # id `low` exists (or is 0), id `high` is to be tried
    while await exists(high):
        low, high = high, high * 2
    while high - low > 1:  # `high` does not exist
        middle = (low + high) // 2
        low, high = (middle, high) if await exists(middle) else (low, middle)
    return low


# --- the logic -----------------------------------------------------------------------------


class AchievementLogic:
    def __init__(
        self,
        sidecar: AchievementsClient,
        cursor: CursorFile | Path | str,
        badges: Sequence[Badge] = MESSAGE_BADGES,
    ) -> None:
        self.sidecar = sidecar
        self.cursor = cursor if isinstance(cursor, CursorFile) else CursorFile(cursor)
        self.badges = tuple(badges)
        self._definitions: dict[int, Achievement] = {}

    async def setup(self) -> None:
        """Create or update the badges' definitions (by key: safe to run at every start); on the
        first start, place the cursor at the feed's end."""
        for badge in self.badges:
            await self.sidecar.put_definition(
                badge.key, badge.name, description=badge.description, metadata=badge.metadata()
            )
        await self._cursor()

    async def _cursor(self) -> int:
        """The saved cursor; the feed's end on the first start (then saved)."""
        after = self.cursor.load()
        if after is None:
            after = await feed_end(self.sidecar)
            self.cursor.save(after)
        return after

    # counting

    async def handle_message(self, message: Message) -> list[UserAchievementChange]:
        """The cog's on_message: bots do not count."""
        if message.author.bot:
            return []
        return await self.on_message(message.author.id, message.id)

    async def on_message(self, author_id: int, message_id: int) -> list[UserAchievementChange]:
        """Count one message for every badge, atomically; returns what it newly unlocked (for
        the caller's own use: announcements come from the feed, see the module's docstring)."""
        operations = [
            Batch.apply(
                author_id,
                badge.key,
                [Op.inc("current")],
                unlock_when=[When.gte("current", badge.target)],
            )
            for badge in self.badges
        ]
        # The message id as the key: the same message counts once, however often it comes.
        results = await self.sidecar.batch(
            operations, idempotency_key=f"discord-message:{message_id}"
        )
        return [
            result
            for result in results
            if isinstance(result, UserAchievementChange) and result.newly_unlocked
        ]

    # announcing

    async def _definition(self, achievement_id: int) -> Achievement | None:
        if achievement_id not in self._definitions:
            self._definitions = {a.id: a for a in await self.sidecar.list_definitions()}
        return self._definitions.get(achievement_id)

    async def _announcement(self, event: Event, rates: dict[int, float]) -> Announcement:
        definition = await self._definition(event.achievement_id)
        if definition is None:  # deleted since
            name, icon = f"achievement #{event.achievement_id}", DEFAULT_ICON
        else:
            name, icon = definition.name, icon_of(metadata_of(definition))
        rate = rates.get(event.achievement_id, 0.0)
        text = (
            f"{icon} <@{event.user_id}> unlocked **{escape_markdown(name)}**! "
            f"({percent(rate)} of members have it)"
        )
        return Announcement(event.id, event.user_id, event.achievement_id, name, icon, rate, text)

    async def _rates(self) -> dict[int, float]:
        return {s.achievement_id: s.unlock_rate for s in await self.sidecar.stats()}

    async def announce_new_unlocks(self, send: Send, page: int = 100) -> list[Announcement]:
        """Send every unlock after the saved cursor, oldest first, saving the cursor after each
        one sent; an error in `send` stops here and the next call starts with that unlock."""
        sent: list[Announcement] = []
        after = await self._cursor()
        while events := await self.sidecar.events(after=after, limit=page):
            rates = await self._rates()
            for event in events:
                announcement = await self._announcement(event, rates)
                await send(announcement)
                after = event.id
                self.cursor.save(after)
                sent.append(announcement)
        return sent

    async def watch_unlocks(self, send: Send) -> None:
        """The same, live: follows the feed's stream from the saved cursor until cancelled."""
        async with contextlib.aclosing(self.sidecar.stream(after=await self._cursor())) as events:
            async for event in events:
                await send(await self._announcement(event, await self._rates()))
                self.cursor.save(event.id)

    # the profile

    async def profile(self, user_id: int, display_name: str | None = None) -> ProfileEmbed:
        definitions = await self.sidecar.list_definitions()
        rows = {row.achievement_id: row for row in await self.sidecar.list_progress(user_id)}
        rates = await self._rates()
        unlocked: list[BadgeLine] = []
        locked: list[BadgeLine] = []
        for definition in definitions:
            meta = metadata_of(definition)
            row = rows.get(definition.id)
            rate = rates.get(definition.id, 0.0)
            icon = icon_of(meta)
            if row is not None and row.unlocked_at is not None:
                line = BadgeLine(definition.id, definition.name, icon, rate, row.unlocked_at)
                unlocked.append(line)
                continue
            if meta.get("hidden") is True:
                continue
            row_meta = metadata_of(row) if row is not None else {}
            target = number(row_meta.get("target"))
            if target is None:
                target = number(meta.get("target"))
            current = number(row_meta.get("current")) or 0.0
            line = BadgeLine(definition.id, definition.name, icon, rate, None, current, target)
            locked.append(line)
        unlocked.sort(key=lambda line: line.unlocked_at or "", reverse=True)

        try:
            rank = f" \u00b7 rank #{(await self.sidecar.leaderboard_entry(user_id)).rank}"
        except UserNotFound:
            rank = ""
        who = escape_markdown(display_name or f"User {user_id}")
        embed = ProfileEmbed(
            title=f"{who}'s achievements",
            description=f"{len(unlocked)} of {len(unlocked) + len(locked)} unlocked{rank}",
            color=GOLD if unlocked else GREY,
            unlocked=unlocked,
            locked=locked,
        )
        embed.fields = [
            EmbedField(
                f"Unlocked ({len(unlocked)})", field_value([_unlocked(b) for b in unlocked])
            ),
            EmbedField(f"In progress ({len(locked)})", field_value([_locked(b) for b in locked])),
        ]
        return embed


def _unlocked(line: BadgeLine) -> str:
    assert line.unlocked_at is not None
    return (
        f"{line.icon} **{escape_markdown(line.name)}** \u2014 {discord_time(line.unlocked_at)}"
        f" \u00b7 {percent(line.unlock_rate)}"
    )


def _locked(line: BadgeLine) -> str:
    text = f"{line.icon} {escape_markdown(line.name)}"
    if line.target is not None and line.target > 0 and line.current is not None:
        bar = progress_bar(line.current, line.target)
        text += f" `{bar}` {show_number(line.current)}/{show_number(line.target)}"
    return text + f" \u00b7 {percent(line.unlock_rate)}"


# --- the discord.py glue (imports discord only here) -----------------------------------------


def to_discord_embed(data: ProfileEmbed) -> Any:
    import discord

    embed = discord.Embed(title=data.title, description=data.description, color=data.color)
    for item in data.fields:
        embed.add_field(name=item.name, value=item.value, inline=item.inline)
    embed.set_footer(text=data.footer)
    return embed


def build_cog(bot: Any, logic: AchievementLogic, channel_id: int | None) -> Any:
    """The discord.py Cog: the message listener, the unlock announcer, `/achievements`."""
    import discord
    from discord import app_commands
    from discord.ext import commands

    async def announce(announcement: Announcement) -> None:
        if channel_id is None:
            return
        channel = bot.get_channel(channel_id) or await bot.fetch_channel(channel_id)
        mentions = discord.AllowedMentions(users=True, roles=False, everyone=False)
        await channel.send(announcement.text, allowed_mentions=mentions)

    class AchievementsCog(commands.Cog):
        def __init__(self) -> None:
            self.watcher: asyncio.Task[None] | None = None

        async def cog_load(self) -> None:
            await logic.setup()
            self.watcher = asyncio.create_task(self.watch())

        async def cog_unload(self) -> None:
            if self.watcher is not None:
                self.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.watcher
            await logic.sidecar.aclose()

        async def watch(self) -> None:
            await bot.wait_until_ready()
            while True:
                try:
                    await logic.watch_unlocks(announce)
                except asyncio.CancelledError:
                    raise
                except Exception:  # Discord or the sidecar away for a moment: go on
                    log.exception("announcing unlocks failed; again in 5 s")
                    await asyncio.sleep(5)

        @commands.Cog.listener()
        async def on_message(self, message: discord.Message) -> None:
            try:
                await logic.handle_message(message)
            except Exception:
                log.exception("counting message %s failed", message.id)

        @app_commands.command(name="achievements", description="Show achievements and progress")
        @app_commands.describe(user="Whose achievements (yours by default)")
        async def achievements(
            self, interaction: discord.Interaction, user: discord.Member | None = None
        ) -> None:
            target = user or interaction.user
            data = await logic.profile(target.id, target.display_name)
            await interaction.response.send_message(embed=to_discord_embed(data))

    return AchievementsCog()


def logic_from_env() -> AchievementLogic:
    cursor = os.environ.get("ACHIEVEMENTS_CURSOR_FILE", "achievements-cursor.json")
    return AchievementLogic(AchievementsClient(), cursor)


async def setup(bot: Any) -> None:
    """discord.py's extension entry point: `await bot.load_extension("cog")`."""
    channel = os.environ.get("ANNOUNCE_CHANNEL_ID")
    await bot.add_cog(build_cog(bot, logic_from_env(), int(channel) if channel else None))


def main() -> None:
    import discord
    from discord.ext import commands

    logging.basicConfig(level=logging.INFO)

    class Bot(commands.Bot):
        async def setup_hook(self) -> None:
            await setup(self)
            await self.tree.sync()

    # Counting needs no message content: the default intents (no privileged one) are enough.
    Bot(command_prefix="!", intents=discord.Intents.default()).run(os.environ["DISCORD_TOKEN"])


if __name__ == "__main__":
    main()
