"""The TypeScript client (clients/typescript) against the real server: its committed types are
the ones openapi-typescript generates from the live /schema/openapi.json, it compiles under
`strict`, and its own tests (node --test, clients/typescript/test/) pass against the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.errors import TITLES
from tests.nodejs import BIN, CLIENT, client_compiled, node_test, npm_installed, run
from tests.realserver import RealServer, start_server


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    server = start_server(tmp_path_factory.mktemp("typescript") / "achievements.db")
    try:
        yield server
    finally:
        server.stop()


def test_committed_types_are_the_live_documents(real: RealServer, tmp_path: Path) -> None:
    npm_installed()
    generated = tmp_path / "schema.ts"
    document = f"{real.base_url}/schema/openapi.json"
    run([str(BIN / "openapi-typescript"), document, "-o", str(generated)], cwd=CLIENT)
    committed = (CLIENT / "src" / "schema.ts").read_text()
    assert generated.read_text() == committed, (
        "clients/typescript/src/schema.ts differs from the live document's types: "
        "regenerate it with `SIDECAR_URL=... npm run generate`"
    )


def test_typescript_client_against_the_real_server(real: RealServer) -> None:
    client_compiled()
    env = {"SIDECAR_URL": real.base_url, "SIDECAR_ERROR_CODES": ",".join(TITLES)}
    report = node_test([CLIENT / "dist" / "test" / "client.test.js"], cwd=CLIENT, env=env)
    assert "# fail 0" in report
