"""Rows split into buckets by a hash of their key, spilled to disk, read back one bucket at a time.

A day of a large dropped file can hold more records than a run may keep in memory at once. Everything that
compares records does so within one key (exact repeats, conflicting duplicates, the latest revision), so a day
split by key hash can be worked one bucket at a time and give what the whole day gives.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import shutil
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

_COMPRESSED = ipc.IpcWriteOptions(compression="zstd")
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def bucket_count(rows: int, max_rows: int) -> int:
    """Buckets enough for `rows` to fit `max_rows` a bucket on average (hashing is not perfectly even)."""
    return max(1, math.ceil(rows / max_rows))


def bucket_of(keys: pa.ChunkedArray | pa.Array, buckets: int) -> pa.Array:
    """Each key's bucket: CRC-32 of its UTF-8 bytes, modulo `buckets` (the same in every process and run)."""
    return pa.array([zlib.crc32(k.encode()) % buckets for k in keys.to_pylist()], type=pa.int32())


def spill(parts: Iterable[pa.Table], *, key: str, buckets: int, folder: Path) -> Iterator[pa.Table]:
    """Split `parts` by the hash of column `key` into `buckets` files under `folder`, then yield each bucket's rows.

    Memory holds one part while splitting and one bucket while reading back; rows keep their order within a
    bucket. `folder` is removed once the last bucket was read (or the reader is closed early)."""
    folder.mkdir(parents=True, exist_ok=True)
    writers: dict[int, ipc.RecordBatchFileWriter] = {}
    try:
        for part in parts:
            ids = bucket_of(part.column(key), buckets)
            for bucket in pc.unique(ids).to_pylist():
                rows = part.filter(pc.equal(ids, bucket))
                writer = writers.get(bucket)
                if writer is None:
                    writer = writers[bucket] = ipc.new_file(str(folder / f"{bucket}.arrow"), rows.schema, options=_COMPRESSED)
                writer.write_table(rows)
            del part
        for writer in writers.values():
            writer.close()
        for bucket in sorted(writers):
            with pa.memory_map(str(folder / f"{bucket}.arrow")) as source:
                rows = ipc.open_file(source).read_all().combine_chunks()  # copied out of the map: the file can go
            (folder / f"{bucket}.arrow").unlink()
            yield rows
            del rows
            release_unused_memory()
    finally:
        for writer in writers.values():
            try:
                writer.close()
            except (OSError, pa.ArrowInvalid):
                pass
        shutil.rmtree(folder, ignore_errors=True)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def release_unused_memory() -> None:
    """Hand memory freed since the last bucket back to the system: Arrow's pool and the C heap keep it otherwise,
    and a process that works a large file bucket after bucket would hold the high-water mark of all of them."""
    pa.default_memory_pool().release_unused()
    trim = getattr(_libc, "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)


def bound_allocators() -> None:
    """Before working a large file part after part: Arrow allocates from the C heap (its default pool, mimalloc
    or jemalloc, keeps freed pages for reuse) and the C heap uses at most two arenas (glibc gives each thread one
    otherwise, each keeping its own high-water mark). Freed memory then goes back with `release_unused_memory`."""
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
    mallopt = getattr(_libc, "mallopt", None)  # glibc only
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, 2)
