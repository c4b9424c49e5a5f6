"""Platform settings: environment (`DATAOPS_` prefix) over an optional YAML file over defaults."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from config.email_settings import EMAIL, parse_email_routes, smtp_address

CONFIG_DIR = Path(__file__).resolve().parent
CATALOG_TYPES = ("sql", "rest")
SECRET_SETTINGS = (
    "rest_catalog_credential",
    "s3_access_key_id",
    "s3_secret_access_key",
    "llm_api_key",
    "slack_bot_token",
    "slack_app_token",
    "slack_signing_secret",
    "token",
)
"""Settings whose values are credentials: never logged, never printed (config/redact.py masks them)."""
_HTTP_URL_SETTINGS = (
    "rest_catalog_uri",
    "s3_endpoint",
    "carbon_intensity_base_url",
    "open_meteo_base_url",
    "llm_base_url",
    "slack_api_url",
)
URL_SETTINGS = ("catalog_uri", "ops_db_url", "warehouse", "lineage_target", "ray_address", "smtp_url", *_HTTP_URL_SETTINGS)
"""Settings that hold URLs, which may carry a password (scheme://user:password@host)."""
SEVERITIES = ("info", "warning", "critical")
_MEMORY_LIMIT = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]i?b|%)", re.IGNORECASE)
_MEMORY_UNITS = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_MIN_QUERY_MEMORY = 16e6


