"""Records of a drop-folder fetch staged on disk by day, so a run lands them a bounded group of days at a time.

A 1 GB file is 30 million records: as Python objects they would not fit the memory a run may use. The fetch
writes each record's bronze columns (ts, record_key, payload, payload_hash, source_uri) to Arrow IPC files,
one folder per UTC day, and the run reads back a group of days at a time. Whole days stay together because
everything that compares records does so within a day: exact repeats and conflicting duplicates share their
(ts, record_key), and silver is rewritten a day partition at a time.

A file's records are staged apart until all of the file has been read (`FileStage.commit`): a file that
fails half-way, or changes while being read, leaves nothing behind (`FileStage.discard`).

The staging folder lives under `DATAOPS_HOME/staging/` and is removed when the run ends; a folder whose
process died is removed by the next staged fetch.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from pipelines.ledger import pid_alive

STAGE_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("record_key", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
        pa.field("payload_hash", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
    ]
)
FLUSH_ROWS = 100_000  # records a file's stage buffers before writing them out
GROUP_ROWS = 25_000  # records a run works at once: a group of days, or a part of a bigger day (pipelines/staged_promotion.py)
_COMPRESSED = ipc.IpcWriteOptions(compression="zstd")  # uncompressed, the staged columns take 8 times the CSV on disk


def clear_stale(parent: Path) -> None:
    """Remove staging folders whose process is gone (a run killed before it could clean up)."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        pid = entry.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


class StagedRecords:
    """The staged records of one fetch: the days they fall on, and each day's records as Arrow."""

    def __init__(self, folder: Path, *, flush_rows: int | None = None) -> None:
        self.folder = folder
        self.flush_rows = flush_rows or FLUSH_ROWS
        self.counts: dict[datetime, int] = {}
        self._dirs: dict[datetime, str] = {}
        self._stages = 0
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def days(self) -> list[datetime]:
        return sorted(self.counts)

    def stage_file(self) -> FileStage:
        self._stages += 1
        return FileStage(self, self.folder / f"pending-{self._stages}")

    def groups(self, max_rows: int | None = None) -> list[list[datetime]]:
        """Consecutive days in groups of at most `max_rows` (default `GROUP_ROWS`) records; a day with more is a group alone."""
        max_rows = max_rows or GROUP_ROWS
        groups: list[list[datetime]] = []
        size = max_rows
        for day in self.days():
            if size + self.counts[day] > max_rows:
                groups.append([])
                size = 0
            groups[-1].append(day)
            size += self.counts[day]
        return groups

    def parts(self, days: list[datetime]) -> Iterator[pa.Table]:
        """The staged records of `days` as written, one flushed part at a time (at most `flush_rows` records each)."""
        for day in days:
            folder = self.folder / "days" / self._dirs[day] if day in self._dirs else None
            if folder is None or not folder.is_dir():
                continue
            for part in sorted(folder.iterdir(), key=lambda p: int(p.stem)):
                with pa.memory_map(str(part)) as source:
                    # Copied out of the memory map so the files can be removed while the table lives.
                    yield ipc.open_file(source).read_all().combine_chunks()

    def read(self, days: list[datetime]) -> pa.Table:
        """The staged records of `days`, in the order they were read."""
        tables = list(self.parts(days))
        return pa.concat_tables(tables).combine_chunks() if tables else STAGE_SCHEMA.empty_table()

    def _adopt(self, pending: Path, counts: dict[datetime, int]) -> None:
        for day, rows in counts.items():
            name = self._dirs.setdefault(day, f"d{len(self._dirs)}")
            target = self.folder / "days" / name
            target.mkdir(parents=True, exist_ok=True)
            start = len(list(target.iterdir()))
            for index, part in enumerate(sorted((pending / name).iterdir(), key=lambda p: int(p.stem))):
                part.rename(target / f"{start + index}.arrow")
            self.counts[day] = self.counts.get(day, 0) + rows
        shutil.rmtree(pending, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class FileStage:
    """The records of one file being read; they join the fetch's staged records only on `commit`."""

    def __init__(self, staged: StagedRecords, folder: Path) -> None:
        self._staged = staged
        self._folder = folder
        self._buffers: dict[datetime, list[list[object]]] = {}
        self._buffered = 0
        self._parts: dict[datetime, int] = {}
        self.counts: dict[datetime, int] = {}

    def add(self, *, ts: datetime, record_key: str, payload: str, payload_hash: str, source_uri: str) -> None:
        day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
        columns = self._buffers.get(day)
        if columns is None:
            columns = self._buffers[day] = [[], [], [], [], []]
        for column, value in zip(columns, (ts, record_key, payload, payload_hash, source_uri), strict=True):
            column.append(value)
        self.counts[day] = self.counts.get(day, 0) + 1
        self._buffered += 1
        if self._buffered >= self._staged.flush_rows:
            self._flush()

    def _flush(self) -> None:
        for day, columns in self._buffers.items():
            name = self._staged._dirs.get(day) or self._staged._dirs.setdefault(day, f"d{len(self._staged._dirs)}")
            folder = self._folder / name
            folder.mkdir(parents=True, exist_ok=True)
            index = self._parts.get(day, 0)
            self._parts[day] = index + 1
            batch = pa.RecordBatch.from_arrays(
                [pa.array(c, type=f.type) for c, f in zip(columns, STAGE_SCHEMA, strict=True)], schema=STAGE_SCHEMA
            )
            with ipc.new_file(str(folder / f"{index}.arrow"), STAGE_SCHEMA, options=_COMPRESSED) as writer:
                writer.write_batch(batch)
        self._buffers.clear()
        self._buffered = 0

    def commit(self) -> None:
        """The whole file was read: its records join the fetch."""
        self._flush()
        self._staged._adopt(self._folder, self.counts) if self.counts else shutil.rmtree(self._folder, ignore_errors=True)

    def discard(self) -> None:
        """The file did not read to its end: forget every record of it."""
        self._buffers.clear()
        self.counts.clear()
        shutil.rmtree(self._folder, ignore_errors=True)
