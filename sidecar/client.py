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
- `sidecar.detailed.<method>(...)` answers with an `Answer`: the value, the status, `replayed`
  (the sidecar sent back the stored answer of an earlier request with the same key:
  `Idempotent-Replayed: true`, nothing applied this time) and the key that was sent.
- Both clients are bound from one description of the routes (`_Routes`): a route is added once.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import random
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload
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
    "Answer",
    "AsyncDetailed",
    "Batch",
    "BatchResult",
    "DatabaseBusy",
    "DatabaseGone",
    "DatabaseUnavailable",
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
    "SyncDetailed",
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
P = ParamSpec("P")

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


class DatabaseUnavailable(SidecarError):
    """The PostgreSQL server cannot be reached; the answer carries Retry-After."""

    code = "DATABASE_UNAVAILABLE"


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
        DatabaseUnavailable,
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


def _given(**fields: Any) -> dict[str, Any]:
    """A body of the fields that are not None (None: left out, the sidecar's default)."""
    return {name: value for name, value in fields.items() if value is not None}


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
class Answer(Generic[T]):
    """A decoded answer with what its response said about it (`client.detailed.<method>`)."""

    value: T
    status: int
    # True when the sidecar answered with the stored answer of an earlier request with the same
    # Idempotency-Key (`Idempotent-Replayed: true`): nothing was applied by this one.
    replayed: bool
    idempotency_key: str | None  # the key that was sent (writes only)


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request, built once: a retry sends exactly the same method, URL, key and bytes."""

    method: str
    path: str
    decode: Callable[[bytes], T]
    params: dict[str, str] | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(self) -> dict[str, Any]:
        """The arguments of httpx's `request` (and `stream`)."""
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "content": self.body,
            "headers": self.headers,
        }

    def answer(self, response: httpx.Response) -> Answer[T]:
        if not response.is_success:
            raise error_from(response)
        replayed = response.headers.get("idempotent-replayed") == "true"
        key = self.headers.get("Idempotency-Key")
        return Answer(self.decode(response.content), response.status_code, replayed, key)


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


# --- one description of the routes, bound by each client -----------------------------------


class _Route(Generic[P, T]):
    """One route of the API, described once: a function from the method's arguments to its
    request. Each kind of client (async, sync, and their `detailed` views) turns it into a method
    of the same name and parameters with its own `_method`, so a new route is written once."""

    def __init__(self, build: Callable[Concatenate[Any, P], _Call[T]]) -> None:
        self.build = build
        self._methods: dict[type, Callable[..., Any]] = {}

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Callable[..., Any]: ...
    @overload
    def __get__(
        self, client: AchievementsClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, client: SyncAchievementsClient, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, client: AsyncDetailed, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, Answer[T]]]: ...
    @overload
    def __get__(self, client: SyncDetailed, owner: type[Any]) -> Callable[P, Answer[T]]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        method = self._methods.get(owner)
        if method is None:
            method = owner._method(self.build)
            functools.update_wrapper(method, self.build)
            # The method's own signature: the build function's, answering what the client does.
            signature = inspect.signature(self.build)
            method.__signature__ = signature.replace(return_annotation=inspect.Signature.empty)
            self._methods[owner] = method
        return method if client is None else method.__get__(client, owner)


