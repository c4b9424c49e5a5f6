"""A console over a real platform in tmp_path: people with roles, tokens and passwords, incidents and a request.

Shared by tests/test_console_*.py as a plugin (`pytest_plugins`); they import its names only for type checking,
so pytest rewrites its asserts.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from agent.console.app import create_app
from pipelines.context import PlatformContext
from pipelines.incidents import Finding, Incident
from policies.approvals import Approval, ApprovalStore
from policies.passwords import PasswordStore
from policies.people import PeopleStore, Person
from tests.conftest import utc

NOW = utc(2023, 1, 28)
PASSWORD = "correct horse battery staple"
ROLES = {"vera": "viewer", "otto": "operator", "alice": "approver", "amir": "approver"}


@dataclass
class Platform:
    """The platform behind the console, and each person's token."""

    ctx: PlatformContext
    tokens: dict[str, str] = field(default_factory=dict)
    password: str = PASSWORD
    now: datetime = NOW

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def incident(self, n: int = 1, *, severity: str = "warning", table: str = "silver.carbon_intensity") -> Incident:
        finding = Finding(
            kind="value_anomaly",
            severity=severity,  # type: ignore[arg-type]
            table=table,
            cause_key=f"test-monitor-{n}",
            title=f"test incident {n}: intensity far from its forecast",
            occurred_at=utc(2023, 1, 27),
            evidence={"monitor": f"test-monitor-{n}", "score": 7.5},
        )
        incident, _ = self.ctx.incidents.report(finding, now=NOW)
        return incident

    def request(self, *, requested_by: str = "agent", approvers: tuple[str, ...] = ("alice", "amir"), call: str = "c1") -> Approval:
        approval, _ = ApprovalStore(self.ctx.ledger).request(
            call_id=f"call-{call}",
            thread_id=f"incident-test-{call}",
            tool="rollback_table",
            arguments={"table": "gold.carbon_intensity_hourly", "snapshot_id": 42},
            target={"table": "gold.carbon_intensity_hourly"},
            reason="the last publish negated every value",
            rule="destructive-needs-approval",
            approvers=list(approvers),
            requested_by=requested_by,
            ttl=timedelta(hours=1),
        )
        return approval


def with_people(ctx: PlatformContext) -> Platform:
    """The people of ROLES added to `ctx`, each with a personal token and the password PASSWORD."""
    store, passwords = PeopleStore(ctx.ledger), PasswordStore(ctx.ledger)
    tokens = {}
    for name, role in ROLES.items():
        store.add(Person(name=name, role=role, source="database"))  # type: ignore[arg-type]
        tokens[name] = store.issue_token(name)
        passwords.set(name, PASSWORD)
    return Platform(ctx=ctx, tokens=tokens)


@pytest.fixture
def platform(ctx: PlatformContext) -> Platform:
    return with_people(ctx)


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    app = create_app(platform.ctx, clock=lambda: NOW)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as test_client:
        yield test_client
    app.state.console.decider.close()


class Browser:
    """A TestClient used as a person's browser: it signs in through the form and reads CSRF tokens off pages."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def sign_in(self, name: str, password: str = PASSWORD) -> str:
        """Sign in through the form; returns the session's CSRF token (read from a page's form)."""
        page = self.client.get("/signin")
        assert page.status_code == 200
        done = self.client.post("/signin", data={"csrf": form_csrf(page.text), "name": name, "password": password, "next": "/"})
        assert done.status_code == 303, done.text
        return form_csrf(self.client.get("/").text)


@pytest.fixture
def browser(client: TestClient) -> Browser:
    return Browser(client)


def form_csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


# -- serving it as `dataops console` does ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dataops_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any DATAOPS_ setting, over `home`: a `dataops` command sees only that."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    return clean | {"DATAOPS_HOME": str(home), "NO_PROXY": "127.0.0.1,localhost"} | extra


def wait_for(url: str, process: subprocess.Popen[str], seconds: float = 120) -> None:
    """Until `url` answers 200; AssertionError with the process's stderr if it ends first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}): {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")
