"""Settings are checked at start: every SIDECAR_* variable and flag, through the real command
line. A bad value is one line naming the setting and what it accepts, exit status 2, and nothing
is opened or bound (no database file appears, the command ends instead of serving)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar import settings as settings_module
from sidecar.settings import SettingError, Settings, settings_from_env
from tests.clirun import refusal, run
from tests.realserver import free_port, start_server

# (flags after `serve`, environment, the setting the message must name, a word of what it accepts)
BAD = [
    (["--port", "99999"], {}, "--port", "65535"),
    (["--port", "0"], {}, "--port", "65535"),
    (["--port", "-1"], {}, "--port", "65535"),
    (["--port", "\uff18\uff17"], {}, "--port", "65535"),  # fullwidth digits: int() takes them
    (["--port", "80a"], {}, "--port", "65535"),
    ([], {"SIDECAR_PORT": "abc"}, "SIDECAR_PORT", "65535"),
    ([], {"SIDECAR_PORT": "70000"}, "SIDECAR_PORT", "65535"),
    ([], {"SIDECAR_PORT": ""}, "SIDECAR_PORT", "65535"),
    (["--host", "not a host"], {}, "--host", "address"),
    ([], {"SIDECAR_HOST": "bad_host!"}, "SIDECAR_HOST", "address"),
    (["--db", ""], {}, "--db", "path"),
    ([], {"SIDECAR_TOKEN": ""}, "SIDECAR_TOKEN", "unset"),
    ([], {"SIDECAR_TOKEN": "has space"}, "SIDECAR_TOKEN", "ASCII"),
    ([], {"SIDECAR_ALLOWED_HOSTS": "bot:99999"}, "SIDECAR_ALLOWED_HOSTS", "host:port"),
    ([], {"SIDECAR_ALLOWED_HOSTS": "bot,,a b"}, "SIDECAR_ALLOWED_HOSTS", "host:port"),
    ([], {"SIDECAR_SYNCHRONOUS": "bogus"}, "SIDECAR_SYNCHRONOUS", "FULL"),
    ([], {"SIDECAR_MAX_STREAMS": "0"}, "SIDECAR_MAX_STREAMS", "100000"),
    ([], {"SIDECAR_MAX_STREAMS": "lots"}, "SIDECAR_MAX_STREAMS", "100000"),
    ([], {"SIDECAR_MAX_CONNECTIONS": "1e3"}, "SIDECAR_MAX_CONNECTIONS", "1000000"),
    ([], {"SIDECAR_REQUEST_TIMEOUT": "0"}, "SIDECAR_REQUEST_TIMEOUT", "seconds"),
    ([], {"SIDECAR_REQUEST_TIMEOUT": "ten"}, "SIDECAR_REQUEST_TIMEOUT", "seconds"),
    ([], {"SIDECAR_IDEMPOTENCY_TTL": "1w"}, "SIDECAR_IDEMPOTENCY_TTL", "h"),
    ([], {"SIDECAR_IDEMPOTENCY_TTL": "-5"}, "SIDECAR_IDEMPOTENCY_TTL", "h"),
    ([], {"SIDECAR_IDEMPOTENCY_BUDGET_MB": "0"}, "SIDECAR_IDEMPOTENCY_BUDGET_MB", "1048576"),
    ([], {"SIDECAR_IDEMPOTENCY_BUDGET_MB": "2.5"}, "SIDECAR_IDEMPOTENCY_BUDGET_MB", "1048576"),
]


@pytest.mark.parametrize(("flags", "env", "name", "accepted"), BAD)
def test_a_bad_setting_is_one_line_exit_2_before_anything_is_opened(
    tmp_path: Path, flags: list[str], env: dict[str, str], name: str, accepted: str
) -> None:
    database = tmp_path / "achievements.db"
    port = str(free_port())
    args = ["serve", *flags]
    if "--db" not in flags:
        args += ["--db", str(database)]
    if "--port" not in flags and "SIDECAR_PORT" not in env:
        args += ["--port", port]
    result = run(*args, env=env, cwd=tmp_path, timeout=30)
    refusal(result, name, accepted)
    assert result.returncode == 2
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "something was created"


def test_flags_win_over_variables_which_win_over_defaults() -> None:
    env = {
        "SIDECAR_DB": "/data/a.db",
        "SIDECAR_HOST": "0.0.0.0",
        "SIDECAR_PORT": "9000",
        "SIDECAR_TOKEN": "s3cret-token",
        "SIDECAR_ALLOWED_HOSTS": " Achievements , bot:8787,[fd00::2]:80,*",
        "SIDECAR_SYNCHRONOUS": "full",
        "SIDECAR_MAX_STREAMS": "7",
        "SIDECAR_MAX_CONNECTIONS": "50",
        "SIDECAR_REQUEST_TIMEOUT": "2.5",
        "SIDECAR_IDEMPOTENCY_TTL": "90m",
        "SIDECAR_IDEMPOTENCY_BUDGET_MB": "16",
    }
    assert settings_from_env(env=env) == Settings(
        db_path="/data/a.db",
        host="0.0.0.0",
        port=9000,
        token="s3cret-token",
        allowed_hosts=("achievements", "bot:8787", "[fd00::2]:80", "*"),
        synchronous="FULL",
        max_streams=7,
        max_connections=50,
        request_timeout=2.5,
        idempotency_ttl_seconds=5400,
        idempotency_budget_bytes=16 * 1024 * 1024,
    )
    flagged = settings_from_env(db="b.db", host="::1", port="8788", env=env)
    assert (flagged.db_path, flagged.host, flagged.port) == ("b.db", "::1", 8788)
    assert settings_from_env(env={}) == Settings()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45", 45), ("45s", 45), ("2m", 120), ("1.5h", 5400), ("7d", 7 * 86400), ("24H", 86400)],
)
def test_idempotency_ttl_takes_seconds_or_a_unit(text: str, seconds: int) -> None:
    ttl = settings_from_env(env={"SIDECAR_IDEMPOTENCY_TTL": text}).idempotency_ttl_seconds
    assert ttl == seconds


def test_the_message_names_the_setting_and_what_it_accepts() -> None:
    with pytest.raises(SettingError) as caught:
        settings_from_env(port="99999", env={})
    message = str(caught.value)
    assert message.startswith("--port: '99999'")
    assert "1-65535" in message
    assert "\n" not in message


def test_version_prints_the_package_version() -> None:
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sidecar {settings_module.version()}"
    assert settings_module.version().count(".") >= 1


def test_every_help_describes_every_option() -> None:
    commands = [
        [],
        ["serve"],
        ["backup"],
        ["restore"],
        ["check"],
        ["definitions"],
        ["definitions", "import"],
        ["definitions", "export"],
    ]
    for command in commands:
        result = run(*command, "--help")
        assert result.returncode == 0, result.stderr
        text = result.stdout
        for line in text.splitlines():
            stripped = line.strip()
            # An option listed alone on its line must be described on the next (argparse wraps).
            if stripped.startswith("-") and "  " not in stripped:
                following = text.split(line, 1)[1].splitlines()[1].strip()
                assert following and not following.startswith("-"), f"{command}: {line}"
        if command and command[-1] != "definitions":
            assert "SIDECAR_DB" in text, command
    serve_help = run("serve", "--help").stdout
    for name in [
        "SIDECAR_DB",
        "SIDECAR_HOST",
        "SIDECAR_PORT",
        "SIDECAR_TOKEN",
        "SIDECAR_ALLOWED_HOSTS",
        "SIDECAR_SYNCHRONOUS",
        "SIDECAR_MAX_STREAMS",
        "SIDECAR_MAX_CONNECTIONS",
        "SIDECAR_REQUEST_TIMEOUT",
        "SIDECAR_IDEMPOTENCY_TTL",
        "SIDECAR_IDEMPOTENCY_BUDGET_MB",
    ]:
        assert name in serve_help, name


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["frobnicate"], ["invalid choice"]),
        (["backup"], ["required"]),
        (["definitions", "import"], ["required"]),
        (["definitions", "import", "no-such-file.json"], ["no-such-file.json"]),
        (["serve", "--port"], ["--port"]),
        ([], ["required"]),
    ],
)
def test_any_other_mistake_is_one_line_never_a_traceback(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # argparse prints its usage first; the mistake itself is one line, the last.
    last = result.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_unknown_sidecar_variable_is_named_in_a_warning(tmp_path: Path) -> None:
    """SIDECAR_TOKNE=... would otherwise run the service without a token, unseen."""
    server = start_server(tmp_path / "a.db", {"SIDECAR_TOKNE": "secret", "SIDECAR_URL": "x"})
    try:
        log = server.log()
    finally:
        server.stop()
    assert "SIDECAR_TOKNE is not a setting" in log
    assert "SIDECAR_URL" not in log
