"""File drop connector: JSON, CSV or Parquet files of annual country intensities.

The drop folder reads only itself:

- every entry is opened relative to the folder with `O_NOFOLLOW`, and the open file must be a regular file
  with one link whose resolved path is inside the folder: a symlink (to a file or a directory), a hard
  link, a FIFO or a device is refused and reported as a quarantine row naming the reason, without its
  content (what is behind a link is never read);
- hidden and in-progress files (`.*`, `*.tmp`, `*.part`) and sub-folders are skipped with a logged reason;
- a file over `DATAOPS_DROP_MAX_BYTES` is quarantined unread, with its size;
- each file is ingested once: the manifest (pipelines/sources/drop_manifest.py) skips content a finished
  run already landed, under any name; a changed file is a new version;
- files are read streaming (pipelines/sources/drop_formats.py); any exception while reading one file,
  `RecursionError` and `MemoryError` included, quarantines that file with its reason and the others land;
- `stage` (what a run uses) writes the records to disk by day as they are read
  (pipelines/sources/drop_staging.py) instead of holding them, so a run lands a file of any size allowed in
  bounded memory; `fetch` holds them (for callers that compare a few records).

A file that cannot be read against the contract is not guessed at: it becomes one quarantine record naming
the file and what is wrong (with its first 64 KiB), and none of its records land. So does a file with more
than `MAX_RECORD_PROBLEMS` records that cannot be keyed: past that it is the wrong file, not a few bad rows.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from config.inventory import SourceSpec
from pipelines.sources import replay
from pipelines.sources.base import DropFile, FetchResult, RecordProblem, SourceRecord, Window, canonical_json
from pipelines.sources.drop_formats import FileFormatError, csv_records, json_records, parquet_records
from pipelines.sources.drop_manifest import DropManifest
from pipelines.sources.drop_staging import FileStage, StagedRecords, clear_stale

log = logging.getLogger(__name__)

_MAX_ORIGINAL = 65536
_HASH_CHUNK = 1 << 20
SUFFIXES = (".json", ".csv", ".parquet")
IN_PROGRESS_SUFFIXES = (".tmp", ".part")
REFUSED = "file_refused"
TOO_LARGE = "file_too_large"
MAX_RECORD_PROBLEMS = 10_000  # records of one file that cannot be keyed before the whole file is refused


class _Refused(Exception):
    """An entry the drop folder will not open; the message says why."""


def skip_reason(name: str) -> str | None:
    """Why a folder entry is not a file to read, or None when it is."""
    if name.startswith("."):
        return "hidden file"
    if name.lower().endswith(IN_PROGRESS_SUFFIXES):
        return "in-progress upload (*.tmp, *.part): rename it when complete"
    if not name.lower().endswith(SUFFIXES):
        return f"not a data file (suffixes read: {', '.join(SUFFIXES)})"
    return None


def _open_inside(root: Path, root_fd: int, name: str) -> int:
    """A read descriptor for the regular, singly-linked file `name` directly inside `root`, or `_Refused`."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=root_fd)
    except OSError as exc:
        if os.path.islink(root / name):
            raise _Refused("symbolic link: the drop folder never follows links; copy the file in instead") from None
        raise _Refused(f"cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Refused("not a regular file (a FIFO, socket or device)")
        if st.st_nlink > 1:
            raise _Refused(f"hard link ({st.st_nlink} names for one file): copy the file in instead of linking it")
        if not Path(os.path.realpath(root / name)).is_relative_to(root):
            raise _Refused("resolves outside the drop folder")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileFormatError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return f"nested too deeply to read (RecursionError: {exc})"
    if isinstance(exc, MemoryError):
        return "ran out of memory while reading (MemoryError): split the file or lower its record size"
    return f"{type(exc).__name__}: {exc}"


class FileDropSource:
    def __init__(
        self, spec: SourceSpec, *, folder: Path, include_bundled: bool, manifest: DropManifest | None = None, max_bytes: int = 2 * 1024**3
    ) -> None:
        self.spec = spec
        self._folder = folder
        self._include_bundled = include_bundled
        self._manifest = manifest
        self._max_bytes = max_bytes

    def entries(self) -> list[str]:
        """Names in the folder, sorted; what each is gets checked when it is opened."""
        if not self._folder.is_dir():
            return []
        with os.scandir(self._folder) as found:
            return sorted(entry.name for entry in found)

    def fetch(self, window: Window, *, as_of: datetime) -> FetchResult:
        """The records of every file not ingested before; the window does not apply (files carry their own years)."""
        return self._fetch(FetchResult())

    def stage(self, window: Window, *, as_of: datetime, folder: Path) -> FetchResult:
        """What `fetch` returns, with the records staged on disk under `folder` (`result.staged`) instead of held.

        The caller owns the staged records and closes them (`result.staged.close()`) when it has landed them.
        """
        clear_stale(folder.parent)
        staged = StagedRecords(folder)
        try:
            return self._fetch(FetchResult(staged=staged))
        except BaseException:
            staged.close()
            raise

    def _fetch(self, result: FetchResult) -> FetchResult:
        hashes: dict[str, str] = {}  # content hash -> name, within this fetch
        if self._include_bundled:
            bundled = replay.ember_file()
            with bundled.open("rb") as stream:
                self._read_file(result, hashes, stream, name=bundled.name, uri=bundled.resolve().as_uri())
        if not self._folder.is_dir():
            return result
        root = self._folder.resolve()
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in self.entries():
                self._fetch_entry(result, hashes, root, root_fd, name)
        finally:
            os.close(root_fd)
        return result

    def _fetch_entry(self, result: FetchResult, hashes: dict[str, str], root: Path, root_fd: int, name: str) -> None:
        uri = (root / name).as_uri()
        if os.path.islink(root / name):
            self._refuse(result, name, uri, "symbolic link: the drop folder never follows links; copy the file in instead")
            return
        if (root / name).is_dir():
            log.info("%s: skipped %s: a sub-folder (only files directly in the drop folder are read)", self.spec.name, name)
            return
        why = skip_reason(name)
        if why:
            log.info("%s: skipped %s: %s", self.spec.name, name, why)
            return
        try:
            fd = _open_inside(root, root_fd, name)
        except _Refused as exc:
            self._refuse(result, name, uri, str(exc))
            return
        with os.fdopen(fd, "rb") as stream:
            self._read_file(result, hashes, stream, name=name, uri=uri)

    def _refuse(self, result: FetchResult, name: str, uri: str, reason: str) -> None:
        log.warning("%s: refused %s: %s", self.spec.name, name, reason)
        result.requests += 1
        result.problems.append(
            RecordProblem(
                record_key=name,
                check=REFUSED,
                reason=f"{name}: {reason}",
                original=canonical_json({"file": name, "refused": reason, "content": "not read"}),
                source_uri=uri,
            )
        )

    def _read_file(self, result: FetchResult, hashes: dict[str, str], stream: IO[bytes], *, name: str, uri: str) -> None:
        before = os.fstat(stream.fileno())
        if before.st_size > self._max_bytes:
            reason = f"{name}: {before.st_size:,} bytes is over the limit of {self._max_bytes:,} (DATAOPS_DROP_MAX_BYTES): split it or raise the limit"
            log.warning("%s: %s", self.spec.name, reason)
            original = canonical_json({"file": name, "size": before.st_size, "limit": self._max_bytes, "content": "not read"})
            result.problems.append(RecordProblem(record_key=name, check=TOO_LARGE, reason=reason, original=original, source_uri=uri))
            return
        if self._manifest and self._manifest.known_fingerprint(
            source=self.spec.name, name=name, size=before.st_size, mtime_ns=before.st_mtime_ns, inode=before.st_ino
        ):
            log.debug("%s: %s was ingested before (same name, size and mtime)", self.spec.name, name)
            return
        sha256 = _sha256(stream)
        seen = hashes.get(sha256) or (self._manifest and self._manifest.ingested_as(source=self.spec.name, sha256=sha256))
        version = DropFile(
            source=self.spec.name,
            name=name,
            sha256=sha256,
            size=before.st_size,
            mtime_ns=before.st_mtime_ns,
            inode=before.st_ino,
            outcome="landed",
        )
        if seen:
            log.info("%s: skipped %s: same content as %s, already ingested", self.spec.name, name, seen)
            result.files.append(version.model_copy(update={"outcome": "same_content"}))
            return
        hashes[sha256] = name
        result.requests += 1
        failure: str | None = None
        part = FetchResult()  # the file's records join the fetch only if all of it reads
        stage = result.staged.stage_file() if result.staged is not None else None
        try:
            self._keyed(part, stage, self._rows(stream, name), name=name, uri=uri)
        except Exception as exc:  # one unreadable file, whatever the error (RecursionError, MemoryError), must not stop the others
            failure = _describe(exc)
        if failure is not None:
            part.records.clear()  # free what was read before the failure (a MemoryError needs the room)
            part.problems.clear()
            if stage is not None:
                stage.discard()
            stream.seek(0)
            head = stream.read(_MAX_ORIGINAL).decode("utf-8", "replace")
            log.warning("%s: quarantined %s: %s", self.spec.name, name, failure)
            result.problems.append(
                RecordProblem(record_key=name, check="file_format", reason=f"{name}: {failure}", original=head, source_uri=uri)
            )
            result.files.append(version.model_copy(update={"outcome": "quarantined"}))
            return
        after = os.fstat(stream.fileno())
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            log.warning("%s: skipped %s: it changed while being read; the next run reads it again", self.spec.name, name)
            if stage is not None:
                stage.discard()
            return
        if stage is not None:
            stage.commit()
        result.records.extend(part.records)
        result.problems.extend(part.problems)
        result.files.append(version)

    def _rows(self, stream: IO[bytes], name: str) -> Iterator[Any]:
        suffix = Path(name).suffix.lower()
        if suffix == ".parquet":
            return parquet_records(stream)
        if suffix == ".json":
            return json_records(stream)
        return csv_records(stream, self.spec.contract)

    def _keyed(self, result: FetchResult, stage: FileStage | None, rows: Iterable[Any], *, name: str, uri: str) -> None:
        """Key each row by year and country: into `stage` when given (no object per record), else `result.records`."""
        for index, row in enumerate(rows):
            record = row if isinstance(row, dict) else {"value": row}
            key = f"{name}#{index}"
            lacking = [c for c in self.spec.contract if c not in record]
            year = record.get("year")
            try:
                if lacking:
                    raise FileFormatError(f"record {index} lacks {', '.join(lacking)}")
                ts = datetime(int(year), 1, 1, tzinfo=UTC)  # type: ignore[arg-type]
            except (FileFormatError, TypeError, ValueError, OverflowError) as exc:
                if len(result.problems) >= MAX_RECORD_PROBLEMS:
                    raise FileFormatError(
                        f"more than {MAX_RECORD_PROBLEMS:,} records cannot be keyed (record {index}: {exc}); is it the right file?"
                    ) from None
                result.problems.append(
                    RecordProblem(
                        record_key=key,
                        check="payload_contract",
                        reason=f"{name}: {exc}",
                        original=canonical_json(record),
                        source_uri=uri,
                    )
                )
                continue
            if stage is None:
                result.records.append(SourceRecord(ts=ts, record_key=str(record["country_or_region"]), payload=record, source_uri=uri))
                continue
            payload = canonical_json(record)  # what SourceRecord.payload_json and payload_hash compute
            digest = hashlib.sha256(payload.encode()).hexdigest()
            stage.add(ts=ts, record_key=str(record["country_or_region"]), payload=payload, payload_hash=digest, source_uri=uri)
