"""The incident memory: resolved incidents and runbooks in a chromadb store under $DATAOPS_HOME/memory.

The agent searches it while diagnosing ("has this happened before, and what fixed it?") and writes to it
after verifying a remediation. Each record is embedded as one document (title, incident kind, table,
symptoms, root cause, actions, outcome) and kept whole as metadata, so a search returns full records.

One collection per embedding (`memory-<identity>`): vectors of different embeddings cannot be compared.
When the collection of the configured embedding is empty and another one holds records, they are copied
over and re-embedded, so changing DATAOPS_MEMORY_EMBEDDING never loses the memory.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import chromadb
import chromadb.config
import numpy as np
from chromadb.api.client import Client
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Embeddable, EmbeddingFunction, Metadata
from chromadb.errors import ChromaError
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.errors import MemoryStoreError
from config.settings import DataopsSettings
from memory.embedding import MemoryEmbedding, embedding_from_settings

RecordKind = Literal["incident", "runbook"]
KINDS: tuple[str, ...] = ("incident", "runbook")
COLLECTION_PREFIX = "memory-"
LOCK_FILE = "dataops-memory.lock"


class MemoryRecord(BaseModel):
    """A resolved incident or a runbook, as the agent remembers it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description='Upsert key, e.g. "incident-12" or "runbook-schema_drift"')
    kind: RecordKind
    title: str
    symptoms: str = Field(description="What was observed: incident kind, table, evidence summary")
    root_cause: str = ""
    actions: list[str] = Field(default_factory=list, description='e.g. ["rerun_window carbon_intensity 2023-01-26"]')
    outcome: str = Field(default="", description='"resolved", "escalated", ... with a sentence')
    table: str | None = None
    incident_kind: str | None = Field(
        default=None,
        description="freshness, volume, schema_drift, value_anomaly, validation, completeness, source_failure, pipeline_failure",
    )
    recorded_at: datetime

    @field_validator("recorded_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def document(self) -> str:
        """The text that is embedded: everything a later, differently worded description might match."""
        lines = [self.title, " ".join(p for p in (self.incident_kind, self.table) if p), self.symptoms, self.root_cause]
        lines += self.actions
        lines.append(self.outcome)
        return "\n".join(line for line in lines if line)


class MemoryHit(BaseModel):
    """A record found by a search, with its similarity to the query."""

    record: MemoryRecord
    score: float = Field(ge=0.0, le=1.0, description="Cosine similarity clamped to [0, 1]; higher is closer")


class IncidentMemory:
    """Past incidents and runbooks, searchable by meaning. Open with `IncidentMemory.open(settings)`.

    No chromadb handle is held between calls. chromadb keeps one in-memory index per path and process
    and does not see vectors another process added while it is open, so each call opens the store under
    an exclusive file lock and releases it (about 20 ms): a long-running `dataops serve` then finds what
    a `dataops chat` in another terminal remembered, and two writers never interleave.
    """

    def __init__(self, *, path: Path, embedding: MemoryEmbedding) -> None:
        self.path = path
        self.embedding = embedding
        self.collection_name = COLLECTION_PREFIX + _slug(embedding.identity)

    @classmethod
    def open(cls, settings: DataopsSettings) -> IncidentMemory:
        """The persistent store at `settings.home / "memory"`, created when absent."""
        # chromadb shares one system per path string within a process; the resolved path makes
        # `.dataops/memory` and its absolute spelling one system instead of two on one folder.
        memory = cls(path=(settings.home / "memory").resolve(), embedding=embedding_from_settings(settings))
        with memory._client() as client:
            collection = memory._collection(client)
            if collection.count() == 0:
                memory._copy_from_other_embeddings(client, collection)
        return memory

    def remember(self, record: MemoryRecord) -> None:
        """Store `record`, replacing any record with the same id."""
        self.remember_many([record])

    def remember_many(self, records: list[MemoryRecord]) -> None:
        """Store several records with one embedding call (upsert by id)."""
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            raise MemoryStoreError(f"duplicate record ids in one call: {sorted({i for i in ids if ids.count(i) > 1})}")
        if records:
            documents = [r.document() for r in records]
            vectors = self._embed(documents)  # before taking the lock: a remote embedding may take seconds
            with self._session() as collection:
                collection.upsert(ids=ids, documents=documents, embeddings=vectors, metadatas=[_metadata(r) for r in records])

    def search(self, text: str, *, k: int = 3, kind: str | None = None, table: str | None = None) -> list[MemoryHit]:
        """The `k` records closest in meaning to `text`, best first, optionally of one kind and table.

        `text` is only ever embedded and compared, never interpreted, so instructions inside it are inert.
        """
        if k < 1:
            raise MemoryStoreError(f"k must be at least 1, got {k}")
        where = _where(kind=kind, table=table)
        if not text.strip():
            return []
        vector = self._embed([text])[0]
        if not np.any(vector):
            return []  # nothing in the text survives normalisation: its cosine to anything is undefined
        with self._session() as collection:
            available = _count(collection, where)
            if available == 0:
                return []
            result = collection.query(
                query_embeddings=[vector], n_results=min(k, available), where=where, include=["metadatas", "distances"]
            )
        hits = []
        for metadata, distance in zip((result["metadatas"] or [[]])[0], (result["distances"] or [[]])[0], strict=True):
            record = MemoryRecord.model_validate_json(str(metadata["record"]))
            hits.append(MemoryHit(record=record, score=min(1.0, max(0.0, 1.0 - float(distance)))))
        return hits

    def count(self, kind: str | None = None) -> int:
        """How many records the memory holds, of one kind when given."""
        where = _where(kind=kind, table=None)
        with self._session() as collection:
            return _count(collection, where)

    def get(self, record_id: str) -> MemoryRecord | None:
        """The record stored under `record_id`, if any."""
        with self._session() as collection:
            found = collection.get(ids=[record_id], include=["metadatas"])
        if not found["ids"] or not found["metadatas"]:
            return None
        return MemoryRecord.model_validate_json(str(found["metadatas"][0]["record"]))

    @contextlib.contextmanager
    def _client(self) -> Iterator[Client]:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # flock(2) underneath: released when the holder ends, even by SIGKILL; never a soft lock left behind.
            with FileLock(self.path / LOCK_FILE, fallback_to_soft=False):
                settings = chromadb.config.Settings(anonymized_telemetry=False, allow_reset=False)
                # PersistentClient is typed as the ClientAPI protocol, which lacks the close() its Client has.
                client = cast(Client, chromadb.PersistentClient(path=str(self.path), settings=settings))
                try:
                    yield client
                finally:
                    client.close()
        except (OSError, ValueError, ChromaError) as exc:
            raise MemoryStoreError(f"the incident memory at {self.path} failed: {exc}") from exc

    @contextlib.contextmanager
    def _session(self) -> Iterator[Collection]:
        with self._client() as client:
            yield self._collection(client)

    def _collection(self, client: Client) -> Collection:
        # Our function is always passed, so chromadb never builds its default ONNX model (a download).
        # The cast: chromadb annotates the parameter as a function of documents *or images*.
        embedding = cast(EmbeddingFunction[Embeddable], self.embedding)
        return client.get_or_create_collection(
            self.collection_name, embedding_function=embedding, configuration={"hnsw": {"space": "cosine"}}
        )

    def _embed(self, texts: list[str]) -> list[np.ndarray]:
        try:
            return [np.asarray(v, dtype=np.float32) for v in self.embedding(texts)]
        except MemoryStoreError:
            raise
        except Exception as exc:  # a third-party model may raise anything; the agent needs one error type
            raise MemoryStoreError(f"the memory embedding {self.embedding.identity!r} failed: {exc!r}") from exc

    def _copy_from_other_embeddings(self, client: Client, collection: Collection) -> None:
        for other in client.list_collections():
            if other.name == self.collection_name or not other.name.startswith(COLLECTION_PREFIX):
                continue
            # Reading metadata needs no embedding function, and none is built: nothing is loaded or downloaded.
            stored = client.get_collection(other.name, embedding_function=None).get(include=["metadatas"])["metadatas"] or []
            records = []
            for metadata in stored:
                try:
                    records.append(MemoryRecord.model_validate_json(str(metadata["record"])))
                except (KeyError, ValidationError):
                    continue  # written by an incompatible version; the other collection keeps it
            if records:
                documents = [r.document() for r in records]
                metadatas = [_metadata(r) for r in records]
                collection.upsert(ids=[r.id for r in records], documents=documents, embeddings=self._embed(documents), metadatas=metadatas)
                return


def _where(*, kind: str | None, table: str | None) -> dict[str, Any] | None:
    if kind is not None and kind not in KINDS:
        raise MemoryStoreError(f"unknown memory kind {kind!r}; known: {', '.join(KINDS)}")
    clauses: list[dict[str, Any]] = [{"kind": kind}] if kind is not None else []
    if table is not None:
        clauses.append({"table": table})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _count(collection: Collection, where: dict[str, Any] | None) -> int:
    if where is None:
        return int(collection.count())
    return len(collection.get(where=where, include=[])["ids"])


def _metadata(record: MemoryRecord) -> Metadata:
    # Filters need plain scalars; the whole record rides along as JSON so a hit is a full MemoryRecord.
    return {
        "kind": record.kind,
        "table": record.table or "",
        "incident_kind": record.incident_kind or "",
        "recorded_at": record.recorded_at.timestamp(),
        "record": record.model_dump_json(),
    }


def _slug(identity: str) -> str:
    # chromadb collection names: 3-512 of [a-zA-Z0-9._-], starting and ending alphanumeric.
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", identity).strip("-._")[:400] or "default"
