"""Shared fixtures: a fresh platform in tmp_path (catalog on SQLite, local warehouse, ops database)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_proxy, None)

from config.settings import DataopsSettings, load_settings  # noqa: E402
from pipelines.context import PlatformContext  # noqa: E402
from pipelines.sources.base import Window  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def operator(name: str = "alice") -> Any:
    """A person with role operator as a channel authenticated them: writes they ask for in chat may be acted on
    (policy writes_asked_by_people_need)."""
    from policies.people import Actor

    return Actor(id=name, channel="api", role="operator")


def window(start: tuple[int, ...], end: tuple[int, ...]) -> Window:
    return Window(start=utc(*start), end=utc(*end))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataopsSettings:
    for key in list(os.environ):
        if key.startswith("DATAOPS_"):
            monkeypatch.delenv(key)
    return load_settings(home=tmp_path / "home")


@pytest.fixture
def ctx(settings: DataopsSettings) -> Iterator[PlatformContext]:
    context = PlatformContext.open(settings)
    yield context
    context.ledger.engine.dispose()
