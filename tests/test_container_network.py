"""The service on a container network, without a Docker engine: examples/compose.yaml checked
against the Dockerfile, then the service started as the image starts it (the Dockerfile's ENV,
WORKDIR and CMD, plus the compose file's environment) in a network namespace of its own, and
called from a second namespace over a veth pair, as the compose file's bot calls it: by the
compose service name as Host and by IP literal, with and without the token.

The namespaces are what Docker gives each container: their own interfaces, their own loopback,
their own port 8787. The addresses come from 198.18.0.0/15 (RFC 2544, for tests, never routed)
and exist only inside the two namespaces, so nothing leaves them. Needs root and iproute2's `ip`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_docker_install import (
    Stage,
    exec_form,
    healthcheck_command,
    healthcheck_options,
    in_stage,
    read_dockerfile,
)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "examples" / "compose.yaml"
SERVICE = "achievements"
SERVER_ADDRESS = "198.18.87.1"
BOT_ADDRESS = "198.18.87.2"
STARTUP_SECONDS = 30
REQUEST_SECONDS = 10

# Run by the bot namespace's python: each request of the JSON list on stdin, its answer
# (status and problem code) as one JSON list on stdout. urllib sends the Host it is given.
CLIENT = """
import json, sys, urllib.error, urllib.request
answers = []
for call in json.load(sys.stdin):
    request = urllib.request.Request(call["url"], method=call["method"], headers=call["headers"])
    if call["body"] is not None:
        request.data = json.dumps(call["body"]).encode()
    try:
        with urllib.request.urlopen(request, timeout=call["timeout"]) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    answers.append({"status": status, "body": json.loads(body) if body else None})
print(json.dumps(answers))
"""


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def final_stage() -> Stage:
    return read_dockerfile()[-1]


def ip(*arguments: str) -> None:
    done = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"ip {' '.join(arguments)}: {done.stderr.strip()}"


# --- the compose file against the Dockerfile ------------------------------------------------


def test_the_compose_example_agrees_with_the_dockerfile() -> None:
    final = final_stage()
    image_env = final.env()
    services = compose()["services"]
    sidecar, bot = services[SERVICE], services["bot"]

    # One network shared by both; the database on a named volume at the image's volume.
    assert sidecar["networks"] == bot["networks"] and len(sidecar["networks"]) == 1
    (volume,) = sidecar["volumes"]
    name, _, mounted = volume.partition(":")
    assert name in compose()["volumes"]
    assert [mounted] == json.loads(final.last("VOLUME"))
    assert Path(image_env["SIDECAR_DB"]).parent == Path(mounted)

    # The token from an env file, the same one for both; the service name allowed as Host.
    assert sidecar["env_file"] == bot["env_file"]
    assert "SIDECAR_TOKEN" not in sidecar.get("environment", {})
    assert sidecar["environment"]["SIDECAR_ALLOWED_HOSTS"].split(",") == [SERVICE]
    port = image_env["SIDECAR_PORT"]
    assert final.last("EXPOSE") == port
    assert bot["environment"]["SIDECAR_URL"] == f"http://{SERVICE}:{port}"
    assert "ports" not in sidecar, "published only on request (see the comment in the file)"

    # The image's health check, written out; the bot waits for it.
    health = sidecar["healthcheck"]
    assert health["test"] == ["CMD", *healthcheck_command(final)]
    options = healthcheck_options(final)
    assert {
        key.replace("_", "-"): str(value) for key, value in health.items() if key != "test"
    } == (options)
    assert bot["depends_on"] == {SERVICE: {"condition": "service_healthy"}}


# --- the service in a network namespace ------------------------------------------------------


@dataclass
class Network:
    server: str  # the namespace the service runs in, as in its container
    bot: str  # the namespace the bot's requests come from
    token: str

    def call(self, *calls: dict[str, Any]) -> list[dict[str, Any]]:
        """Runs the requests from the bot's namespace; their answers in order."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.bot, sys.executable, "-c", CLIENT],
            input=json.dumps(list(calls)),
            capture_output=True,
            text=True,
            timeout=REQUEST_SECONDS * len(calls) + 30,
        )
        assert done.returncode == 0, done.stderr
        answers: list[dict[str, Any]] = json.loads(done.stdout)
        return answers


def request(
    host: str, token: str | None, path: str = "/users/achievements/definitions", **extra: Any
) -> dict[str, Any]:
    port = final_stage().env()["SIDECAR_PORT"]
    headers = {"Host": host}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if extra.get("body") is not None:
        headers["Content-Type"] = "application/json"
    return {
        "url": f"http://{SERVER_ADDRESS}:{port}{path}",
        "method": extra.get("method", "GET"),
        "headers": headers,
        "body": extra.get("body"),
        "timeout": REQUEST_SECONDS,
    }


