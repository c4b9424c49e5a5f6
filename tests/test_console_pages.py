"""The console's pages and their security: sign-in (password or token), session cookies, CSRF on every form,
roles on the server, the person and channel on every action.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from policies.approvals import ApprovalStore

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from tests.console_fixtures import Browser, Platform

pytest_plugins = ["tests.console_fixtures"]

PAGES = ["/", "/incidents", "/incidents/1", "/incidents/99", "/approvals", "/nothing-here"]
FORMS = ["/incidents/1/ack", "/incidents/1/resolve", "/incidents/1/expected", "/approvals/A-000000/approve", "/signout"]


def test_no_page_answers_without_sign_in(client: TestClient, platform: Platform) -> None:
    platform.incident(1)
    for path in PAGES:
        done = client.get(path)
        assert done.status_code == 303, path
        assert done.headers["location"].startswith("/signin?next=")
    for path in FORMS:
        done = client.post(path, data={"reason": "x", "csrf": "x"})
        assert done.status_code == 303, path
        assert done.headers["location"].startswith("/signin")
    assert platform.ctx.incidents.get(1).status == "open"
    # What answers without sign-in: the health check, the sign-in page and its stylesheet.
    assert client.get("/healthz").status_code == 200
    assert client.get("/signin").status_code == 200
    assert client.get("/static/console.css").status_code == 200
    # A forged or stale session cookie is no session.
    client.cookies.set("dataops_session", "forged")
    assert client.get("/").status_code == 303


def test_every_route_of_the_app_is_behind_sign_in(client: TestClient) -> None:
    """A route added later without thinking of sign-in is caught here: the gatekeeper sees every path."""
    from fastapi.routing import APIRoute

    public = {"/healthz", "/signin"}
    for route in client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute) or route.path in public:
            continue
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        for method in route.methods or ():
            done = client.request(method, path)
            assert done.status_code in (303, 401), f"{method} {route.path} answered {done.status_code} without sign-in"


def test_password_sign_in_sets_a_strict_httponly_cookie_and_sign_out_ends_the_session(client: TestClient, browser: Browser) -> None:
    page = client.get("/signin")
    from tests.console_fixtures import form_csrf

    done = client.post("/signin", data={"csrf": form_csrf(page.text), "name": "otto", "password": "correct horse battery staple"})
    assert done.status_code == 303 and done.headers["location"] == "/"
    cookie = next(v for k, v in done.headers.multi_items() if k == "set-cookie" and v.startswith("dataops_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS it is Secure (test below)
    overview = client.get("/")
    assert overview.status_code == 200 and "otto" in overview.text and "operator" in overview.text
    secret = client.cookies.get("dataops_session")
    csrf = form_csrf(overview.text)
    assert client.post("/signout", data={"csrf": csrf}).status_code == 303
    client.cookies.set("dataops_session", secret or "")  # the old cookie, replayed
    assert client.get("/").status_code == 303


def test_the_session_cookie_is_secure_over_tls(platform: Platform) -> None:
    from fastapi.testclient import TestClient

    from agent.console.app import create_app
    from tests.console_fixtures import form_csrf

    with TestClient(create_app(platform.ctx), base_url="https://console.example", follow_redirects=False) as tls:
        page = tls.get("/signin")
        done = tls.post("/signin", data={"csrf": form_csrf(page.text), "token": platform.tokens["vera"]})
        cookie = next(v for k, v in done.headers.multi_items() if k == "set-cookie" and v.startswith("dataops_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie


def test_token_sign_in(client: TestClient, platform: Platform) -> None:
    from tests.console_fixtures import form_csrf

    page = client.get("/signin")
    done = client.post("/signin", data={"csrf": form_csrf(page.text), "token": platform.tokens["alice"], "next": "/approvals"})
    assert done.status_code == 303 and done.headers["location"] == "/approvals"
    assert "alice" in client.get("/approvals").text


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "otto", "password": "wrong password entirely"},
        {"name": "nobody", "password": "correct horse battery staple"},
        {"token": "dop_00000000_notarealtokennotarealtoken"},
    ],
)
def test_wrong_credentials_are_refused_without_saying_which_part(client: TestClient, fields: dict[str, str]) -> None:
    from tests.console_fixtures import form_csrf

    page = client.get("/signin")
    done = client.post("/signin", data={"csrf": form_csrf(page.text), **fields})
    assert done.status_code == 401
    assert "that name and password, or that token, is not right" in done.text
    assert "dataops_session" not in client.cookies


def test_sign_in_without_its_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/signin")
    done = client.post("/signin", data={"csrf": "forged", "name": "otto", "password": "correct horse battery staple"})
    assert done.status_code == 403
    assert "dataops_session" not in client.cookies


def test_a_second_sign_in_page_keeps_the_first_forms_token(client: TestClient, platform: Platform) -> None:
    """Browsers fetch /favicon.ico by themselves; signed out, that lands on the sign-in page, which must not void the
    form already on screen (found by tests/test_console_browser.py). The pages name their own icon too."""
    from tests.console_fixtures import form_csrf

    first = client.get("/signin")
    again = client.get("/favicon.ico", follow_redirects=True)
    assert again.status_code == 200 and form_csrf(again.text) == form_csrf(first.text)
    assert 'rel="icon" href="/static/favicon.svg"' in first.text and client.get("/static/favicon.svg").status_code == 200
    done = client.post("/signin", data={"csrf": form_csrf(first.text), "token": platform.tokens["vera"]})
    assert done.status_code == 303 and done.headers["location"] == "/"


def test_next_never_leaves_the_console(client: TestClient, platform: Platform) -> None:
    from tests.console_fixtures import form_csrf

    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        client.cookies.clear()
        page = client.get("/signin")
        done = client.post("/signin", data={"csrf": form_csrf(page.text), "token": platform.tokens["vera"], "next": target})
        assert done.headers["location"] == "/", target


def test_the_overview_shows_pipelines_incidents_and_approvals(client: TestClient, browser: Browser, platform: Platform) -> None:
    platform.incident(1, severity="critical")
    approval = platform.request()
    browser.sign_in("vera")
    page = client.get("/").text
    for name, spec in platform.ctx.inventory.pipelines.items():
        assert name in page
        assert ("manual" if spec.schedule.manual else "") in page
    assert "never run" in page
    assert "test incident 1" in page and approval.id in page and "destructive-needs-approval" in page
    assert "Platform clock: 2023-01-28 00:00 UTC" in page


def test_the_incidents_page_filters(client: TestClient, browser: Browser, platform: Platform) -> None:
    platform.incident(1, severity="critical", table="silver.carbon_intensity")
    platform.incident(2, severity="warning", table="gold.carbon_intensity_hourly")
    browser.sign_in("vera")
    both = client.get("/incidents").text
    assert "test incident 1" in both and "test incident 2" in both
    critical = client.get("/incidents?severity=critical").text
    assert "test incident 1" in critical and "test incident 2" not in critical
    gold = client.get("/incidents?table=gold.carbon_intensity_hourly&status=all").text
    assert "test incident 2" in gold and "test incident 1" not in gold


def test_an_unknown_incident_is_a_404_page(client: TestClient, browser: Browser) -> None:
    browser.sign_in("vera")
    done = client.get("/incidents/99")
    assert done.status_code == 404 and "no incident 99" in done.text


def test_a_viewer_sees_no_buttons_and_can_change_nothing(client: TestClient, browser: Browser, platform: Platform) -> None:
    platform.incident(1)
    approval = platform.request()
    csrf = browser.sign_in("vera")
    page = client.get("/incidents/1").text
    assert 'action="/incidents/1/ack"' not in page
    assert f'action="/approvals/{approval.id}/approve"' not in client.get("/approvals").text
    for path in ("/incidents/1/ack", "/incidents/1/resolve", "/incidents/1/expected", f"/approvals/{approval.id}/approve"):
        done = client.post(path, data={"csrf": csrf, "reason": "a viewer tries"})
        assert done.status_code == 403, path
    assert platform.ctx.incidents.get(1).status == "open"
    assert ApprovalStore(platform.ctx.ledger).get(approval.id).status == "pending"


def test_an_operator_acknowledges_from_the_incident_page(client: TestClient, browser: Browser, platform: Platform) -> None:
    platform.incident(1)
    csrf = browser.sign_in("otto")
    assert 'action="/incidents/1/ack"' in client.get("/incidents/1").text
    done = client.post("/incidents/1/ack", data={"csrf": csrf, "reason": "on it"})
    assert done.status_code == 303 and done.headers["location"] == "/incidents/1?done=ack"
    [note] = platform.ctx.incidents.get(1).notes
    assert (note["actor"], note["channel"]) == ("otto", "console")
    assert "otto via console [acknowledged] acknowledged as real: on it" in client.get("/incidents/1").text


@pytest.mark.parametrize("csrf", [None, "", "forged-token", "other-session"])
def test_a_form_without_the_sessions_csrf_token_is_refused(
    client: TestClient, browser: Browser, platform: Platform, csrf: str | None
) -> None:
    platform.incident(1)
    approval = platform.request()
    own = browser.sign_in("alice")
    if csrf == "other-session":  # a real token, of someone else's session
        from fastapi.testclient import TestClient as Client

        from tests.console_fixtures import Browser as B

        with Client(client.app, follow_redirects=False) as other:  # type: ignore[arg-type]
            csrf = B(other).sign_in("amir")
        assert csrf != own
    for path in ("/incidents/1/ack", f"/approvals/{approval.id}/approve", "/signout"):
        data = {"reason": "forged"} | ({"csrf": csrf} if csrf is not None else {})
        done = client.post(path, data=data)
        assert done.status_code == 403, path
        assert "CSRF token is missing or wrong" in done.text
    assert platform.ctx.incidents.get(1).status == "open"
    assert ApprovalStore(platform.ctx.ledger).get(approval.id).status == "pending"
    assert client.get("/").status_code == 200  # still signed in: the forged sign-out did nothing


def test_a_malformed_form_is_422_naming_the_field(client: TestClient, browser: Browser, platform: Platform) -> None:
    platform.incident(1)
    csrf = browser.sign_in("otto")
    done = client.post("/incidents/1/expected", data={"csrf": csrf, "reason": "planned", "days": "soon"})
    assert done.status_code == 422 and "days:" in done.text
    missing = client.post("/incidents/1/expected", data={"csrf": csrf, "reason": ""})
    assert missing.status_code == 422 and "reason:" in missing.text
    assert platform.ctx.incidents.get(1).status == "open"


def test_an_approver_decides_from_the_approvals_page_but_not_their_own_request(
    client: TestClient, browser: Browser, platform: Platform
) -> None:
    theirs = platform.request(call="theirs")
    own = platform.request(requested_by="alice", call="own")
    csrf = browser.sign_in("alice")
    page = client.get("/approvals").text
    assert f'action="/approvals/{theirs.id}/approve"' in page
    assert f'action="/approvals/{own.id}/approve"' not in page and "You asked for this" in page
    refused = client.post(f"/approvals/{own.id}/approve", data={"csrf": csrf, "reason": "mine"})
    assert refused.status_code == 403 and "may not decide it too" in refused.text
    done = client.post(f"/approvals/{theirs.id}/deny", data={"csrf": csrf, "reason": "wrong snapshot"})
    assert done.status_code == 303
    decided = ApprovalStore(platform.ctx.ledger).get(theirs.id)
    assert (decided.status, decided.decided_by, decided.decided_via) == ("denied", "alice", "console")
    assert "alice via console" in client.get("/approvals").text
    assert ApprovalStore(platform.ctx.ledger).get(own.id).status == "pending"


def test_a_person_removed_loses_their_session_at_once(client: TestClient, browser: Browser, platform: Platform) -> None:
    from policies.people import PeopleStore

    browser.sign_in("otto")
    assert client.get("/").status_code == 200
    PeopleStore(platform.ctx.ledger).remove("otto")
    assert client.get("/").status_code == 303


def test_pages_forbid_framing_and_outside_scripts(client: TestClient) -> None:
    done = client.get("/signin")
    policy = done.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert done.headers["x-frame-options"] == "DENY"
    assert "http" not in re.sub(r'action="/[^"]*"', "", done.text).replace("http-equiv", "")  # nothing fetched from elsewhere


def test_a_broken_people_file_lets_nobody_in_and_says_why(platform: Platform, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from agent.console.app import create_app
    from pipelines.context import PlatformContext

    broken = tmp_path / "people.yaml"
    broken.write_text("people: [\n")
    ctx = PlatformContext.open(platform.ctx.settings.model_copy(update={"people_file": broken}))
    with TestClient(create_app(ctx), follow_redirects=False) as client:
        refused = client.get("/api/me", headers=platform.auth("vera"))
        assert refused.status_code == 503 and "is not valid YAML" in refused.json()["detail"]
        assert client.get("/").status_code == 303  # no session: nothing to check yet
        assert client.get("/healthz").status_code == 200
