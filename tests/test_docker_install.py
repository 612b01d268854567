"""No Docker engine runs here, so this performs the Dockerfile's own steps outside Docker: build
the wheel, install it alone into a fresh virtual environment, start the image's CMD with the
image's ENV, and run the image's HEALTHCHECK command against it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

from tests.realserver import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages[-1]


def image_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in instructions:
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def exec_form(instructions: list[tuple[str, str]], wanted: str) -> list[str]:
    for instruction, arguments in instructions:
        if instruction == wanted:
            if wanted == "HEALTHCHECK":
                arguments = arguments[arguments.index("CMD") + len("CMD") :].strip()
            parsed: list[str] = json.loads(arguments)
            return parsed
    raise AssertionError(f"the Dockerfile has no {wanted}")


def test_dockerfile_declares_what_the_image_needs() -> None:
    instructions = dockerfile_instructions()
    names = [instruction for instruction, _ in instructions]
    env = image_env(instructions)
    assert env["SIDECAR_DB"].startswith("/data/")
    assert env["SIDECAR_HOST"] == "0.0.0.0"
    assert ("USER", "10001") in instructions
    assert ("STOPSIGNAL", "SIGTERM") in instructions
    assert any(i == "VOLUME" and "/data" in a for i, a in instructions)
    assert "HEALTHCHECK" in names
    assert instructions[0][1].startswith("python:") and "slim" in instructions[0][1]


def test_wheel_installs_alone_and_the_image_command_serves_health(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("*.whl")
    assert "sidecar/schema.sql" in zipfile.ZipFile(wheel).namelist()

    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-cache-dir", str(wheel)],
        check=True,
        timeout=600,
    )

    instructions = dockerfile_instructions()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update(image_env(instructions))
    # Same variables as the image; the file and the address are this test's own.
    env.update(
        SIDECAR_DB=str(tmp_path / "data" / "achievements.db"),
        SIDECAR_HOST="127.0.0.1",
        SIDECAR_PORT=str(port),
        PATH=f"{environment / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    (tmp_path / "data").mkdir()
    command = exec_form(instructions, "CMD")
    health = exec_form(instructions, "HEALTHCHECK")
    assert health[0] == "python"
    server = subprocess.Popen(command, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run([str(python), *health[1:]], env=env, capture_output=True)
            if probe.returncode == 0:
                break
            assert server.poll() is None, "the image command exited"
            assert time.monotonic() < deadline, probe.stderr.decode()
            time.sleep(0.2)
    finally:
        server.terminate()
        assert server.wait(timeout=20) == 0
    assert (tmp_path / "data" / "achievements.db").is_file()
    assert not (tmp_path / "data" / "achievements.db-wal").exists()
