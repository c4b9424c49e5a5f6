"""A local Iceberg REST catalog: the REST protocol over HTTP, backed by pyiceberg's SqlCatalog on SQLite.

The subset of the Iceberg REST Catalog API (apache/iceberg `open-api/rest-catalog-open-api.yaml`) that
pyiceberg's `RestCatalog` speaks for this platform, served by `http.server` on a free port of 127.0.0.1::

    GET  /v1/config                                        defaults, overrides and the endpoints below
    POST /v1/oauth/tokens                                  client_credentials grant (only with `credential=`)
    GET|POST /v1/namespaces                                list (`?parent=`), create
    GET|HEAD|DELETE /v1/namespaces/{ns}                    load properties, exists, drop
    POST /v1/namespaces/{ns}/properties                    update properties
    GET|POST /v1/namespaces/{ns}/tables                    list, create (no stage-create)
    GET|HEAD|POST|DELETE /v1/namespaces/{ns}/tables/{t}    load, exists, commit, drop (`?purgeRequested=`)

Requests are parsed with pyiceberg's own request models (`CreateTableRequest`, `CommitTableRequest` with its
`TableRequirement` and `TableUpdate` unions); a commit is applied by the backing `SqlCatalog.commit_table`,
so a failed requirement is a 409 `CommitFailedException`, as the spec says. Errors use the spec's model
`{"error": {"message", "type", "code"}}`. Multi-level namespaces travel joined by the unit separator (%1F)::

    with RestCatalogServer(root=tmp_path / "rest") as server:
        settings = load_settings(home=..., catalog_type="rest", rest_catalog_uri=server.uri)
        ...
        assert server.catalog.table_exists("silver.carbon_intensity")   # the server's own view

Requests are served one at a time (a lock): SQLite is one writer anyway, and the order is what tests read.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pydantic import BaseModel
from pyiceberg.catalog.rest import (
    CreateTableRequest,
    ListNamespaceResponse,
    ListTableResponseEntry,
    ListTablesResponse,
    NamespaceResponse,
    TableResponse,
    UpdateNamespacePropertiesResponse,
)
from pyiceberg.catalog.rest.response import ErrorResponse, ErrorResponseMessage, TokenResponse
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.table import CommitTableRequest, CommitTableResponse, Table
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

__all__ = ["RestCatalogServer", "rest_catalog_server_fixture"]

BACKEND_NAME = "rest_backend"  # the iceberg-rest image's JDBC catalog uses this name too
_SEPARATOR = "\x1f"
_ENDPOINTS = [  # advertised in /v1/config, so the client uses HEAD for exists checks
    f"{method} /v1/{{prefix}}/{path}"
    for method, path in (
        ("GET", "namespaces"),
        ("POST", "namespaces"),
        ("GET", "namespaces/{namespace}"),
        ("HEAD", "namespaces/{namespace}"),
        ("DELETE", "namespaces/{namespace}"),
        ("POST", "namespaces/{namespace}/properties"),
        ("GET", "namespaces/{namespace}/tables"),
        ("POST", "namespaces/{namespace}/tables"),
        ("GET", "namespaces/{namespace}/tables/{table}"),
        ("HEAD", "namespaces/{namespace}/tables/{table}"),
        ("POST", "namespaces/{namespace}/tables/{table}"),
        ("DELETE", "namespaces/{namespace}/tables/{table}"),
    )
]
# pyiceberg's exceptions as the spec's error types; the first match wins (ValidationError is a ValueError).
_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (NoSuchTableError, 404, "NoSuchTableException"),
    (NoSuchNamespaceError, 404, "NoSuchNamespaceException"),
    (CommitFailedException, 409, "CommitFailedException"),
    (NamespaceNotEmptyError, 409, "NamespaceNotEmptyException"),
    (TableAlreadyExistsError, 409, "AlreadyExistsException"),
    (NamespaceAlreadyExistsError, 409, "AlreadyExistsException"),
    (ValueError, 400, "BadRequestException"),
)
_OAUTH_ERRORS = ("invalid_request", "invalid_client", "unsupported_grant_type")  # RFC 6749 section 5.2


class RestError(Exception):
    """An error answer in the spec's model; `type` is the spec's exception name."""

    def __init__(self, code: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.code, self.type, self.message = code, type_, message


class RestCatalogServer:
    """The REST catalog on a free port of 127.0.0.1, its SqlCatalog and warehouse under `root`; stops on exit.

    `warehouse` (default: `root/warehouse`) may be `s3://...`, with the FileIO `properties` that reach it.
    With `credential` ('client_id:secret') every request needs a bearer token from `POST /v1/oauth/tokens`.
    `requests` records `(method, path, status)` of every request served, in order.
    """

    def __init__(
        self, *, root: Path, warehouse: str | None = None, properties: dict[str, str] | None = None, credential: str | None = None
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "warehouse").mkdir(exist_ok=True)
        self.warehouse = warehouse or (root / "warehouse").resolve().as_uri()
        self.catalog = SqlCatalog(
            BACKEND_NAME, uri=f"sqlite:///{(root / 'catalog.db').resolve()}", warehouse=self.warehouse, **(properties or {})
        )
        self.credential = credential
        self.token = secrets.token_urlsafe(16)
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.app = self
        self.uri = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RestCatalogServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rest-catalog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, so only once it runs
            self._httpd.shutdown()
            self._thread.join(timeout=10)
        self._httpd.server_close()
        self.catalog.engine.dispose()

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, BaseModel | dict[str, Any] | None]:
        """One request: the status and the response (a pyiceberg model, plain JSON, or None: no body)."""
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        segments = [unquote(s) for s in url.path.strip("/").split("/")]
        if segments[:1] != ["v1"]:
            raise RestError(404, "NoSuchEndpointException", f"no such endpoint: {method} {url.path}")
        route = segments[1:]
        if route == ["oauth", "tokens"] and method == "POST":
            return 200, self._token(body)
        if self.credential and headers.get("authorization") != f"Bearer {self.token}":
            raise RestError(401, "NotAuthorizedException", "missing or invalid bearer token")
        if route == ["config"] and method == "GET":
            return 200, {"defaults": {}, "overrides": {}, "endpoints": _ENDPOINTS}  # ConfigResponse would dump endpoints as objects
        if route[:1] != ["namespaces"] or len(route) > 4:
            raise RestError(404, "NoSuchEndpointException", f"no such endpoint: {method} {url.path}")
        namespace = tuple(route[1].split(_SEPARATOR)) if len(route) > 1 else ()
        match method, route[2:]:
            case "GET", [] if not namespace:
                parent = tuple(query["parent"].split(_SEPARATOR)) if query.get("parent") else ()
                return 200, ListNamespaceResponse(namespaces=self.catalog.list_namespaces(parent))
            case "POST", [] if not namespace:
                request = _json_object(body)
                created = tuple(request.get("namespace", ()))
                self.catalog.create_namespace(created, request.get("properties") or {})
                return 200, NamespaceResponse(namespace=created, properties=self.catalog.load_namespace_properties(created))
            case "GET", []:
                return 200, NamespaceResponse(namespace=namespace, properties=self.catalog.load_namespace_properties(namespace))
            case "HEAD", []:
                return (204 if self.catalog.namespace_exists(namespace) else 404), None
            case "DELETE", []:
                self.catalog.drop_namespace(namespace)
                return 204, None
            case "POST", ["properties"]:
                request = _json_object(body)
                summary = self.catalog.update_namespace_properties(
                    namespace, set(request.get("removals") or ()), request.get("updates") or {}
                )
                return 200, UpdateNamespacePropertiesResponse(removed=summary.removed, updated=summary.updated, missing=summary.missing)
            case "GET", ["tables"]:
                entries = [ListTableResponseEntry(namespace=t[:-1], name=t[-1]) for t in self.catalog.list_tables(namespace)]
                return 200, ListTablesResponse(identifiers=entries)
            case "POST", ["tables"]:
                # pyiceberg's model requires these keys yet drops them when None (exclude_none): the spec has them optional
                request = {"location": None, "partition-spec": None, "write-order": None, **_json_object(body)}
                return 200, self._create_table(namespace, CreateTableRequest.model_validate(request))
            case "GET", ["tables", name]:
                return 200, _table_response(self.catalog.load_table((*namespace, name)))
            case "HEAD", ["tables", name]:
                return (204 if self.catalog.table_exists((*namespace, name)) else 404), None
            case "POST", ["tables", name]:
                commit = CommitTableRequest.model_validate_json(body)
                table = self.catalog.load_table((*namespace, name))  # SqlCatalog.commit_table reads only its name
                done = self.catalog.commit_table(table, commit.requirements, commit.updates)
                return 200, _table_response(done)
            case "DELETE", ["tables", name]:
                purge = query.get("purgeRequested", "false").lower() == "true"
                (self.catalog.purge_table if purge else self.catalog.drop_table)((*namespace, name))
                return 204, None
        raise RestError(404, "NoSuchEndpointException", f"no such endpoint: {method} {url.path}")

    def _token(self, body: bytes) -> BaseModel:
        form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            raise RestError(400, "unsupported_grant_type", f"grant_type {form.get('grant_type')!r}; valid: 'client_credentials'")
        offered = f"{form['client_id']}:{form.get('client_secret', '')}" if "client_id" in form else form.get("client_secret", "")
        if self.credential is None or not secrets.compare_digest(offered, self.credential):
            raise RestError(401, "invalid_client", "unknown client_id or wrong client_secret")
        return TokenResponse(
            access_token=self.token, token_type="bearer", expires_in=3600, issued_token_type="urn:ietf:params:oauth:token-type:access_token"
        )

    def _create_table(self, namespace: tuple[str, ...], request: CreateTableRequest) -> TableResponse:
        if request.stage_create:
            raise RestError(501, "NotImplementedException", "stage-create is not implemented by this test server")
        table = self.catalog.create_table(
            (*namespace, request.name),
            schema=request.table_schema,
            location=request.location,
            partition_spec=request.partition_spec or UNPARTITIONED_PARTITION_SPEC,
            sort_order=request.write_order or UNSORTED_SORT_ORDER,
            properties=request.properties,
        )
        return _table_response(table)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: RestCatalogServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: requests' session reuses one connection
    disable_nagle_algorithm = True  # headers and body go out in two writes: Nagle + delayed ACK would add 40 ms each

    def _serve(self) -> None:
        app = cast(_HTTPServer, self.server).app
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with app.lock:
            try:
                status, answer = app.handle(self.command, self.path, headers, body)
                payload = _encode(answer)
            except Exception as exc:
                status, payload = _error(exc)
            app.requests.append((self.command, self.path, status))
        if self.command == "HEAD":
            payload = b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read `requests`


def _encode(answer: BaseModel | dict[str, Any] | None) -> bytes:
    if answer is None:
        return b""
    return answer.model_dump_json().encode() if isinstance(answer, BaseModel) else json.dumps(answer).encode()


def _error(exc: Exception) -> tuple[int, bytes]:
    """The status and body of a failed request: the spec's error model, or OAuth2's for the token endpoint."""
    if isinstance(exc, RestError) and exc.type in _OAUTH_ERRORS:
        return exc.code, json.dumps({"error": exc.type, "error_description": exc.message}).encode()
    if isinstance(exc, RestError):
        code, type_, message = exc.code, exc.type, exc.message
    else:
        code, type_ = next(((c, t) for cls, c, t in _ERRORS if isinstance(exc, cls)), (500, "ServiceFailureException"))
        message = str(exc) or type(exc).__name__
    return code, ErrorResponse(error=ErrorResponseMessage(message=message, type=type_, code=code)).model_dump_json().encode()


def _json_object(body: bytes) -> dict[str, Any]:
    value = json.loads(body or b"{}")
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _table_response(table: Table | CommitTableResponse) -> TableResponse:
    """The spec's LoadTableResult; `config` is empty: the client's own FileIO properties reach the warehouse."""
    return TableResponse.model_validate({"metadata-location": table.metadata_location, "metadata": table.metadata, "config": {}})


@pytest.fixture
def rest_catalog_server_fixture(tmp_path: Path) -> Iterator[RestCatalogServer]:
    with RestCatalogServer(root=tmp_path / "rest-catalog") as server:
        yield server