class DataopsSettings(BaseSettings):
    """Every setting of the platform. Each field is documented in README.md (a test checks it)."""

    model_config = SettingsConfigDict(env_prefix="DATAOPS_", extra="ignore")

    home: Path = Field(
        default=Path(".dataops"),
        description="State folder: Iceberg catalog, warehouse, ops database. Deleting it resets the platform.",
    )
    config_dir: Path = Field(
        default=CONFIG_DIR,
        description="Folder with sources.yaml, tables.yaml, pipelines.yaml and suites.yaml.",
    )
    settings_file: Path | None = Field(
        default=None, description="Optional YAML file whose keys are these settings (lower case, no prefix)."
    )
    catalog_uri: str | None = Field(default=None, description="SQLAlchemy URL of the Iceberg SQL catalog; default sqlite in home.")
    warehouse: str | None = Field(default=None, description="Warehouse location (path or s3:// URL); default home/warehouse.")
    ops_db_url: str | None = Field(default=None, description="SQLAlchemy URL of the ops database (run ledger); default sqlite in home.")
    catalog_type: str = Field(
        default="sql",
        description="Iceberg catalog kind: 'sql' (pyiceberg SqlCatalog on catalog_uri: SQLite, Postgres) or 'rest' (REST catalog at rest_catalog_uri).",
    )
    catalog_name: str = Field(
        default="dataops",
        min_length=1,
        description="Iceberg catalog name; a SQL catalog's rows in iceberg_tables carry it (the iceberg-rest image's JDBC catalog uses 'rest_backend').",
    )
    rest_catalog_uri: str | None = Field(
        default=None, description="Base URL of the Iceberg REST catalog (http://host:8181); required when catalog_type is 'rest'."
    )
    rest_catalog_credential: str | None = Field(
        default=None, repr=False, description="OAuth2 client credential ('client_id:secret') for the REST catalog; unset: no auth."
    )
    s3_endpoint: str | None = Field(
        default=None, description="S3 API endpoint of an S3-compatible store (MinIO: http://host:9000); unset: AWS S3."
    )
    s3_region: str | None = Field(
        default=None, description="S3 region; unset: us-east-1 when s3_endpoint is set, else resolved from the bucket by AWS."
    )
    s3_access_key_id: str | None = Field(
        default=None, repr=False, description="S3 access key id; unset: the AWS default chain (AWS_ACCESS_KEY_ID, profiles)."
    )
    s3_secret_access_key: str | None = Field(
        default=None, repr=False, description="S3 secret access key; unset: the AWS default chain. Never logged."
    )
    s3_path_style: bool = Field(
        default=True, description="Path-style S3 URLs (http://endpoint/bucket/key), as MinIO and moto need; false: virtual-hosted style."
    )
    source_mode: Literal["replay", "http"] = Field(
        default="replay",
        description="'replay' serves the bundled real data offline; 'http' calls the public APIs.",
    )
    drop_dir: Path | None = Field(default=None, description="Drop folder watched by file sources; default home/drop.")
    drop_max_bytes: int = Field(
        default=2 * 1024**3,
        gt=0,
        description="Largest drop file read, in bytes (default 2 GiB); a bigger file is quarantined unread, named with its size.",
    )
    audit_branch_retention_hours: float = Field(
        default=168.0,
        ge=0,
        description="How long audit branches of failed or held runs are kept for diagnosis; recovered runs' go at once.",
    )
    replay_start: datetime = Field(
        default=datetime(2023, 1, 1, tzinfo=UTC), description="Simulated instant the replay clock starts at (ISO, UTC)."
    )
    replay_speed: float = Field(
        default=17280.0, gt=0, description="Simulated seconds per real second under replay (17280: one day every 5 s)."
    )
    metrics_port: int = Field(default=9108, ge=1, le=65535, description="Port of the Prometheus /metrics endpoint of `dataops serve`.")
    metrics_addr: str = Field(default="127.0.0.1", description="Address the /metrics endpoint binds to (0.0.0.0 in containers).")
    console_port: int = Field(
        default=8400, ge=0, le=65535, description="Port of the operator console of `dataops serve` and `dataops console`; 0 turns it off."
    )
    console_addr: str = Field(default="127.0.0.1", description="Address the operator console binds to (0.0.0.0 in containers).")
    monitor_interval_s: float = Field(default=10.0, gt=0, description="Real seconds between timer evaluations of the monitors.")
    anomaly_sensitivity: float = Field(
        default=1.0,
        gt=0,
        description="Multiplies every value monitor's false-alarm budget: 2.0 allows twice the alarms on clean data (a lower threshold), 0.5 half.",
    )
    run_max_attempts: int = Field(
        default=3,
        ge=1,
        description="Attempts of a scheduled run, or of a backfill partition, that fails transiently (5xx, timeouts, commit conflicts).",
    )
    run_backoff_s: float = Field(
        default=2.0, ge=0, description="Real seconds before the first retry of a scheduled run; doubles per attempt."
    )
    misfire_grace_s: int = Field(
        default=300, ge=1, description="Real seconds a late scheduled run may still start (later ones are coalesced)."
    )
    outbox_backoff_s: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Real seconds before the outbox retries a message a neighbour (Slack, OpenLineage) did not take; doubles per attempt with jitter, at most 5 minutes apart (or this, if longer).",
    )
    http_timeout_s: float = Field(default=20.0, gt=0, description="Timeout of one HTTP request to a source.")
    http_max_attempts: int = Field(default=5, ge=1, description="Attempts per HTTP request before giving up.")
    http_backoff_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles per attempt.")
    http_max_backoff_s: float = Field(default=60.0, ge=0, description="Longest wait between attempts, Retry-After included.")
    carbon_intensity_base_url: str = Field(
        default="https://api.carbonintensity.org.uk",
        description="Base URL of the NESO Carbon Intensity API (carbon_intensity and generation_mix).",
    )
    open_meteo_base_url: str = Field(
        default="https://archive-api.open-meteo.com",
        description="Base URL of the Open-Meteo archive API (weather).",
    )

    llm_base_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp); unset: the runbook planner.",
    )
    llm_model: str | None = Field(
        default=None, description="Model name sent to the endpoint; setting it (or the base URL) turns the LLM planner on."
    )
    llm_api_key: str | None = Field(
        default=None, repr=False, description="API key of the endpoint; OPENAI_API_KEY is used when unset. Never logged."
    )
    llm_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one chat-completions request.")
    llm_max_retries: int = Field(default=2, ge=0, description="Retries of a failed chat-completions request (429, 5xx, timeouts).")
    agent_enabled: bool = Field(default=True, description="Whether `dataops serve` hands every new incident to the agent.")
    agent_max_steps: int = Field(
        default=12, ge=1, description="Planning steps the agent may take on one incident or chat turn before it escalates."
    )
    policy_file: Path | None = Field(default=None, description="Policy YAML the guardrail engine enforces; default config/policy.yaml.")
    runbooks_file: Path | None = Field(default=None, description="Runbooks YAML of the runbook planner; default config/runbooks.yaml.")
    people_file: Path | None = Field(
        default=None, description="People YAML: who may read, act on incidents and approve (roles); default config/people.yaml."
    )
    token: str | None = Field(
        default=None,
        repr=False,
        description="Personal token of the CLI caller (`dataops users token NAME`); else the OS login is used. Never logged.",
    )
    approvers: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description="Retired: refused when set. Approvers are people with role approver in config/people.yaml or `dataops users add`.",
    )
    slack_bot_token: str | None = Field(
        default=None, repr=False, description="Bot token (xoxb-...) of the Slack app; setting it starts the Slack app in `dataops serve`."
    )
    slack_app_token: str | None = Field(
        default=None, repr=False, description="App-level token (xapp-...) for Socket Mode (no public URL); unset: HTTP mode."
    )
    slack_signing_secret: str | None = Field(
        default=None, repr=False, description="Signing secret that verifies requests from Slack in HTTP mode."
    )
    slack_channel: str | None = Field(default=None, description="Channel id (C...) where incident threads are posted.")
    slack_port: int = Field(default=3000, ge=1, le=65535, description="Port of the HTTP-mode endpoint /slack/events.")
    slack_addr: str = Field(default="127.0.0.1", description="Address the HTTP-mode endpoint binds to (0.0.0.0 behind a proxy).")
    slack_api_url: str = Field(default="https://slack.com/api/", description="Base URL of the Slack Web API (tests and proxies).")
    smtp_url: str | None = Field(
        default=None,
        description=(
            "Mail server of the email notifier: smtp://host:25 (plain), smtp+starttls://user:pass@host:587 or "
            "smtps://user:pass@host:465 (percent-encode an @ in the user name); setting it, with alert_emails, starts email in `dataops serve`."
        ),
    )
    alert_emails: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Who gets email, by lowest severity: 'critical=oncall@x.org;warning=team@x.org,lead@x.org' (team and lead get warning "
            "and critical, oncall critical only); a plain address list gets everything. Every address gets the daily digest."
        ),
    )
    email_from: str = Field(default="dataops@localhost", description="Sender address (From) of the platform's emails.")
    email_max_per_hour: int = Field(
        default=20, ge=1, description="Most alert emails one address receives per real hour; the rest wait for the daily digest."
    )
    email_digest_hour: int = Field(default=7, ge=0, le=23, description="UTC hour (wall clock) after which each day's digest email is sent.")
    console_url: str = Field(
        default="http://127.0.0.1:8400", description="Base URL of the operator console as people reach it, for links in emails."
    )
    memory_embedding: str = Field(
        default="sklearn",
        description="Embedding of the incident memory: 'sklearn' (offline, never downloads), 'sentence-transformers:<model>' or 'openai:<model>'.",
    )
    maintenance_interval_hours: float = Field(
        default=24.0,
        ge=0,
        description="Real hours between table-maintenance runs in `dataops serve` (compaction, then snapshot expiry and orphan cleanup); 0 turns it off.",
    )
    upkeep_green_deadline_hours: float = Field(
        default=12.0,
        ge=0,
        description="`dataops serve` defers due table upkeep to the greenest window of the carbon-intensity forecast ending within this many hours of data time; 0 runs it when due.",
    )
    upkeep_green_window_hours: float = Field(
        default=1.0,
        gt=0,
        multiple_of=0.5,
        description="Length of the window upkeep is deferred to, hours (a multiple of the half-hour slot).",
    )
    backfill_green_deadline_hours: float = Field(
        default=6.0,
        ge=0,
        description="The agent defers a large backfill of an incident, once allowed or approved, to the greenest window of the carbon-intensity forecast ending within this many hours of data time; 0 runs it at once.",
    )
    backfill_green_min_days: float = Field(
        default=8.0, gt=0, description="Backfills of at least this many days are deferred to the greenest window; shorter ones run at once."
    )
    backfill_green_window_hours: float = Field(
        default=1.0,
        gt=0,
        multiple_of=0.5,
        description="Length of the window a deferred backfill is expected to take, hours (a multiple of the half-hour slot).",
    )
    snapshot_retention_hours: float = Field(
        default=168.0, ge=0, description="Snapshots of main older than this (and beyond the newest few) are expired by maintenance."
    )
    snapshot_retain_last: int = Field(default=5, ge=1, description="Maintenance always keeps main's newest this-many snapshots.")
    compaction_min_files: int = Field(
        default=4, ge=2, description="Maintenance compacts a UTC day of a table once it has this many data files."
    )
    lineage_target: str | None = Field(
        default=None,
        description=(
            "Where each run's OpenLineage events go: unset (off), a file (file:///path or a plain path; one JSON event a line) "
            "or an http(s):// URL that receives POST {url}/api/v1/lineage (Marquez; DataHub at .../openapi/openlineage)."
        ),
    )
    lineage_namespace: str = Field(default="dataops", description="OpenLineage job namespace of the pipelines' runs.")
    backfill_executor: Literal["local", "ray"] = Field(
        default="local",
        description="Default executor of `dataops backfill`: 'local' (partitions one after another) or 'ray' (one Ray task per partition).",
    )
    ray_address: str | None = Field(
        default=None,
        description=(
            "Ray cluster of the ray executor: unset starts a local one with every core; 'ray://head:10001' joins a remote cluster "
            "(its nodes need the platform image and the shared catalog, warehouse and ops database); 'auto' on a cluster node."
        ),
    )

    query_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Real seconds a user's SQL (`dataops query`, the agent's query_lake) may run before it is interrupted.",
    )
    query_memory_limit: str = Field(
        default="1GB",
        description="DuckDB memory limit of a user's SQL, in DuckDB syntax: '1GB', '512MB', '2GiB' or a share of RAM like '25%'.",
    )

    @field_validator("query_memory_limit")
    @classmethod
    def _duckdb_memory_limit(cls, value: str) -> str:
        match = _MEMORY_LIMIT.fullmatch(value.strip())
        if match is None:
            raise ValueError("not a DuckDB memory limit; valid: a number with KB, MB, GB, TB, KiB, MiB, GiB or TiB (e.g. 1GB), or 1%-100%")
        number, unit = float(match.group("number")), match.group("unit").lower()
        if unit == "%":
            if not 0 < number <= 100:
                raise ValueError("a share of RAM must be more than 0% and at most 100%")
        elif number * _MEMORY_UNITS[unit] < _MIN_QUERY_MEMORY:
            raise ValueError("below 16MB no query can run; valid: 16MB or more")
        return value.strip()

    @field_validator(*_HTTP_URL_SETTINGS)
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parsed = urlsplit(value.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("not an http(s) URL with a host; valid: http://host:port or https://host/path")
        try:
            parsed.port  # noqa: B018 - raises on a port outside 0-65535 or not a number
        except ValueError as exc:
            raise ValueError(f"the URL's port is not valid ({exc}); valid: 1-65535") from None
        return value.strip()

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return smtp_address(value.strip()).url

    @field_validator("alert_emails", mode="before")
    @classmethod
    def _email_routes(cls, value: Any) -> Any:
        return parse_email_routes(value) if isinstance(value, str) else value

    @field_validator("alert_emails")
    @classmethod
    def _known_severities(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for severity, addresses in value.items():
            if severity not in SEVERITIES:
                raise ValueError(f"unknown severity {severity!r}; valid: {', '.join(SEVERITIES)}")
            for address in addresses:
                if not EMAIL.fullmatch(address):
                    raise ValueError(f"{address!r} is not an email address; valid: name@example.org")
        return value

    @field_validator("email_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not EMAIL.fullmatch(value.strip()):
            raise ValueError("not an email address; valid: name@example.org")
        return value.strip()

    @field_validator("console_url")
    @classmethod
    def _console_url(cls, value: str) -> str:
        checked = cls._http_url(value)
        if checked is None:
            raise ValueError("empty; valid: http://host:port or https://host/path")
        return checked.rstrip("/")

    @field_validator("catalog_uri", "ops_db_url")
    @classmethod
    def _sqlalchemy_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            port = make_url(value.strip()).port
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a SQLAlchemy URL; valid: sqlite:////path/file.db or postgresql+psycopg2://user:pass@host:5432/db"
            ) from None
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"the URL's port {port} is out of range; valid: 1-65535")
        return value.strip()

    @field_validator("memory_embedding")
    @classmethod
    def _known_embedding(cls, value: str) -> str:
        kind, _, model = value.strip().partition(":")
        if value.strip() == "sklearn" or (kind in ("sentence-transformers", "openai") and model):
            return value.strip()
        raise ValueError("unknown embedding; valid: 'sklearn', 'sentence-transformers:<model>' or 'openai:<model>'")

    def secret_values(self) -> list[str]:
        """The literal values of the secret settings, and the passwords inside URL settings: what output must never show."""
        values = [getattr(self, name) for name in SECRET_SETTINGS]
        for name in URL_SETTINGS:
            url = getattr(self, name)
            if url and "://" in url:
                password = urlsplit(url).password  # the validators checked that every URL setting parses
                values.append(unquote(password) if password else None)
                values.append(password)
        return [v for v in values if v]

    @field_validator("lineage_target")
    @classmethod
    def _lineage_scheme(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in ("", "file", "http", "https"):
            raise ValueError(f"lineage_target {value!r} has scheme {scheme!r}; valid: file:///path, a plain path, http:// or https:// URL")
        return value.strip()

    @field_validator("catalog_type")
    @classmethod
    def _known_catalog_type(cls, value: str) -> str:
        kind = value.strip().lower()
        if kind not in CATALOG_TYPES:
            raise ValueError(f"catalog_type {value!r} is not supported; valid: {', '.join(repr(t) for t in CATALOG_TYPES)}")
        return kind

    @model_validator(mode="after")
    def _rest_catalog_has_uri(self) -> DataopsSettings:
        if self.catalog_type == "rest" and not self.rest_catalog_uri:
            raise ValueError("catalog_type 'rest' needs rest_catalog_uri (DATAOPS_REST_CATALOG_URI=http://host:8181)")
        return self

    @field_validator("approvers", mode="before")
    @classmethod
    def _split_approvers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        settings_file = _settings_file_from_env()
        if settings_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=settings_file))
        return tuple(sources)

    @property
    def catalog_url(self) -> str:
        return self.catalog_uri or f"sqlite:///{self.home.resolve() / 'catalog.db'}"

    @property
    def warehouse_location(self) -> str:
        return self.warehouse or (self.home.resolve() / "warehouse").as_uri()

    @property
    def ops_db(self) -> str:
        return self.ops_db_url or f"sqlite:///{self.home.resolve() / 'ops.db'}"

    @property
    def drop_folder(self) -> Path:
        return self.drop_dir or self.home / "drop"

    @property
    def policy_path(self) -> Path:
        return self.policy_file or self.config_dir / "policy.yaml"

    @property
    def runbooks_path(self) -> Path:
        return self.runbooks_file or self.config_dir / "runbooks.yaml"

    @property
    def slack_configured(self) -> bool:
        return bool(self.slack_bot_token)

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_base_url or self.llm_model)

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "warehouse").mkdir(exist_ok=True)


def _settings_file_from_env() -> Path | None:
    import os

    value = os.environ.get("DATAOPS_SETTINGS_FILE")
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        from config.errors import SettingsError

        raise SettingsError(f"DATAOPS_SETTINGS_FILE={value!r} does not exist; point it at a YAML file or unset it")
    return path


def load_settings(**overrides: Any) -> DataopsSettings:
    """Settings from the environment, the optional YAML file and `overrides` (highest precedence).

    Raises `SettingsError` naming each bad setting, its value and the valid ones (secret values are not repeated)."""
    from config.errors import SettingsError

    try:
        return DataopsSettings(**overrides)
    except ValidationError as exc:
        from config.invalid_settings import describe_invalid

        raise SettingsError(describe_invalid(exc, DataopsSettings, SECRET_SETTINGS, urls=URL_SETTINGS)) from None
    except yaml.YAMLError as exc:  # pragma: no cover - depends on a user's file
        raise SettingsError(f"the settings file is not valid YAML: {exc}") from exc
