"""A typed Python client for the sidecar: `AchievementsClient` (async) and `SyncAchievementsClient`.

Needs the `client` extra (`pip install 'achievements-sidecar[client]'`, which brings httpx).

    async with AchievementsClient() as sidecar:        # SIDECAR_URL, SIDECAR_TOKEN, SIDECAR_TIMEOUT
        change = await sidecar.apply(
            user_id, "chatterbox", [Op.inc("current")], unlock_when=[When.gte("current", 100)]
        )
        if change.newly_unlocked: ...

- Every method answers with the msgspec Structs of `sidecar.models` (metadata stays a
  `msgspec.Raw`: `metadata_of(row)` gives it as a dict).
- An achievement is named by its id (`int`) or its key (`str`) wherever the API takes either.
- Errors are exceptions named after the problem's `code` (`AchievementNotFound`,
  `ValidationFailed`, ...), all `SidecarError`s carrying the problem body as `.problem`.
  A sidecar that cannot be reached (after the retries) raises `SidecarUnavailable`.
- Every write sends an `Idempotency-Key` (a new uuid4 per call unless one is given) and is
  retried after a timeout or a connection error with the same key and the same bytes: the
  sidecar replays its stored answer, so a retry never counts twice. Reads are retried too.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec
from msgspec import UNSET, UnsetType

from sidecar.models import (
    Achievement,
    AchievementStats,
    BatchResults,
    DeletedUser,
    Event,
    Health,
    LeaderboardEntry,
    UserAchievement,
    UserAchievementChange,
)

__all__ = [
    "ERRORS",
    "AchievementNotFound",
    "AchievementsClient",
    "Batch",
    "BatchResult",
    "DatabaseBusy",
    "DatabaseGone",
    "FieldError",
    "HeadersTooLarge",
    "IdempotencyKeyReused",
    "InternalError",
    "InvalidHost",
    "InvalidPath",
    "KeyConflict",
    "MalformedJson",
    "MethodNotAllowed",
    "NotANumber",
    "NotFound",
    "NumberOutOfRange",
    "Op",
    "PayloadTooLarge",
    "Problem",
    "ProgressNotFound",
    "SidecarError",
    "SidecarUnavailable",
    "StorageError",
    "StorageFull",
    "SyncAchievementsClient",
    "TooManyConnections",
    "TooManyStreams",
    "Unauthorized",
    "UnsupportedMediaType",
    "UserNotFound",
    "ValidationFailed",
    "When",
    "error_from",
    "metadata_of",
]

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8787"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.2
MAX_BACKOFF = 5.0
# The stream sends a keep-alive comment every 15 s: a silence of this long is a dead connection.
STREAM_READ_TIMEOUT = 45.0

DEFINITIONS = "/users/achievements/definitions"
PROGRESS = "/users/achievements/progress"
EVENTS = "/users/achievements/events"

AchievementRef = int | str  # an achievement id, or its key
Number = int | float | Decimal
JSONObject = Mapping[str, Any] | msgspec.Raw

# Retried: the request may or may not have reached the sidecar; the Idempotency-Key makes the
# repeat safe. Other transport errors (a malformed URL, a proxy refusing) are not retried.
RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


# --- problems and exceptions ---------------------------------------------------------------


class FieldError(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct):
    """The RFC 9457 problem body of an error answer."""

    status: int
    code: str
    title: str
    detail: str | None = None
    errors: list[FieldError] | None = None
    index: int | None = None  # the failing item of a batch


class SidecarError(Exception):
    """Any error answer of the sidecar; `.problem` is its body, `.code` its machine name."""

    code = ""

    def __init__(self, problem: Problem) -> None:
        super().__init__(_describe(problem))
        self.problem = problem

    @property
    def status(self) -> int:
        return self.problem.status


def _describe(problem: Problem) -> str:
    text = f"{problem.status} {problem.code}: {problem.detail or problem.title}"
    if problem.index is not None:
        text += f" (batch item {problem.index})"
    return text


class MalformedJson(SidecarError):
    code = "MALFORMED_JSON"


class Unauthorized(SidecarError):
    code = "UNAUTHORIZED"


class AchievementNotFound(SidecarError):
    code = "ACHIEVEMENT_NOT_FOUND"


class ProgressNotFound(SidecarError):
    code = "PROGRESS_NOT_FOUND"


class UserNotFound(SidecarError):
    code = "USER_NOT_FOUND"


class NotFound(SidecarError):
    """An unknown path (a client and a sidecar of different versions)."""

    code = "NOT_FOUND"


class InvalidHost(SidecarError):
    code = "INVALID_HOST"


class MethodNotAllowed(SidecarError):
    code = "METHOD_NOT_ALLOWED"


class PayloadTooLarge(SidecarError):
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(SidecarError):
    code = "UNSUPPORTED_MEDIA_TYPE"


class HeadersTooLarge(SidecarError):
    code = "HEADERS_TOO_LARGE"


class ValidationFailed(SidecarError):
    code = "VALIDATION_FAILED"


class KeyConflict(SidecarError):
    code = "KEY_CONFLICT"


class NotANumber(SidecarError):
    code = "NOT_A_NUMBER"


class InvalidPath(SidecarError):
    code = "INVALID_PATH"


class NumberOutOfRange(SidecarError):
    code = "NUMBER_OUT_OF_RANGE"


class IdempotencyKeyReused(SidecarError):
    code = "IDEMPOTENCY_KEY_REUSED"


class StorageFull(SidecarError):
    code = "STORAGE_FULL"


class StorageError(SidecarError):
    code = "STORAGE_ERROR"


class DatabaseBusy(SidecarError):
    """Another process holds the database's write lock; the answer carries Retry-After."""

    code = "DATABASE_BUSY"


