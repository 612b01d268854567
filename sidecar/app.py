"""create_app(settings) -> Litestar: routes, error handling, the gate, metrics, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from sidecar.errors import handle_exception
from sidecar.fastpath import FastPath
from sidecar.metrics import Instrument, Metrics
from sidecar.openapi import openapi_document
from sidecar.routes import ROUTES
from sidecar.security import Gate
from sidecar.service import Service
from sidecar.settings import Settings


def create_app(settings: Settings) -> Litestar:
    service = Service(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = Litestar(
        route_handlers=ROUTES,
        lifespan=[lifespan],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
        debug=False,
    )
    app.state.service = service
    app.state.metrics = metrics
    app.state.openapi = openapi_document(app)
    # The gate and the counters wrap the whole app, so they also see unknown paths; the plain
    # progress reads and writes are answered inside the gate, before Litestar's handler pipeline.
    fast = FastPath(app.asgi_handler, service, settings.max_body_bytes)
    app.asgi_handler = Instrument(Gate(fast, settings), metrics)
    return app