def namespaces_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command: apt-get install iproute2")


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    namespaces_or_skip()
    tag = f"{os.getpid() % 100_000}"
    server_ns, bot_ns = f"sidecar-test-srv-{tag}", f"sidecar-test-bot-{tag}"
    created: list[str] = []
    process: subprocess.Popen[bytes] | None = None
    tmp = tmp_path_factory.mktemp("container")
    try:
        for namespace in (server_ns, bot_ns):
            ip("netns", "add", namespace)
            created.append(namespace)
        # The veth pair is made in the server's namespace and one end moved to the bot's:
        # neither end is ever in the host's namespace.
        ip("-n", server_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        ip("-n", server_ns, "link", "set", "eth1", "netns", bot_ns)
        for namespace, device, address in (
            (server_ns, "eth0", SERVER_ADDRESS),
            (bot_ns, "eth1", BOT_ADDRESS),
        ):
            ip("-n", namespace, "addr", "add", f"{address}/30", "dev", device)
            ip("-n", namespace, "link", "set", device, "up")
            ip("-n", namespace, "link", "set", "lo", "up")

        token = secrets.token_hex(16)
        process, log = start_as_the_image_does(server_ns, tmp, token)
        wait_healthy(server_ns, process, log, tmp)
        yield Network(server=server_ns, bot=bot_ns, token=token)
    finally:
        if process is not None:
            if process.poll() is None:
                process.send_signal(getattr(signal, final_stage().last("STOPSIGNAL")))
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for namespace in created:  # deleting a namespace deletes the veth end inside it
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=30)


def start_as_the_image_does(
    namespace: str, tmp: Path, token: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """The Dockerfile's CMD with its ENV and WORKDIR, plus the compose file's environment and a
    token as its env file would give it; /data is mapped under tmp. The host and the port stay
    the image's: 0.0.0.0:8787, in a namespace of its own."""
    final = final_stage()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update(final.env())
    env.update(compose()["services"][SERVICE]["environment"])
    env["SIDECAR_TOKEN"] = token
    env["SIDECAR_DB"] = str(in_stage(tmp, env["SIDECAR_DB"], "/"))
    workdir = in_stage(tmp, final.last("WORKDIR"), "/")
    workdir.mkdir(parents=True, exist_ok=True)
    Path(env["SIDECAR_DB"]).parent.mkdir(parents=True, exist_ok=True)
    assert not final.all("ENTRYPOINT"), "an ENTRYPOINT would come before CMD: start it too"
    command = exec_form(final.last("CMD"))
    # This checkout's console script (the venv of the tests), as the image's is on its PATH.
    executable = shutil.which(command[0], path=str(Path(sys.executable).parent))
    assert executable is not None, f"no {command[0]} in {Path(sys.executable).parent}"
    log = tmp / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, executable, *command[1:]],
            env=env,
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return process, log


def wait_healthy(namespace: str, process: subprocess.Popen[bytes], log: Path, tmp: Path) -> None:
    """The image's HEALTHCHECK, run inside the service's namespace as Docker runs it."""
    health = healthcheck_command(final_stage())
    command = ["ip", "netns", "exec", namespace, sys.executable, *health[1:]]
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        probed = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=tmp)
        if probed.returncode == 0:
            return
        assert process.poll() is None, f"the service exited: {log.read_text()}"
        assert time.monotonic() < deadline, f"not healthy: {probed.stderr}\n{log.read_text()}"
        time.sleep(0.2)


def code_of(answer: dict[str, Any]) -> tuple[int, str | None]:
    body = answer["body"]
    return answer["status"], body.get("code") if isinstance(body, dict) else None


def test_the_bot_reaches_it_by_service_name_with_the_token(network: Network) -> None:
    port = final_stage().env()["SIDECAR_PORT"]
    created, listed, bare, health = network.call(
        request(f"{SERVICE}:{port}", network.token, method="POST", body={"name": "From the bot"}),
        request(f"{SERVICE}:{port}", network.token),
        request(SERVICE, network.token),
        request(f"{SERVICE}:{port}", None, path="/health"),
    )
    assert created["status"] == 201, created
    assert listed["status"] == 200 and [a["name"] for a in listed["body"]] == ["From the bot"]
    assert bare["status"] == 200, bare
    assert health["status"] == 200 and health["body"]["status"] == "ok"


def test_without_the_token_it_is_refused(network: Network) -> None:
    port = final_stage().env()["SIDECAR_PORT"]
    answers = network.call(
        request(f"{SERVICE}:{port}", None),
        request(f"{SERVICE}:{port}", "not-the-token"),
    )
    assert [code_of(answer) for answer in answers] == [(401, "UNAUTHORIZED")] * 2


def test_an_ip_literal_host_is_allowed(network: Network) -> None:
    """Revision 2: DNS rebinding needs a name, so an IP literal as Host is always allowed (what
    a bot sends that calls the container by its address, e.g. 172.17.0.2:8787)."""
    port = final_stage().env()["SIDECAR_PORT"]
    by_address, bare, tokenless = network.call(
        request(f"{SERVER_ADDRESS}:{port}", network.token),
        request(SERVER_ADDRESS, network.token),
        request(f"{SERVER_ADDRESS}:{port}", None),
    )
    assert by_address["status"] == 200, by_address
    assert bare["status"] == 200, bare
    assert code_of(tokenless) == (401, "UNAUTHORIZED")


def test_a_name_not_allowed_is_refused(network: Network) -> None:
    """Only the names SIDECAR_ALLOWED_HOSTS lists: a container called by another name is not
    reached through DNS rebinding."""
    port = final_stage().env()["SIDECAR_PORT"]
    (answer,) = network.call(request(f"sidecar:{port}", network.token))
    assert code_of(answer) == (400, "INVALID_HOST")
