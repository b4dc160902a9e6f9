"""docker-compose.yml's wiring, checked without a Docker engine (there is none on the development machines).

Dependencies exist and are waited for by health, every host an environment URL names is a service, every
long-running service has a healthcheck, no secret has a literal value (each is `${VAR}` from the env file),
nothing runs as root, `.env.example` names every variable the file uses, and the compose environments pass the
production settings check with generated secrets and fail it with the example's placeholders.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from common.settings import Settings, UnsafeSettings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "docker" / "Dockerfile"
S3_IDENTITIES = REPO / "docker" / "s3.json"
SEAWEEDFS_SECURITY = REPO / "docker" / "security.toml"

# ${VAR}, ${VAR:?message}, ${VAR?message}, ${VAR:-default}, ${VAR-default}; `$${...}` is a literal `$` for the
# container's shell.
REFERENCE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[?-])(?P<arg>[^}]*))?\}")
REQUIRED_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}")  # no default value
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|TOKEN")
ROLE_OF_SERVICE = {"api": "api", "worker": "worker", "beat": "worker"}  # the S3 identity each process uses


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def _strings(node: Any) -> list[str]:
    """Every string value of the parsed file (what compose interpolates; comments are not)."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [node] if isinstance(node, str) else []


def _references() -> list[re.Match[str]]:
    return [match for text in _strings(_compose()) for match in REFERENCE.finditer(text)]


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _interpolate(text: str, values: dict[str, str]) -> str:
    """What compose makes of `text` with `values` as the env file."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group("name", "op", "arg")
        value = values.get(name)
        if op in (":?", "?") and not value:
            raise AssertionError(f"{name} is required: {arg}")
        if op in (":-", "-") and not value:
            return arg
        return value or ""

    return REFERENCE.sub(replace, text).replace("$$", "$")


def _one_shot(name: str, services: dict[str, dict[str, Any]]) -> bool:
    """A set-up step that runs to completion (others wait for `service_completed_successfully`)."""
    return str(services[name].get("restart", "")) == "no" and any(
        isinstance(s.get("depends_on"), dict)
        and s["depends_on"].get(name, {}).get("condition") == "service_completed_successfully"
        for s in services.values()
    )


def test_every_dependency_exists_and_is_waited_for_by_its_health() -> None:
    services = _services()
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must name a condition for each dependency"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on {dependency}, which is not a service"
            condition = spec.get("condition")
            if "healthcheck" in services[dependency]:
                assert condition == "service_healthy", f"{name} must wait for {dependency} to be healthy"
            else:
                assert _one_shot(dependency, services), f"{name} depends on {dependency}, which has no healthcheck"
                assert condition == "service_completed_successfully"


def test_every_host_an_environment_url_names_is_a_service() -> None:
    services = _services()
    hosts = set()
    for name, service in services.items():
        for variable, value in _environment(service).items():
            if REQUIRED_REFERENCE.fullmatch(value) or "://" not in value:
                continue  # a whole value from the env file (e.g. the public S3 address) names no compose host
            host = urlsplit(_interpolate(value, {n: "x" for n in _env_example()})).hostname
            assert host in services, f"{name}: {variable} names host {host!r}, which is not a service"
            hosts.add(host)
    assert {"postgres", "redis", "s3"} <= hosts


def test_each_long_running_service_has_a_healthcheck() -> None:
    services = _services()
    for name, service in services.items():
        if _one_shot(name, services):
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_no_secret_has_a_literal_value() -> None:
    assert "change-me" not in COMPOSE.read_text()
    for match in _references():
        if SECRET_NAME.search(match["name"]):
            assert match["op"] in (None, ":?", "?"), f"${{{match['name']}}} must not have a default value"
    for name, service in _services().items():
        for variable, value in _environment(service).items():
            if SECRET_NAME.search(variable):
                assert REQUIRED_REFERENCE.fullmatch(value), f"{name}: {variable} must be ${{VAR}} from the env file"
            if "://" in value and not REQUIRED_REFERENCE.fullmatch(value):
                netloc = value.split("://", 1)[1].split("/", 1)[0]
                if "@" in netloc:
                    password = netloc.rsplit("@", 1)[0].partition(":")[2]
                    assert REQUIRED_REFERENCE.fullmatch(password), f"{name}: {variable} has a literal password"


def test_redis_requires_a_password_and_the_broker_url_carries_it() -> None:
    services = _services()
    command = " ".join(services["redis"]["command"])
    assert "--requirepass" in command and "$$REDIS_PASSWORD" in command, "the password from the environment"
    assert REQUIRED_REFERENCE.fullmatch(_environment(services["redis"])["REDIS_PASSWORD"])
    for name in ROLE_OF_SERVICE:
        broker = _environment(services[name])["PERSGUARD_BROKER_URL"]
        assert urlsplit(_interpolate(broker, {"REDIS_PASSWORD": "pw"})).password == "pw"


def _final_user(dockerfile: Path) -> str | None:
    users = [line.split(None, 1)[1].strip() for line in dockerfile.read_text().splitlines() if line.startswith("USER ")]
    return users[-1] if users else None


def _is_root(user: str | None) -> bool:
    return user is None or user.split(":")[0] in ("root", "0")


def test_no_container_runs_as_root() -> None:
    assert not _is_root(_final_user(DOCKERFILE)), "docker/Dockerfile must end with a non-root USER"
    for name, service in _services().items():
        if "build" in service:
            assert service["build"]["dockerfile"] == "docker/Dockerfile"
            assert "user" not in service or not _is_root(str(service["user"])), name
        else:
            assert not _is_root(str(service.get("user")) if "user" in service else None), f"{name}: set a user"


def test_published_ports_are_reachable_from_the_host_only() -> None:
    """Plain HTTP stays on the host: the TLS-terminating proxy (docs/WORKER.md) is what the network reaches."""
    for name, service in _services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host"


def test_the_env_example_names_every_variable_the_compose_file_uses_and_how_to_make_it() -> None:
    used = {match["name"] for match in _references()}
    example = _env_example()
    assert used == set(example), f"missing: {sorted(used - set(example))}, unused: {sorted(set(example) - used)}"
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        name = line.partition("=")[0].strip()
        if name in example and SECRET_NAME.search(name):
            comments = []
            for previous in reversed(lines[:index]):
                if not previous.startswith("#"):
                    break
                comments.append(previous)
            assert any("openssl rand" in c for c in comments), f"say how to generate {name}"
            assert example[name].startswith("change-me"), f"{name}: a placeholder production refuses"


def _service_environment(name: str, values: dict[str, str]) -> dict[str, str]:
    return {k: _interpolate(v, values) for k, v in _environment(_services()[name]).items()}


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for variable in [v for v in os.environ if v.startswith("PERSGUARD_")]:
        monkeypatch.delenv(variable)
    for variable, value in env.items():
        if variable.startswith("PERSGUARD_"):
            monkeypatch.setenv(variable, value)
    return Settings()


@pytest.mark.parametrize("name", sorted(ROLE_OF_SERVICE))
def test_the_compose_environment_passes_production_checks_with_generated_secrets_only(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = _env_example()
    env = _service_environment(name, example)
    assert env["PERSGUARD_ENV"] == "production"
    with pytest.raises(UnsafeSettings):
        _settings_from(env, monkeypatch)

    generated = {k: secrets.token_hex(16) if SECRET_NAME.search(k) else v for k, v in example.items()}
    settings = _settings_from(_service_environment(name, generated), monkeypatch)
    settings.check_process(ROLE_OF_SERVICE[name])
    assert settings.storage_backend == "s3" and settings.s3_public_endpoint_url
    other = "WORKER" if ROLE_OF_SERVICE[name] == "api" else "API"
    assert not any(f"_S3_{other}_" in k or k.startswith("PERSGUARD_S3_ACCESS") for k in env), "its own keys only"


def test_the_s3_identities_take_their_keys_from_the_environment_with_least_privilege() -> None:
    services = _services()
    s3 = services["s3"]
    mounts = " ".join(s3["volumes"])
    assert "./docker/s3.json:" in mounts and "./docker/security.toml:/etc/seaweedfs/security.toml" in mounts
    env = _environment(s3)
    bucket = _environment(services["api"])["PERSGUARD_S3_BUCKET"]
    identities = {i["name"]: i for i in json.loads(S3_IDENTITIES.read_text())["identities"]}
    assert set(identities) == {"persguard-api", "persguard-worker", "persguard-beat"}
    for identity in identities.values():
        for credential in identity["credentials"]:
            for field in ("accessKey", "secretKey"):
                variable = re.fullmatch(r"\$\{([A-Z0-9_]+)\}", credential[field])
                assert variable and variable[1] in env, f"{identity['name']}: {field} from the s3 service's env"
        assert not any(a.startswith("Admin") for a in identity["actions"]), "nobody administers the store"
        assert all(a.split(":", 1)[1].split("/")[0] == bucket for a in identity["actions"]), "scoped to the bucket"
    writes = {name: {a for a in i["actions"] if a.startswith("Write:")} for name, i in identities.items()}
    assert writes["persguard-api"] == {f"Write:{bucket}/subjects/*"}
    assert f"Read:{bucket}/checkpoints/*" in identities["persguard-api"]["actions"]
    assert writes["persguard-worker"] == {f"Write:{bucket}/{p}/*" for p in ("checkpoints", "jobs", "reports")}
    security = tomllib.loads(SEAWEEDFS_SECURITY.read_text())
    assert security["jwt"]["signing"]["key"] == security["jwt"]["filer_signing"]["key"] == "", "keys from the env"
    for variable in ("WEED_JWT_SIGNING_KEY", "WEED_JWT_FILER_SIGNING_KEY", "WEED_JWT_FILER_SIGNING_READ_KEY"):
        assert REQUIRED_REFERENCE.fullmatch(env[variable]), variable
    init = services["s3-init"]
    assert _environment(init)["S3_BUCKET"] == bucket
    # The start script renders the identities where the server reads them, and both scripts are mounted where run.
    start = (REPO / "docker" / "seaweedfs-start.sh").read_text()
    assert "/tmp/seaweedfs/s3.json" in start and "-s3.config=/tmp/seaweedfs/s3.json" in s3["command"]
    assert f"./docker/seaweedfs-start.sh:{s3['entrypoint'][-1]}:ro" in s3["volumes"]
    assert f"./docker/seaweedfs-create-bucket.sh:{init['entrypoint'][-1]}:ro" in init["volumes"]
