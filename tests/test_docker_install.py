"""No Docker engine runs here, so this performs the Dockerfile's own steps outside Docker, read
from the Dockerfile itself: stage the build context its COPY lines take (minus .dockerignore),
run its wheel-building RUN, install the wheel into a fresh virtual environment with its
dependencies the way the final stage does, start its CMD with its ENV, probe it with its
HEALTHCHECK command, and stop it with its STOPSIGNAL.

Container paths are mapped into a per-stage directory under tmp_path (`/wheels` of the build
stage is `<tmp>/build/wheels`); the image's SIDECAR_DB (/data/...) thus lands under tmp_path.
Only the listening address is changed: 127.0.0.1 and a free port instead of 0.0.0.0:8787."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.realserver import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"
HEALTHCHECK_OPTION = re.compile(r"--([a-z-]+)=(\S+)\s+")


# --- reading the Dockerfile ------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, wanted: str) -> list[str]:
        return [arguments for instruction, arguments in self.instructions if instruction == wanted]

    def last(self, wanted: str) -> str:
        found = self.all(wanted)
        assert found, f"the stage FROM {self.base} has no {wanted}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for arguments in self.all("ENV"):
            for pair in shlex.split(arguments):
                name, equals, value = pair.partition("=")
                assert equals, f"ENV {arguments!r}: use the NAME=value form"
                values[name] = value
        return values

    def run_commands(self) -> list[list[str]]:
        """Every RUN, split at `&&` into argument lists."""
        commands = []
        for arguments in self.all("RUN"):
            for command in arguments.split("&&"):
                commands.append(shlex.split(command))
        return commands


def read_dockerfile() -> list[Stage]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction, arguments = instruction.upper(), " ".join(arguments.split())
        if instruction == "FROM":
            base, _, alias = arguments.partition(" AS ")
            if not alias:
                base, _, alias = arguments.partition(" as ")
            stages.append(Stage(base=base.strip(), name=alias.strip() or None))
        else:
            assert stages, f"{instruction} before FROM"
            stages[-1].instructions.append((instruction, arguments))
    return stages


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), arguments
    return parsed


def healthcheck_command(final: Stage) -> list[str]:
    arguments = HEALTHCHECK_OPTION.sub("", final.last("HEALTHCHECK"))
    assert arguments.startswith("CMD "), arguments
    return exec_form(arguments.removeprefix("CMD "))


def healthcheck_options(final: Stage) -> dict[str, str]:
    """HEALTHCHECK's options: {"interval": "30s", "start-period": "10s", ...}."""
    return dict(HEALTHCHECK_OPTION.findall(final.last("HEALTHCHECK")))


# --- .dockerignore and the build context -----------------------------------------------------


def ignore_rules() -> list[tuple[re.Pattern[str], bool]]:
    """(pattern, excludes) in file order; a later match wins, `!` re-includes (Docker's rules)."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                regex, index = regex + ".*", index + 2
            elif pattern[index] == "*":
                regex, index = regex + "[^/]*", index + 1
            elif pattern[index] == "?":
                regex, index = regex + "[^/]", index + 1
            elif pattern[index] == "[":
                end = pattern.index("]", index)
                regex, index = regex + pattern[index : end + 1], end + 1
            else:
                regex, index = regex + re.escape(pattern[index]), index + 1
        rules.append((re.compile(regex + r"\Z"), not negated))
    return rules


def ignored(relative: PurePosixPath, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    """Excluded when the path or one of its parent directories is."""
    candidates = [relative, *list(relative.parents)[:-1]]
    excluded = False
    for pattern, excludes in rules:
        if any(pattern.match(str(candidate)) for candidate in candidates):
            excluded = excludes
    return excluded


def in_stage(root: Path, container_path: str, workdir: str) -> Path:
    """A container path (absolute, or relative to WORKDIR) inside the stage's directory."""
    absolute = PurePosixPath(workdir, container_path)
    return root.joinpath(*absolute.parts[1:])


def map_argument(argument: str, root: Path) -> list[str]:
    """Absolute container paths in a command's arguments, mapped (and globbed, as sh would)."""
    prefix, equals, value = argument.partition("=")
    if equals and value.startswith("/"):
        return [f"{prefix}={in_stage(root, value, '/')}"]
    if argument.startswith("/"):
        mapped = str(in_stage(root, argument, "/"))
        if "*" in argument:
            return sorted(glob.glob(mapped)) or [mapped]
        return [mapped]
    return [argument]


