"""Users: deleting one deletes its progress (cascade)."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete
from litestar.response.base import ASGIResponse

from sidecar import store
from sidecar.models import DeletedUser
from sidecar.routes.common import service_of
from sidecar.validation import parse_id
from sidecar.writes import write


@delete(
    "/users/{userId:str}",
    status_code=200,
    opt={"answer": DeletedUser, "errors": ("USER_NOT_FOUND",)},
)
async def delete_user(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Delete a user and all its progress; answers how many progress rows went with it."""
    user = parse_id(request.path_params["userId"], "userId")
    return await write(
        request,
        service_of(request).writer,
        lambda connection: (200, store.delete_user(connection, user)),
    )


USER_ROUTES = [delete_user]