class DatabaseGone(SidecarError):
    code = "DATABASE_GONE"


class TooManyStreams(SidecarError):
    code = "TOO_MANY_STREAMS"


class TooManyConnections(SidecarError):
    code = "TOO_MANY_CONNECTIONS"


class InternalError(SidecarError):
    code = "INTERNAL_ERROR"


class SidecarUnavailable(SidecarError):
    """No answer at all (connection refused, timeouts) after every retry.

    Its problem is made up on this side: status 0, code `UNAVAILABLE`; the httpx error is the
    exception's `__cause__`.
    """

    code = "UNAVAILABLE"


ERRORS: dict[str, type[SidecarError]] = {
    kind.code: kind
    for kind in (
        MalformedJson,
        Unauthorized,
        AchievementNotFound,
        ProgressNotFound,
        UserNotFound,
        NotFound,
        InvalidHost,
        MethodNotAllowed,
        PayloadTooLarge,
        UnsupportedMediaType,
        HeadersTooLarge,
        ValidationFailed,
        KeyConflict,
        NotANumber,
        InvalidPath,
        NumberOutOfRange,
        IdempotencyKeyReused,
        StorageFull,
        StorageError,
        DatabaseBusy,
        DatabaseGone,
        TooManyStreams,
        TooManyConnections,
        InternalError,
    )
}

_problem = msgspec.json.Decoder(Problem)


