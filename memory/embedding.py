"""Text embeddings of the incident memory, chosen by the `memory_embedding` setting.

    sklearn                          `HashingEmbedding`: offline, deterministic, nothing fitted, never downloads
    sentence-transformers:<model>    `SentenceTransformerEmbedding`: a local model (optional package)
    openai:<model>                   `OpenAIEmbedding`: POST {llm_base_url}/embeddings of any OpenAI-compatible server

Each is a chromadb embedding function (name, config, rebuild from config) registered with chromadb, so a
collection re-opened in another process is rebuilt with the same function and never falls back to
chromadb's default ONNX model, which downloads.
"""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer

from config.errors import MemoryStoreError
from config.settings import DataopsSettings

OPENAI_BASE_URL = "https://api.openai.com/v1"
VALID_SETTINGS = "'sklearn', 'sentence-transformers:<model>', 'openai:<model>'"

_ISO_INSTANT = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?\b")
_CLOCK = re.compile(r"\b\d{1,2}:\d{2}\b")
_HTTP_STATUS = re.compile(r"\b([45])\d\d\b")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z][a-z])")  # openMeteo -> open Meteo, but kW stays kW
_SEPARATORS = re.compile(r"[._/\\:=\-→>]+")


def normalise_text(text: str) -> str:
    """Lower-cased words of `text` with the platform's identifiers split and dates left out.

    `silver.carbon_intensity` becomes `silver carbon intensity`, `intensity.actual` `intensity actual`,
    `kW→MW` `kw mw`; a 503 also reads as `5xx` and a 429 as `4xx`. Dates and clock times are dropped:
    a new incident rarely happens on the day of the old one, so they only add noise.
    """
    text = _CAMEL.sub(" ", text)
    text = text.lower()
    text = _ISO_INSTANT.sub(" ", text)
    text = _CLOCK.sub(" ", text)
    text = _HTTP_STATUS.sub(lambda m: f"{m.group(0)} {m.group(1)}xx", text)
    text = _SEPARATORS.sub(" ", text)
    return " ".join(w for w in text.split() if w not in ENGLISH_STOP_WORDS)


@register_embedding_function
class HashingEmbedding(EmbeddingFunction[Documents]):
    """Hashed word 1-2 grams beside hashed character 3-5 grams, sublinear tf, unit length.

    Nothing is fitted, so a text's vector never changes as the memory grows and the store needs no
    re-indexing; the two blocks are each unit length and weighted so that the cosine of two texts is
    `word_weight` times their word cosine plus the rest times their character cosine (the character
    grams forgive inflections and typos, the words carry the phrases).
    """

    def __init__(self, *, word_features: int = 2048, char_features: int = 2048, word_weight: float = 0.5) -> None:
        self.word_features = word_features
        self.char_features = char_features
        self.word_weight = word_weight
        self._words = HashingVectorizer(
            preprocessor=normalise_text, ngram_range=(1, 2), n_features=word_features, alternate_sign=False, norm=None
        )
        self._chars = HashingVectorizer(
            preprocessor=normalise_text, analyzer="char_wb", ngram_range=(3, 5), n_features=char_features, alternate_sign=False, norm=None
        )

    def __call__(self, input: Documents) -> Embeddings:
        texts = list(input)
        blocks = []
        for vectorizer, weight in ((self._words, self.word_weight), (self._chars, 1.0 - self.word_weight)):
            counts = vectorizer.transform(texts).astype(np.float32).toarray()
            block = np.where(counts > 0, 1.0 + np.log(counts, where=counts > 0, out=np.zeros_like(counts)), 0.0)
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            blocks.append(np.sqrt(weight) * block / np.where(norms > 0, norms, 1.0))
        vectors = np.hstack(blocks).astype(np.float32)
        return [row for row in vectors]

    @staticmethod
    def name() -> str:
        return "dataops-hashing"

    def get_config(self) -> dict[str, Any]:
        return {"word_features": self.word_features, "char_features": self.char_features, "word_weight": self.word_weight}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HashingEmbedding:
        return HashingEmbedding(**config)

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine"]

    @property
    def identity(self) -> str:
        """Names the vector space; stores written with another identity cannot be searched with this one."""
        return f"hashing-w{self.word_features}-c{self.char_features}"


