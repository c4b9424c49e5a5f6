"""A scripted OpenAI-compatible chat-completions server: a real HTTP/1.1 server on 127.0.0.1, stdlib only.

Nothing in our code is replaced: the real `openai` client (httpx2 underneath, which respx cannot
intercept) opens a socket and speaks the chat-completions protocol to this server as it would to OpenAI,
vLLM or Ollama. Tests script the answers in order and read back every request::

    from tools import names

    with ScriptedOpenAI(
        ScriptedOpenAI.tool_call(names.LIST_RUNS, {"pipeline": "carbon_intensity"}),
        ScriptedOpenAI.text("Nothing is wrong."),
    ) as llm:
        settings = load_settings(home=tmp_path, llm_base_url=llm.base_url, llm_model="scripted", llm_api_key="sk-test")
        ...
        assert [r.messages[-1]["role"] for r in llm.chat_requests] == ["user", "tool"]

The protocol:

- `POST /v1/chat/completions` takes the next entry of the script: a `Reply`, or a function of the request
  body returning one (for answers that depend on the conversation). When the script has run out,
  `when_empty` answers every further request (a `Reply` or a function); without it the server answers
  500 "the script ran out" with `x-should-retry: false`, so the client does not retry and the test fails
  loudly. Such requests are also listed in `overruns`.
- `GET /v1/models` lists `model`; any other path answers 404 in OpenAI's error shape.
- With `validate=True` (the default) the server refuses with 400, as OpenAI does, a request whose
  assistant tool calls are not each answered by a following tool message, a tool message that answers
  no call, `parallel_tool_calls` without tools, `stream: true`, or a `strict` function whose schema breaks
  strict mode (see `strict_schema_problems`).
- With `api_key` set, a request without `Authorization: Bearer <api_key>` gets OpenAI's 401.

Completions carry `id`, `object`, `created`, the requested `model`, one choice and `usage`; tool-call ids
not given in the script are numbered `call_001`, `call_002`, ... across the server's life. Errors of the
statuses the client retries (408, 409, 429, 5xx) carry `retry-after-ms: 10` unless told otherwise, so
retry tests take milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = ["RecordedRequest", "Reply", "ScriptedOpenAI", "strict_schema_problems"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_denied", 404: "invalid_request_error"}
_ERROR_TYPES |= {429: "rate_limit_error"}
_RETRIED = (408, 409, 429)
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    """One request as the server received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body, None when there was none or it was not JSON
    at: float  # time.monotonic() on arrival

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools", []) or []) if isinstance(self.body, dict) else []


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted answer: an assistant `message` wrapped into a chat.completion when served, or a raw `body`."""

    status: int = 200
    message: dict[str, Any] | None = None
    finish_reason: str = "stop"
    usage: dict[str, int] | Literal["auto"] | None = "auto"  # "auto": estimated from the text, None: left out
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def delayed(self, seconds: float) -> Reply:
        """This reply, sent only after `seconds`: longer than the client's timeout, it is a timeout."""
        return dataclasses.replace(self, delay_s=seconds)


Responder = Reply | Callable[[Any], Reply]


