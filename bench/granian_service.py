"""The service under granian, for measuring it against uvicorn:

    SIDECAR_DB=file.db granian --interface asgi --factory bench.granian_service:create_app

Settings come from the SIDECAR_* variables, as `python -m sidecar serve` reads them; the file is
prepared before the app is built, as `serve` does. The app's lifespan (start, and the WAL
checkpoint on stop) runs under granian as under uvicorn, and the startup heap is frozen as
`serve` does. What `serve` adds and this does not: closing live event streams at the stop
signal, and raising the open-file limit.
"""

from __future__ import annotations

from litestar import Litestar

from sidecar import app, db
from sidecar.server import freeze_startup_heap
from sidecar.settings import settings_from_env


def create_app() -> Litestar:
    settings = settings_from_env()
    db.prepare(settings.db_path)
    created = app.create_app(settings)
    freeze_startup_heap()
    return created