@register_embedding_function
class OpenAIEmbedding(EmbeddingFunction[Documents]):
    """Embeddings from an OpenAI-compatible `/embeddings` endpoint, called with httpx.

    The API key is never part of the config chromadb persists: it is passed in, or read from
    DATAOPS_LLM_API_KEY or OPENAI_API_KEY when chromadb rebuilds the function from its config.
    """

    def __init__(self, *, model: str, base_url: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._api_key = api_key or os.environ.get("DATAOPS_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")

    def __call__(self, input: Documents) -> Embeddings:
        texts = list(input)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        url = f"{self.base_url}/embeddings"
        try:
            response = httpx.post(url, json={"model": self.model, "input": texts}, headers=headers, timeout=self.timeout_s)
            response.raise_for_status()
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors: Embeddings = [np.asarray(item["embedding"], dtype=np.float32) for item in data]
        except httpx.HTTPError as exc:
            raise MemoryStoreError(f"the embeddings endpoint {url} failed for model {self.model!r}: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise MemoryStoreError(f"the embeddings endpoint {url} answered something that is not an embeddings list: {exc!r}") from exc
        if len(vectors) != len(texts):
            raise MemoryStoreError(f"the embeddings endpoint {url} returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    @staticmethod
    def name() -> str:
        return "dataops-openai"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url, "timeout_s": self.timeout_s}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OpenAIEmbedding:
        return OpenAIEmbedding(**config)

    def default_space(self) -> Space:
        return "cosine"

    @property
    def identity(self) -> str:
        return f"openai-{self.model}"


@register_embedding_function
class SentenceTransformerEmbedding(EmbeddingFunction[Documents]):
    """A sentence-transformers model: a local folder, or a Hub name the package fetches into its cache once."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        try:
            # Optional and heavy (torch): imported only when this embedding is chosen.
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MemoryStoreError(
                f"memory embedding 'sentence-transformers:{model}' needs the sentence-transformers package: "
                "`.venv/bin/pip install sentence-transformers`, or set DATAOPS_MEMORY_EMBEDDING=sklearn"
            ) from exc
        try:
            self._model = SentenceTransformer(model)
        except Exception as exc:  # the package raises OSError, ValueError or its own errors for a bad name
            raise MemoryStoreError(f"sentence-transformers could not load model {model!r}: {exc}") from exc

    def __call__(self, input: Documents) -> Embeddings:
        vectors = self._model.encode(list(input), normalize_embeddings=True, convert_to_numpy=True)
        return [np.asarray(row, dtype=np.float32) for row in vectors]

    @staticmethod
    def name() -> str:
        return "dataops-sentence-transformers"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> SentenceTransformerEmbedding:
        return SentenceTransformerEmbedding(**config)

    def default_space(self) -> Space:
        return "cosine"

    @property
    def identity(self) -> str:
        return f"st-{self.model}"


MemoryEmbedding = HashingEmbedding | OpenAIEmbedding | SentenceTransformerEmbedding


def embedding_from_settings(settings: DataopsSettings) -> MemoryEmbedding:
    """The embedding `settings.memory_embedding` names; a MemoryStoreError names the valid values otherwise."""
    value = settings.memory_embedding.strip()
    scheme, _, model = value.partition(":")
    model = model.strip()
    if value == "sklearn":
        return HashingEmbedding()
    if scheme == "sentence-transformers" and model:
        return SentenceTransformerEmbedding(model=model)
    if scheme == "openai" and model:
        # Unset, the base URL is OpenAI's own, as for the chat model.
        base_url = settings.llm_base_url or OPENAI_BASE_URL
        return OpenAIEmbedding(model=model, base_url=base_url, api_key=settings.llm_api_key, timeout_s=settings.llm_timeout_s)
    raise MemoryStoreError(f"unknown memory embedding {value!r}; valid: {VALID_SETTINGS} (DATAOPS_MEMORY_EMBEDDING)")