class ScriptedOpenAI:
    """The fake endpoint: started on construction, `base_url` ends in /v1, `close()` (or `with`) stops it."""

    def __init__(
        self,
        *script: Responder,
        when_empty: Responder | None = None,
        model: str = "scripted-model",
        api_key: str | None = None,
        validate: bool = True,
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.validate = validate
        self.when_empty = when_empty
        self._script: deque[Responder] = deque(script)
        self._requests: list[RecordedRequest] = []
        self.overruns: list[RecordedRequest] = []
        self._served = 0
        self._call_ids = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="scripted-openai", daemon=True)
        self._thread.start()

    # -- building replies ------------------------------------------------------------------------------
    @staticmethod
    def call(name: str, arguments: dict[str, Any] | str, *, id: str | None = None) -> dict[str, Any]:
        """One tool call for `tool_calls`; a str is sent as is (malformed JSON included), a dict as JSON."""
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return {"id": id, "type": "function", "function": {"name": name, "arguments": raw}}

    @classmethod
    def tool_calls(
        cls, *calls: dict[str, Any], content: str | None = None, usage: dict[str, int] | Literal["auto"] | None = "auto"
    ) -> Reply:
        """An assistant message with these calls (made with `call`), served with finish_reason tool_calls."""
        message = {"role": "assistant", "content": content, "tool_calls": [dict(c) for c in calls]}
        return Reply(message=message, finish_reason="tool_calls", usage=usage)

    @classmethod
    def tool_call(
        cls, name: str, arguments: dict[str, Any] | str, *, id: str | None = None, usage: dict[str, int] | Literal["auto"] | None = "auto"
    ) -> Reply:
        """An assistant message with exactly one tool call."""
        return cls.tool_calls(cls.call(name, arguments, id=id), usage=usage)

    @staticmethod
    def text(content: str, *, finish_reason: str = "stop", usage: dict[str, int] | Literal["auto"] | None = "auto") -> Reply:
        """An assistant message with text and no tool calls: the model is done."""
        return Reply(message={"role": "assistant", "content": content}, finish_reason=finish_reason, usage=usage)

    @staticmethod
    def error(
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | None = None,
        retry_after_ms: int | None = 10,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """An HTTP error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
        kind = type or _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        body = {"error": {"message": message or HTTPStatus(status).phrase, "type": kind, "param": None, "code": code}}
        extra = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None and (status in _RETRIED or status >= 500) else {}
        return Reply(status=status, body=body, headers={**extra, **(headers or {})})

    @staticmethod
    def json(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        """Any JSON body, sent as is: odd shapes such as a completion without choices."""
        return Reply(status=status, body=body, headers=headers or {})

    # -- lifecycle and script --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>/v1, what `DATAOPS_LLM_BASE_URL` is set to."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def enqueue(self, *replies: Responder) -> None:
        """Append `replies` to the script."""
        with self._lock:
            self._script.extend(replies)

    @property
    def remaining(self) -> int:
        """Script entries not yet served: a test that expects the whole script used asserts 0."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/chat/completions")]

    def close(self) -> None:
        self._stopping.set()  # wakes handlers sleeping out a delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedOpenAI:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- serving ---------------------------------------------------------------------------------------
    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = urlsplit(handler.path).path.rstrip("/")
        request = RecordedRequest(
            method=handler.command,
            path=path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        with self._lock:
            self._requests.append(request)
        reply = self._answer(request)
        if reply.delay_s and self._stopping.wait(reply.delay_s):
            handler.close_connection = True  # stopping: drop the connection instead of answering late
            return
        self._send(handler, reply, request)

    def _answer(self, request: RecordedRequest) -> Reply:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error(
                401, "Incorrect API key provided. You can find your API key in your account settings.", code="invalid_api_key"
            )
        if request.method == "GET" and request.path == "/v1/models":
            return self.json({"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "scripted"}]})
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return self.error(
                404,
                f"Invalid URL ({request.method} {request.path}); the scripted server answers POST /v1/chat/completions and GET /v1/models",
            )
        if self.validate and (problem := _request_problem(request.body)):
            return self.error(400, problem)
        with self._lock:
            responder = self._script.popleft() if self._script else self.when_empty
            self._served += 1
            if responder is None:
                self.overruns.append(request)
                return self.error(
                    500,
                    f"ScriptedOpenAI: the script ran out; request {self._served} has no scripted reply (script more replies or set when_empty)",
                    retry_after_ms=None,
                    headers={"x-should-retry": "false"},
                )
        return responder(request.body) if callable(responder) else responder

    def _send(self, handler: _Handler, reply: Reply, request: RecordedRequest) -> None:
        with self._lock:
            number = len(self._requests)
            payload = reply.body if reply.message is None else self._completion(reply, request, number)
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "x-request-id": f"req_scripted_{number}", **reply.headers}
        try:
            handler.send_response(reply.status)
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up waiting (a timeout test)

    def _completion(self, reply: Reply, request: RecordedRequest, number: int) -> dict[str, Any]:
        message = json.loads(json.dumps(reply.message))  # a copy: a Reply may be served more than once
        for call in message.get("tool_calls") or []:
            if not call.get("id"):
                self._call_ids += 1
                call["id"] = f"call_{self._call_ids:03d}"
        usage = reply.usage
        if usage == "auto":
            prompt = max(1, len(json.dumps(request.messages)) // 4)
            usage = {"prompt_tokens": prompt, "completion_tokens": max(1, len(json.dumps(message)) // 4)}
        completion: dict[str, Any] = {
            "id": f"chatcmpl-scripted-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": (request.body or {}).get("model", self.model),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}],
        }
        if usage is not None:
            completion["usage"] = {**usage, "total_tokens": usage.get("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])}
        return completion


def strict_schema_problems(schema: Any, path: str = "$") -> list[str]:
    """Where `schema` breaks OpenAI's strict mode: objects must be closed and list every property as required."""
    problems: list[str] = []
    if not isinstance(schema, dict):
        return [f"{path}: a schema must be an object"]
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            problems.append(f"{path}: an object must declare its properties")
            properties = {}
        if schema.get("additionalProperties") is not False:
            problems.append(f"{path}: 'additionalProperties' must be false")
        if sorted(schema.get("required", [])) != sorted(properties):
            problems.append(
                f"{path}: 'required' must list every property; missing {sorted(set(properties) - set(schema.get('required', [])))}"
            )
        for name, sub in properties.items():
            problems += strict_schema_problems(sub, f"{path}.{name}")
    if not any(k in schema for k in ("type", "anyOf", "enum", "const", "$ref")):
        problems.append(f"{path}: every value needs a type")
    for key in ("items",):
        if key in schema:
            problems += strict_schema_problems(schema[key], f"{path}[]")
    for i, variant in enumerate(schema.get("anyOf", [])):
        problems += strict_schema_problems(variant, f"{path}|{i}")
    for name, sub in (schema.get("$defs") or {}).items():
        problems += strict_schema_problems(sub, f"{path}.$defs.{name}")
    return problems


def _request_problem(body: Any) -> str | None:
    """What OpenAI would refuse with 400 in this chat-completions body, if anything."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    if body.get("stream"):
        return "ScriptedOpenAI does not stream; call without stream=True"
    tools = body.get("tools") or []
    if body.get("parallel_tool_calls") is not None and not tools:
        return "parallel_tool_calls is only allowed when 'tools' are specified"
    for tool in tools:
        function = tool.get("function") or {}
        if tool.get("type") != "function" or not _TOOL_NAME.match(str(function.get("name", ""))):
            return f"Invalid tool {json.dumps(tool)[:200]}: a function tool with a name matching {_TOOL_NAME.pattern}"
        if function.get("strict") and (problems := strict_schema_problems(function.get("parameters"))):
            return f"Invalid schema for function '{function['name']}': {'; '.join(problems)}"
    pending: list[str] = []  # ids of the last assistant tool calls not answered yet
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return f"Invalid value for 'messages[{i}].role': {role!r}"
        if role == "tool":
            if message.get("tool_call_id") not in pending:
                return f"Invalid parameter: messages[{i}] with role 'tool' must be a response to a preceding message with 'tool_calls'"
            pending.remove(message["tool_call_id"])
            continue
        if pending:
            return f"An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}"
        if role == "assistant":
            pending = [c.get("id") for c in message.get("tool_calls") or []]
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping out a slow reply must not hold up close()

    def __init__(self, fake: ScriptedOpenAI) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client hanging up on a slow reply is the scenario under test, not a server fault.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ScriptedOpenAI/1.0"
    timeout = 10  # idle keep-alive connections end on their own
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass
