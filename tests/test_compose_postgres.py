"""examples/compose.postgres.yaml: checked against the Dockerfile and examples/compose.yaml, then
its two sidecars run as the image starts them, with the file's environment (the password from
the environment, as Compose interpolates it), on a PostgreSQL cluster set up as the postgres
image sets one up from POSTGRES_USER, POSTGRES_DB and POSTGRES_PASSWORD."""

from __future__ import annotations

import re
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from sidecar import postgres
from tests import pg
from tests.realserver import RealServer, start_server
from tests.test_container_network import SERVICE
from tests.test_container_network import compose as plain_compose
from tests.test_docker_install import (
    healthcheck_command,
    healthcheck_options,
    locked_pins,
    read_dockerfile,
)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "examples" / "compose.postgres.yaml"
DATABASE_SERVICE = "postgres"
# Compose's `${NAME:?message}` (and `${NAME}`): the variable, or an error naming it.
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_]+)(?::\?[^}]*)?\}")


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())  # anchors and `<<` merges resolved
    assert isinstance(loaded, dict)
    return loaded


def sidecars() -> dict[str, dict[str, Any]]:
    """The services built from the repository: the sidecars."""
    services = compose()["services"]
    return {name: service for name, service in services.items() if service.get("build") == ".."}


def interpolated(text: str, variables: dict[str, str]) -> str:
    """`text` as Compose interpolates it; a variable left unset is an error, as `:?` makes it."""
    return VARIABLE.sub(lambda match: variables[match.group("name")], text)


def test_the_postgres_compose_example_agrees_with_the_dockerfile_and_compose_yaml() -> None:
    final = read_dockerfile()[-1]
    services = compose()["services"]
    database, bot = services[DATABASE_SERVICE], services["bot"]
    running = sidecars()
    assert len(running) == 2

    # PostgreSQL 16, its data on a named volume, healthy once pg_isready says so.
    assert database["image"].split(":")[1].split(".")[0] == "16"
    (volume,) = database["volumes"]
    name, _, mounted = volume.partition(":")
    assert name in compose()["volumes"] and mounted == "/var/lib/postgresql/data"
    settings = database["environment"]
    user, dbname = settings["POSTGRES_USER"], settings["POSTGRES_DB"]
    assert database["healthcheck"]["test"] == [
        "CMD",
        "pg_isready",
        "--username",
        user,
        "--dbname",
        dbname,
    ]
    # The password from the environment only, never written in the file.
    assert VARIABLE.fullmatch(settings["POSTGRES_PASSWORD"])

    # The image (the same as compose.yaml's) carries the driver: its lock pins the postgres extra.
    assert "psycopg" in locked_pins()
    plain = plain_compose()["services"][SERVICE]
    port = final.env()["SIDECAR_PORT"]
    for service_name, sidecar in running.items():
        # What compose.yaml's sidecar has, the same (but the SQLite volume).
        for key in ("image", "restart", "env_file", "stop_grace_period", "cap_drop"):
            assert sidecar[key] == plain[key], key
        assert sidecar["security_opt"] == plain["security_opt"]
        assert sidecar["healthcheck"] == plain["healthcheck"]
        assert sidecar["healthcheck"]["test"] == ["CMD", *healthcheck_command(final)]
        options = {k.replace("_", "-"): str(v) for k, v in sidecar["healthcheck"].items()}
        del options["test"]
        assert options == healthcheck_options(final)
        assert "volumes" not in sidecar and "ports" not in sidecar
        assert sidecar["networks"] == database["networks"] == bot["networks"]
        # Started once PostgreSQL is healthy; its own name allowed as Host; the token from the
        # env file shared with the bot.
        assert sidecar["depends_on"] == {DATABASE_SERVICE: {"condition": "service_healthy"}}
        environment = sidecar["environment"]
        assert environment["SIDECAR_ALLOWED_HOSTS"].split(",") == [service_name]
        assert sidecar["env_file"] == bot["env_file"]
        assert "SIDECAR_TOKEN" not in environment
        # SIDECAR_DB: the database service, its user and database, the password interpolated.
        database_url = interpolated(environment["SIDECAR_DB"], {"POSTGRES_PASSWORD": "pw"})
        assert postgres.is_url(database_url)
        url = urllib.parse.urlsplit(database_url)
        assert (url.hostname, url.port, url.username) == (DATABASE_SERVICE, 5432, user)
        assert (url.password, url.path) == ("pw", f"/{dbname}")

    # The bot waits for both sidecars and calls one by its service name.
    assert bot["depends_on"] == {name: {"condition": "service_healthy"} for name in running}
    assert bot["environment"]["SIDECAR_URL"] in {f"http://{name}:{port}" for name in running}


# --- the two sidecars, running -------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[pg.Cluster]:
    own = pg.cluster_or_skip()  # its own: the test creates a role, as the postgres image does
    try:
        yield own
    finally:
        own.stop()


def database_as_the_image_creates_it(cluster: pg.Cluster, password: str) -> None:
    settings = compose()["services"][DATABASE_SERVICE]["environment"]
    user, dbname = settings["POSTGRES_USER"], settings["POSTGRES_DB"]
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'")
        admin.execute(f'CREATE DATABASE "{dbname}" OWNER "{user}"')


def test_the_two_sidecars_share_one_database(cluster: pg.Cluster, tmp_path: Path) -> None:
    password, token = secrets.token_hex(32), secrets.token_hex(32)
    database_as_the_image_creates_it(cluster, password)
    image_env = read_dockerfile()[-1].env()
    servers: dict[str, RealServer] = {}
    try:
        for name, sidecar in sidecars().items():
            environment = {
                key: interpolated(value, {"POSTGRES_PASSWORD": password})
                for key, value in sidecar["environment"].items()
            }
            # Where the service name `postgres` resolves to, here.
            url = environment["SIDECAR_DB"].replace(
                f"@{DATABASE_SERVICE}:5432/", f"@127.0.0.1:{cluster.port}/"
            )
            env = {**image_env, **environment, "SIDECAR_DB": url, "SIDECAR_TOKEN": token}
            del env["SIDECAR_HOST"], env["SIDECAR_PORT"]  # the test's loopback and a free port
            servers[name] = start_server(url, extra_env=env, log_dir=tmp_path)

        first, second = servers
        created = call(servers[first], first, token, "POST", json={"name": "Shared"})
        assert created.status_code == 201, created.text
        listed = call(servers[second], second, token, "GET")
        assert [d["name"] for d in listed.json()] == ["Shared"]
        for name, server in servers.items():
            health = httpx.get(f"{server.base_url}/health", timeout=10).json()
            assert health["databaseUrl"].startswith("postgresql://achievements:***@127.0.0.1:")
            assert password not in health["databaseUrl"] and password not in server.log()
            assert call(server, name, None, "GET").status_code == 401  # the token is needed
    finally:
        for server in servers.values():
            server.stop()


def call(server: RealServer, host: str, token: str | None, method: str, **extra: Any) -> Any:
    """A request as the bot sends it: to the service name (as Host), with the token."""
    headers = {"Host": f"{host}:8787"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{server.base_url}/users/achievements/definitions"
    return httpx.request(method, url, headers=headers, timeout=10, **extra)