def error_from(response: httpx.Response) -> SidecarError:
    """The exception for an error answer: by its `code`, else a plain SidecarError."""
    try:
        problem = _problem.decode(response.content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # Not a problem body (a proxy in between?): keep what there is.
        status = response.status_code
        detail = response.text.strip()[:500] or None
        problem = Problem(status, f"HTTP_{status}", response.reason_phrase or "error", detail)
    return ERRORS.get(problem.code, SidecarError)(problem)


def _unavailable(error: httpx.HTTPError, attempts: int) -> SidecarUnavailable:
    detail = f"{type(error).__name__}: {error} (after {attempts} attempt(s))"
    return SidecarUnavailable(Problem(0, "UNAVAILABLE", "The sidecar could not be reached", detail))


# --- building requests ---------------------------------------------------------------------


_encode = msgspec.json.Encoder(decimal_format="number").encode


def metadata_of(item: Achievement | UserAchievement) -> dict[str, Any]:
    """The metadata of a definition or a progress row, as a dict."""
    value: dict[str, Any] = msgspec.json.decode(item.metadata)
    return value


class Op:
    """The operations of `apply` (and of batch apply items)."""

    @staticmethod
    def inc(path: str, value: Number = 1) -> dict[str, Any]:
        return {"op": "inc", "path": path, "value": value}

    @staticmethod
    def max(path: str, value: Number) -> dict[str, Any]:
        return {"op": "max", "path": path, "value": value}

    @staticmethod
    def min(path: str, value: Number) -> dict[str, Any]:
        return {"op": "min", "path": path, "value": value}

    @staticmethod
    def set(path: str, value: Any) -> dict[str, Any]:
        return {"op": "set", "path": path, "value": value}

    @staticmethod
    def remove(path: str) -> dict[str, Any]:
        return {"op": "remove", "path": path}


class When:
    """The conditions of `unlock_when`: all of them must hold after the ops."""

    @staticmethod
    def gte(path: str, value: Number) -> dict[str, Any]:
        return {"path": path, "gte": value}

    @staticmethod
    def gt(path: str, value: Number) -> dict[str, Any]:
        return {"path": path, "gt": value}

    @staticmethod
    def lte(path: str, value: Number) -> dict[str, Any]:
        return {"path": path, "lte": value}

    @staticmethod
    def lt(path: str, value: Number) -> dict[str, Any]:
        return {"path": path, "lt": value}

    @staticmethod
    def eq(path: str, value: Any) -> dict[str, Any]:
        return {"path": path, "eq": value}


def _ref(achievement: AchievementRef) -> dict[str, Any]:
    if isinstance(achievement, str):
        return {"achievementKey": achievement}
    return {"achievementId": achievement}


def _row_body(user_id: int, achievement: AchievementRef) -> dict[str, Any]:
    return {"userId": user_id, **_ref(achievement)}


def _apply_body(
    user_id: int,
    achievement: AchievementRef,
    ops: Sequence[Mapping[str, Any]],
    unlock_when: Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    body = {**_row_body(user_id, achievement), "ops": list(ops)}
    if unlock_when is not None:
        body["unlockWhen"] = list(unlock_when)
    return body


def _upsert_body(
    user_id: int, achievement: AchievementRef, metadata: JSONObject | None
) -> dict[str, Any]:
    body = _row_body(user_id, achievement)
    if metadata is not None:
        body["metadata"] = metadata
    return body


class Batch:
    """The items of `batch`: each one what its single endpoint takes."""

    @staticmethod
    def upsert(
        user_id: int, achievement: AchievementRef, metadata: JSONObject | None = None
    ) -> dict[str, Any]:
        return {"type": "upsert", **_upsert_body(user_id, achievement, metadata)}

    @staticmethod
    def unlock(user_id: int, achievement: AchievementRef) -> dict[str, Any]:
        return {"type": "unlock", **_row_body(user_id, achievement)}

    @staticmethod
    def apply(
        user_id: int,
        achievement: AchievementRef,
        ops: Sequence[Mapping[str, Any]],
        unlock_when: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return {"type": "apply", **_apply_body(user_id, achievement, ops, unlock_when)}

    @staticmethod
    def delete(user_id: int, achievement: AchievementRef) -> dict[str, Any]:
        return {"type": "delete", **_row_body(user_id, achievement)}


def _definition_path(achievement: AchievementRef) -> str:
    if isinstance(achievement, str):
        return f"{DEFINITIONS}/by-key/{quote(achievement, safe='')}"
    return f"{DEFINITIONS}/{achievement}"


def _query_ref(user_id: int, achievement: AchievementRef) -> dict[str, str]:
    return {key: str(value) for key, value in _row_body(user_id, achievement).items()}


_achievement = msgspec.json.Decoder(Achievement)
_achievements = msgspec.json.Decoder(list[Achievement])
_progress = msgspec.json.Decoder(UserAchievement)
_maybe_progress: msgspec.json.Decoder[UserAchievement | None] = msgspec.json.Decoder(
    UserAchievement | None
)
_progress_list = msgspec.json.Decoder(list[UserAchievement])
_change = msgspec.json.Decoder(UserAchievementChange)
_deleted_user = msgspec.json.Decoder(DeletedUser)
_event = msgspec.json.Decoder(Event)
_events = msgspec.json.Decoder(list[Event])
_stats = msgspec.json.Decoder(list[AchievementStats])
_leaderboard = msgspec.json.Decoder(list[LeaderboardEntry])
_entry = msgspec.json.Decoder(LeaderboardEntry)
_health = msgspec.json.Decoder(Health)
_batch = msgspec.json.Decoder(BatchResults)
_document = msgspec.json.Decoder(dict[str, Any])

BatchResult = UserAchievement | UserAchievementChange


def _batch_decoder(
    operations: Sequence[Mapping[str, Any]],
) -> Callable[[bytes], list[BatchResult]]:
    kinds = [item.get("type") for item in operations]

    def decode(content: bytes) -> list[BatchResult]:
        results = _batch.decode(content).results
        decoded: list[BatchResult] = []
        for kind, raw in zip(kinds, results, strict=True):
            if kind in ("unlock", "apply"):
                decoded.append(_change.decode(raw))
            else:
                decoded.append(_progress.decode(raw))
        return decoded

    return decode


def _text(content: bytes) -> str:
    return content.decode("utf-8")


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request, built once: a retry sends exactly the same method, URL, key and bytes."""

    method: str
    path: str
    decode: Callable[[bytes], T]
    params: dict[str, str] | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _read(
    path: str, decode: Callable[[bytes], T], params: dict[str, str] | None = None
) -> _Call[T]:
    return _Call("GET", path, decode, params)


def _write(
    method: str,
    path: str,
    decode: Callable[[bytes], T],
    idempotency_key: str | None,
    body: Any = None,
    params: dict[str, str] | None = None,
) -> _Call[T]:
    headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    content = None
    if body is not None:
        content = _encode(body)
        headers["Content-Type"] = "application/json"
    return _Call(method, path, decode, params, content, headers)


class _Calls:
    """The request of every route of the API (shared by the async and the sync client)."""

    # definitions

    @staticmethod
    def list_definitions() -> _Call[list[Achievement]]:
        return _read(DEFINITIONS, _achievements.decode)

    @staticmethod
    def get_definition(achievement: AchievementRef) -> _Call[Achievement]:
        return _read(_definition_path(achievement), _achievement.decode)

    @staticmethod
    def create_definition(
        name: str,
        description: str | None,
        key: str | None,
        metadata: JSONObject | None,
        idempotency_key: str | None,
    ) -> _Call[Achievement]:
        body: dict[str, Any] = {"name": name}
        if description is not None:
            body["description"] = description
        if key is not None:
            body["key"] = key
        if metadata is not None:
            body["metadata"] = metadata
        return _write("POST", DEFINITIONS, _achievement.decode, idempotency_key, body)

    @staticmethod
    def update_definition(
        achievement_id: int,
        changes: dict[str, Any],
        idempotency_key: str | None,
    ) -> _Call[Achievement]:
        body = {name: value for name, value in changes.items() if value is not UNSET}
        path = f"{DEFINITIONS}/{achievement_id}"
        return _write("PUT", path, _achievement.decode, idempotency_key, body)

    @staticmethod
    def put_definition(
        key: str,
        name: str,
        description: str | None,
        metadata: JSONObject | None,
        idempotency_key: str | None,
    ) -> _Call[Achievement]:
        body: dict[str, Any] = {"name": name}
        if description is not None:
            body["description"] = description
        if metadata is not None:
            body["metadata"] = metadata
        path = _definition_path(key)
        return _write("PUT", path, _achievement.decode, idempotency_key, body)

    @staticmethod
    def delete_definition(
        achievement: AchievementRef, idempotency_key: str | None
    ) -> _Call[Achievement]:
        path = _definition_path(achievement)
        return _write("DELETE", path, _achievement.decode, idempotency_key)

    # progress

    @staticmethod
    def upsert_progress(
        user_id: int,
        achievement: AchievementRef,
        metadata: JSONObject | None,
        idempotency_key: str | None,
    ) -> _Call[UserAchievement]:
        body = _upsert_body(user_id, achievement, metadata)
        return _write("POST", PROGRESS, _progress.decode, idempotency_key, body)

    @staticmethod
    def get_progress(user_id: int, achievement: AchievementRef) -> _Call[UserAchievement | None]:
        return _read(PROGRESS, _maybe_progress.decode, _query_ref(user_id, achievement))

    @staticmethod
    def list_progress(user_id: int, unlocked_only: bool) -> _Call[list[UserAchievement]]:
        params = {"userId": str(user_id), "unlockedOnly": "true" if unlocked_only else "false"}
        return _read(f"{PROGRESS}/list", _progress_list.decode, params)

    @staticmethod
    def unlock(
        user_id: int, achievement: AchievementRef, idempotency_key: str | None
    ) -> _Call[UserAchievementChange]:
        body = _row_body(user_id, achievement)
        return _write("PUT", f"{PROGRESS}/unlock", _change.decode, idempotency_key, body)

    @staticmethod
    def delete_progress(
        user_id: int, achievement: AchievementRef, idempotency_key: str | None
    ) -> _Call[UserAchievement]:
        params = _query_ref(user_id, achievement)
        return _write("DELETE", PROGRESS, _progress.decode, idempotency_key, params=params)

    @staticmethod
    def apply(
        user_id: int,
        achievement: AchievementRef,
        ops: Sequence[Mapping[str, Any]],
        unlock_when: Sequence[Mapping[str, Any]] | None,
        idempotency_key: str | None,
    ) -> _Call[UserAchievementChange]:
        body = _apply_body(user_id, achievement, ops, unlock_when)
        return _write("POST", f"{PROGRESS}/apply", _change.decode, idempotency_key, body)

    @staticmethod
    def batch(
        operations: Sequence[Mapping[str, Any]], idempotency_key: str | None
    ) -> _Call[list[BatchResult]]:
        body = {"operations": list(operations)}
        decode = _batch_decoder(operations)
        return _write("POST", f"{PROGRESS}/batch", decode, idempotency_key, body)

    @staticmethod
    def delete_user(user_id: int, idempotency_key: str | None) -> _Call[DeletedUser]:
        return _write("DELETE", f"/users/{user_id}", _deleted_user.decode, idempotency_key)

    # feed, stats, operations

    @staticmethod
    def events(after: int, limit: int) -> _Call[list[Event]]:
        return _read(EVENTS, _events.decode, {"after": str(after), "limit": str(limit)})

    @staticmethod
    def stats() -> _Call[list[AchievementStats]]:
        return _read("/users/achievements/stats", _stats.decode)

    @staticmethod
    def leaderboard(limit: int, offset: int) -> _Call[list[LeaderboardEntry]]:
        params = {"limit": str(limit), "offset": str(offset)}
        return _read("/users/achievements/leaderboard", _leaderboard.decode, params)

    @staticmethod
    def leaderboard_entry(user_id: int) -> _Call[LeaderboardEntry]:
        return _read(f"/users/achievements/leaderboard/{user_id}", _entry.decode)

    @staticmethod
    def health() -> _Call[Health]:
        return _read("/health", _health.decode)

    @staticmethod
    def metrics() -> _Call[str]:
        return _read("/metrics", _text)

    @staticmethod
    def openapi() -> _Call[dict[str, Any]]:
        return _read("/schema/openapi.json", _document.decode)


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    base_url: str
    token: str | None
    timeout: float
    retries: int
    backoff: float

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: about backoff, 2x, 4x ... capped at MAX_BACKOFF."""
        if self.backoff <= 0:
            return 0.0
        return min(MAX_BACKOFF, self.backoff * 2.0**attempt) * random.uniform(0.5, 1.0)

    def stream_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=max(self.timeout, STREAM_READ_TIMEOUT))


def _config(
    base_url: str | None,
    token: str | None,
    timeout: float | None,
    retries: int,
    backoff: float,
) -> _Config:
    environ = os.environ
    url = base_url or environ.get("SIDECAR_URL") or DEFAULT_URL
    if token is None:
        token = environ.get("SIDECAR_TOKEN") or None
    if timeout is None:
        timeout_text = environ.get("SIDECAR_TIMEOUT")
        timeout = float(timeout_text) if timeout_text else DEFAULT_TIMEOUT
    if retries < 0:
        raise ValueError("retries must be 0 or more")
    return _Config(url.rstrip("/"), token, timeout, retries, backoff)


def _result(call: _Call[T], response: httpx.Response) -> T:
    if response.is_success:
        return call.decode(response.content)
    raise error_from(response)


class _SSE:
    """Server-Sent Events parsing, one line at a time (only `id:` and `data:` matter here)."""

    def __init__(self) -> None:
        self.data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if not line:
            if not self.data:
                return None
            event = _event.decode("\n".join(self.data))
            self.data = []
            return event
        if line.startswith(":"):
            return None  # a comment: keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            self.data.append(value[1:] if value.startswith(" ") else value)
        return None


def _stream_headers(last_id: int) -> dict[str, str]:
    return {"Accept": "text/event-stream", "Last-Event-ID": str(last_id)}


# --- the clients ---------------------------------------------------------------------------


class AchievementsClient:
    """The async client. Use it as `async with AchievementsClient(...) as sidecar:`.

    `base_url`, `token` and `timeout` (seconds) default to SIDECAR_URL, SIDECAR_TOKEN and
    SIDECAR_TIMEOUT, else http://127.0.0.1:8787, no token and 10 s. A request that times out or
    cannot connect is tried again up to `retries` times, after `backoff`, 2x, 4x... seconds.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = _config(base_url, token, timeout, retries, backoff)
        self._http = httpx.AsyncClient(
            base_url=self.config.base_url,
            headers=self.config.headers(),
            timeout=self.config.timeout,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        return self.config.base_url

    async def __aenter__(self) -> AchievementsClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=call.headers,
                )
            except RETRYABLE as error:
                if attempt >= self.config.retries:
                    raise _unavailable(error, attempt + 1) from error
                await asyncio.sleep(self.config.delay(attempt))
                attempt += 1
                continue
            except httpx.TransportError as error:
                raise _unavailable(error, attempt + 1) from error
            return _result(call, response)

    # definitions

    async def list_definitions(self) -> list[Achievement]:
        """Every definition, by name (case-insensitive), then id."""
        return await self._send(_Calls.list_definitions())

    async def get_definition(self, achievement: AchievementRef) -> Achievement:
        """One definition by id, or by key when given a string."""
        return await self._send(_Calls.get_definition(achievement))

    async def create_definition(
        self,
        name: str,
        *,
        description: str | None = None,
        key: str | None = None,
        metadata: JSONObject | None = None,
        idempotency_key: str | None = None,
    ) -> Achievement:
        call = _Calls.create_definition(name, description, key, metadata, idempotency_key)
        return await self._send(call)

    async def update_definition(
        self,
        achievement_id: int,
        *,
        name: str | UnsetType = UNSET,
        description: str | UnsetType | None = UNSET,
        key: str | UnsetType | None = UNSET,
        metadata: JSONObject | UnsetType = UNSET,
        idempotency_key: str | None = None,
    ) -> Achievement:
        """Change the given fields only; `description=None` / `key=None` clear them."""
        changes = {"name": name, "description": description, "key": key, "metadata": metadata}
        return await self._send(_Calls.update_definition(achievement_id, changes, idempotency_key))

    async def put_definition(
        self,
        key: str,
        name: str,
        *,
        description: str | None = None,
        metadata: JSONObject | None = None,
        idempotency_key: str | None = None,
    ) -> Achievement:
        """Create or replace the definition with this key (declarative sync)."""
        call = _Calls.put_definition(key, name, description, metadata, idempotency_key)
        return await self._send(call)

    async def delete_definition(
        self, achievement: AchievementRef, *, idempotency_key: str | None = None
    ) -> Achievement:
        """Delete a definition (by id or key) and every progress row of it."""
        return await self._send(_Calls.delete_definition(achievement, idempotency_key))

    # progress

    async def upsert_progress(
        self,
        user_id: int,
        achievement: AchievementRef,
        metadata: JSONObject | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> UserAchievement:
        """Create the row or replace its metadata (None sends none: `{}`)."""
        call = _Calls.upsert_progress(user_id, achievement, metadata, idempotency_key)
        return await self._send(call)

    async def get_progress(
        self, user_id: int, achievement: AchievementRef
    ) -> UserAchievement | None:
        """The row, or None when there is none."""
        return await self._send(_Calls.get_progress(user_id, achievement))

    async def list_progress(
        self, user_id: int, *, unlocked_only: bool = False
    ) -> list[UserAchievement]:
        return await self._send(_Calls.list_progress(user_id, unlocked_only))

    async def unlock(
        self, user_id: int, achievement: AchievementRef, *, idempotency_key: str | None = None
    ) -> UserAchievementChange:
        return await self._send(_Calls.unlock(user_id, achievement, idempotency_key))

    async def delete_progress(
        self, user_id: int, achievement: AchievementRef, *, idempotency_key: str | None = None
    ) -> UserAchievement:
        return await self._send(_Calls.delete_progress(user_id, achievement, idempotency_key))

    async def apply(
        self,
        user_id: int,
        achievement: AchievementRef,
        ops: Sequence[Mapping[str, Any]],
        *,
        unlock_when: Sequence[Mapping[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> UserAchievementChange:
        """Atomic ops on the row's metadata (`Op.inc`, ...), unlocking when `When...` all hold."""
        call = _Calls.apply(user_id, achievement, ops, unlock_when, idempotency_key)
        return await self._send(call)

    async def batch(
        self, operations: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> list[BatchResult]:
        """All items (`Batch.apply(...)`, ...) in one transaction; the results in order."""
        return await self._send(_Calls.batch(operations, idempotency_key))

    async def delete_user(self, user_id: int, *, idempotency_key: str | None = None) -> DeletedUser:
        return await self._send(_Calls.delete_user(user_id, idempotency_key))

    # feed

    async def events(self, after: int = 0, limit: int = 100) -> list[Event]:
        """Unlock events with `id > after`, oldest first."""
        return await self._send(_Calls.events(after, limit))

    async def stream(
        self, after: int = 0, *, max_reconnects: int | None = None
    ) -> AsyncGenerator[Event, None]:
        """Unlock events with `id > after`, live, forever: reconnects (with Last-Event-ID, so
        nothing is lost or repeated) when the connection drops; `max_reconnects` failed attempts
        in a row (None: no limit) end it with SidecarUnavailable."""
        last_id = after
        failures = 0
        while True:
            parser = _SSE()
            try:
                async with self._http.stream(
                    "GET",
                    f"{EVENTS}/stream",
                    headers=_stream_headers(last_id),
                    timeout=self.config.stream_timeout(),
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        raise error_from(response)
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            last_id = event.id
                            failures = 0
                            yield event
            except RETRYABLE as error:
                if max_reconnects is not None and failures >= max_reconnects:
                    raise _unavailable(error, failures + 1) from error
            await asyncio.sleep(self.config.delay(min(failures, 5)))
            failures += 1

    # stats and leaderboard

    async def stats(self) -> list[AchievementStats]:
        """Per achievement: unlocked and in-progress counts and the unlock rate (rarity)."""
        return await self._send(_Calls.stats())

    async def leaderboard(self, limit: int = 10, offset: int = 0) -> list[LeaderboardEntry]:
        return await self._send(_Calls.leaderboard(limit, offset))

    async def leaderboard_entry(self, user_id: int) -> LeaderboardEntry:
        """One user's rank (UserNotFound when it has no unlock)."""
        return await self._send(_Calls.leaderboard_entry(user_id))

    # operations

    async def health(self) -> Health:
        return await self._send(_Calls.health())

    async def metrics(self) -> str:
        """The Prometheus text."""
        return await self._send(_Calls.metrics())

    async def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document."""
        return await self._send(_Calls.openapi())


class SyncAchievementsClient:
    """The same client, blocking: `with SyncAchievementsClient(...) as sidecar:`."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = _config(base_url, token, timeout, retries, backoff)
        self._http = httpx.Client(
            base_url=self.config.base_url,
            headers=self.config.headers(),
            timeout=self.config.timeout,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        return self.config.base_url

    def __enter__(self) -> SyncAchievementsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=call.headers,
                )
            except RETRYABLE as error:
                if attempt >= self.config.retries:
                    raise _unavailable(error, attempt + 1) from error
                time.sleep(self.config.delay(attempt))
                attempt += 1
                continue
            except httpx.TransportError as error:
                raise _unavailable(error, attempt + 1) from error
            return _result(call, response)

    # definitions

    def list_definitions(self) -> list[Achievement]:
        """Every definition, by name (case-insensitive), then id."""
        return self._send(_Calls.list_definitions())

    def get_definition(self, achievement: AchievementRef) -> Achievement:
        """One definition by id, or by key when given a string."""
        return self._send(_Calls.get_definition(achievement))

    def create_definition(
        self,
        name: str,
        *,
        description: str | None = None,
        key: str | None = None,
        metadata: JSONObject | None = None,
        idempotency_key: str | None = None,
    ) -> Achievement:
        call = _Calls.create_definition(name, description, key, metadata, idempotency_key)
        return self._send(call)

    def update_definition(
        self,
        achievement_id: int,
        *,
        name: str | UnsetType = UNSET,
        description: str | UnsetType | None = UNSET,
        key: str | UnsetType | None = UNSET,
        metadata: JSONObject | UnsetType = UNSET,
        idempotency_key: str | None = None,
    ) -> Achievement:
        """Change the given fields only; `description=None` / `key=None` clear them."""
        changes = {"name": name, "description": description, "key": key, "metadata": metadata}
        return self._send(_Calls.update_definition(achievement_id, changes, idempotency_key))

    def put_definition(
        self,
        key: str,
        name: str,
        *,
        description: str | None = None,
        metadata: JSONObject | None = None,
        idempotency_key: str | None = None,
    ) -> Achievement:
        """Create or replace the definition with this key (declarative sync)."""
        call = _Calls.put_definition(key, name, description, metadata, idempotency_key)
        return self._send(call)

    def delete_definition(
        self, achievement: AchievementRef, *, idempotency_key: str | None = None
    ) -> Achievement:
        """Delete a definition (by id or key) and every progress row of it."""
        return self._send(_Calls.delete_definition(achievement, idempotency_key))

    # progress

    def upsert_progress(
        self,
        user_id: int,
        achievement: AchievementRef,
        metadata: JSONObject | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> UserAchievement:
        """Create the row or replace its metadata (None sends none: `{}`)."""
        call = _Calls.upsert_progress(user_id, achievement, metadata, idempotency_key)
        return self._send(call)

    def get_progress(self, user_id: int, achievement: AchievementRef) -> UserAchievement | None:
        """The row, or None when there is none."""
        return self._send(_Calls.get_progress(user_id, achievement))

    def list_progress(self, user_id: int, *, unlocked_only: bool = False) -> list[UserAchievement]:
        return self._send(_Calls.list_progress(user_id, unlocked_only))

    def unlock(
        self, user_id: int, achievement: AchievementRef, *, idempotency_key: str | None = None
    ) -> UserAchievementChange:
        return self._send(_Calls.unlock(user_id, achievement, idempotency_key))

    def delete_progress(
        self, user_id: int, achievement: AchievementRef, *, idempotency_key: str | None = None
    ) -> UserAchievement:
        return self._send(_Calls.delete_progress(user_id, achievement, idempotency_key))

    def apply(
        self,
        user_id: int,
        achievement: AchievementRef,
        ops: Sequence[Mapping[str, Any]],
        *,
        unlock_when: Sequence[Mapping[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> UserAchievementChange:
        """Atomic ops on the row's metadata (`Op.inc`, ...), unlocking when `When...` all hold."""
        call = _Calls.apply(user_id, achievement, ops, unlock_when, idempotency_key)
        return self._send(call)

    def batch(
        self, operations: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> list[BatchResult]:
        """All items (`Batch.apply(...)`, ...) in one transaction; the results in order."""
        return self._send(_Calls.batch(operations, idempotency_key))

    def delete_user(self, user_id: int, *, idempotency_key: str | None = None) -> DeletedUser:
        return self._send(_Calls.delete_user(user_id, idempotency_key))

    # feed

    def events(self, after: int = 0, limit: int = 100) -> list[Event]:
        """Unlock events with `id > after`, oldest first."""
        return self._send(_Calls.events(after, limit))

    def stream(
        self, after: int = 0, *, max_reconnects: int | None = None
    ) -> Generator[Event, None, None]:
        """Unlock events with `id > after`, live, forever: reconnects (with Last-Event-ID, so
        nothing is lost or repeated) when the connection drops; `max_reconnects` failed attempts
        in a row (None: no limit) end it with SidecarUnavailable."""
        last_id = after
        failures = 0
        while True:
            parser = _SSE()
            try:
                with self._http.stream(
                    "GET",
                    f"{EVENTS}/stream",
                    headers=_stream_headers(last_id),
                    timeout=self.config.stream_timeout(),
                ) as response:
                    if not response.is_success:
                        response.read()
                        raise error_from(response)
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            last_id = event.id
                            failures = 0
                            yield event
            except RETRYABLE as error:
                if max_reconnects is not None and failures >= max_reconnects:
                    raise _unavailable(error, failures + 1) from error
            time.sleep(self.config.delay(min(failures, 5)))
            failures += 1

    # stats and leaderboard

    def stats(self) -> list[AchievementStats]:
        """Per achievement: unlocked and in-progress counts and the unlock rate (rarity)."""
        return self._send(_Calls.stats())

    def leaderboard(self, limit: int = 10, offset: int = 0) -> list[LeaderboardEntry]:
        return self._send(_Calls.leaderboard(limit, offset))

    def leaderboard_entry(self, user_id: int) -> LeaderboardEntry:
        """One user's rank (UserNotFound when it has no unlock)."""
        return self._send(_Calls.leaderboard_entry(user_id))

    # operations

    def health(self) -> Health:
        return self._send(_Calls.health())

    def metrics(self) -> str:
        """The Prometheus text."""
        return self._send(_Calls.metrics())

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document."""
        return self._send(_Calls.openapi())
