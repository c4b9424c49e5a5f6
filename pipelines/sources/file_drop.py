"""File drop connector: JSON, CSV or Parquet files of annual country intensities.

Every file in the drop folder is read on every run (landing is idempotent on the payload hash). A file that
cannot be read against the contract is not guessed at: it becomes one quarantine record naming the file,
the line and what is wrong, and the other files still land.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.inventory import SourceSpec
from pipelines.sources import replay
from pipelines.sources.base import FetchResult, RecordProblem, SourceRecord, Window, canonical_json

_MAX_ORIGINAL = 65536
SUFFIXES = (".json", ".csv", ".parquet")


class FileFormatError(ValueError):
    """A dropped file does not follow the contract."""


def _records_from_json(text: str) -> list[Any]:
    data = json.loads(text)
    if isinstance(data, dict):
        return list(data.values())
    if isinstance(data, list):
        return data
    raise FileFormatError(f"top level is {type(data).__name__}; expected an object of records or a list of records")


def _records_from_csv(text: str, contract: tuple[str, ...]) -> list[Any]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise FileFormatError("file is empty") from None
    missing = [c for c in contract if c not in header]
    if missing:
        shown = [h.replace("\n", " ") for h in header]
        raise FileFormatError(f"header (line 1) is {shown}; missing required column(s) {', '.join(missing)}")
    rows = []
    for line_no, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise FileFormatError(f"line {line_no} has {len(row)} fields; the header has {len(header)}")
        rows.append(dict(zip(header, row, strict=True)))
    return rows


def _records_from_parquet(path: Path) -> list[Any]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


class FileDropSource:
    def __init__(self, spec: SourceSpec, *, folder: Path, include_bundled: bool) -> None:
        self.spec = spec
        self._folder = folder
        self._include_bundled = include_bundled

    def files(self) -> list[Path]:
        found = sorted(p for p in self._folder.glob("*") if p.suffix.lower() in SUFFIXES and p.is_file()) if self._folder.is_dir() else []
        return ([replay.ember_file()] if self._include_bundled else []) + found

    def fetch(self, window: Window, *, as_of: datetime) -> FetchResult:
        """Every record of every file; the window does not apply (files carry their own years)."""
        result = FetchResult()
        for path in self.files():
            result.requests += 1
            uri = path.resolve().as_uri()
            try:
                if path.suffix.lower() == ".parquet":
                    rows = _records_from_parquet(path)
                else:
                    text = path.read_text(encoding="utf-8-sig")
                    rows = _records_from_json(text) if path.suffix.lower() == ".json" else _records_from_csv(text, self.spec.contract)
            except (FileFormatError, json.JSONDecodeError, UnicodeDecodeError, OSError, ValueError) as exc:
                raw = path.read_bytes()[:_MAX_ORIGINAL].decode("utf-8", "replace")
                result.problems.append(
                    RecordProblem(
                        record_key=path.name,
                        check="file_format",
                        reason=f"{path.name}: {exc}",
                        original=raw,
                        source_uri=uri,
                    )
                )
                continue
            for index, row in enumerate(rows):
                record = row if isinstance(row, dict) else {"value": row}
                key = f"{path.name}#{index}"
                lacking = [c for c in self.spec.contract if c not in record]
                year = record.get("year")
                try:
                    if lacking:
                        raise FileFormatError(f"record {index} lacks {', '.join(lacking)}")
                    ts = datetime(int(year), 1, 1, tzinfo=UTC)  # type: ignore[arg-type]
                except (FileFormatError, TypeError, ValueError) as exc:
                    result.problems.append(
                        RecordProblem(
                            record_key=key,
                            check="payload_contract",
                            reason=f"{path.name}: {exc}",
                            original=canonical_json(record),
                            source_uri=uri,
                        )
                    )
                    continue
                name = str(record["country_or_region"])
                result.records.append(SourceRecord(ts=ts, record_key=f"{name}", payload=record, source_uri=uri))
        return result
