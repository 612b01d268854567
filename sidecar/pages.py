"""Server-rendered HTML pages: a user's profile and the overview (rarity and leaderboard).

Plain functions from the wire types to HTML bytes: no template engine, no script, no external
asset (the CSS is inline). Every string that a bot or a user wrote (names, descriptions, icons)
goes through `html.escape`; numbers are formatted here, never copied as text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from sidecar.models import Achievement, AchievementStats, LeaderboardEntry, UserAchievement

# No script at all may run on these pages, whatever a definition's name says.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

DEFAULT_ICON = "\U0001f3c6"  # trophy
HIDDEN_ICON = "\u2753"  # question mark
HIDDEN_NAME = "Hidden achievement"
HIDDEN_DESCRIPTION = "Keep going to find out."
MAX_ICON_CHARS = 16

# Rarity tiers by unlock rate (share of users with any progress who unlocked it).
TIERS = ((0.5, "Common"), (0.2, "Uncommon"), (0.05, "Rare"), (0.01, "Epic"), (0.0, "Legendary"))

STYLE = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6578; --line: #dde2ea;
  --card: #ffffff; --page: #f3f5f9; --accent: #5b5bd6; --gold: #b7791f; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--page); }
header { background: #20243a; color: #fff; padding: 18px 32px; }
header a { color: #c9cbff; text-decoration: none; }
header h1 { margin: 4px 0 0; font-size: 26px; }
header .crumbs { font-size: 13px; opacity: .85; }
main { max-width: 1100px; margin: 0 auto; padding: 20px 32px 40px; }
h2 { font-size: 18px; margin: 28px 0 12px; }
h2 .count { color: var(--muted); font-weight: normal; }
.summary { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 8px; }
.stat { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 10px 16px; min-width: 140px; }
.stat b { display: block; font-size: 22px; }
.stat span { color: var(--muted); font-size: 13px; }
.badges { list-style: none; padding: 0; margin: 0; display: grid; gap: 12px;
  grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); }
.badge { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  padding: 14px 16px; display: flex; gap: 14px; align-items: flex-start; }
.badge .icon { flex: 0 0 48px; font-size: 30px; line-height: 48px; text-align: center;
  background: #eef0fb; border-radius: 10px; height: 48px; }
.badge .body { flex: 1; min-width: 0; display: flex; flex-direction: column; gap: 3px; }
.badge.unlocked { border-color: #e5c07b; box-shadow: 0 1px 0 #e5c07b; }
.badge.unlocked .icon { background: #fff4dc; }
.badge.locked .icon { filter: grayscale(1); opacity: .55; }
.badge .name { font-weight: 600; overflow-wrap: anywhere; }
.badge .description { color: var(--muted); font-size: 13px; overflow-wrap: anywhere; }
.badge .when { font-size: 13px; color: var(--gold); }
.progress { display: flex; align-items: center; gap: 10px; font-size: 13px; color: var(--muted); }
progress.bar { flex: 1; height: 10px; accent-color: var(--accent); }
.rarity { font-size: 12px; color: var(--muted); }
.tier { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 11px;
  font-weight: 600; background: #eef0fb; color: #3b3fa8; margin-right: 4px; }
.tier-Rare { background: #e0f2fe; color: #075985; }
.tier-Epic { background: #f3e8ff; color: #6b21a8; }
.tier-Legendary { background: #fff4dc; color: #92400e; }
table { width: 100%; border-collapse: collapse; background: var(--card);
  border: 1px solid var(--line); border-radius: 10px; overflow: hidden; }
th, td { text-align: left; padding: 9px 12px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
  background: #f8f9fc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td .description { color: var(--muted); font-size: 13px; }
td a { color: var(--accent); }
td.icon { font-size: 22px; width: 44px; text-align: center; }
.empty { color: var(--muted); background: var(--card); border: 1px dashed var(--line);
  border-radius: 10px; padding: 16px; }
footer { color: var(--muted); font-size: 12px; margin-top: 32px; }
footer a { color: var(--muted); }
"""


# --- small pieces --------------------------------------------------------------------------


