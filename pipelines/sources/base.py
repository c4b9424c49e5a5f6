"""What every source connector produces: keyed records as received, and the problems it met."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.errors import SchemaDriftError
from config.inventory import SourceSpec
from pipelines.sources.drop_staging import StagedRecords


class Window(BaseModel):
    """A half-open UTC interval [start, end)."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no time zone; windows are UTC instants")
        return value.astimezone(UTC)

    def model_post_init(self, __context: Any) -> None:
        if self.end <= self.start:
            raise ValueError(f"window end {self.end.isoformat()} is not after its start {self.start.isoformat()}")

    def chunks(self, days: int) -> Iterator[Window]:
        """Consecutive sub-windows no longer than `days`."""
        cursor = self.start
        while cursor < self.end:
            stop = min(cursor + timedelta(days=days), self.end)
            yield Window(start=cursor, end=stop)
            cursor = stop

    def days(self) -> list[datetime]:
        """Start of every UTC day the window touches."""
        day = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        out = []
        while day < self.end:
            out.append(day)
            day += timedelta(days=1)
        return out

    def contains(self, ts: datetime) -> bool:
        return self.start <= ts < self.end

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def canonical_json(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class SourceRecord(BaseModel):
    """One record as received, keyed by its slot start and an identity within the slot."""

    model_config = ConfigDict(frozen=True)

    ts: datetime
    record_key: str
    payload: dict[str, Any]
    source_uri: str

    @property
    def payload_json(self) -> str:
        return canonical_json(self.payload)

    @property
    def payload_hash(self) -> str:
        return hashlib.sha256(self.payload_json.encode()).hexdigest()


class RecordProblem(BaseModel):
    """A record that could not be keyed or read; it goes to quarantine with its original text."""

    ts: datetime | None = None
    record_key: str
    check: str = Field(description="short name of what failed, e.g. payload_contract")
    reason: str
    original: str
    source_uri: str


class DropFile(BaseModel):
    """One version of one dropped file, as a fetch read it (see pipelines/sources/drop_manifest.py)."""

    model_config = ConfigDict(frozen=True)

    source: str
    name: str
    sha256: str
    size: int
    mtime_ns: int
    inode: int
    outcome: str = Field(description="landed, quarantined (unreadable) or same_content (another file had these bytes)")


class FetchResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    records: list[SourceRecord] = Field(default_factory=list)
    staged: StagedRecords | None = Field(
        default=None, description="records staged on disk by day instead of held in `records` (a drop-folder `stage`)"
    )
    problems: list[RecordProblem] = Field(default_factory=list)
    files: list[DropFile] = Field(
        default_factory=list, description="dropped files read; the run records them as ingested once their rows are landed"
    )
    requests: int = 0
    retries: int = 0

    def extend(self, other: FetchResult) -> None:
        self.records.extend(other.records)
        self.problems.extend(other.problems)
        self.files.extend(other.files)
        self.requests += other.requests
        self.retries += other.retries


class Source(Protocol):
    """A connector: fetches the records of a window as known at `as_of`."""

    spec: SourceSpec

    def fetch(self, window: Window, *, as_of: datetime) -> FetchResult: ...


def lookup(record: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """Value at a dotted path, and whether the path exists."""
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _paths(record: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in record.items():
        path = f"{prefix}{key}"
        out.add(path)
        if isinstance(value, dict):
            out |= _paths(value, path + ".")
    return out


def check_contract(spec: SourceSpec, records: list[dict[str, Any]], source_uri: str) -> tuple[list[dict[str, Any]], list[RecordProblem]]:
    """Split records into those carrying every contract field and those that do not.

    When no record carries a contract field the payload itself changed shape: that is schema drift,
    raised as `SchemaDriftError` naming the missing and the unexpected fields.
    """
    if not records:
        return [], []
    missing_everywhere = [f for f in spec.contract if not any(lookup(r, f)[0] for r in records)]
    if missing_everywhere:
        seen = set().union(*(_paths(r) for r in records[:50]))
        expected_roots = {f.split(".")[0] for f in spec.contract} | set(spec.contract)
        unexpected = sorted(p for p in seen if p not in expected_roots and not any(c.startswith(p + ".") for c in spec.contract))
        raise SchemaDriftError(
            f"{spec.name}: payload from {source_uri} lacks contract field(s) {', '.join(missing_everywhere)}"
            + (f"; it carries unexpected field(s) {', '.join(unexpected)}" if unexpected else "")
            + f". The declared contract is {', '.join(spec.contract)} (config/sources.yaml): "
            "update the contract and the conform step together, or fix the source.",
            missing=missing_everywhere,
            unexpected=unexpected,
        )
    good, problems = [], []
    for record in records:
        lacking = [f for f in spec.contract if not lookup(record, f)[0]]
        if lacking:
            problems.append(
                RecordProblem(
                    record_key=str(record.get("from") or record.get("time") or "?"),
                    check="payload_contract",
                    reason=f"record lacks contract field(s) {', '.join(lacking)}",
                    original=canonical_json(record),
                    source_uri=source_uri,
                )
            )
        else:
            good.append(record)
    return good, problems


def parse_instant(text: Any, *, field: str) -> datetime:
    """Parse an ISO instant such as 2023-01-01T00:30Z; naive values are refused, not guessed."""
    if not isinstance(text, str):
        raise ValueError(f"{field} {text!r} is not an ISO timestamp string")
    value = text.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field} {text!r} is not an ISO timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{field} {text!r} has no UTC offset; refusing to guess a time zone")
    return parsed.astimezone(UTC)


def dedupe_records(records: Iterable[SourceRecord]) -> list[SourceRecord]:
    """Drop exact repeats (same key and payload) a chunked fetch can return twice."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in records:
        marker = (r.record_key, r.payload_hash)
        if marker not in seen:
            seen.add(marker)
            out.append(r)
    return out


CONFLICTING_DUPLICATE = "conflicting_duplicate"


def _leaves(payload: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(payload, dict) and payload:
        out: dict[str, Any] = {}
        for key, value in payload.items():
            out |= _leaves(value, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): payload}


class ConflictingDuplicate(BaseModel):
    """Records of one fetch with the same slot and key but different values.

    Nothing says which copy is right, so none is published: every copy goes to quarantine with the fields
    that differ, and bronze keeps them all as received (the conform step publishes no revision of a key
    whose latest run holds more than one payload; see `latest_revisions` in pipelines/transforms/conform.py).
    """

    model_config = ConfigDict(frozen=True)

    ts: datetime
    record_key: str
    copies: tuple[SourceRecord, ...]

    @property
    def fields(self) -> list[str]:
        """Dotted paths whose values differ between the copies (present in one and absent in another counts)."""
        leaves = [_leaves(c.payload) for c in self.copies]
        paths = sorted(set().union(*leaves))
        return [p for p in paths if len({canonical_json(leaf.get(p, "<absent>")) for leaf in leaves}) > 1]

    def reason(self) -> str:
        leaves = [_leaves(c.payload) for c in self.copies]
        shown = "; ".join(f"{p}: {' vs '.join(canonical_json(leaf.get(p)) for leaf in leaves)}" for p in self.fields[:3])
        more = f" and {len(self.fields) - 3} more field(s)" if len(self.fields) > 3 else ""
        return (
            f"{len(self.copies)} records for key {self.record_key} at {self.ts.isoformat()} arrived in one fetch with different "
            f"values ({shown}{more}); none is published: fix the source or drop a file with one value per key"
        )

    def problems(self) -> list[RecordProblem]:
        return [
            RecordProblem(
                ts=self.ts,
                record_key=self.record_key,
                check=CONFLICTING_DUPLICATE,
                reason=self.reason(),
                original=c.payload_json,
                source_uri=c.source_uri,
            )
            for c in self.copies
        ]


def find_conflicts(records: Iterable[SourceRecord]) -> list[ConflictingDuplicate]:
    """Groups of records with the same (ts, record_key) and more than one payload; exact repeats are not conflicts."""
    groups: dict[tuple[datetime, str], dict[str, SourceRecord]] = {}
    for r in records:
        groups.setdefault((r.ts, r.record_key), {}).setdefault(r.payload_hash, r)
    return [
        ConflictingDuplicate(ts=ts, record_key=key, copies=tuple(copies.values()))
        for (ts, key), copies in groups.items()
        if len(copies) > 1
    ]
