"""The console's JSON API, the minimal contract for scripts (issue 16), over a real platform and ops database.

GET /healthz without sign-in; every other path 401 without a valid bearer token; incidents and approvals as the
CLI's `--json` prints them; actions 403 for a role that may not, 200 through the CLI's own code path, 404 for an
unknown id, 422 naming the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from policies.approvals import ApprovalStore

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from tests.console_fixtures import Browser, Platform

pytest_plugins = ["tests.console_fixtures"]


def test_healthz_answers_without_sign_in(client: TestClient) -> None:
    done = client.get("/healthz")
    assert done.status_code == 200 and done.json() == {"status": "ok"}


PROTECTED = [
    ("GET", "/api/me"),
    ("GET", "/api/incidents"),
    ("GET", "/api/incidents/1"),
    ("POST", "/api/incidents/1/ack"),
    ("GET", "/api/approvals"),
    ("GET", "/api/approvals/A-000000"),
    ("POST", "/api/approvals/A-000000/approve"),
    ("GET", "/api/deferred"),
    ("GET", "/api/no-such-thing"),
]
NOT_A_TOKEN = [None, "Bearer dop_00000000_notarealtokennotarealtoken", "Basic dmVyYTp4", "Bearer ", "dop_abc"]


def test_the_api_answers_401_without_a_valid_token(client: TestClient, platform: Platform) -> None:
    platform.incident(1)
    for method, path in PROTECTED:
        for authorization in NOT_A_TOKEN:
            headers = {"Authorization": authorization} if authorization else {}
            # A malformed body too: the token is checked before the body is read.
            done = client.request(method, path, headers=headers, content=b"{not json")
            assert done.status_code == 401, (method, path, authorization, done.text)
            assert done.headers["WWW-Authenticate"] == "Bearer"
            assert "Authorization: Bearer TOKEN" in done.json()["detail"]
    assert platform.ctx.incidents.get(1).status == "open"


def test_a_revoked_token_stops_working_at_once(client: TestClient, platform: Platform) -> None:
    from policies.people import PeopleStore

    assert client.get("/api/me", headers=platform.auth("otto")).json() == {"name": "otto", "role": "operator"}
    PeopleStore(platform.ctx.ledger).revoke_token("otto")
    assert client.get("/api/me", headers=platform.auth("otto")).status_code == 401


def test_incidents_are_listed_as_the_cli_prints_them(client: TestClient, platform: Platform) -> None:
    platform.incident(1)
    platform.incident(2, severity="critical")
    done = client.get("/api/incidents", headers=platform.auth("vera"))
    assert done.status_code == 200
    listed = done.json()
    assert isinstance(listed, list)
    # The same objects as `dataops incidents --json` (which wraps them in {"incidents": [...]}), newest first.
    assert listed == [i.model_dump(mode="json") for i in platform.ctx.incidents.list()]
    assert [i["id"] for i in listed] == [2, 1]
    one = client.get("/api/incidents/2", headers=platform.auth("vera")).json()
    assert one == platform.ctx.incidents.get(2).model_dump(mode="json")


def test_incident_filters_and_a_bad_status(client: TestClient, platform: Platform) -> None:
    platform.incident(1)
    client.post("/api/incidents/1/resolve", json={"reason": "fixed upstream"}, headers=platform.auth("otto"))
    platform.incident(2)
    assert [i["id"] for i in client.get("/api/incidents?status=unresolved", headers=platform.auth("vera")).json()] == [2]
    assert [i["id"] for i in client.get("/api/incidents?status=resolved", headers=platform.auth("vera")).json()] == [1]
    bad = client.get("/api/incidents?status=closed", headers=platform.auth("vera"))
    assert bad.status_code == 422 and bad.json()["field"] == "status"
    assert "'closed' is not a status; valid: open, acknowledged" in bad.json()["detail"]


@pytest.mark.parametrize("action", ["ack", "resolve", "expected"])
def test_a_viewer_may_not_act_on_an_incident(client: TestClient, platform: Platform, action: str) -> None:
    platform.incident(1)
    done = client.post(f"/api/incidents/1/{action}", json={"reason": "looks fine to me"}, headers=platform.auth("vera"))
    assert done.status_code == 403
    assert done.json()["detail"] == "vera may not do this: role viewer, operator needed"
    assert platform.ctx.incidents.get(1).status == "open"
    assert platform.ctx.incidents.get(1).notes == []


def test_an_operator_acknowledges_through_the_cli_path_and_is_named_with_the_channel(client: TestClient, platform: Platform) -> None:
    platform.incident(1)
    done = client.post("/api/incidents/1/ack", json={"reason": "looking at it"}, headers=platform.auth("otto"))
    assert done.status_code == 200, done.text
    body = done.json()
    # The shape of `dataops incident ack --json`: the judgement (incident, label, suppression) and the memory's answer.
    assert body["judgement"]["incident"]["status"] == "acknowledged"
    assert body["judgement"]["label"]["verdict"] == "real"
    incident = platform.ctx.incidents.get(1)
    assert incident.status == "acknowledged"
    [note] = incident.notes
    assert (note["actor"], note["channel"], note["note"]) == ("otto", "console", "acknowledged as real: looking at it")


def test_expected_suppresses_the_pattern_and_needs_a_reason(client: TestClient, platform: Platform) -> None:
    from pipelines.monitors.feedback import suppressions

    platform.incident(1)
    blank = client.post("/api/incidents/1/expected", json={"reason": "  "}, headers=platform.auth("alice"))
    assert blank.status_code == 422 and blank.json()["field"] == "reason"
    done = client.post("/api/incidents/1/expected", json={"reason": "planned outage", "days": 7}, headers=platform.auth("alice"))
    assert done.status_code == 200, done.text
    [suppression] = suppressions(platform.ctx, active_at=platform.now)
    assert (suppression.actor, suppression.channel, suppression.reason) == ("alice", "console", "planned outage")
    assert (suppression.expires_at - platform.now).days == 7


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reason"),
        ({"reason": 12}, "reason"),
        ({"reason": "x", "days": 0}, "days"),
        ({"reason": "x", "days": "soon"}, "days"),
        ({"reason": "x" * 2001}, "reason"),
    ],
)
def test_a_malformed_body_is_422_naming_the_field(client: TestClient, platform: Platform, body: dict[str, object], field: str) -> None:
    platform.incident(1)
    done = client.post("/api/incidents/1/expected", json=body, headers=platform.auth("otto"))
    assert done.status_code == 422, done.text
    assert done.json()["field"] == field
    assert done.json()["detail"].startswith(f"{field}: ")
    assert platform.ctx.incidents.get(1).status == "open"


def test_a_body_that_is_not_json_is_422(client: TestClient, platform: Platform) -> None:
    platform.incident(1)
    done = client.post("/api/incidents/1/ack", content=b"{reason", headers={**platform.auth("otto"), "Content-Type": "application/json"})
    assert done.status_code == 422


def test_unknown_ids_and_actions_are_404(client: TestClient, platform: Platform) -> None:
    platform.incident(1)
    otto, alice = platform.auth("otto"), platform.auth("alice")
    assert client.get("/api/incidents/99", headers=otto).json() == {"detail": "no incident 99; `dataops incidents` lists them"}
    assert client.get("/api/incidents/99", headers=otto).status_code == 404
    assert client.post("/api/incidents/99/ack", json={"reason": ""}, headers=otto).status_code == 404
    assert client.post("/api/incidents/1/delete", json={"reason": ""}, headers=otto).status_code == 404
    assert client.get("/api/approvals/A-nothere", headers=otto).status_code == 404
    assert client.post("/api/approvals/A-nothere/approve", json={"reason": "ok"}, headers=alice).status_code == 404
    approval = platform.request()
    assert client.post(f"/api/approvals/{approval.id}/maybe", json={"reason": "ok"}, headers=alice).status_code == 404


def test_approvals_are_listed_as_the_cli_prints_them(client: TestClient, platform: Platform) -> None:
    approval = platform.request()
    listed = client.get("/api/approvals", headers=platform.auth("vera")).json()
    assert listed == [approval.model_dump(mode="json")]
    assert client.get("/api/approvals?status=denied", headers=platform.auth("vera")).json() == []
    assert client.get(f"/api/approvals/{approval.id}", headers=platform.auth("vera")).json()["rule"] == "destructive-needs-approval"


def test_deferred_backfills_are_listed_in_the_api_and_on_the_approvals_page(
    client: TestClient, platform: Platform, browser: Browser
) -> None:
    from datetime import UTC, datetime, timedelta

    from policies.deferrals import DeferralStore

    due = datetime(2023, 1, 28, tzinfo=UTC)
    deferral, _ = DeferralStore(platform.ctx.ledger).defer(
        call_id="call-green", thread_id="incident-1", incident_id=1, tool="backfill_range",
        arguments={"pipeline": "carbon_intensity", "start": "2023-01-10", "end": "2023-01-19"}, due_at=due,
        run_at=due + timedelta(hours=3), wake_at=datetime.now(UTC) + timedelta(hours=3), expected_intensity=100.0,
        now_intensity=300.0, reason="deferred to 2023-01-28T03:00Z, the cleanest 1 h within 6 h",
    )  # fmt: skip
    listed = client.get("/api/deferred", headers=platform.auth("vera"))
    assert listed.status_code == 200 and listed.json() == [deferral.model_dump(mode="json")]
    assert client.get("/api/deferred?status=resumed", headers=platform.auth("vera")).json() == []
    bad = client.get("/api/deferred?status=later", headers=platform.auth("vera"))
    assert bad.status_code == 422 and "valid: waiting, released, resumed" in bad.json()["detail"]
    browser.sign_in("vera")
    page = client.get("/approvals")
    assert page.status_code == 200
    assert "Waiting for the greenest window" in page.text and "call-green" in page.text and "the cleanest 1 h within 6 h" in page.text


@pytest.mark.parametrize("who", ["vera", "otto"])
def test_only_approvers_may_decide(client: TestClient, platform: Platform, who: str) -> None:
    approval = platform.request()
    done = client.post(f"/api/approvals/{approval.id}/approve", json={"reason": "go"}, headers=platform.auth(who))
    assert done.status_code == 403
    assert ApprovalStore(platform.ctx.ledger).get(approval.id).status == "pending"


def test_an_approver_not_named_on_the_request_may_not_decide_it(client: TestClient, platform: Platform) -> None:
    approval = platform.request(approvers=("alice",))
    done = client.post(f"/api/approvals/{approval.id}/approve", json={"reason": "go"}, headers=platform.auth("amir"))
    assert done.status_code == 403
    assert "amir may not decide" in done.json()["detail"]
    assert ApprovalStore(platform.ctx.ledger).get(approval.id).status == "pending"


def test_nobody_approves_their_own_request(client: TestClient, platform: Platform) -> None:
    approval = platform.request(requested_by="alice")
    done = client.post(f"/api/approvals/{approval.id}/approve", json={"reason": "mine"}, headers=platform.auth("alice"))
    assert done.status_code == 403
    assert "alice asked for" in done.json()["detail"] and "may not decide it too" in done.json()["detail"]
    assert ApprovalStore(platform.ctx.ledger).get(approval.id).status == "pending"


def test_an_approver_decides_once_recorded_with_the_console_channel(client: TestClient, platform: Platform) -> None:
    approval = platform.request()
    done = client.post(f"/api/approvals/{approval.id}/approve", json={"reason": "checked the snapshot"}, headers=platform.auth("amir"))
    assert done.status_code == 200, done.text
    decided = ApprovalStore(platform.ctx.ledger).get(approval.id)
    assert (decided.status, decided.decided_by, decided.decided_via, decided.decision_reason) == (
        "approved",
        "amir",
        "console",
        "checked the snapshot",
    )
    assert done.json() == decided.model_dump(mode="json")
    again = client.post(f"/api/approvals/{approval.id}/deny", json={"reason": "too late"}, headers=platform.auth("alice"))
    assert again.status_code == 409
    assert "already approved by amir" in again.json()["detail"]


def test_deny_needs_a_reason(client: TestClient, platform: Platform) -> None:
    approval = platform.request()
    blank = client.post(f"/api/approvals/{approval.id}/deny", json={"reason": ""}, headers=platform.auth("alice"))
    assert blank.status_code == 422 and blank.json()["field"] == "reason"
    missing = client.post(f"/api/approvals/{approval.id}/deny", json={}, headers=platform.auth("alice"))
    assert missing.status_code == 422 and missing.json()["field"] == "reason"
    done = client.post(f"/api/approvals/{approval.id}/deny", json={"reason": "not today"}, headers=platform.auth("alice"))
    assert done.status_code == 200 and done.json()["status"] == "denied"