def stage_build_context(build: Stage, root: Path) -> str:
    """Performs the build stage's WORKDIR and COPY lines from the project; returns the WORKDIR."""
    rules = ignore_rules()
    workdir = "/"
    for instruction, arguments in build.instructions:
        if instruction == "WORKDIR":
            workdir = str(PurePosixPath(workdir, arguments))
            in_stage(root, workdir, "/").mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, destination = shlex.split(arguments)
            assert not any(s.startswith("--") for s in sources), f"COPY {arguments}"
            target = in_stage(root, destination, workdir)
            into = destination.endswith("/") or len(sources) > 1
            for source in sources:
                origin = ROOT / source
                relative = PurePosixPath(source)
                assert origin.exists(), f"COPY {source}: not in the project"
                assert not ignored(relative, rules), f"COPY {source}: excluded by .dockerignore"
                if origin.is_file():
                    copy = target / origin.name if into else target
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(origin, copy)
                    continue
                for path in sorted(origin.rglob("*")):
                    inner = PurePosixPath(path.relative_to(ROOT).as_posix())
                    if path.is_file() and not ignored(inner, rules):
                        copy = target / path.relative_to(origin)
                        copy.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(path, copy)
    return workdir


def python_command(argv: list[str], python: str) -> list[str]:
    """`python ...` or `pip ...` run by the given interpreter."""
    if argv[0] in ("python", "python3"):
        return [python, *argv[1:]]
    if argv[0] in ("pip", "pip3"):
        return [python, "-m", "pip", *argv[1:]]
    raise AssertionError(f"not a python or pip command: {argv}")


def run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, **options)
    assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stdout}\n{result.stderr}"
    return result


def probe(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=30)


# --- the tests -------------------------------------------------------------------------------


def test_dockerfile_declares_what_the_image_needs() -> None:
    stages = read_dockerfile()
    assert len(stages) >= 2, "multi-stage: the wheel is built in one stage, installed in another"
    assert all(stage.base.startswith("python:3.12-slim") for stage in stages)
    build, final = stages[0], stages[-1]
    assert build.name is not None
    # The final stage gets the wheel from the build stage and nothing from the project.
    copies = [shlex.split(arguments) for arguments in final.all("COPY")]
    assert copies and all(copy[0] == f"--from={build.name}" for copy in copies), copies
    env = final.env()
    assert env["SIDECAR_DB"] == "/data/achievements.db"
    assert env["SIDECAR_HOST"] == "0.0.0.0"
    assert final.last("USER").split(":")[0] == "10001"
    assert "useradd --uid 10001" in " ".join(final.all("RUN"))
    assert json.loads(final.last("VOLUME")) == ["/data"]
    assert final.last("EXPOSE") == "8787"
    assert final.last("STOPSIGNAL") == "SIGTERM"
    assert exec_form(final.last("CMD")) == ["sidecar", "serve"]
    health = healthcheck_command(final)
    assert health[:2] == ["python", "-c"]
    assert "urllib.request" in health[2] and "http://127.0.0.1:" in health[2]
    assert "/health" in health[2]
    # Dependencies from the lock file, hash-checked; the wheel alone; then pip check.
    installs = [c for c in final.run_commands() if c[:4] == ["python", "-m", "pip", "install"]]
    locked, own = installs
    assert {"--require-hashes", "--only-binary=:all:"} <= set(locked), locked
    assert locked[locked.index("-r") + 1] == f"/wheels/{LOCK.name}", locked
    assert "--no-deps" in own and own[-1] == "/wheels/*.whl", own
    assert ["python", "-m", "pip", "check"] in final.run_commands()


