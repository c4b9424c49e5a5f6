"""Source faults, declared: what a replayed API gets wrong, for which source, in which window, how many times.

A `SourceFault` only says what; `pipelines/fault_injection.py` holds the faults a context injects and serves
them, and `pipelines/faulty_responses.py` says how each kind changes a response body. Source faults act on the
replay path only (the bundled data as the APIs would serve it): a fault changes the response body or raises
the error a live API would cause.

A source fault acts on responses for chunks overlapping [start, end); the record kinds change only the
records whose slot starts inside it. `times`: act on this many fetches, then recover (None = always);
`outage` ignores it, `late_revision` serves the original for the first `times` fetches (default 1).
"503 three times, then recovers" is `{kind: transient_error, times: 3}`: every attempt counts, the
scheduler's retries (which the eval runner models as `serve` does) and the agent's re-runs alike.
The error faults carry their Retry-After on the error (`retry_after_s`), as the HTTP fetcher does.

    kind               parameters         what the source serves
    transient_error    times, [retry_after_s]   TransientSourceError: 503 Service Unavailable, with Retry-After when given
    rate_limited       times, [value]     TransientSourceError: 429 with Retry-After `value` s (default 60)
    late_slots         times              no records in the window (not published yet; a later fetch has them)
    outage             -                  no records in the window, on every fetch (backfill cannot fill it)
    null_burst         field              field null
    impossible_values  field, value       field set to value (e.g. -50 or 5000)
    duplicates         [field, value]     every record twice; the copy's field changed by value when given
    late_revision      field, value       field changed by value on fetches after the first `times`
    rename_field       field, new_name    field renamed in every record of the response, not just the window
    retype_field       field              field as a string ("250")
    unit_change        field, value       field multiplied by value (1000: g to mg, kW to W)
    local_time         [value]            Europe/London wall-clock times (see faulty_responses `_local_time`)
    stuck_sensor       field              field frozen at the window's first value
    volume_spike       value              `value` extra records per slot at finer grain (see faulty_responses `_volume_spike`)
    instruction_text   field, value       text in the field, e.g. an instruction aimed at the agent

"Changed by value" adds it to a number and replaces anything else. `field` is a dotted path in a record:
intensity.actual for NESO, temperature_2m for Open-Meteo. tests/test_faults.py pins how each kind
surfaces in the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FaultKind = Literal[
    "transient_error",
    "rate_limited",
    "late_slots",
    "outage",
    "null_burst",
    "impossible_values",
    "duplicates",
    "late_revision",
    "rename_field",
    "retype_field",
    "unit_change",
    "local_time",
    "stuck_sensor",
    "volume_spike",
    "instruction_text",
]
SOURCE_FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
MAX_SPIKE = 29  # extra records per slot; keeps the made-up slot starts distinct at whole minutes

_NEEDS_FIELD = frozenset(
    {"null_burst", "impossible_values", "late_revision", "rename_field", "retype_field", "unit_change", "stuck_sensor", "instruction_text"}
)


def is_number(value: Any) -> bool:
    """A JSON number, not a bool: what the arithmetic kinds take and change."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class SourceFault(BaseModel):
    """One fault at a source: what, where (source and window) and how many times."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind
    source: str
    start: datetime | None = Field(default=None, description="Only responses for chunks overlapping [start, end)")
    end: datetime | None = None
    times: int | None = Field(
        default=None, ge=0, description="Act on this many fetches, then recover; None = always. late_revision: revise after this many"
    )
    field: str | None = Field(default=None, description="Dotted path of the value acted on, e.g. intensity.actual or temperature_2m")
    new_name: str | None = Field(default=None, description="rename_field: the field's new leaf name")
    value: Any = Field(default=None, description="The value, change, factor, count or text the kind needs (see the module table)")
    retry_after_s: float | None = Field(
        default=None, ge=0, description="transient_error: the Retry-After (seconds) the 503 carries; rate_limited takes it as `value`"
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _day_is_midnight(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no time zone; fault windows are UTC instants, e.g. 2023-01-10T12:00Z")
        return None if value is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _parameters(self) -> SourceFault:
        kind = self.kind
        if self.start and self.end and self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        if kind in _NEEDS_FIELD and not self.field:
            raise ValueError(f"{kind} needs `field`, the dotted path of the value it changes (e.g. intensity.actual, temperature_2m)")
        if kind == "rename_field" and not self.new_name:
            raise ValueError("rename_field needs `new_name`, the field's new leaf name")
        if kind in _VALUES and not _VALUES[kind][0](self.value):
            raise ValueError(f"value: {kind} takes {_VALUES[kind][1]}, not {self.value!r}")
        if kind not in _VALUES and kind != "duplicates" and self.value is not None:
            raise ValueError(f"value: {kind} takes no value, not {self.value!r}")
        if kind == "duplicates" and (self.field is None) != (self.value is None):
            raise ValueError("duplicates takes `field` and `value` together (the copy's change), or neither (an exact copy)")
        if self.retry_after_s is not None and kind != "transient_error":
            hint = "; rate_limited takes its Retry-After as `value`" if kind == "rate_limited" else ""
            raise ValueError(f"retry_after_s: only transient_error takes it, not {kind}{hint}")
        if kind == "outage" and self.times is not None:
            raise ValueError("times: an outage never recovers; use late_slots for data that arrives on a later fetch")
        return self


# The `value` each kind takes: a check, and the words an error uses.
_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "impossible_values": (lambda v: v is not None, "what the field is set to, e.g. -50 or 5000"),
    "late_revision": (is_number, "a number, the change the revision adds, e.g. 10"),
    "unit_change": (is_number, "a number, the factor, e.g. 1000 for g to mg"),
    "volume_spike": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SPIKE,
        f"a whole number of extra records per slot, 1 to {MAX_SPIKE}",
    ),
    "instruction_text": (lambda v: isinstance(v, str), "the text put in the field"),
    "rate_limited": (lambda v: v is None or is_number(v), "nothing or the Retry-After seconds (default 60)"),
    "local_time": (lambda v: v in (None, "mislabelled"), "nothing, or 'mislabelled' to keep the GMT label"),
}
