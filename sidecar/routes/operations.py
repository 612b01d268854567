"""Operations: health, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response.base import ASGIResponse

from sidecar import __version__, postgres, store
from sidecar.db import DatabaseGone, WriterStopped
from sidecar.models import Health
from sidecar.routes.common import answer, service_of

OPENAPI_PATH = "/schema/openapi.json"


@get("/health", opt={"answer": Health})
async def get_health(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Health: 200 once the database answers. Never needs the token."""
    service = service_of(request)
    # Raised here, answered by the exception handler: 503 DATABASE_GONE, 500 for a dead writer.
    if service.writer.gone:
        raise DatabaseGone(f"{service.settings.db_path} was deleted or replaced")
    if not service.writer.alive:
        raise WriterStopped("the writer thread has stopped")
    schema_version, engine_version = await service.readers.read(store.health)
    database = service.settings.db_path
    engine = {"sqlite_version": engine_version}
    if postgres.is_url(database):  # and which database, never with its password
        engine = {"postgresql_version": engine_version, "database_url": postgres.redacted(database)}
    health = Health(
        status="ok", database="ok", schema_version=schema_version, version=__version__, **engine
    )
    return answer(request, health)


@get("/metrics", opt={"text": "text/plain"})
async def get_metrics(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Prometheus metrics: requests, latency, database size, rows per table (sidecar/metrics.py)."""
    service = service_of(request)
    body = await request.app.state.metrics.exposition(service.readers, service.settings.db_path)
    return ASGIResponse(body=body, media_type="text/plain; version=0.0.4")


@get(OPENAPI_PATH, opt={"answer": dict[str, Any], "database": False})
async def get_openapi_document(request: Request[Any, Any, Any]) -> ASGIResponse:
    """This OpenAPI 3.1 document."""
    return ASGIResponse(body=request.app.state.openapi, media_type="application/json")


OPERATION_ROUTES = [get_health, get_metrics, get_openapi_document]
