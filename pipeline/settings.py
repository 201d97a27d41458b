"""Configuration: one pydantic-settings object, read from ``LIVECOACH_*`` variables.

Built once at start-up by :func:`load_settings` and passed down. A bad value raises
:class:`~pipeline.errors.ConfigError` naming the variable, which the CLI prints as one
line (exit status 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import platformdirs
import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.errors import ConfigError
from pipeline.redaction import redact_detail, redact_url
from pipeline.secretfiles import read_or_create
from pipeline.transport.urls import parse_redis_url

ENV_PREFIX = "LIVECOACH_"

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")

#: Signature algorithms a token may use (``LIVECOACH_JWT_ALGORITHMS`` picks among them):
#: HS256 with the shared secret, the others with the issuer's JWKS keys.
JWT_ALGORITHMS = ("HS256", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")

Port = Annotated[int, Field(ge=0, le=65535)]
Partitions = Annotated[int, Field(ge=1, le=1024)]

#: Shortest HS256 secret accepted, in bytes (RFC 7518 section 3.2: at least the hash size).
MIN_JWT_SECRET_BYTES = 32


#: The data folder when livecoach runs as root: the embedded servers then run as an
#: unprivileged account (``pipeline.embedded.SYSTEM_USER``), which cannot enter ``/root``
#: where the per-user folder would be.
ROOT_DATA_DIR = Path("/var/lib/livecoach")


def default_data_dir() -> Path:
    """``/var/lib/livecoach`` for root, else the user's data folder (platformdirs)."""
    if os.geteuid() == 0:
        return ROOT_DATA_DIR
    return platformdirs.user_data_path("livecoach")