class _Routes:
    """Every route of API.md (but the event stream, which each client reads its own way)."""

    # definitions

    @_Route
    def list_definitions(self) -> _Call[list[Achievement]]:
        """Every definition, by name (case-insensitive), then id."""
        return _read(DEFINITIONS, _achievements.decode)

    @_Route
    def get_definition(self, achievement: AchievementRef) -> _Call[Achievement]:
        """One definition by id, or by key when given a string."""
        return _read(_definition_path(achievement), _achievement.decode)

    @_Route
    def create_definition(
        self,
        name: str,
        *,
        description: str | None = None,
        key: str | None = None,
        metadata: JSONObject | None = None,
        idempotency_key: str | None = None,
    ) -> _Call[Achievement]:
        body = _given(name=name, description=description, key=key, metadata=metadata)
        return _write("POST", DEFINITIONS, _achievement.decode, idempotency_key, body)

    @_Route
    def update_definition(
        self,
        achievement_id: int,
        *,
        name: str | UnsetType = UNSET,
        description: str | UnsetType | None = UNSET,
        key: str | UnsetType | None = UNSET,
        metadata: JSONObject | UnsetType = UNSET,
        idempotency_key: str | None = None,
    ) -> _Call[Achievement]:
        """Change the given fields only; `description=None` / `key=None` clear them."""
        changes = {"name": name, "description": description, "key": key, "metadata": metadata}
        body = {name: value for name, value in changes.items() if value is not UNSET}
        path = f"{DEFINITIONS}/{achievement_id}"
        return _write("PUT", path, _achievement.decode, idempotency_key, body)

    @_Route
    def put_definition(
        self,
        key: str,
        name: str,
        *,
        description: str | None = None,
        metadata: JSONObject | None = None,
        idempotency_key: str | None = None,
    ) -> _Call[Achievement]:
        """Create (201) or replace (200) the definition with this key (declarative sync)."""
        body = _given(name=name, description=description, metadata=metadata)
        path = _definition_path(key)
        return _write("PUT", path, _achievement.decode, idempotency_key, body)

    @_Route
    def delete_definition(
        self, achievement: AchievementRef, *, idempotency_key: str | None = None
    ) -> _Call[Achievement]:
        """Delete a definition (by id or key) and every progress row of it."""
        path = _definition_path(achievement)
        return _write("DELETE", path, _achievement.decode, idempotency_key)

    # progress

    @_Route
    def upsert_progress(
        self,
        user_id: int,
        achievement: AchievementRef,
        metadata: JSONObject | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> _Call[UserAchievement]:
        """Create the row or replace its metadata (None sends none: `{}`)."""
        body = _upsert_body(user_id, achievement, metadata)
        return _write("POST", PROGRESS, _progress.decode, idempotency_key, body)

    @_Route
    def get_progress(
        self, user_id: int, achievement: AchievementRef
    ) -> _Call[UserAchievement | None]:
        """The row, or None when there is none."""
        return _read(PROGRESS, _maybe_progress.decode, _query_ref(user_id, achievement))

    @_Route
    def list_progress(
        self, user_id: int, *, unlocked_only: bool = False
    ) -> _Call[list[UserAchievement]]:
        """A user's rows: unlocked first (newest first), then locked (latest change first)."""
        params = {"userId": str(user_id), "unlockedOnly": "true" if unlocked_only else "false"}
        return _read(f"{PROGRESS}/list", _progress_list.decode, params)

    @_Route
    def unlock(
        self, user_id: int, achievement: AchievementRef, *, idempotency_key: str | None = None
    ) -> _Call[UserAchievementChange]:
        """Unlock (creating the row if needed); `newly_unlocked` is False if it already was."""
        body = _row_body(user_id, achievement)
        return _write("PUT", f"{PROGRESS}/unlock", _change.decode, idempotency_key, body)

    @_Route
    def delete_progress(
        self, user_id: int, achievement: AchievementRef, *, idempotency_key: str | None = None
    ) -> _Call[UserAchievement]:
        params = _query_ref(user_id, achievement)
        return _write("DELETE", PROGRESS, _progress.decode, idempotency_key, params=params)

    @_Route
    def apply(
        self,
        user_id: int,
        achievement: AchievementRef,
        ops: Sequence[Mapping[str, Any]],
        *,
        unlock_when: Sequence[Mapping[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> _Call[UserAchievementChange]:
        """Atomic ops on the row's metadata (`Op.inc`, ...), unlocking when `When...` all hold."""
        body = _apply_body(user_id, achievement, ops, unlock_when)
        return _write("POST", f"{PROGRESS}/apply", _change.decode, idempotency_key, body)

    @_Route
    def batch(
        self, operations: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> _Call[list[BatchResult]]:
        """All items (`Batch.apply(...)`, ...) in one transaction; the results in order."""
        body = {"operations": list(operations)}
        decode = _batch_decoder(operations)
        return _write("POST", f"{PROGRESS}/batch", decode, idempotency_key, body)

    @_Route
    def delete_user(
        self, user_id: int, *, idempotency_key: str | None = None
    ) -> _Call[DeletedUser]:
        return _write("DELETE", f"/users/{user_id}", _deleted_user.decode, idempotency_key)

    # feed, stats, operations

    @_Route
    def events(self, after: int = 0, limit: int = 100) -> _Call[list[Event]]:
        """Unlock events with `id > after`, oldest first."""
        return _read(EVENTS, _events.decode, {"after": str(after), "limit": str(limit)})

    @_Route
    def stats(self) -> _Call[list[AchievementStats]]:
        """Per achievement: unlocked and in-progress counts and the unlock rate (rarity)."""
        return _read("/users/achievements/stats", _stats.decode)

    @_Route
    def leaderboard(self, limit: int = 10, offset: int = 0) -> _Call[list[LeaderboardEntry]]:
        params = {"limit": str(limit), "offset": str(offset)}
        return _read("/users/achievements/leaderboard", _leaderboard.decode, params)

    @_Route
    def leaderboard_entry(self, user_id: int) -> _Call[LeaderboardEntry]:
        """One user's rank (UserNotFound when it has no unlock)."""
        return _read(f"/users/achievements/leaderboard/{user_id}", _entry.decode)

    @_Route
    def health(self) -> _Call[Health]:
        return _read("/health", _health.decode)

    @_Route
    def metrics(self) -> _Call[str]:
        """The Prometheus text."""
        return _read("/metrics", _text)

    @_Route
    def openapi(self) -> _Call[dict[str, Any]]:
        """The OpenAPI 3.1 document."""
        return _read("/schema/openapi.json", _document.decode)


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    base_url: str
    token: str | None
    timeout: float
    retries: int
    backoff: float

    def http_options(self) -> dict[str, Any]:
        """The arguments of httpx.AsyncClient / httpx.Client but the transport."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return {"base_url": self.base_url, "headers": headers, "timeout": self.timeout}

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: about backoff, 2x, 4x ... capped at MAX_BACKOFF."""
        if self.backoff <= 0:
            return 0.0
        return min(MAX_BACKOFF, self.backoff * 2.0**attempt) * random.uniform(0.5, 1.0)

    def retry_delay(self, error: httpx.TransportError, attempt: int) -> float:
        """The pause before attempt `attempt + 1` after `error`; SidecarUnavailable when the
        error is not one to retry or the retries are used up."""
        if not isinstance(error, RETRYABLE) or attempt >= self.retries:
            raise _unavailable(error, attempt + 1) from error
        return self.delay(attempt)


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


class _Feed:
    """The state of one `stream()`: Server-Sent Events parsing, one line at a time (only `id:`
    and `data:` matter here), the last event id to resume after, and the reconnect policy."""

    def __init__(self, config: _Config, after: int, max_reconnects: int | None) -> None:
        self.config = config
        self.last_id = after
        self.max_reconnects = max_reconnects
        self.failures = 0
        self.data: list[str] = []

    def request(self) -> dict[str, Any]:
        """The arguments of httpx's `stream` for the next connection."""
        self.data = []
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self.last_id)}
        timeout = httpx.Timeout(
            self.config.timeout, read=max(self.config.timeout, STREAM_READ_TIMEOUT)
        )
        return {"method": "GET", "url": f"{EVENTS}/stream", "headers": headers, "timeout": timeout}

    def line(self, line: str) -> Event | None:
        """The event that this line completes, if any."""
        if not line:
            if not self.data:
                return None
            event = _event.decode("\n".join(self.data))
            self.data = []
            self.last_id = event.id
            self.failures = 0
            return event
        if line.startswith(":"):
            return None  # a comment: keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            self.data.append(value[1:] if value.startswith(" ") else value)
        return None

    def pause(self, error: httpx.TransportError | None) -> float:
        """The pause before reconnecting after the connection ended (with `error`, or cleanly);
        SidecarUnavailable after `max_reconnects` failed attempts in a row."""
        given_up = self.max_reconnects is not None and self.failures >= self.max_reconnects
        if error is not None and (given_up or not isinstance(error, RETRYABLE)):
            raise _unavailable(error, self.failures + 1) from error
        delay = self.config.delay(min(self.failures, 5))
        self.failures += 1
        return delay


# --- the clients: thin transports over the routes ------------------------------------------

H = TypeVar("H", httpx.AsyncClient, httpx.Client)
X = TypeVar("X", httpx.AsyncBaseTransport, httpx.BaseTransport)


class _Client(_Routes, Generic[H, X]):
    """What both clients share: settings from the arguments or SIDECAR_*, and their connection."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: X | None = None,
    ) -> None:
        self.config = _config(base_url, token, timeout, retries, backoff)
        self._http: H = self._connect(transport)

    def _connect(self, transport: X | None) -> H:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return self.config.base_url


class AchievementsClient(_Client[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The async client. Use it as `async with AchievementsClient(...) as sidecar:`.

    `base_url`, `token` and `timeout` (seconds) default to SIDECAR_URL, SIDECAR_TOKEN and
    SIDECAR_TIMEOUT, else http://127.0.0.1:8787, no token and 10 s. A request that times out or
    cannot connect is tried again up to `retries` times, after `backoff`, 2x, 4x... seconds.
    Every method answers with the decoded value; `sidecar.detailed.<method>` answers with an
    `Answer` (value, status, whether it was a replay, the Idempotency-Key sent).
    """

    def _connect(self, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, **self.config.http_options())

    @staticmethod
    def _method(build: Callable[..., _Call[Any]]) -> Callable[..., Any]:
        async def method(self: AchievementsClient, *args: Any, **kwargs: Any) -> Any:
            return (await self._send(build(self, *args, **kwargs))).value

        return method

    @functools.cached_property
    def detailed(self) -> AsyncDetailed:
        return AsyncDetailed(self)

    async def __aenter__(self) -> AchievementsClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call[T]) -> Answer[T]:
        attempt = 0
        while True:
            try:
                return call.answer(await self._http.request(**call.request()))
            except httpx.TransportError as error:
                await asyncio.sleep(self.config.retry_delay(error, attempt))
                attempt += 1

    async def stream(
        self, after: int = 0, *, max_reconnects: int | None = None
    ) -> AsyncGenerator[Event, None]:
        """Unlock events with `id > after`, live, forever: reconnects (with Last-Event-ID, so
        nothing is lost or repeated) when the connection drops; `max_reconnects` failed attempts
        in a row (None: no limit) end it with SidecarUnavailable."""
        feed = _Feed(self.config, after, max_reconnects)
        while True:
            failure = None
            try:
                async with self._http.stream(**feed.request()) as response:
                    if not response.is_success:
                        await response.aread()
                        raise error_from(response)
                    async for line in response.aiter_lines():
                        if (event := feed.line(line)) is not None:
                            yield event
            except httpx.TransportError as error:
                failure = error
            await asyncio.sleep(feed.pause(failure))


class SyncAchievementsClient(_Client[httpx.Client, httpx.BaseTransport]):
    """The same client, blocking: `with SyncAchievementsClient(...) as sidecar:`."""

    def _connect(self, transport: httpx.BaseTransport | None) -> httpx.Client:
        return httpx.Client(transport=transport, **self.config.http_options())

    @staticmethod
    def _method(build: Callable[..., _Call[Any]]) -> Callable[..., Any]:
        def method(self: SyncAchievementsClient, *args: Any, **kwargs: Any) -> Any:
            return self._send(build(self, *args, **kwargs)).value

        return method

    @functools.cached_property
    def detailed(self) -> SyncDetailed:
        return SyncDetailed(self)

    def __enter__(self) -> SyncAchievementsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call[T]) -> Answer[T]:
        attempt = 0
        while True:
            try:
                return call.answer(self._http.request(**call.request()))
            except httpx.TransportError as error:
                time.sleep(self.config.retry_delay(error, attempt))
                attempt += 1

    def stream(
        self, after: int = 0, *, max_reconnects: int | None = None
    ) -> Generator[Event, None, None]:
        """The blocking `AchievementsClient.stream`."""
        feed = _Feed(self.config, after, max_reconnects)
        while True:
            failure = None
            try:
                with self._http.stream(**feed.request()) as response:
                    if not response.is_success:
                        response.read()
                        raise error_from(response)
                    for line in response.iter_lines():
                        if (event := feed.line(line)) is not None:
                            yield event
            except httpx.TransportError as error:
                failure = error
            time.sleep(feed.pause(failure))


class AsyncDetailed(_Routes):
    """`AchievementsClient.detailed`: the same methods, answering `Answer`s."""

    def __init__(self, client: AchievementsClient) -> None:
        self.client = client

    @staticmethod
    def _method(build: Callable[..., _Call[Any]]) -> Callable[..., Any]:
        async def method(self: AsyncDetailed, *args: Any, **kwargs: Any) -> Any:
            return await self.client._send(build(self, *args, **kwargs))

        return method


class SyncDetailed(_Routes):
    """`SyncAchievementsClient.detailed`: the same methods, answering `Answer`s."""

    def __init__(self, client: SyncAchievementsClient) -> None:
        self.client = client

    @staticmethod
    def _method(build: Callable[..., _Call[Any]]) -> Callable[..., Any]:
        def method(self: SyncDetailed, *args: Any, **kwargs: Any) -> Any:
            return self.client._send(build(self, *args, **kwargs))

        return method
