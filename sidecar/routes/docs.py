"""Interactive API docs at /schema: Swagger UI served from an installed package, not a CDN.

The assets come from the `swagger-ui-bundle-v2` distribution (import name `swagger_ui_bundle`),
pinned to one exact version in pyproject.toml, read through importlib.resources. Only the files
named in ASSETS are served, each on its own fixed path: there is no file-name parameter, so no
path can reach anything else.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re
from functools import cache
from importlib.resources.abc import Traversable
from typing import Any

from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse

from sidecar.routes.operations import OPENAPI_PATH

PACKAGE = "swagger_ui_bundle"
ASSET_PREFIX = "/schema/assets"
# The files the page uses, and their media types.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}

INITIALIZER = f"""window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    url: "{OPENAPI_PATH}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  }});
}};"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(INITIALIZER.encode()).digest()).decode()
# The page runs the bundle from this origin and the one inline script above, nothing else.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src 'self' 'sha256-{_SCRIPT_HASH}'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Achievements sidecar · API</title>
<link rel="icon" type="image/png" href="{ASSET_PREFIX}/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="{ASSET_PREFIX}/favicon-16x16.png" sizes="16x16">
<link rel="stylesheet" href="{ASSET_PREFIX}/swagger-ui.css">
<style>body {{ margin: 0; }}</style>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSET_PREFIX}/swagger-ui-bundle.js"></script>
<script>{INITIALIZER}</script>
</body>
</html>
""".encode()


VERSION_FOLDER = re.compile(r"swagger-ui-(\d+)\.(\d+)\.(\d+)")


def asset_directory() -> Traversable:
    """The newest versioned Swagger UI folder inside the package (vendor/swagger-ui-X.Y.Z), by
    version order: a string sort would rank 5.9.0 above 5.17.0."""
    vendor = importlib.resources.files(PACKAGE).joinpath("vendor")
    folders = {
        tuple(int(part) for part in match.groups()): entry
        for entry in vendor.iterdir()
        if (match := VERSION_FOLDER.fullmatch(entry.name))
    }
    if not folders:
        raise RuntimeError(f"no Swagger UI folder in the {PACKAGE} package")
    return folders[max(folders)]


@cache
def asset(name: str) -> bytes:
    """One of ASSETS, read once (about 2 MB in all) and kept."""
    if name not in ASSETS:
        raise KeyError(name)
    return asset_directory().joinpath(name).read_bytes()


# The docs page and its assets are not API operations: left out of the OpenAPI document.
@get("/schema", include_in_schema=False)
async def docs_page(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Interactive API docs (Swagger UI, served from this service, no CDN)."""
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    # ASGIResponse adds "; charset=utf-8" to text/* types.
    return ASGIResponse(body=PAGE, media_type="text/html", headers=headers)


def _asset_route(name: str, media_type: str) -> HTTPRouteHandler:
    async def handler(request: Request[Any, Any, Any]) -> ASGIResponse:
        headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
        return ASGIResponse(body=asset(name), media_type=media_type, headers=headers)

    return get(f"{ASSET_PREFIX}/{name}", include_in_schema=False)(handler)


DOCS_ROUTES = [docs_page, *(_asset_route(name, kind) for name, kind in ASSETS.items())]
