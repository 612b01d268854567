"""Clients generated from the live /schema/openapi.json, the way a new user makes one, work:
openapi-python-client's package passes `mypy --strict`, and openapi-typescript's types with
openapi-fetch pass `tsc --strict`, without a cast or a warning; then a scripted sequence of bot
calls (tests/generated_clients/bot.py and bot.ts) runs with each against the real server, with
Discord ids that must round-trip exactly (80351110224678912 and 2^63 - 1)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.nodejs import BIN, NODE_MODULES, ROOT, npm_installed, run, tsc
from tests.realserver import RealServer, start_server

SCRIPTS = Path(__file__).parent / "generated_clients"
TYPESCRIPT_CONFIG = {
    "compilerOptions": {
        "target": "ES2022",
        "lib": ["ES2022"],
        "module": "NodeNext",
        "moduleResolution": "NodeNext",
        "types": ["node"],
        "strict": True,
        "outDir": "dist",
        "skipLibCheck": True,
    },
    "include": ["*.ts"],
}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    server = start_server(tmp_path_factory.mktemp("generated") / "achievements.db")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def document(real: RealServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("document") / "openapi.json"
    path.write_bytes(httpx.get(f"{real.base_url}/schema/openapi.json").content)
    return path


def test_openapi_python_client(real: RealServer, document: Path, tmp_path: Path) -> None:
    pytest.importorskip("openapi_python_client", reason="the test extra is not installed")
    bin_dir = Path(sys.executable).parent
    generated = run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(tmp_path / "sidecar_api"),
            "--meta",
            "none",
            "--config",
            str(SCRIPTS / "config.yaml"),
        ],
        cwd=tmp_path,
    )
    assert "Warning" not in generated, generated
    shutil.copy(SCRIPTS / "bot.py", tmp_path / "bot.py")
    cache = ROOT / ".mypy_cache" / "generated"  # ignored by git; makes a rerun quick
    run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(cache),
            "sidecar_api",
            "bot.py",
        ],
        cwd=tmp_path,
    )
    env = {"SIDECAR_URL": real.base_url, "PYTHONPATH": str(tmp_path)}
    run([sys.executable, "bot.py"], cwd=tmp_path, env=env)


def test_openapi_typescript_with_openapi_fetch(
    real: RealServer, document: Path, tmp_path: Path
) -> None:
    npm_installed()
    # A project of its own beside the client's installed packages (openapi-fetch, typescript).
    (tmp_path / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    (tmp_path / "package.json").write_text(json.dumps({"type": "module", "private": True}))
    (tmp_path / "tsconfig.json").write_text(json.dumps(TYPESCRIPT_CONFIG))
    run([str(BIN / "openapi-typescript"), str(document), "-o", "schema.ts"], cwd=tmp_path)
    shutil.copy(SCRIPTS / "bot.ts", tmp_path / "bot.ts")
    tsc(tmp_path)
    output = run(["node", "dist/bot.js"], cwd=tmp_path, env={"SIDECAR_URL": real.base_url})
    assert output.strip() == "ok"
