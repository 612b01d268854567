"""Offline API docs: `GET /schema` is Swagger UI whose files come from an installed Python
package (swagger-ui-bundle-v2), never from a CDN; only the page's own files are served."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from sidecar.routes import docs
from tests.helpers import assert_problem
from tests.test_pages import parse_html

ROOT = Path(__file__).resolve().parent.parent
EXTERNAL = re.compile(r"https?://|//[a-z0-9]", re.IGNORECASE)
CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)")
MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
}


def package_file(name: str) -> bytes:
    """The file as the installed package has it (found here independently of the service)."""
    vendor = importlib.resources.files("swagger_ui_bundle").joinpath("vendor")
    (folder,) = [e for e in vendor.iterdir() if e.name.startswith("swagger-ui-")]
    # Swagger UI 5 or later: the first major version that renders OpenAPI 3.1.
    assert int(folder.name.removeprefix("swagger-ui-").split(".")[0]) >= 5, folder.name
    return folder.joinpath(name).read_bytes()


def references(html: str) -> list[str]:
    document = parse_html(html)
    found = []
    for element in document.iter():
        for attribute in ("src", "href"):
            if attribute in element.attrs:
                found.append(element.attrs[attribute])
    return found


async def test_schema_page_and_every_asset_it_references_are_local(client: Any) -> None:
    response = await client.get("/schema")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    assert 'id="swagger-ui"' in html

    referenced = references(html)
    assert sorted(referenced) == [
        "/schema/assets/favicon-16x16.png",
        "/schema/assets/favicon-32x32.png",
        "/schema/assets/swagger-ui-bundle.js",
        "/schema/assets/swagger-ui.css",
    ]
    # Nothing external anywhere in the page, its inline script included.
    assert EXTERNAL.search(html) is None, EXTERNAL.search(html)
    document = parse_html(html)
    inline = [s.text() for s in document.find_all("script") if "src" not in s.attrs]
    assert len(inline) == 1 and 'url: "/schema/openapi.json"' in inline[0]
    assert "validatorUrl: null" in inline[0]  # no badge fetched from a validator service

    for path in referenced:
        asset = await client.get(path)
        assert asset.status_code == 200, path
        name = path.rsplit("/", 1)[1]
        assert asset.headers["content-type"] == MEDIA_TYPES[name[name.rindex(".") :]]
        assert asset.content == package_file(name), path
        assert asset.headers["x-content-type-options"] == "nosniff"
        if name.endswith(".css"):
            for url in CSS_URL.findall(asset.text):
                assert url.startswith("data:"), url

    # The document the page loads is there.
    document_response = await client.get("/schema/openapi.json")
    assert document_response.status_code == 200
    assert document_response.json()["openapi"].startswith("3.1")


async def test_schema_page_may_only_run_its_own_scripts(client: Any) -> None:
    response = await client.get("/schema")
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    sources = directives["script-src"].split()
    assert sources[0] == "'self'" and len(sources) == 2 and sources[1].startswith("'sha256-")
    assert directives["connect-src"] == "'self'"


async def test_only_the_listed_files_are_served(client: Any) -> None:
    for path in [
        "/schema/assets/index.html",  # in the package, but not a file the page uses
        "/schema/assets/swagger-ui.js",
        "/schema/assets/swagger-initializer.js",
        "/schema/assets/",
        "/schema/assets",
        "/schema/assets/../../pyproject.toml",
        "/schema/assets/..%2F..%2Fpyproject.toml",
        "/schema/assets/%2e%2e/%2e%2e/etc/passwd",
        "/schema/assets/swagger-ui.css/../../../../etc/passwd",
        "/schema/assets/SWAGGER-UI.CSS",
    ]:
        response = await client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert not response.content.startswith(b"[project]"), path


async def test_docs_behind_the_same_gate(make_client: Any) -> None:
    async with make_client(token="s3cret") as guarded:
        for path in ("/schema", "/schema/assets/swagger-ui.css"):
            assert_problem(await guarded.get(path), 401, "UNAUTHORIZED")
            ok = await guarded.get(path, headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200
            foreign = await guarded.get(
                path, headers={"Authorization": "Bearer s3cret", "Host": "evil.example"}
            )
            assert_problem(foreign, 400, "INVALID_HOST")


async def test_openapi_document_leaves_out_the_pages_and_the_docs(client: Any) -> None:
    # They are for people, not API operations (a client generator would make functions of them).
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for path in ("/", "/users/{userId}/profile", "/schema", "/schema/assets/swagger-ui.css"):
        assert path not in paths, path
    assert (await client.get("/schema/assets/swagger-ui.css")).status_code == 200


# --- which Swagger UI: the pinned one, and the newest folder by version ----------------------


def test_swagger_ui_package_is_pinned_exactly() -> None:
    """The files the docs serve come from one known release, not whatever a resolver picks."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (pin,) = [d for d in project["dependencies"] if d.startswith("swagger-ui-bundle-v2")]
    assert re.fullmatch(r"swagger-ui-bundle-v2==\d+\.\d+\.\d+", pin), pin
    assert importlib.metadata.version("swagger-ui-bundle-v2") == pin.split("==")[1]


async def test_assets_come_from_the_newest_version_folder(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By version order: 5.17.14 is newer than 5.9.0 and 5.17.2, though it sorts before them."""
    vendor = tmp_path / "vendor"
    for version in ("5.9.0", "5.17.2", "5.17.14", "4.99.99"):
        folder = vendor / f"swagger-ui-{version}"
        folder.mkdir(parents=True)
        for name in docs.ASSETS:
            (folder / name).write_text(f"/* {version} */")
    (vendor / "swagger-ui-notes").mkdir()  # not a version: ignored
    monkeypatch.setattr(docs.importlib.resources, "files", lambda package: tmp_path)
    docs.asset.cache_clear()
    try:
        assert docs.asset_directory().name == "swagger-ui-5.17.14"
        response = await client.get("/schema/assets/swagger-ui.css")
        assert response.status_code == 200
        assert response.text == "/* 5.17.14 */"
    finally:
        docs.asset.cache_clear()
