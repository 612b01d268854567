"""Operations: health, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import sqlite3
from typing import Any

from litestar import Request, get
from litestar.response.base import ASGIResponse

from sidecar import __version__, store
from sidecar.db import SCHEMA_VERSION
from sidecar.models import Health
from sidecar.routes.common import answer, service_of

OPENAPI_PATH = "/schema/openapi.json"


@get("/health", opt={"answer": Health})
async def health(request: Request[Any, Any, Any]) -> ASGIResponse:
    store.ping(service_of(request).readers)
    return answer(request, Health("ok", "ok", SCHEMA_VERSION, sqlite3.sqlite_version, __version__))


@get("/metrics", opt={"text": "text/plain"})
async def metrics(request: Request[Any, Any, Any]) -> ASGIResponse:
    service = service_of(request)
    rows = await store.table_rows(service.readers)
    body = request.app.state.metrics.exposition(service.settings.db_path, rows)
    return ASGIResponse(body=body, media_type="text/plain; version=0.0.4")


@get(OPENAPI_PATH, opt={"answer": dict[str, Any]})
async def openapi_document(request: Request[Any, Any, Any]) -> ASGIResponse:
    return ASGIResponse(body=request.app.state.openapi, media_type="application/json")


OPERATION_ROUTES = [health, metrics, openapi_document]