def test_the_images_install_and_start_steps_work_outside_docker(tmp_path: Path) -> None:
    stages = read_dockerfile()
    build, final = stages[0], stages[-1]

    # Build stage: the COPY'd context, then its `pip wheel` RUN, as written.
    build_root = tmp_path / "build"
    workdir = stage_build_context(build, build_root)
    (wheel_command,) = build.run_commands()
    assert wheel_command[:4] == ["python", "-m", "pip", "wheel"], wheel_command
    assert "--no-deps" in wheel_command
    argv = [a for arg in wheel_command for a in map_argument(arg, build_root)]
    run(python_command(argv, sys.executable), cwd=in_stage(build_root, workdir, "/"), timeout=300)

    # Final stage: COPY --from=build, then the RUN's pip install, into a fresh venv.
    final_root = tmp_path / "image"
    for arguments in final.all("COPY"):
        _, source, destination = shlex.split(arguments)
        shutil.copytree(in_stage(build_root, source, "/"), in_stage(final_root, destination, "/"))
    (wheel,) = in_stage(final_root, "/wheels", "/").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "sidecar/schema.sql" in archive.namelist()
        assert archive.read("sidecar/schema.sql") == (ROOT / "schema.sql").read_bytes()

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = str(venv / "bin" / "python")
    # The RUN's python commands in order (the locked install, the wheel's, pip check); the
    # user and directory commands after them are the image's business.
    installs = [c for c in final.run_commands() if c[0] == "python"]
    argvs = [[a for arg in c for a in map_argument(arg, final_root)] for c in installs]
    assert any(str(wheel) in argv for argv in argvs), (
        f"the built wheel is not installed: {installs}"
    )
    started = time.monotonic()
    for argv in argvs:
        run(python_command(argv, python), timeout=600)
    print(f"pip install of the lock file and the wheel: {time.monotonic() - started:.1f} s")

    # Run as the image runs: its ENV, its WORKDIR, only the venv (not this checkout) importable.
    port = free_port()
    image_env = final.env()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SIDECAR_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(image_env)
    env.update(
        SIDECAR_DB=str(in_stage(final_root, image_env["SIDECAR_DB"], "/")),
        SIDECAR_HOST="127.0.0.1",
        SIDECAR_PORT=str(port),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    cwd = in_stage(final_root, final.last("WORKDIR"), "/")
    cwd.mkdir(parents=True, exist_ok=True)
    Path(env["SIDECAR_DB"]).parent.mkdir(parents=True, exist_ok=True)
    installed = run(
        [
            python,
            "-c",
            "import importlib.resources as r, sidecar; print(sidecar.__file__);"
            " print(r.files('sidecar').joinpath('schema.sql').read_text(), end='')",
        ],
        env=env,
        cwd=cwd,
    ).stdout
    location, _, schema = installed.partition("\n")
    assert Path(location).is_relative_to(venv), location
    assert schema == (ROOT / "schema.sql").read_text()

    command = exec_form(final.last("CMD"))
    executable = shutil.which(command[0], path=str(venv / "bin"))
    assert executable is not None, f"the wheel installs no {command[0]} console script"
    health = healthcheck_command(final)
    health = [python, *(part.replace(":8787/", f":{port}/") for part in health[1:])]
    assert probe(health, env, cwd).returncode != 0, "the health check passes with nothing running"

    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([executable, *command[1:]], env=env, cwd=cwd, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while (checked := probe(health, env, cwd)).returncode != 0:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, checked.stderr
            time.sleep(0.2)
        answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert answer.status_code == 200
        assert answer.json()["status"] == "ok"
        created = httpx.post(
            f"http://127.0.0.1:{port}/users/achievements/definitions",
            json={"name": "From the image"},
            timeout=5,
        )
        assert created.status_code == 201
    finally:
        server.send_signal(getattr(signal, final.last("STOPSIGNAL")))
        status = server.wait(timeout=30)
        log.close()
    assert status == 0
    database = Path(env["SIDECAR_DB"])
    assert not Path(f"{database}-wal").exists()
    connection = sqlite3.connect(database)
    try:
        assert connection.execute("SELECT name FROM achievements").fetchall() == [
            ("From the image",)
        ]
    finally:
        connection.close()


def locked_pins() -> dict[str, tuple[str, list[str], list[str]]]:
    """requirements.lock: {name: (version, its sha256 hashes, what it is required by)}."""
    pins: dict[str, tuple[str, list[str], list[str]]] = {}
    name = ""
    for raw in LOCK.read_text().splitlines():
        line = raw.strip().removesuffix("\\").strip()
        if pin := re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line):
            name = canonicalize_name(pin.group(1))
            pins[name] = (pin.group(2), [], [])
        elif line.startswith("--hash=sha256:"):
            pins[name][1].append(line.removeprefix("--hash=sha256:"))
        elif name and (via := re.fullmatch(r"#\s+(?:via\s+)?(?!via$)(\S.*)", line)):
            pins[name][2].append(via.group(1))
    return pins


def test_the_lock_file_pins_what_pyproject_asks_for() -> None:
    """requirements.lock is generated from pyproject.toml's dependencies for the image's Python
    (the command is in its header); it must pin every one of them, within its bounds, and no
    other top-level requirement, and give hashes for every file it pins."""
    header = LOCK.read_text().splitlines()[1].lstrip("# ").strip()
    image_python = read_dockerfile()[-1].base.removeprefix("python:").split("-")[0]
    assert f"--python-version {image_python}" in header and "--generate-hashes" in header
    stale = f"requirements.lock does not match pyproject.toml: run `{header}`"

    image = {"python_version": image_python, "sys_platform": "linux", "platform_system": "Linux"}
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    # The image carries the extras the header names (postgres: one image for both backends).
    extras = re.findall(r"--extra (\S+)", header)
    declared = [
        Requirement(d)
        for d in project["dependencies"]
        + [d for extra in extras for d in project["optional-dependencies"][extra]]
    ]
    wanted = {
        canonicalize_name(r.name): r
        for r in declared
        if r.marker is None or r.marker.evaluate(image)
    }
    pins = locked_pins()
    top_level = {name for name, (_, _, by) in pins.items() if f"{PYPROJECT.name})" in " ".join(by)}
    assert top_level == set(wanted), stale
    for name, requirement in wanted.items():
        assert requirement.specifier.contains(pins[name][0], prereleases=True), stale
    unhashed = [name for name, (_, hashes, _) in pins.items() if not hashes]
    assert unhashed == [], f"pinned without a hash: {unhashed}"
