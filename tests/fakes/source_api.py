"""A scripted stand-in for the source APIs (NESO Carbon Intensity, Open-Meteo): a real HTTP/1.1 server on 127.0.0.1.

Nothing in our code is replaced: the connectors open sockets and speak HTTP to this server exactly as they
would to the public APIs. Tests script what each path answers, in order, and read back every request::

    source_api.route("/intensity/{from}/{to}", Reply.error(500), Reply.json(load_fixture("gb_with_dates.json")))
    settings = settings.model_copy(update={"source_mode": "http", "carbon_intensity_base_url": source_api.url})
    ...
    assert [r.path for r in source_api.requests] == [...]

A route serves its replies one per request and then repeats the last one. A reply may instead be a function
of the request, for bodies that depend on the requested window. A path no route matches answers 404 and
the body names the scripted routes.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "api"


def load_fixture(name: str) -> Any:
    """A recorded response body from tests/fixtures/api (see its README for origin and licence)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def renamed_field(body: dict[str, Any], old: str, new: str, *, records: str = "data") -> dict[str, Any]:
    """A copy of `body` where every record under `records` carries `old` as `new`: schema drift as an API ships it."""
    drifted = copy.deepcopy(body)
    drifted[records] = [{(new if k == old else k): v for k, v in r.items()} for r in drifted[records]]
    return drifted


@dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    params: dict[str, str]  # values of the route's {placeholders}
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted answer: status, headers, body bytes, and how long to wait before sending anything."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @classmethod
    def json(cls, payload: Any, *, status: int = 200, headers: dict[str, str] | None = None, delay_s: float = 0.0) -> Reply:
        return cls(status=status, body=json.dumps(payload).encode(), headers=headers or {}, delay_s=delay_s)

    @classmethod
    def error(cls, status: int, message: str | None = None, *, headers: dict[str, str] | None = None) -> Reply:
        """An error in the NESO API's shape: {"error": {"code": "500 Internal Server Error", "message": ...}}."""
        phrase = f"{status} {HTTPStatus(status).phrase}"
        return cls.json({"error": {"code": phrase, "message": message or phrase}}, status=status, headers=headers)

    @classmethod
    def retry_after(cls, after: int | datetime, *, status: int = 429) -> Reply:
        """Too Many Requests with Retry-After as delta-seconds (int) or as an HTTP date (aware datetime)."""
        value = str(after) if isinstance(after, int) else format_datetime(after, usegmt=True)
        return cls.error(status, "rate limit exceeded", headers={"Retry-After": value})

    @classmethod
    def slow(cls, payload: Any, *, delay_s: float) -> Reply:
        """A good body sent only after `delay_s`: longer than the client's timeout, it is a timeout."""
        return cls.json(payload, delay_s=delay_s)

    @classmethod
    def truncated(cls, payload: Any, *, keep: float = 0.5) -> Reply:
        """Status 200 and a Content-Length that matches, but only the first `keep` of the JSON text."""
        text = json.dumps(payload).encode()
        return cls(status=200, body=text[: max(1, int(len(text) * keep))])


Responder = Reply | Callable[[RecordedRequest], Reply]


@dataclass(kw_only=True)
class _Route:
    pattern: str
    regex: re.Pattern[str]
    replies: tuple[Responder, ...]
    served: int = 0

    def next_reply(self, request: RecordedRequest) -> Reply:
        responder = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        return responder(request) if callable(responder) else responder


def _compile(pattern: str) -> re.Pattern[str]:
    """'/intensity/{from}/{to}' -> a regex with one named group per placeholder, each one path segment."""
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
    return re.compile(f"^{regex}$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping out a slow reply must not hold up stop()

    def __init__(self, api: SourceApi) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client hanging up on a slow reply is the scenario under test, not a server fault.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSourceApi/1.0"
    timeout = 10  # idle keep-alive connections end on their own
    server: _Server

    def do_GET(self) -> None:
        self.server.api._serve(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SourceApi:
    """The fake server: script routes with `route`, point a base-URL setting at `url`, read `requests`."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> SourceApi:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-source-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping out a delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash: http://127.0.0.1:<port>."""
        if self._server is None:
            raise RuntimeError("the fake source API is not started; call start() or use the source_api fixture")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- script and record -----------------------------------------------------------------------------
    def route(self, pattern: str, *replies: Responder) -> None:
        """Answer GETs whose path matches `pattern` with `replies` in order, then the last one forever."""
        if not replies:
            raise ValueError(f"route {pattern!r} needs at least one reply")
        with self._lock:
            self._routes = [r for r in self._routes if r.pattern != pattern]
            self._routes.append(_Route(pattern=pattern, regex=_compile(pattern), replies=replies))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def _serve(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        with self._lock:
            route, match = next(((r, m) for r in self._routes if (m := r.regex.match(split.path))), (None, None))
            request = RecordedRequest(
                method=handler.command,
                path=split.path,
                query=dict(parse_qsl(split.query, keep_blank_values=True)),
                params=match.groupdict() if match else {},
                headers=dict(handler.headers.items()),
                at=time.monotonic(),
            )
            self._requests.append(request)
            if route is None:
                known = ", ".join(r.pattern for r in self._routes) or "none"
                reply = Reply.error(404, f"no scripted route matches {split.path!r}; scripted: {known}")
            else:
                reply = route.next_reply(request)
        if reply.delay_s and self._stopping.wait(reply.delay_s):
            handler.close_connection = True  # stopping: drop the connection instead of answering late
            return
        try:
            handler.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers, "Content-Length": str(len(reply.body))}
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up waiting (a timeout test)


@pytest.fixture(name="source_api")
def source_api_fixture() -> Iterator[SourceApi]:
    """`source_api`: a started fake source API on a free port, stopped after the test.

    Import `source_api_fixture` into a test module (or a conftest) and request `source_api`.
    """
    api = SourceApi().start()
    try:
        yield api
    finally:
        api.stop()
