"""Before a command touches state: is DATAOPS_HOME writable, and does every service a setting names answer?

A TCP connect per configured network service (the ops database, a SQL catalog on a server, the REST catalog,
the S3 endpoint) takes milliseconds and turns "a traceback from deep inside psycopg2, requests or the AWS SDK"
into one line that names the setting and the address. It says nothing about credentials or schemas: errors
past the connect are reported by `pipelines.error_report`.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from config.errors import HomeNotWritableError, UnreachableError
from config.settings import DataopsSettings

CONNECT_TIMEOUT_S = 3.0
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "http": 80, "https": 443}


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """A network service the settings name: the environment variable, and where it is (never its credentials)."""

    setting: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def endpoints(settings: DataopsSettings) -> list[Endpoint]:
    """The network services the settings point at; SQLite files and local warehouses are not services."""
    named: list[tuple[str, str | None]] = [("DATAOPS_OPS_DB_URL", settings.ops_db_url)]
    if settings.catalog_type == "rest":
        named.append(("DATAOPS_REST_CATALOG_URI", settings.rest_catalog_uri))
    else:
        named.append(("DATAOPS_CATALOG_URI", settings.catalog_uri))
    named.append(("DATAOPS_S3_ENDPOINT", settings.s3_endpoint))
    found = []
    for setting, url in named:
        endpoint = _endpoint(setting, url)
        if endpoint is not None:
            found.append(endpoint)
    return found


def _endpoint(setting: str, url: str | None) -> Endpoint | None:
    if not url or "://" not in url:
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0].lower()
    if not parts.hostname or scheme == "sqlite":
        return None
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    return Endpoint(setting=setting, host=parts.hostname, port=port) if port else None


def check_services(settings: DataopsSettings, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise UnreachableError for the first configured service that does not accept a TCP connection."""
    for endpoint in endpoints(settings):
        try:
            with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if isinstance(exc, TimeoutError | socket.timeout):
                reason = f"no answer in {timeout_s:g} s"
            raise UnreachableError(
                f"{endpoint.setting}: nothing answers at {endpoint.address} ({reason}); start that service or correct the setting",
                setting=endpoint.setting,
                address=endpoint.address,
            ) from None


def check_home(settings: DataopsSettings) -> None:
    """Create DATAOPS_HOME if needed and prove it writable, or raise HomeNotWritableError saying what to do."""
    home = settings.home
    probe = home / f".write-probe-{os.getpid()}"
    try:
        settings.ensure_home()
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        why = "a read-only file system" if exc.errno == errno.EROFS else (exc.strerror or type(exc).__name__)
        raise HomeNotWritableError(
            f"DATAOPS_HOME={home} is not writable ({why}); point DATAOPS_HOME at a folder you can write, or fix its permissions"
        ) from None
