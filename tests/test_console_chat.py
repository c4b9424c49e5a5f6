"""The Chat page: one thread per conversation with the real agent (offline: its runbook planner answers), kept
across turns; a request the agent asks for shown inline, where another approver decides it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pipelines.inspection import history_of
from pipelines.promotion import run_pipeline
from policies.approvals import ApprovalStore
from tests.conftest import utc, window

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from tests.console_fixtures import Browser, Platform

pytest_plugins = ["tests.console_fixtures"]
NOW = utc(2023, 1, 28)
GOLD = "gold.carbon_intensity_hourly"


def _thread_of(location: str) -> str:
    match = re.fullmatch(r"/chat/(chat-console-[0-9a-f]{8})", location)
    assert match, location
    return match.group(1)


def test_a_thread_keeps_a_conversation_with_the_agent(client: TestClient, browser: Browser, platform: Platform) -> None:
    run_pipeline(platform.ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 27)), as_of=NOW)
    csrf = browser.sign_in("vera")  # a viewer may ask: the agent's reads need no role
    started = client.post("/chat", data={"csrf": csrf, "message": "what was the carbon intensity on 26 January 2023?"})
    assert started.status_code == 303
    thread = _thread_of(started.headers["location"])
    page = client.get(f"/chat/{thread}").text
    assert "what was the carbon intensity on 26 January 2023?" in page
    assert "The average carbon intensity on 2023-01-26 was" in page and "gCO2/kWh" in page
    assert (
        client.post(f"/chat/{thread}", data={"csrf": csrf, "message": "what was the carbon intensity on 25 January 2023?"}).status_code
        == 303
    )
    page = client.get(f"/chat/{thread}").text
    assert page.count('class="turn person"') == 2 and page.count('class="turn agent"') == 2
    assert "The average carbon intensity on 2023-01-25 was" in page
    listed = client.get("/chat").text
    assert f'href="/chat/{thread}"' in listed and "2 turn(s)" not in listed and "4 turn(s)" in listed


def test_chat_forms_are_checked(client: TestClient, browser: Browser, platform: Platform) -> None:
    csrf = browser.sign_in("otto")
    assert client.post("/chat", data={"message": "hello"}).status_code == 403  # no CSRF token
    empty = client.post("/chat", data={"csrf": csrf, "message": "   "})
    assert empty.status_code == 422 and "message:" in empty.text
    assert client.get("/chat/chat-console-00000000").status_code == 404
    assert client.post("/chat/chat-console-00000000", data={"csrf": csrf, "message": "hi"}).status_code == 404
    thread = _thread_of(client.post("/chat", data={"csrf": csrf, "message": "which tables are there?"}).headers["location"])
    from fastapi.testclient import TestClient as Client

    from tests.console_fixtures import Browser as B

    with Client(client.app, follow_redirects=False) as other:  # type: ignore[arg-type]
        theirs = B(other).sign_in("vera")
        read = other.get(f"/chat/{thread}").text
        assert "otto's conversation: you may read it" in read and 'name="message"' not in read  # readable, without a form
        refused = other.post(f"/chat/{thread}", data={"csrf": theirs, "message": "me too"})
        assert refused.status_code == 403 and "only otto, who started this conversation, writes in it" in refused.text


def test_an_approval_asked_in_chat_is_decided_inline_by_another_approver(client: TestClient, browser: Browser, platform: Platform) -> None:
    ctx = platform.ctx
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 26)), as_of=NOW)
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 26), (2023, 1, 27)), as_of=NOW)
    older = min(int(s["snapshot_id"]) for s in history_of(ctx, GOLD) if s["operation"] != "delete")
    csrf = browser.sign_in("amir")
    asked = client.post("/chat", data={"csrf": csrf, "message": f"roll back {GOLD} to snapshot {older}"})
    thread = _thread_of(asked.headers["location"])
    [approval] = [a for a in ApprovalStore(ctx.ledger).list() if a.thread_id == thread]
    assert (approval.status, approval.requested_by, approval.tool) == ("pending", "amir", "rollback_table")
    own = client.get(f"/chat/{thread}").text
    assert f'id="{approval.id}"' in own and "You asked for this" in own and f'action="/approvals/{approval.id}/approve"' not in own
    assert f'href="/chat/{thread}"' in client.get("/approvals").text  # the request links back to its conversation

    client.cookies.clear()  # the same browser, now alice's
    csrf = browser.sign_in("alice")
    inline = client.get(f"/chat/{thread}").text
    assert f'action="/approvals/{approval.id}/approve"' in inline and 'name="next" value="/chat/' in inline
    done = client.post(
        f"/approvals/{approval.id}/approve", data={"csrf": csrf, "reason": "that snapshot is good", "next": f"/chat/{thread}"}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/chat/{thread}"
    decided = ApprovalStore(ctx.ledger).get(approval.id)
    assert (decided.status, decided.decided_by, decided.decided_via) == ("approved", "alice", "console")
    after = client.get(f"/chat/{thread}").text
    assert "alice via console: that snapshot is good" in after
    # The thread resumed on the decision and the rollback ran: its step, in the audit, shown in the thread.
    rows = re.findall(
        r"<tr><td>[^<]*</td><td><code>(\w+)\([^<]*</code></td><td>[^<]*</td>\s*<td>([^<]*)</td><td class=\"step-status\">(\w+)</td>", after
    )
    assert ("rollback_table", "alice via console", "ok") in rows, rows
