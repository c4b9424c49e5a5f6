"""The scripted OpenAI-compatible server lives in evals/model_server.py: the eval suite runs the LLM path with it too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evals.model_server import RecordedRequest, Reply, ScriptedOpenAI, strict_schema_problems

__all__ = ["RecordedRequest", "Reply", "ScriptedOpenAI", "scripted_openai_fixture", "strict_schema_problems"]


@pytest.fixture(name="scripted_openai")
def scripted_openai_fixture() -> Iterator[ScriptedOpenAI]:
    """`scripted_openai`: a started fake endpoint with an empty script (`enqueue` replies), closed after the test."""
    fake = ScriptedOpenAI()
    try:
        yield fake
    finally:
        fake.close()