class Settings(BaseSettings):
    """Every setting livecoach reads. Field ``foo`` comes from ``LIVECOACH_FOO``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None,
        description=(
            "Redis: redis://, rediss://, unix:// or redis+sentinel://h1:26379,h2:26379/<service>"
            " (redis+cluster:// is refused for now); unset starts an embedded redis-server"
        ),
    )
    database_url: str | None = Field(
        default=None, description="PostgreSQL server; unset starts an embedded PostgreSQL"
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description=(
            "Folder for embedded servers' data, the generated JWT secret, the workers' "
            "working folders and `livecoach up`'s log and links"
        ),
    )
    jwt_secret: SecretStr | None = Field(
        default=None,
        description=(
            f"HS256 secret, at least {MIN_JWT_SECRET_BYTES} bytes; unset uses one "
            "generated once into the data folder"
        ),
    )
    jwt_jwks_file: Path | None = Field(
        default=None, description="JWKS file of RS256/ES256 public keys (read at start)"
    )
    jwt_jwks_url: str | None = Field(
        default=None,
        description="JWKS URL of the issuer (fetched, cached, refreshed on an unknown kid)",
    )
    jwt_jwks_max_age_s: float = Field(
        default=3600.0, ge=1, description="Seconds fetched JWKS keys are used before a refetch"
    )
    jwt_jwks_min_refresh_s: float = Field(
        default=30.0,
        ge=0,
        description="Least seconds between two JWKS fetches (an unknown kid waits for it)",
    )
    jwt_issuer: str | None = Field(
        default=None, description="Required `iss` of every token; unset: not checked"
    )
    jwt_audience: str | None = Field(
        default=None,
        description="`aud` a token must name; unset: tokens with an `aud` are refused",
    )
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("HS256", "RS256", "ES256"),
        description="Accepted signature algorithms, comma-separated",
    )
    jwt_max_lifetime_s: float | None = Field(
        default=None,
        gt=0,
        description="Largest `exp - iat` accepted (tokens without `iat` are refused); unset: any",
    )
    jwt_role_claim: str = Field(
        default="role", min_length=1, description="Claim whose value is a new user's role"
    )
    jwt_name_claim: str = Field(
        default="name", min_length=1, description="Claim whose value is a new user's name"
    )
    provision_users: bool = Field(
        default=True,
        description="Create an unknown user on first contact; false: 403 for unknown users",
    )
    jwt_leeway_s: float = Field(default=10.0, ge=0, le=300, description="Clock skew allowed")
    samples_partitions: Partitions = Field(default=8, description="Partitions of 'samples'")
    live_partitions: Partitions = Field(default=8, description="Partitions of 'live'")
    samples_retention_s: float = Field(
        default=24 * 3600.0,
        ge=1,
        description="Seconds 'samples' is kept (never past the lowest committed offset)",
    )
    store_retention_s: float = Field(
        default=24 * 3600.0,
        ge=1,
        description="Seconds 'store' is kept (never past the lowest committed offset)",
    )
    live_retention_s: float = Field(
        default=2 * 3600.0, ge=1, description="Seconds 'live' is kept: the resume window"
    )
    durable_ack_ms: int = Field(
        default=0,
        ge=0,
        le=60_000,
        description=(
            "Milliseconds the edge waits (WAIT 1) for a Redis replica to hold a sample "
            "before its 202; none in time: 503. 0: off (202 once the primary has it)"
        ),
    )
    web_host: str = Field(default="127.0.0.1", description="Edge listen address")
    web_port: Port = Field(default=8080, description="Edge listen port")
    worker_web_port: Port = Field(
        default=6066, description="Port of the Faust worker's own web server (loopback)"
    )
    store_web_port: Port = Field(
        default=6067,
        description="Port of the store worker's web server (loopback; serves /metrics)",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token /metrics on the API port asks for; unset: /metrics answers 404 "
            "there (scrape LIVECOACH_METRICS_PORT instead)"
        ),
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address of the separate /metrics listener"
    )
    metrics_port: Port = Field(
        default=0,
        description="Port of a separate /metrics listener (no token asked); 0: none",
    )
    client_time_past_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description=(
            "How far before the server's clock a client's time (a sample's t, a stop's "
            "at_ms) may lie; older is a 422"
        ),
    )
    client_time_future_s: float = Field(
        default=300.0,
        ge=0,
        description="How far after the server's clock a client's time may lie; later is a 422",
    )
    session_idle_s: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "A running or paused session with no sample for this long is stopped "
            "(reason 'idle') by the store worker"
        ),
    )
    session_idle_check_s: float = Field(
        default=60.0, gt=0, description="How often the store worker looks for idle sessions"
    )
    log_level: str = Field(default="INFO", description="Python logging level")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines as text, or one JSON object a line (secrets masked either way)",
    )
    alerts_enabled: bool = Field(
        default=True, description="Run the alert rules in the live agent (off: metrics only)"
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_redis_url(value)  # a ValueError that names what is wrong, password masked
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(_POSTGRES_SCHEMES):
            raise ValueError(f"expected a postgresql:// URL, got {redact_url(value)!r}")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
            conninfo_to_dict(value)
        except (ValueError, psycopg.ProgrammingError) as exc:
            detail = redact_detail(str(exc), value)
            raise ValueError(f"malformed URL {redact_url(value)!r}: {detail}") from None
        if not parts.path.strip("/"):
            raise ValueError(f"malformed URL {redact_url(value)!r}: no database name")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _check_jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        size = len(value.get_secret_value().strip().encode())
        if size < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"expected at least {MIN_JWT_SECRET_BYTES} bytes (not counting spaces), "
                f"got {size}; unset it to have one generated into the data folder"
            )
        return value

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("expected at least 16 characters")
        return value

    @field_validator("jwt_jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"expected an https:// (or http://) URL, got {value!r}")
        return value

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(a.strip() for a in value.split(",") if a.strip())
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _check_algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [a for a in value if a not in JWT_ALGORITHMS]
        if unknown:
            expected = ", ".join(JWT_ALGORITHMS)
            raise ValueError(f"unsupported algorithm {unknown[0]!r}; expected some of {expected}")
        if not value:
            raise ValueError("expected at least one algorithm")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {value!r}")
        return level

    def jwt_secret_value(self) -> str:
        """The HS256 secret: configured, or generated once and kept in the data folder."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return read_or_create(self.data_dir / "jwt_secret", variable=env_name("data_dir"))


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment; raise ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(env_name(field), message) from None
