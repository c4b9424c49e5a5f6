"""Streaming readers of dropped files: CSV, JSON and Parquet records in bounded memory.

Each reader takes an open binary stream and yields records one at a time, so no reader ever holds a whole
file: CSV and Parquet go through pyarrow in blocks, JSON through a splitter that cuts the members of the
top-level array or object out of the text and parses each alone. The splitter also bounds nesting: a file
nested deeper than `max_depth` is refused before the standard parser (which recurses) ever sees it, so a
200,000-deep file is a clean `FileFormatError`, never a `RecursionError`.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CSV_BLOCK_BYTES = 1 << 20  # pyarrow reads CSV a block at a time; a row may not be longer than a block
BATCH_ROWS = 65536  # Parquet rows per batch
JSON_CHUNK_CHARS = 1 << 20
MAX_JSON_DEPTH = 64  # records are flat objects; nesting this deep is an attack or a broken export
MAX_JSON_RECORD_CHARS = 16 << 20

_OUTSIDE = re.compile(r'["\[\]{},]')
_INSIDE = re.compile(r'["\\]')
_CLOSER = {"[": "]", "{": "}"}


class FileFormatError(ValueError):
    """A dropped file does not follow the contract."""


def csv_records(stream: IO[bytes], contract: tuple[str, ...], *, block_bytes: int = CSV_BLOCK_BYTES) -> Iterator[dict[str, Any]]:
    """Rows of a CSV file with a header line, every value as the text it was (no type guessing)."""
    read = pacsv.ReadOptions(block_size=block_bytes, use_threads=False)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    if not stream.read(1):
        raise FileFormatError("file is empty")
    stream.seek(0)
    header = pacsv.open_csv(stream, read_options=read, parse_options=parse).schema.names
    missing = [c for c in contract if c not in header]
    if missing:
        shown = [h.replace("\n", " ") for h in header]
        raise FileFormatError(f"header (line 1) is {shown}; missing required column(s) {', '.join(missing)}")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise FileFormatError(f"header (line 1) names column(s) {', '.join(repeated)} more than once")
    stream.seek(0)
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()))
    reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
    for batch in reader:
        yield from batch.to_pylist()


def parquet_records(stream: IO[bytes], *, batch_rows: int = BATCH_ROWS) -> Iterator[dict[str, Any]]:
    for batch in pq.ParquetFile(stream).iter_batches(batch_size=batch_rows):
        yield from batch.to_pylist()


def json_records(
    stream: IO[bytes],
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_record_chars: int = MAX_JSON_RECORD_CHARS,
    chunk_chars: int = JSON_CHUNK_CHARS,
) -> Iterator[Any]:
    """The members of a top-level array, or the values of a top-level object, one at a time."""
    splitter = _JsonSplitter(max_depth=max_depth, max_record_chars=max_record_chars)
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    while True:
        raw = stream.read(chunk_chars)
        text = decoder.decode(raw, final=not raw)
        yield from (splitter.parse(member) for member in splitter.feed(text))
        if not raw:
            break
    splitter.finish()


class _JsonSplitter:
    """Cuts the members of the top-level container out of JSON text fed in pieces.

    Only brackets, braces, commas and quotes outside strings matter (the regexes jump between them), so
    the cost is one Python step per structural character. Depth counts the top-level container as 1.
    """

    def __init__(self, *, max_depth: int, max_record_chars: int) -> None:
        self.max_depth = max_depth
        self.max_record_chars = max_record_chars
        self.top: str | None = None  # "[" or "{" once seen
        self.stack: list[str] = []
        self.done = False
        self.in_string = False
        self.escape = False
        self.members = 0
        self.member: list[str] = []
        self.member_chars = 0
        self.offset = 0  # characters consumed before the current piece, for error positions
        self.after_comma = False

    def feed(self, text: str) -> Iterator[str]:
        pos, start = 0, 0
        if self.top is None:
            stripped = text.lstrip()
            pos = start = len(text) - len(stripped)
            if not stripped:
                self.offset += len(text)
                return
            first = stripped[0]
            if first not in _CLOSER:
                raise FileFormatError(f"top level starts with {first!r}; expected an object of records or a list of records")
            self.top = first
            self.stack.append(first)
            pos = start = pos + 1
        while pos < len(text):
            if self.done:
                rest = text[pos:]
                if rest.strip():
                    at = pos + len(rest) - len(rest.lstrip())
                    raise FileFormatError(f"extra data after the top-level value at character {self.offset + at}")
                break
            if self.escape:
                self.escape, pos = False, pos + 1
                continue
            if self.in_string:
                found = _INSIDE.search(text, pos)
                if found is None:
                    pos = len(text)
                    break
                pos = found.end()
                if found.group() == "\\":
                    self.escape = True
                else:
                    self.in_string = False
                continue
            found = _OUTSIDE.search(text, pos)
            if found is None:
                pos = len(text)
                break
            char, at = found.group(), found.start()
            pos = found.end()
            if char == '"':
                self.in_string = True
            elif char in _CLOSER:
                self.stack.append(char)
                if len(self.stack) > self.max_depth:
                    raise FileFormatError(
                        f"JSON nested deeper than {self.max_depth} levels at character {self.offset + at} "
                        f"(record {self.members}); records are flat objects, so the file is refused unparsed"
                    )
            elif char == ",":
                if len(self.stack) == 1:
                    yield self._cut(text, start, at, closing=False)
                    start = pos
            else:  # a closer
                opener = self.stack.pop()
                if _CLOSER[opener] != char:
                    raise FileFormatError(f"{char!r} at character {self.offset + at} closes {opener!r}")
                if not self.stack:
                    member = self._cut(text, start, at, closing=True)
                    if member:
                        yield member
                    self.done = True
                    start = pos
            self._check_size(at - start)
        if not self.done:
            self._keep(text[start:])
        self.offset += len(text)

    def _keep(self, piece: str) -> None:
        self.member.append(piece)
        self.member_chars += len(piece)
        self._check_size(0)

    def _check_size(self, pending: int) -> None:
        if self.member_chars + pending > self.max_record_chars:
            raise FileFormatError(f"record {self.members} is longer than {self.max_record_chars:,} characters")

    def _cut(self, text: str, start: int, end: int, *, closing: bool) -> str:
        self._keep(text[start:end])
        member = "".join(self.member).strip()
        self.member, self.member_chars = [], 0
        if not member and (not closing or self.after_comma):
            raise FileFormatError(f"empty record {self.members} (a stray comma) near character {self.offset + end}")
        self.after_comma = not closing
        return member

    def parse(self, member: str) -> Any:
        index = self.members
        self.members += 1
        try:
            if self.top == "{":
                return next(iter(json.loads("{" + member + "}").values()))
            return json.loads(member)
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"record {index}: {exc.msg} (character {exc.pos} of the record)") from None

    def finish(self) -> None:
        if self.top is None:
            raise FileFormatError("file is empty")
        if self.in_string or not self.done:
            raise FileFormatError(f"file ends inside the top-level value after {self.members} record(s) (truncated?)")
