"""`dataops console`, and the console's part of `dataops serve` (`attach_console`, `with_console_option`).

Plain functions for the assembly in evals/cli.py; FastAPI, uvicorn and Jinja2 are imported when the console
runs, never by `dataops --help`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipelines.cli_io import EXIT_USAGE, console, fail, open_context, usage_errors

if TYPE_CHECKING:
    from agent.console.server import ConsoleExtension
    from pipelines.service import Service, ServiceExtension

CONSOLE_OPTION_HELP = "Serve the operator console on DATAOPS_CONSOLE_ADDR:DATAOPS_CONSOLE_PORT; --no-console: without it."


def attach_console(service: Service) -> ConsoleExtension | None:
    """The console alongside `dataops serve`; None when DATAOPS_CONSOLE_PORT is 0."""
    from agent.console.server import attach_console as attach

    return attach(service)


def console_command(
    port: Annotated[int | None, typer.Option(help="Port (overrides DATAOPS_CONSOLE_PORT).", min=1, max=65535)] = None,
    addr: Annotated[str | None, typer.Option(help="Address to bind (overrides DATAOPS_CONSOLE_ADDR).")] = None,
) -> None:
    """Serve the operator console alone, over the same state as `dataops serve`: sign in with a password
    (`dataops users password NAME`) or a personal token; scripts use /api/ with `Authorization: Bearer TOKEN`.

    Approvals decided here resume the agent's thread in this process (as `dataops approve` does). Ctrl-C stops.
    """
    import signal
    import threading

    from agent.console.app import create_app
    from agent.console.server import ConsoleServer, bind

    ctx = open_context()
    settings = ctx.settings
    port = settings.console_port if port is None else port
    addr = settings.console_addr if addr is None else addr
    if port == 0:
        raise fail("DATAOPS_CONSOLE_PORT is 0, which turns the console off; set it or pass --port", EXIT_USAGE)
    with usage_errors():
        sock = bind(addr, port)
    app = create_app(ctx)
    # uvicorn on its thread, as inside `dataops serve`; this thread waits for Ctrl-C or SIGTERM and stops it
    # cleanly (exit 0), where uvicorn in the main thread would re-raise the signal after shutting down.
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = ConsoleServer(app, sock).start()
    console.print(f"console on {server.url}; Ctrl-C stops", markup=False)
    try:
        while not stopping.wait(0.5) and server.thread.is_alive():
            pass
    finally:
        server.stop()
        app.state.console.decider.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def with_console_option(
    serve_command: Callable[..., Callable[..., None]],
    *,
    agent: Callable[[Service], ServiceExtension | None],
) -> Callable[..., None]:
    """`dataops serve` (pipelines/cli.py `serve_command`) with the agent and the console, and `--console/--no-console`
    beside `--agent/--no-agent`, so either can be left out alone.

    The pipelines layer knows neither; it takes a list of extensions. This builds the command once per choice and
    gives typer the pipelines command's options plus one.
    """
    commands = {
        (with_agent, with_console): serve_command(extensions=[e for e, on in ((agent, with_agent), (attach_console, with_console)) if on])
        for with_agent in (True, False)
        for with_console in (True, False)
    }
    base = commands[(True, True)]

    def serve(*, console: bool = True, agent: bool = True, **options: Any) -> None:
        # agent=True: the chosen command's extension list already leaves out what --no-agent asked to leave out.
        commands[(agent, console)](agent=True, **options)

    functools.update_wrapper(serve, base)
    option = Annotated[bool, typer.Option(help=CONSOLE_OPTION_HELP)]
    serve.__annotations__ = {**base.__annotations__, "console": option}
    signature = inspect.signature(base, eval_str=True)
    extra = inspect.Parameter("console", inspect.Parameter.KEYWORD_ONLY, default=True, annotation=option)
    params = list(signature.parameters.values())
    serve.__signature__ = signature.replace(parameters=[*params, extra])  # type: ignore[attr-defined]
    return serve
