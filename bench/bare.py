"""The reference ceiling: a bare Litestar app on the same server software, with no database.

`POST /bare` decodes the upsert body type (`sidecar.models.Upsert`) strictly from the raw body
with a prebuilt decoder and answers a UserAchievement of the same size as the service's upsert
answer. `GET /bare` and `GET /bare/list` answer fixed bytes captured from the service beforehand
(a progress GET's and a list's answer; files named by BENCH_BARE_GET and BENCH_BARE_LIST), so a
service GET and its bare counterpart put the same bytes on the wire.

Run it as `uvicorn bench.bare:app` or `granian --interface asgi bench.bare:app`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, get, post
from litestar.response.base import ASGIResponse

from sidecar.models import Upsert, UserAchievement

JSON = "application/json"
STAMP = "2026-01-01T00:00:00.000Z"
EMPTY_OBJECT = msgspec.Raw(b"{}")

_decode = msgspec.json.Decoder(Upsert, strict=True).decode
_encode = msgspec.json.Encoder().encode


def _captured(variable: str) -> bytes:
    path = os.environ.get(variable)
    return Path(path).read_bytes() if path else b"null"


GET_ANSWER = _captured("BENCH_BARE_GET")
LIST_ANSWER = _captured("BENCH_BARE_LIST")


@post("/bare", status_code=200)
async def bare_post(request: Request[Any, Any, Any]) -> ASGIResponse:
    body = _decode(await request.body())
    row = UserAchievement(
        1,
        body.user_id,
        body.achievement_id or 0,
        None,
        body.metadata or EMPTY_OBJECT,
        STAMP,
        STAMP,
    )
    return ASGIResponse(body=_encode(row), media_type=JSON)


@get("/bare")
async def bare_get() -> ASGIResponse:
    return ASGIResponse(body=GET_ANSWER, media_type=JSON)


@get("/bare/list")
async def bare_list() -> ASGIResponse:
    return ASGIResponse(body=LIST_ANSWER, media_type=JSON)


@get("/health")
async def health() -> ASGIResponse:
    return ASGIResponse(body=b'{"status":"ok"}', media_type=JSON)


app = Litestar(route_handlers=[bare_post, bare_get, bare_list, health], openapi_config=None)