def _metadata(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(bytes(raw))
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    """A JSON number as a float (booleans are not numbers); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _show_number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else f"{value:.6g}"


def _show_time(stamp: str) -> str:
    """2026-11-24T08:25:23.123Z → 2026-11-24 08:25 UTC (the stored text when it is unusual)."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _time(stamp: str) -> str:
    return f'<time datetime="{escape(stamp)}">{escape(_show_time(stamp))}</time>'


def _icon(metadata: dict[str, Any]) -> str:
    icon = metadata.get("icon")
    if isinstance(icon, str) and 0 < len(icon) <= MAX_ICON_CHARS and "://" not in icon:
        return icon
    return DEFAULT_ICON


def tier(rate: float) -> str:
    for floor, name in TIERS:
        if rate >= floor:
            return name
    return TIERS[-1][1]


def _percent(rate: float) -> str:
    if 0 < rate < 0.001:
        return "<0.1%"
    return f"{rate * 100:.1f}%".replace(".0%", "%")


def _rarity(stats: AchievementStats | None) -> str:
    if stats is None or stats.unlocked_count == 0:
        return '<span class="rarity">Not unlocked by anyone yet</span>'
    name = tier(stats.unlock_rate)
    players = "player" if stats.unlocked_count == 1 else "players"
    return (
        f'<span class="rarity"><span class="tier tier-{name}">{name}</span>'
        f"{_percent(stats.unlock_rate)} of players · {stats.unlocked_count} {players}</span>"
    )


@dataclass(frozen=True)
class Progress:
    current: float
    target: float

    @property
    def fraction(self) -> float:
        return max(0.0, min(1.0, self.current / self.target))


def progress_of(row_metadata: dict[str, Any], definition_metadata: dict[str, Any]) -> Progress:
    """`current` from the row (0 when absent), `target` from the row, else the definition."""
    current = _number(row_metadata.get("current")) or 0.0
    target = _number(row_metadata.get("target"))
    if target is None:
        target = _number(definition_metadata.get("target"))
    return Progress(current, target if target is not None and target > 0 else 0.0)


def _progress_bar(progress: Progress) -> str:
    if progress.target <= 0:
        return ""
    current, target = progress.current, progress.target
    shown = min(current, target)
    label = f"{_show_number(current)} / {_show_number(target)}"
    return (
        '<div class="progress">'
        f'<progress class="bar" value="{_show_number(shown)}" max="{_show_number(target)}" '
        f'aria-label="{escape(label)}">{escape(label)}</progress>'
        f'<span class="amount">{escape(label)}</span></div>'
    )


def _page(title: str, crumbs: str, heading: str, body: str) -> bytes:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><div class="crumbs">{crumbs}</div><h1>{heading}</h1></header>'
        f"<main>{body}"
        '<footer>Achievements sidecar · <a href="/">overview</a> · '
        '<a href="/schema">API docs</a></footer>'
        "</main></body></html>\n"
    ).encode()


def _stats_by_id(stats: Iterable[AchievementStats]) -> dict[int, AchievementStats]:
    return {item.achievement_id: item for item in stats}


# --- the profile ---------------------------------------------------------------------------


def _badge(
    definition: Achievement,
    definition_metadata: dict[str, Any],
    row: UserAchievement | None,
    stats: AchievementStats | None,
) -> str:
    unlocked = row is not None and row.unlocked_at is not None
    hidden = definition_metadata.get("hidden") is True and not unlocked
    name = HIDDEN_NAME if hidden else definition.name
    description = HIDDEN_DESCRIPTION if hidden else definition.description
    icon = HIDDEN_ICON if hidden else _icon(definition_metadata)
    parts = [
        f'<li class="badge {"unlocked" if unlocked else "locked"}" '
        f'data-achievement-id="{definition.id}">',
        f'<div class="icon" aria-hidden="true">{escape(icon)}</div>',
        f'<div class="body"><div class="name">{escape(name)}</div>',
    ]
    if description:
        parts.append(f'<div class="description">{escape(description)}</div>')
    if row is not None and row.unlocked_at is not None:
        parts.append(f'<div class="when">Unlocked {_time(row.unlocked_at)}</div>')
    elif not hidden:
        row_metadata = _metadata(row.metadata) if row is not None else {}
        parts.append(_progress_bar(progress_of(row_metadata, definition_metadata)))
    parts.append(f"<div>{_rarity(stats)}</div></div></li>")
    return "".join(parts)


def render_profile(
    user_id: int,
    definitions: Sequence[Achievement],
    progress: Sequence[UserAchievement],
    stats: Sequence[AchievementStats],
    entry: LeaderboardEntry | None,
) -> bytes:
    """A user's badges: unlocked ones (newest first) with dates, then every other definition,
    locked, with a progress bar where `current`/`target` give one."""
    by_id = {definition.id: definition for definition in definitions}
    rarity = _stats_by_id(stats)
    rows = {row.achievement_id: row for row in progress}
    unlocked = [r for r in progress if r.unlocked_at is not None and r.achievement_id in by_id]
    # Locked: rows in progress first (most recently updated first), then untouched definitions.
    locked_ids = [row.achievement_id for row in progress if row.unlocked_at is None]
    locked_ids += [d.id for d in definitions if d.id not in rows]

    def card(achievement_id: int) -> str:
        definition = by_id[achievement_id]
        metadata = _metadata(definition.metadata)
        return _badge(definition, metadata, rows.get(achievement_id), rarity.get(achievement_id))

    rank = f"#{entry.rank}" if entry is not None else "—"
    summary = (
        '<div class="summary">'
        f'<div class="stat"><b>{len(unlocked)}</b><span>unlocked</span></div>'
        f'<div class="stat"><b>{len(definitions)}</b><span>achievements in all</span></div>'
        f'<div class="stat"><b>{rank}</b><span>on the leaderboard</span></div>'
        "</div>"
    )
    sections = [summary, f'<h2>Unlocked <span class="count">({len(unlocked)})</span></h2>']
    if unlocked:
        cards = "".join(card(row.achievement_id) for row in unlocked)
        sections.append(f'<ul class="badges" id="unlocked">{cards}</ul>')
    else:
        sections.append('<p class="empty" id="unlocked">No achievement unlocked yet.</p>')
    shown_locked = [i for i in locked_ids if i in by_id]
    sections.append(f'<h2>Locked <span class="count">({len(shown_locked)})</span></h2>')
    if shown_locked:
        cards = "".join(card(achievement_id) for achievement_id in shown_locked)
        sections.append(f'<ul class="badges" id="locked">{cards}</ul>')
    else:
        sections.append('<p class="empty" id="locked">Nothing left to unlock.</p>')
    heading = f"User {user_id}"
    crumbs = '<a href="/">Achievements</a> &rsaquo; profile'
    return _page(f"{heading} · achievements", crumbs, escape(heading), "".join(sections))


# --- the overview --------------------------------------------------------------------------


def _achievement_row(definition: Achievement, stats: AchievementStats | None) -> str:
    metadata = _metadata(definition.metadata)
    hidden = metadata.get("hidden") is True
    name = HIDDEN_NAME if hidden else definition.name
    description = HIDDEN_DESCRIPTION if hidden else definition.description
    icon = HIDDEN_ICON if hidden else _icon(metadata)
    unlocked = stats.unlocked_count if stats is not None else 0
    in_progress = stats.in_progress_count if stats is not None else 0
    described = f'<div class="description">{escape(description)}</div>' if description else ""
    return (
        f'<tr data-achievement-id="{definition.id}">'
        f'<td class="icon" aria-hidden="true">{escape(icon)}</td>'
        f'<td><div class="name">{escape(name)}</div>{described}</td>'
        f'<td class="num">{unlocked}</td><td class="num">{in_progress}</td>'
        f"<td>{_rarity(stats)}</td></tr>"
    )


def _leaderboard_row(entry: LeaderboardEntry) -> str:
    return (
        f'<tr><td class="num">{entry.rank}</td>'
        f'<td><a href="/users/{entry.user_id}/profile">User {entry.user_id}</a></td>'
        f'<td class="num">{entry.unlocked_count}</td>'
        f"<td>{_time(entry.last_unlocked_at)}</td></tr>"
    )


def render_index(
    definitions: Sequence[Achievement],
    stats: Sequence[AchievementStats],
    leaderboard: Sequence[LeaderboardEntry],
) -> bytes:
    """Every achievement with its rarity (rarest first), and the top of the leaderboard."""
    rarity = _stats_by_id(stats)

    def rate(definition: Achievement) -> tuple[float, str, int]:
        found = rarity.get(definition.id)
        name = (
            HIDDEN_NAME if _metadata(definition.metadata).get("hidden") is True else definition.name
        )
        return (found.unlock_rate if found else 0.0, name.casefold(), definition.id)

    unlocks = sum(item.unlocked_count for item in stats)
    sections = [
        '<div class="summary">'
        f'<div class="stat"><b>{len(definitions)}</b><span>achievements</span></div>'
        f'<div class="stat"><b>{unlocks}</b><span>unlocks in all</span></div>'
        "</div>",
        f'<h2>Achievements <span class="count">({len(definitions)})</span></h2>',
    ]
    if definitions:
        rows = "".join(_achievement_row(d, rarity.get(d.id)) for d in sorted(definitions, key=rate))
        sections.append(
            '<table id="achievements"><thead><tr><th></th><th>Achievement</th>'
            '<th class="num">Unlocked</th><th class="num">In progress</th><th>Rarity</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        sections.append('<p class="empty" id="achievements">No achievement defined yet.</p>')
    sections.append("<h2>Leaderboard</h2>")
    if leaderboard:
        rows = "".join(_leaderboard_row(entry) for entry in leaderboard)
        sections.append(
            '<table id="leaderboard"><thead><tr><th class="num">Rank</th><th>User</th>'
            '<th class="num">Unlocked</th><th>Last unlock</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
    else:
        sections.append('<p class="empty" id="leaderboard">Nobody has unlocked anything yet.</p>')
    return _page("Achievements", "Achievements sidecar", "Achievements", "".join(sections))
