"""The HTML pages, in-process: a user's profile (`GET /users/{userId}/profile`) and the overview
(`GET /`): content, rarity, progress bars, escaping of every user-provided string, the same
gate as the API, and no write."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from tests.helpers import DEFINITIONS, PROGRESS, assert_problem, create_definition, unlock, upsert

XSS_NAME = "<script>alert(1)</script>"
XSS_DESCRIPTION = '"><img src=x onerror=alert(2)> & more'

# --- a small DOM, enough to ask the pages questions -----------------------------------------

VOID = {"meta", "link", "br", "hr", "img", "input", "source", "wbr", "area", "base", "col"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> list[Element]:
        found = [self]
        for child in self.children:
            if isinstance(child, Element):
                found += child.iter()
        return found

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)
        ]

    def find(self, tag: str | None = None, cls: str | None = None) -> Element:
        found = self.find_all(tag, cls)
        assert len(found) == 1, (tag, cls, len(found))
        return found[0]

    def by_id(self, identifier: str) -> Element:
        found = [e for e in self.iter() if e.attrs.get("id") == identifier]
        assert len(found) == 1, identifier
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Element:
    builder = _Builder()
    builder.feed(text)
    builder.close()
    return builder.root


def badge_named(document: Element, name: str) -> Element:
    found = [b for b in document.find_all("li", "badge") if b.find("div", "name").text() == name]
    assert len(found) == 1, name
    return found[0]


# --- fixtures -------------------------------------------------------------------------------


async def seed(client: Any) -> dict[str, int]:
    """Users 1..4; `Chatterbox` (target 10 in the definition), `Collector` (target in the row),
    `First words`, the XSS one, and a hidden one."""
    ids = {
        "chatter": (
            await create_definition(
                client,
                "Chatterbox",
                description="Send 10 messages",
                metadata={"target": 10, "icon": "C"},
            )
        )["id"],
        "collector": (await create_definition(client, "Collector"))["id"],
        "first": (await create_definition(client, "First words", description="Say hi"))["id"],
        "xss": (
            await create_definition(
                client, XSS_NAME, description=XSS_DESCRIPTION, metadata={"icon": "<b>"}
            )
        )["id"],
        "hidden": (
            await create_definition(
                client, "Secret room", description="Find it", metadata={"hidden": True}
            )
        )["id"],
    }
    await upsert(client, 1, ids["chatter"], {"current": 3})
    await upsert(client, 1, ids["collector"], {"current": 8, "target": 4})
    for user in (1, 2, 3, 4):
        await unlock(client, user, ids["first"])
    await unlock(client, 2, ids["xss"])
    await unlock(client, 2, ids["hidden"])
    return ids


# --- the profile ----------------------------------------------------------------------------


async def test_profile_shows_unlocked_badges_progress_and_rarity(client: Any) -> None:
    ids = await seed(client)
    first = (await client.get(f"{PROGRESS}?userId=1&achievementId={ids['first']}")).json()

    response = await client.get("/users/1/profile")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    document = parse_html(response.text)
    assert document.find("h1").text() == "User 1"

    unlocked = document.by_id("unlocked")
    assert [b.find("div", "name").text() for b in unlocked.find_all("li", "badge")] == [
        "First words"
    ]
    words = badge_named(document, "First words")
    assert "unlocked" in words.classes
    assert words.find("time").attrs["datetime"] == first["unlockedAt"]
    assert words.find("div", "when").text() == "Unlocked " + first["unlockedAt"][:10] + " " + (
        first["unlockedAt"][11:16] + " UTC"
    )
    # 4 of the 4 users with progress: common.
    assert words.find("span", "rarity").text() == "Common100% of players · 4 players"

    locked = document.by_id("locked")
    names = [b.find("div", "name").text() for b in locked.find_all("li", "badge")]
    # Rows in progress first (newest update first), then the untouched definitions.
    assert names == ["Collector", "Chatterbox", XSS_NAME, "Hidden achievement"]

    chatter = badge_named(document, "Chatterbox")  # target from the definition's metadata
    bar = chatter.find("progress", "bar")
    assert (bar.attrs["value"], bar.attrs["max"]) == ("3", "10")
    assert chatter.find("span", "amount").text() == "3 / 10"
    assert chatter.find("span", "rarity").text() == "Not unlocked by anyone yet"

    collector = badge_named(document, "Collector")  # target from the row, current past it
    bar = collector.find("progress", "bar")
    assert (bar.attrs["value"], bar.attrs["max"]) == ("4", "4")
    assert collector.find("span", "amount").text() == "8 / 4"

    xss = badge_named(document, XSS_NAME)  # no target anywhere: no bar
    assert xss.find_all("progress") == []
    # 1 of 4 users: 25%, uncommon.
    assert xss.find("span", "rarity").text() == "Uncommon25% of players · 1 player"

    hidden = badge_named(document, "Hidden achievement")
    assert "Secret room" not in response.text and "Find it" not in response.text
    assert hidden.find("span", "tier").text() == "Uncommon"

    summary = [stat.text() for stat in document.find_all("div", "stat")]
    # User 2 has three unlocks; of the others with one, user 1 reached it first.
    assert summary == ["1unlocked", "5achievements in all", "#2on the leaderboard"]


async def test_profile_of_a_user_with_nothing(client: Any, sql: Any) -> None:
    empty = await client.get("/users/42/profile")
    assert empty.status_code == 200
    document = parse_html(empty.text)
    assert document.by_id("unlocked").text() == "No achievement unlocked yet."
    assert document.by_id("locked").text() == "Nothing left to unlock."

    ids = await seed(client)
    response = await client.get("/users/9223372036854775807/profile")
    assert response.status_code == 200
    document = parse_html(response.text)
    assert document.find("h1").text() == "User 9223372036854775807"
    assert document.by_id("unlocked").text() == "No achievement unlocked yet."
    assert len(document.by_id("locked").find_all("li", "badge")) == len(ids)
    summary = [stat.text() for stat in document.find_all("div", "stat")]
    assert summary == ["0unlocked", "5achievements in all", "—on the leaderboard"]
    # Read-only: no users row for the visitors.
    assert sql("SELECT id FROM users WHERE id IN (42, 9223372036854775807)") == []


async def test_profile_with_a_bad_user_id_is_422(client: Any) -> None:
    for bad in ["abc", "0", "-1", "9223372036854775808", "1.5", "%201"]:
        response = await client.get(f"/users/{bad}/profile")
        body = assert_problem(response, 422, "VALIDATION_FAILED")
        assert [error["field"] for error in body["errors"]] == ["userId"], bad


async def test_every_user_string_is_escaped(client: Any) -> None:
    await seed(client)
    for path in ("/users/2/profile", "/"):
        response = await client.get(path)
        text = response.text
        assert "<script>" not in text and "<img" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt; &amp; more" in text
        assert "&lt;b&gt;" in text  # the icon
        document = parse_html(text)
        assert document.find_all("script") == [] and document.find_all("img") == []
        assert XSS_NAME in [e.text() for e in document.find_all("div", "name")]
        assert XSS_DESCRIPTION in [e.text() for e in document.find_all("div", "description")]
        # The only <b> elements are the page's own figures, not the icon "<b>".
        assert [b.text() for b in document.find_all("b")] == [
            s.find("b").text() for s in document.find_all("div", "stat")
        ]
        # And no script would run even if something slipped through.
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"


# --- the overview ---------------------------------------------------------------------------


async def test_index_lists_achievements_by_rarity_and_the_leaderboard(client: Any) -> None:
    ids = await seed(client)
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    document = parse_html(response.text)

    table = document.by_id("achievements")
    rows = table.find("tbody").find_all("tr")
    cells = [[cell.text() for cell in row.find_all("td")] for row in rows]
    # Rarest first (unlock rate, then name); icons from metadata, escaped, or the trophy.
    assert [(row[1], row[2], row[3]) for row in cells] == [
        ("ChatterboxSend 10 messages", "0", "1"),
        ("Collector", "0", "1"),
        (XSS_NAME + XSS_DESCRIPTION, "1", "0"),
        ("Hidden achievementKeep going to find out.", "1", "0"),
        ("First wordsSay hi", "4", "0"),
    ]
    assert [row[0] for row in cells] == ["C", "\U0001f3c6", "<b>", "\u2753", "\U0001f3c6"]
    assert [row[4] for row in cells] == [
        "Not unlocked by anyone yet",
        "Not unlocked by anyone yet",
        "Uncommon25% of players · 1 player",
        "Uncommon25% of players · 1 player",
        "Common100% of players · 4 players",
    ]
    assert [row.attrs["data-achievement-id"] for row in rows] == [
        str(ids[name]) for name in ("chatter", "collector", "xss", "hidden", "first")
    ]

    board = document.by_id("leaderboard").find("tbody").find_all("tr")
    entries = (await client.get("/users/achievements/leaderboard")).json()
    assert [[cell.text() for cell in row.find_all("td")][:3] for row in board] == [
        [str(entry["rank"]), f"User {entry['userId']}", str(entry["unlockedCount"])]
        for entry in entries
    ]
    assert [row.find("a").attrs["href"] for row in board] == [
        f"/users/{entry['userId']}/profile" for entry in entries
    ]
    assert [row.find("time").attrs["datetime"] for row in board] == [
        entry["lastUnlockedAt"] for entry in entries
    ]
    assert [entry["userId"] for entry in entries] == [2, 1, 3, 4]


async def test_index_of_an_empty_service(client: Any) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    document = parse_html(response.text)
    assert document.by_id("achievements").text() == "No achievement defined yet."
    assert document.by_id("leaderboard").text() == "Nobody has unlocked anything yet."


async def test_pages_have_no_external_reference(client: Any) -> None:
    await seed(client)
    for path in ("/", "/users/1/profile"):
        document = parse_html((await client.get(path)).text)
        for element in document.iter():
            for name in ("src", "href", "action"):
                value = element.attrs.get(name)
                assert value is None or value.startswith("/"), (path, element.tag, value)
        assert document.find_all("link") == [] and document.find_all("script") == []
        assert len(document.find_all("style")) == 1


# --- the same gate, read-only ---------------------------------------------------------------


async def test_pages_are_behind_the_token_and_the_host_check(make_client: Any) -> None:
    async with make_client(token="s3cret") as guarded:
        for path in ("/", "/users/1/profile"):
            response = await guarded.get(path)
            assert_problem(response, 401, "UNAUTHORIZED")
            assert response.headers["www-authenticate"] == "Bearer"
            response = await guarded.get(path, headers={"Authorization": "Bearer s3cret"})
            assert response.status_code == 200
            response = await guarded.get(
                path, headers={"Authorization": "Bearer s3cret", "Host": "evil.example"}
            )
            assert_problem(response, 400, "INVALID_HOST")


async def test_pages_take_no_write(client: Any) -> None:
    for method in ("POST", "PUT", "DELETE"):
        for path in ("/", "/users/1/profile"):
            response = await client.request(method, path, json={})
            assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert (await client.get(DEFINITIONS)).json() == []
