"""The one error tree of the platform.

Every error the platform raises on purpose derives from `DataOpsError`, and every message names the
bad value and what the reader can do next::

    DataOpsError
    ├── DefinitionError          a declaration in config/ is wrong (raised when the inventory loads)
    ├── SettingsError            a setting is missing or malformed
    │   ├── UnreachableError         a service a setting names (catalog, ops database, object store) does not answer
    │   └── HomeNotWritableError     DATAOPS_HOME cannot be written
    ├── SourceError              fetching from a source went wrong
    │   ├── TransientSourceError     5xx, 429, timeouts, connection resets: worth a retry
    │   └── PermanentSourceError     4xx, exhausted retries: retrying will not help
    │       ├── PayloadError             the body is not what the contract says (truncated JSON, bad types)
    │       └── SchemaDriftError         a field was renamed, removed or retyped
    ├── LakehouseError           the Iceberg side refused
    │   └── PublishConflictError     main moved away from the audited snapshot's ancestry
    ├── PipelineError            a promotion could not complete
    ├── QueryError               a query over the lake failed
    │   ├── QueryRefusedError        the statement is not a read
    │   ├── QuerySqlError            the SQL is empty, does not parse, or names what is not there
    │   │   └── QueryArgumentError       an argument besides the SQL is out of range (a negative row limit)
    │   └── QueryLimitError          the statement ran past DATAOPS_QUERY_TIMEOUT_S or DATAOPS_QUERY_MEMORY_LIMIT
    ├── ToolError                a tool refused or failed; the message is shown to the model
    ├── PolicyError              the policy file is invalid, or a decision cannot be taken
    ├── ApprovalError            an approval decision was refused (unknown id, not an approver, already decided)
    ├── IdentityError            the caller is not a known person, or names someone they are not
    ├── MemoryStoreError         the incident memory cannot be opened or searched
    └── ModelError               the model endpoint failed or answered something unusable
"""

from __future__ import annotations


class DataOpsError(Exception):
    """Base of every error the platform raises on purpose."""


class DefinitionError(DataOpsError):
    """A declaration in config/ is invalid; raised when the inventory loads."""


class SettingsError(DataOpsError):
    """A setting is missing or malformed."""


class UnreachableError(SettingsError):
    """A service named by a setting does not answer at its address; `setting` names the environment variable."""

    def __init__(self, message: str, *, setting: str, address: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.address = address


class HomeNotWritableError(SettingsError):
    """DATAOPS_HOME (or a folder in it) cannot be created or written."""


class SourceError(DataOpsError):
    """Fetching from a source failed."""


class TransientSourceError(SourceError):
    """A failure that a later retry may not see (5xx, 429, timeout, reset connection).

    `retry_after_s` is the wait the source asked for (its Retry-After header), when it sent one.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentSourceError(SourceError):
    """A failure that retrying will not fix."""


class PayloadError(PermanentSourceError):
    """The payload does not match the source's contract."""


class SchemaDriftError(PayloadError):
    """Fields of the payload were renamed, removed or retyped against the declared contract."""

    def __init__(self, message: str, *, missing: list[str], unexpected: list[str]) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected


class LakehouseError(DataOpsError):
    """The catalog or a table refused an operation."""


class PublishConflictError(LakehouseError):
    """`main` is no longer an ancestor of the audited snapshot, so publishing would lose a commit."""


class PipelineError(DataOpsError):
    """A promotion could not complete."""


class QueryError(DataOpsError):
    """A query over the lake failed."""


class QueryRefusedError(QueryError):
    """The statement is not a read; the query tool only reads."""


class QuerySqlError(QueryError):
    """The SQL itself is wrong: it does not parse, or names a table, column or function that is not there, or
    mixes types. The person asking can fix it (the CLI exits 2); a failure reading the lake is a `QueryError`."""


class QueryArgumentError(QuerySqlError):
    """An argument of the query besides its SQL is out of range (a negative row limit). A kind of QuerySqlError so
    that whatever reports the asker's mistakes in SQL (the CLI's exit 2, the query tool's message) reports it too."""


class QueryLimitError(QueryError):
    """The statement was interrupted at a limit: `setting` is the one that stopped it (timeout or memory)."""

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class ToolError(DataOpsError):
    """A tool refused its input or failed; the message is shown to the model, so it says what to try instead."""


class PolicyError(DataOpsError):
    """The policy file is invalid, or a decision cannot be taken."""


class ApprovalError(DataOpsError):
    """An approval decision was refused: unknown request, not an approver, already decided or expired."""


class IdentityError(DataOpsError):
    """The caller could not be resolved to a person (unknown login, bad token), or named a person they are not (`--as`)."""


class MemoryStoreError(DataOpsError):
    """The incident memory cannot be opened or searched."""


class ModelError(DataOpsError):
    """The model endpoint failed or answered something the agent cannot use."""
