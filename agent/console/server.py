"""The console served by uvicorn: in the foreground (`dataops console`) or on a thread of `dataops serve`.

The socket is bound before uvicorn starts, so an address in use is reported at once, with the setting to change,
instead of by a thread that quietly exits. Inside `dataops serve` the console is a service extension
(`attach_console`): approvals are decided through the service's own agent when it runs one, the platform clock
is the service's, and a console that cannot bind is logged and left out while the pipelines run on.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

from config.errors import SettingsError
from pipelines.incidents import Incident

if TYPE_CHECKING:
    from fastapi import FastAPI

    from agent.runtime import Agent
    from pipelines.service import Service

log = logging.getLogger(__name__)


def bind(addr: str, port: int) -> socket.socket:
    """A listening socket on addr:port; SettingsError naming the settings when it cannot be had."""
    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise SettingsError(
            f"the console cannot listen on {addr}:{port} ({exc.strerror or exc}); set DATAOPS_CONSOLE_PORT "
            "(0 turns the console off) or DATAOPS_CONSOLE_ADDR"
        ) from None
    sock.setblocking(False)
    return sock


class ConsoleServer:
    """uvicorn over one bound socket, on a thread of its own; `stop()` ends it."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        import uvicorn

        self.sock = sock
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", proxy_headers=True, server_header=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="console", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self, timeout: float = 30.0) -> ConsoleServer:
        self.thread.start()
        waited = threading.Event()
        while not self.server.started and self.thread.is_alive() and not waited.wait(0.02):
            timeout -= 0.02
            if timeout <= 0:
                break
        if not self.server.started:
            raise RuntimeError("the console's server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class ConsoleExtension:
    """The console alongside `dataops serve` (pipelines.service.ServiceExtension)."""

    def __init__(self, service: Service, server: ConsoleServer) -> None:
        self.service = service
        self.server = server

    def on_incident(self, incident: Incident, opened: bool) -> None:
        """Pages read the ops database on every request: nothing to push."""

    def tick(self) -> None:
        """Nothing runs on the monitor timer."""

    def stop(self) -> None:
        self.server.stop()


def _service_agent(service: Service) -> Agent | None:
    """The agent of the service's agent extension, if it runs one: one agent per process decides and resumes."""
    for extension in service.extensions:
        agent: Any = getattr(extension, "agent", None)
        if agent is not None:
            return agent  # type: ignore[no-any-return]
    return None


def attach_console(service: Service) -> ConsoleExtension | None:
    """The console on DATAOPS_CONSOLE_ADDR:DATAOPS_CONSOLE_PORT; None when the port is 0 or it cannot listen there."""
    from agent.console.actions import AgentDecider
    from agent.console.app import create_app

    settings = service.ctx.settings
    if settings.console_port == 0:
        return None
    try:
        sock = bind(settings.console_addr, settings.console_port)
    except SettingsError as exc:  # a neighbour holds the port: the pipelines matter more than the console
        log.error("%s; serving without the console", exc)
        return None
    app = create_app(
        service.ctx, decider=AgentDecider(service.ctx, find=lambda: _service_agent(service)), clock=lambda: service.clock.now()
    )
    server = ConsoleServer(app, sock).start()
    print(f"console on {server.url}", flush=True)
    return ConsoleExtension(service, server)
