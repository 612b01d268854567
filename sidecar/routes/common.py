"""What every handler needs: the service, strict bodies, query parameters, JSON answers."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.response.base import ASGIResponse

from sidecar import idforms
from sidecar.errors import ApiError, validation_error
from sidecar.models import KEY_PATTERN
from sidecar.service import Service
from sidecar.store import AchievementRef
from sidecar.validation import decode, parse_id

T = TypeVar("T")

JSON = "application/json"
_KEY = re.compile(KEY_PATTERN)


def service_of(request: Request[Any, Any, Any]) -> Service:
    service: Service = request.app.state.service
    return service


def answer(request: Request[Any, Any, Any], value: Any) -> ASGIResponse:
    """The handler's answer, its ids in the form the request asks for."""
    strings, headers = idforms.id_form(request, request.route_handler.opt["answer"])
    # An ASGIResponse is sent as it is; a Response would be converted into one per request.
    return ASGIResponse(body=idforms.encode(value, strings), media_type=JSON, headers=headers)


async def body_of(request: Request[Any, Any, Any], decoder: msgspec.json.Decoder[T]) -> T:
    """The request body, strictly decoded; only `application/json` (with parameters) is taken."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "send the body as application/json")
    return decode(decoder, await request.body())


def key_param(text: str, field: str = "key") -> str:
    if not _KEY.fullmatch(text):
        raise validation_error(field, f"must match {KEY_PATTERN}")
    return text


def achievement_param(request: Request[Any, Any, Any]) -> AchievementRef:
    """`achievementId` or `achievementKey` from the query: exactly one of them."""
    query = request.query_params
    by_id, by_key = query.get("achievementId"), query.get("achievementKey")
    if (by_id is None) == (by_key is None):
        raise validation_error("achievementId", "give exactly one of achievementId, achievementKey")
    if by_id is not None:
        return parse_id(by_id, "achievementId")
    assert by_key is not None
    return key_param(by_key, "achievementKey")


def user_param(request: Request[Any, Any, Any]) -> int:
    return parse_id(request.query_params.get("userId"), "userId")
