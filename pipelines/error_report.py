"""What `dataops` prints when a command fails: one line a person can act on, or, for a bug, where to look.

`ReportingGroup` is the CLI's top-level command group. Whatever a command raises passes through `explain`:

- an error a person can fix (every `DataOpsError`, an invalid setting, a service that does not answer, a
  read-only DATAOPS_HOME, a missing database driver) becomes ``error: <one line>`` on stderr and exit 2;
- anything else is a bug: ``internal error: <type>: <message>`` and exit 1, with the traceback only when
  DATAOPS_DEBUG=1 or ``dataops --debug`` asked for it;
- except a closed standard output (``dataops ... | head``): the reader chose to stop, so nothing is printed
  and the exit is 1, click's rule for it.

Every line goes through `config.redact.redact` (the CLI's consoles write through it too), so no message
prints a credential, whichever library wrote it.
"""

from __future__ import annotations

import errno
import os
import traceback
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from config.errors import DataOpsError
from config.redact import redact
from pipelines.help_text import reflow_commands

if TYPE_CHECKING:
    from config.settings import DataopsSettings

EXIT_FAILED = 1
EXIT_USAGE = 2
_DRIVERS = ("psycopg", "psycopg2", "pymysql", "mysqlclient", "pg8000", "asyncpg")


class Debug:
    """Whether tracebacks of bugs are shown: `dataops --debug` sets `on`; DATAOPS_DEBUG=1 works without it."""

    on = False

    @classmethod
    def wanted(cls) -> bool:
        return cls.on or os.environ.get("DATAOPS_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _settings() -> DataopsSettings | None:
    from config.settings import load_settings

    try:
        return load_settings()
    except DataOpsError:
        return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def explain(exc: BaseException) -> str | None:
    """One line for an error a person can fix; None for a bug."""
    if isinstance(exc, DataOpsError):
        return str(exc)
    if type(exc).__name__ == "ValidationError":  # pydantic's, imported only when one is raised
        from pydantic import ValidationError

        from config.invalid_settings import describe_invalid
        from config.settings import SECRET_SETTINGS, DataopsSettings

        if isinstance(exc, ValidationError) and exc.title == DataopsSettings.__name__:
            return describe_invalid(exc, DataopsSettings, SECRET_SETTINGS)
    for cause in _chain(exc):
        said = _explain_one(cause)
        if said is not None:
            return said
    return None


def _explain_one(exc: BaseException) -> str | None:
    if isinstance(exc, ModuleNotFoundError) and exc.name in _DRIVERS:
        return (
            f"the database driver {exc.name!r} is not installed: install it, or name an installed one in "
            "DATAOPS_OPS_DB_URL / DATAOPS_CATALOG_URI (postgresql+psycopg2://...; pip install 'dataops[postgres]')"
        )
    if _is_home_write_error(exc):
        settings = _settings()
        home = settings.home.resolve() if settings else None
        filename = getattr(exc, "filename", None)
        if filename and home is not None and not str(os.path.abspath(filename)).startswith(str(home)):
            return f"cannot write {filename} ({_first_line(exc)}); fix its permissions or the setting that names it"
        return (
            f"DATAOPS_HOME={home or '(unset)'} is not writable ({_first_line(exc)}); "
            "point DATAOPS_HOME at a folder you can write, or fix its permissions"
        )
    kind = _service_failure(exc)
    if kind is None:
        return None
    from pipelines.reachability import endpoints

    settings = _settings()
    named = [e for e in endpoints(settings)] if settings is not None else []
    text = str(exc)
    matching = [e for e in named if e.host in text and str(e.port) in text] or [e for e in named if e.setting in kind[1]] or named
    where = ", ".join(f"{e.setting} at {e.address}" for e in matching) or " or ".join(kind[1])
    return f"{kind[0]} cannot be reached ({where}): {_first_line(exc)}; start that service or correct the setting"


def _service_failure(exc: BaseException) -> tuple[str, tuple[str, ...]] | None:
    """(what failed, the settings that name it) for a connection error of the ops database, the catalog or the object store."""
    module = type(exc).__module__
    if module.startswith("sqlalchemy") and type(exc).__name__ in ("OperationalError", "InterfaceError"):
        return "the database", ("DATAOPS_OPS_DB_URL", "DATAOPS_CATALOG_URI")
    if module.startswith(("requests", "urllib3")) and "Connection" in type(exc).__name__ + str(exc):
        return "the REST catalog", ("DATAOPS_REST_CATALOG_URI",)
    if module.startswith("botocore") and "Connect" in type(exc).__name__:
        return "the object store", ("DATAOPS_S3_ENDPOINT", "DATAOPS_WAREHOUSE")
    if isinstance(exc, OSError) and "AWS Error" in str(exc):
        return "the object store", ("DATAOPS_S3_ENDPOINT", "DATAOPS_WAREHOUSE")
    return None


def _is_home_write_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return True
    text = str(exc)
    return type(exc).__module__.startswith("sqlalchemy") and ("readonly database" in text or "unable to open database file" in text)


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is behind `exc` (its cause or context, or named in its message)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt) or "KeyboardInterrupt" in str(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class ReportingGroup(TyperGroup):
    """The top-level group: errors a person can fix exit 2 with one line; bugs exit 1 (traceback with --debug).

    Built with every command under it, it also rewraps all their help text (pipelines/help_text.py).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        reflow_commands(self)

    def invoke(self, ctx: Any) -> Any:  # ctx: typer's vendored click Context
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            raise  # the reader left (`dataops ... | head`): click's own rule exits 1 quietly; not a bug
        except Exception as exc:
            if _interrupted(exc):  # Ctrl-C that a library wrapped in its own error (pydantic while serialising)
                raise typer.Exit(130) from None
            console = Console(stderr=True, soft_wrap=True)
            said = explain(exc)
            if said is not None:
                console.print(f"[red]error:[/red] {escape(redact(said))}")
                raise typer.Exit(EXIT_USAGE) from None
            if Debug.wanted():
                console.print(escape(redact("".join(traceback.format_exception(exc)))), highlight=False)
            hint = "" if Debug.wanted() else " (DATAOPS_DEBUG=1 or `dataops --debug` shows the traceback)"
            console.print(f"[red]internal error:[/red] {escape(redact(f'{type(exc).__name__}: {_first_line(exc)}'))}; this is a bug{hint}")
            raise typer.Exit(EXIT_FAILED) from None
