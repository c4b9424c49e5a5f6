"""The console in a real browser: Debian's headless chromium, driven by Selenium, against `dataops console` served
by uvicorn on a free port over a platform home with real data (two runs of the bundled carbon intensity, so a
table with two snapshots and quarantined rows; the incident those rows opened; two pending requests).

A person signs in, sees the overview, opens the incident and acknowledges it; an approver approves a request
that a viewer can neither see a button for nor post; lineage leads to a table, shown for a day as of an older
snapshot; the Data page draws the series with the defects marked, and a defect leads to its incident. The same tests save the README's screenshots to docs/screenshots/ (1280x800 PNG).

Chromium missing is a failure, not a skip: CI installs it with `make system-deps`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import REPO, utc, window

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

    from tests.console_fixtures import Platform

pytest_plugins = ["tests.console_fixtures"]
pytestmark = pytest.mark.slow

DATAOPS = str(Path(sys.executable).parent / "dataops")
SHOTS = REPO / "docs" / "screenshots"
SIZE = (1280, 800)
SILVER = "silver.carbon_intensity"
NOW = utc(2023, 1, 28)
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver"
WAIT_S = 90.0  # the first approval loads the agent (LangGraph) in the console's process


@dataclass(kw_only=True)
class Served:
    """`dataops console` running over a platform home with real data, and what the tests look for in it."""

    url: str
    platform: Platform
    incident_id: int
    incident_title: str
    to_approve: str
    for_the_viewer: str
    older_snapshot: int


def _platform_with_real_data(home: Path, url: str) -> Served:
    from config.settings import load_settings
    from pipelines.context import PlatformContext
    from pipelines.inspection import history_of
    from pipelines.monitors.findings import findings_from_run
    from pipelines.monitors.state import CLOCK_STATE, MonitorStateRow
    from pipelines.promotion import run_pipeline
    from tests.console_fixtures import with_people

    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("DATAOPS_")]:
            env.delenv(key)
        ctx = PlatformContext.open(load_settings(home=home))
    platform = with_people(ctx)
    first = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 26)), as_of=NOW)
    second = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 26), (2023, 1, 27)), as_of=NOW)
    run_pipeline(ctx, "weather", window((2023, 1, 21), (2023, 1, 28)), as_of=NOW)
    late = [f for f in findings_from_run(second, silver=SILVER) if f.cause_key == "actual_reported_after_slot"]
    assert late, "the real defects of 26 January 2023 (actuals reported after their slot) are quarantined and reported"
    incident, _ = ctx.incidents.report(late[0], now=NOW)
    for_the_viewer = platform.request(call="viewer")
    to_approve = platform.request(call="rollback")  # the newer: first on the page
    # The replay clock as `dataops serve` would have saved it, so the console's platform clock is the data's.
    with ctx.ledger.session() as s, s.begin():
        s.add(MonitorStateRow(name=CLOCK_STATE, state={"start": ctx.settings.replay_start.isoformat(), "now": NOW.isoformat()}))
    older = next(int(snap["snapshot_id"]) for snap in history_of(ctx, SILVER) if snap["run_id"] == first.run_id)
    return Served(
        url=url,
        platform=platform,
        incident_id=incident.id,
        incident_title=incident.title,
        to_approve=to_approve.id,
        for_the_viewer=for_the_viewer.id,
        older_snapshot=older,
    )


def browser_binaries() -> tuple[str, str]:
    """Debian's chromium and chromedriver, and selenium; a failure naming how to install what is missing."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        missing = [name for name, path in (("chromium", chromium), ("chromedriver", chromedriver)) if path is None]
        pytest.fail(
            f"the console's browser tests need Debian's chromium and chromium-driver; not on PATH: {', '.join(missing)}. "
            f"Install them as root: {INSTALL} (`make system-deps` does it)",
            pytrace=False,
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("the console's browser tests need selenium: pip install -e '.[dev]' (or pip install selenium)", pytrace=False)
    return chromium, chromedriver


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from tests.console_fixtures import dataops_env, free_port, wait_for

    browser_binaries()  # before minutes of set-up that could not be used
    home = tmp_path_factory.mktemp("browser") / "home"
    port = free_port()
    state = _platform_with_real_data(home, f"http://127.0.0.1:{port}")
    log = home.parent / "console.log"  # a file, not a pipe nobody reads while the tests run
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [DATAOPS, "console", "--port", str(port)], env=dataops_env(home), cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr, text=True
        )
    try:
        try:
            wait_for(f"{state.url}/healthz", process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; `dataops console` said:\n{log.read_text()}") from None
        yield state
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        state.platform.ctx.ledger.engine.dispose()


@pytest.fixture
def chrome() -> Iterator[WebDriver]:
    """Headless chromium at 1280x800 through Debian's chromedriver (never a downloaded one)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    flags = (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-proxy-server",
        "--hide-scrollbars",
        "--lang=en-GB",
    )
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    # The page's own area at exactly 1280x800 (a window size would include the browser's frame).
    width, height = SIZE
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    )
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


# -- what a person does --------------------------------------------------------------------------------------------
def until(driver: WebDriver, what: str, seen: Any) -> Any:
    """Wait until `seen(driver)` is truthy; a timeout names what was awaited and the page it was on."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(d: WebDriver) -> Any:
        try:
            return seen(d)
        except WebDriverException as exc:
            # Read while a form's answer replaces the page, chromedriver may report the node as gone from the document
            # with this generic error rather than a stale element: the page is changing, so look again.
            if "does not belong to the document" in str(exc):
                return False
            raise

    try:  # while the page changes, what was looked at may vanish or go stale: look again
        return WebDriverWait(driver, WAIT_S, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(settled)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text[:2000]
        raise AssertionError(f"waited for {what} on {driver.current_url}; the page says:\n{body}") from None


def heading(driver: WebDriver, text: str) -> None:
    until(driver, f"the heading {text!r}", lambda d: text in d.find_element("tag name", "h1").text)


def shows(driver: WebDriver, text: str) -> None:
    until(driver, repr(text), lambda d: text in d.find_element("tag name", "body").text)


def sign_in(driver: WebDriver, served: Served, name: str, path: str = "/") -> None:
    """Open `path` signed out, be sent to the sign-in page, and sign in there with a password."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(served.url + path)
    heading(driver, "Sign in")
    form = driver.find_element(By.CSS_SELECTOR, 'form[action="/signin"]')  # the first: name and password
    form.find_element(By.NAME, "name").send_keys(name)
    form.find_element(By.NAME, "password").send_keys(served.platform.password)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(driver, f"{name} signed in", lambda d: f"{name}" in d.find_element(By.CSS_SELECTOR, "header .who").text)


def screenshot(driver: WebDriver, name: str) -> None:
    """docs/screenshots/NAME.png, in 128 colours when Pillow is there (a third of the size, for the repository)."""
    import io

    SHOTS.mkdir(parents=True, exist_ok=True)
    png = driver.get_screenshot_as_png()
    try:
        from PIL import Image
    except ImportError:
        (SHOTS / f"{name}.png").write_bytes(png)
        return
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(SHOTS / f"{name}.png", optimize=True)


def scroll_to(driver: WebDriver, element: Any) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'}); window.scrollBy(0, -12);", element)


# -- the tests -------------------------------------------------------------------------------------------------------
def test_sign_in_and_see_the_overview(served: Served, chrome: WebDriver) -> None:
    from selenium.webdriver.common.by import By

    chrome.delete_all_cookies()
    chrome.get(served.url + "/")
    heading(chrome, "Sign in")
    assert "/signin?next=/" in chrome.current_url
    screenshot(chrome, "signin")
    sign_in(chrome, served, "otto")
    heading(chrome, "Overview")
    page = chrome.find_element(By.TAG_NAME, "body").text
    assert "Platform clock: 2023-01-28 00:00 UTC" in page
    assert all(name in page for name in served.platform.ctx.inventory.pipelines)
    assert served.incident_title in page and served.to_approve in page
    scorecard = chrome.find_element(By.CSS_SELECTOR, 'table.scorecard td[title^="2023-01-26: 0."]')
    assert scorecard.get_attribute("class") in ("fair", "poor"), "the 26th's quarantined rows lower its score"
    screenshot(chrome, "overview")


def test_open_an_incident_and_acknowledge_it(served: Served, chrome: WebDriver) -> None:
    from selenium.webdriver.common.by import By

    sign_in(chrome, served, "otto")
    chrome.find_element(By.LINK_TEXT, "Incidents").click()
    heading(chrome, "Incidents")
    chrome.find_element(By.LINK_TEXT, served.incident_title).click()
    heading(chrome, f"Incident {served.incident_id}")
    form = chrome.find_element(By.CSS_SELECTOR, f'form[action="/incidents/{served.incident_id}/ack"]')
    form.find_element(By.NAME, "reason").send_keys("looking at the late actuals of the 26th")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    shows(chrome, "Done: ack.")
    assert "acknowledged" in chrome.find_element(By.TAG_NAME, "h1").text
    shows(chrome, "otto via console [acknowledged] acknowledged as real: looking at the late actuals of the 26th")
    screenshot(chrome, "incident")
    assert served.platform.ctx.incidents.get(served.incident_id).status == "acknowledged"


def test_an_approver_approves_and_a_viewer_is_refused(served: Served, chrome: WebDriver) -> None:
    from selenium.webdriver.common.by import By

    from policies.approvals import ApprovalStore

    store = ApprovalStore(served.platform.ctx.ledger)
    # A viewer sees the requests, and no button on any of them ...
    sign_in(chrome, served, "vera", "/approvals")
    heading(chrome, "Approvals")
    assert chrome.find_elements(By.CSS_SELECTOR, "article.approval form") == []
    shows(chrome, "Only its approvers (alice, amir) may decide it.")
    screenshot(chrome, "approvals-viewer")
    # ... and a form posted anyway, with her own session's CSRF token, is refused on the server.
    chrome.execute_script(
        """const form = document.createElement("form");
        form.method = "post"; form.action = arguments[0];
        for (const [name, value] of [["csrf", arguments[1]], ["reason", "a viewer tries"]]) {
          const field = document.createElement("input"); field.type = "hidden"; field.name = name; field.value = value;
          form.appendChild(field);
        }
        document.body.appendChild(form); form.submit();""",
        f"/approvals/{served.for_the_viewer}/approve",
        chrome.find_element(By.CSS_SELECTOR, 'form.signout input[name="csrf"]').get_attribute("value"),
    )
    heading(chrome, "Not allowed")
    shows(chrome, "vera may not do this: role viewer, approver needed")
    assert store.get(served.for_the_viewer).status == "pending"

    sign_in(chrome, served, "alice", "/approvals")
    card = chrome.find_element(By.ID, served.to_approve)
    form = card.find_element(By.CSS_SELECTOR, f'form[action="/approvals/{served.to_approve}/approve"]')
    form.find_element(By.NAME, "reason").send_keys("snapshot 42 is the last good publish")
    screenshot(chrome, "approvals")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    shows(chrome, f"Decided {served.to_approve}.")
    decided = store.get(served.to_approve)
    assert (decided.status, decided.decided_by, decided.decided_via) == ("approved", "alice", "console")
    assert "alice via console" in chrome.find_element(By.ID, served.to_approve).text
    assert store.get(served.for_the_viewer).status == "pending"


def test_follow_lineage_to_a_table_and_view_a_day_as_of_an_older_snapshot(served: Served, chrome: WebDriver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    sign_in(chrome, served, "vera")
    chrome.find_element(By.LINK_TEXT, "Lineage").click()
    heading(chrome, "Lineage")
    screenshot(chrome, "lineage")
    chrome.find_element(By.CSS_SELECTOR, f'svg.lineage a[href="/tables/{SILVER}"]').click()
    heading(chrome, SILVER)

    def show_day(day: str, snapshot: int | None) -> None:
        form = chrome.find_element(By.CSS_SELECTOR, f'form[action="/tables/{SILVER}"]')
        # A date input's typed format follows the browser's locale; its value is always ISO.
        chrome.execute_script("arguments[0].value = arguments[1];", form.find_element(By.NAME, "day"), day)
        Select(form.find_element(By.NAME, "snapshot")).select_by_value("" if snapshot is None else str(snapshot))
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        asked = f"?day={day}&snapshot={'' if snapshot is None else snapshot}"  # each differs from the one before
        until(chrome, f"the rows of {day}", lambda d: d.current_url.endswith(asked))

    # The 26th was not in the table as the first run left it; it is now.
    show_day("2023-01-26", served.older_snapshot)
    shows(chrome, f"0 row(s) on 2023-01-26 as of snapshot {served.older_snapshot}")
    show_day("2023-01-26", None)
    assert "0 row(s) on 2023-01-26" not in chrome.find_element(By.TAG_NAME, "body").text
    shows(chrome, "row(s) on 2023-01-26")
    # The 25th as the first run published it.
    show_day("2023-01-25", served.older_snapshot)
    shows(chrome, f"48 row(s) on 2023-01-25 as of snapshot {served.older_snapshot}")
    scroll_to(chrome, chrome.find_element(By.XPATH, "//h2[text()='A day as of a snapshot']"))
    screenshot(chrome, "table-as-of")


def test_the_data_page_marks_the_defects_and_leads_to_the_incident(served: Served, chrome: WebDriver) -> None:
    from selenium.webdriver.common.by import By

    sign_in(chrome, served, "vera")
    chrome.find_element(By.LINK_TEXT, "Data").click()
    heading(chrome, "Data")
    form = chrome.find_element(By.CSS_SELECTOR, 'form[action="/data"]')
    for name, day in (("start", "2023-01-24"), ("end", "2023-01-27")):
        chrome.execute_script("arguments[0].value = arguments[1];", form.find_element(By.NAME, name), day)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(chrome, "the picked range", lambda d: "start=2023-01-24&end=2023-01-27" in d.current_url)
    chart = chrome.find_element(By.ID, "chart-carbon-intensity-actual-and-forecast")
    assert chart.find_elements(By.CSS_SELECTOR, "rect.band"), "the quarantined days are shaded"
    scroll_to(chrome, chrome.find_element(By.TAG_NAME, "h1"))
    screenshot(chrome, "data")
    chart.find_element(By.CSS_SELECTOR, f'a[href="/incidents/{served.incident_id}"] text').click()  # its label, "#N"
    heading(chrome, f"Incident {served.incident_id}")


def test_ask_the_agent_in_a_chat_thread(served: Served, chrome: WebDriver) -> None:
    from selenium.webdriver.common.by import By

    sign_in(chrome, served, "otto")
    chrome.find_element(By.LINK_TEXT, "Chat").click()
    heading(chrome, "Chat")
    for question, answer in (
        ("what was the carbon intensity on 26 January 2023?", "The average carbon intensity on 2023-01-26 was"),
        ("which day was greenest between 24 and 27 January 2023?", ""),
    ):
        asked = len(chrome.find_elements(By.CSS_SELECTOR, ".turn.agent"))
        form = chrome.find_element(By.CSS_SELECTOR, "form.ask")
        form.find_element(By.NAME, "message").send_keys(question)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        until(chrome, "the agent's answer", lambda d, n=asked: len(d.find_elements(By.CSS_SELECTOR, ".turn.agent")) == n + 1)
        if answer:
            shows(chrome, answer)
    assert "/chat/chat-console-" in chrome.current_url
    screenshot(chrome, "chat")
