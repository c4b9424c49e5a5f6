"""What every `dataops` command shares: the two consoles, JSON output, errors as exit codes, the platform.

Importing this costs next to nothing (typer, rich and the standard library): `dataops --help` imports every
command module, and a command imports the heavy libraries it needs (pyiceberg, Great Expectations, the
agent) inside its own body. `tests/test_cli_startup.py` holds the command modules to that.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, cast

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from config.errors import DataOpsError
from config.redact import RedactingStream, redact
from pipelines.error_report import EXIT_FAILED, EXIT_USAGE

if TYPE_CHECKING:
    from config.settings import DataopsSettings
    from pipelines.context import PlatformContext

EXIT_QUARANTINED = 3
__all__ = ["EXIT_FAILED", "EXIT_QUARANTINED", "EXIT_USAGE", "console", "emit_json", "fail", "open_context", "out", "parse_instant"]

# Everything the CLI prints passes through config/redact.py: a library's message may carry a credential.
console = Console(file=cast(IO[str], RedactingStream("stderr")))
# On a terminal, its width. Piped (`dataops incidents | grep escalated`), wide enough that no table cell is cut
# to "escala…" and no line is wrapped, unless COLUMNS says otherwise.
PIPED_WIDTH = 240


class _Output(Console):
    """stdout's console. Its width is decided when it prints, not when the module is imported: a process that
    sets COLUMNS later (a test runner's worker, a CLI invoked in-process) is honoured."""

    def _current_size(self) -> ConsoleDimensions:
        if not sys.stdout.isatty():
            columns = os.environ.get("COLUMNS", "")
            self._width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH
        return Console.size.fget(self)  # type: ignore[attr-defined,no-any-return]

    size = property(_current_size, Console.size.fset)  # type: ignore[attr-defined]


out = _Output(file=cast(IO[str], RedactingStream("stdout")))


def emit_json(payload: Any) -> None:
    sys.stdout.write(redact(json.dumps(payload, indent=2, default=str)) + "\n")


def fail(message: str, code: int, *, label: str = "error") -> typer.Exit:
    """Print `label: message` as one line on stderr; return the Exit to raise."""
    console.print(f"[red]{label}:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def parse_instant(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO date or instant (e.g. 2023-01-01 or 2023-01-01T06:00Z)", param_hint=option
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@contextmanager
def usage_errors() -> Iterator[None]:
    """Report a DataOpsError (unknown name, bad value) as a usage error: message on stderr, exit 2."""
    try:
        yield
    except DataOpsError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def open_context(settings: DataopsSettings | None = None) -> PlatformContext:
    """The platform, after checking that DATAOPS_HOME is writable and every configured service answers (else exit 2)."""
    from config.settings import load_settings
    from pipelines.context import PlatformContext
    from pipelines.reachability import check_home, check_services

    with usage_errors():
        settings = settings or load_settings()
        check_home(settings)
        check_services(settings)
        return PlatformContext.open(settings)
