"""The `dataops` command line: help everywhere, JSON where it reports, exit codes that mean something."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from config.errors import QueryRefusedError
from evals.cli import app
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.promotion import run_pipeline
from pipelines.query import run_query
from tests.conftest import utc, window

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATAOPS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("command", [[], ["run"], ["status"], ["query"], ["history"], ["incident"], ["incident", "show"], ["monitors"]])
def test_every_command_explains_itself(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output) > 200


def test_run_reports_json_and_lands_data(home: Path) -> None:
    result = runner.invoke(app, ["run", "carbon_intensity", "--start", "2023-01-24", "--end", "2023-01-27", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    (run,) = payload["runs"]
    assert run["status"] == "succeeded" and run["rows_quarantined"] == 6
    checks = {q["expectation"]: q["rows"] for q in payload["quarantine"]}
    assert checks == {"actual_reported_after_slot": 5, "forecast_tracks_actual": 1}
    strict = runner.invoke(app, ["run", "carbon_intensity", "--start", "2023-01-24", "--end", "2023-01-27", "--strict", "--json"])
    assert strict.exit_code == 3, "a re-run quarantines nothing new, but the rows are still held back"
    (again,) = json.loads(strict.stdout)["runs"]
    assert (again["rows_quarantined"], again["rows_already_held"]) == (0, 6)


def test_run_splits_long_windows_and_reports_held_days(home: Path) -> None:
    result = runner.invoke(
        app, ["run", "carbon_intensity", "--start", "2023-10-15", "--end", "2023-10-25", "--window-days", "5", "--json", "--strict"]
    )
    assert result.exit_code == 3
    runs = json.loads(result.stdout)["runs"]
    assert [r["window_start"][:10] for r in runs] == ["2023-10-15", "2023-10-20"]
    assert runs[1]["held_days"] == ["2023-10-20", "2023-10-21", "2023-10-22"]


def test_unknown_pipeline_and_bad_dates_exit_2(home: Path) -> None:
    result = runner.invoke(app, ["run", "carbon"])
    assert result.exit_code == 2 and "unknown pipeline 'carbon'; known: carbon_intensity" in result.output
    result = runner.invoke(app, ["run", "weather", "--start", "yesterday"])
    assert result.exit_code == 2 and "not an ISO date" in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--start", ""], "not an ISO date"),  # an empty value is a bad value, not the default
        (["--start", "2023-01-01", "--end", "2023-01-02", "--window-days", "0"], "--window-days"),
        (["--start", "2023-01-01", "--end", "2023-01-02", "--window-days", "-3"], "--window-days"),
        (["--start", "2023-03-01"], "the end of carbon_intensity's default window (pass --end)"),
        (["--start", "2023-02-01", "--end", "2023-02-03", "--as-of", "2023-01-15"], "after the clock"),
    ],
)
def test_run_refuses_bad_windows_with_exit_2(home: Path, args: list[str], said: str) -> None:
    """Usage errors, one line each, exit 2: never an internal error, never a silent default."""
    result = runner.invoke(app, ["run", "carbon_intensity", *args])
    assert result.exit_code == 2, result.output
    assert said in result.output and "internal error" not in result.output


def test_run_stops_at_the_clock_s_day(home: Path) -> None:
    """Days after the clock are not run (nothing is known of them): the window is cut at the clock's day, as a
    backfill's is, and `--end 9999-12-31` is no overflow."""
    result = runner.invoke(
        app, ["run", "carbon_intensity", "--start", "2023-01-01", "--end", "9999-12-31T12:00", "--as-of", "2023-01-02T06:00Z", "--json"]
    )
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [(r["window_start"][:10], r["window_end"][:10]) for r in runs] == [("2023-01-01", "2023-01-03")]
    assert "running up to 2023-01-03" in result.stderr


def test_incidents_refuses_an_unknown_status(home: Path) -> None:
    result = runner.invoke(app, ["incidents", "--status", "bogus"])
    assert result.exit_code == 2 and "is not one of: open, acknowledged" in result.output


def test_chat_refuses_an_empty_message(home: Path) -> None:
    """`dataops chat -m ""` once spun for ever re-reading the same blank question."""
    result = runner.invoke(app, ["chat", "-m", "   "])
    assert result.exit_code == 2 and "--message is empty" in result.output


def test_status_history_and_query(home: Path) -> None:
    assert runner.invoke(app, ["run", "weather", "--start", "2023-01-01", "--end", "2023-01-03"]).exit_code == 0
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    tables = {t["table"]: t for t in status["tables"]}
    assert tables["silver.weather"]["rows"] == 48 and tables["silver.weather"]["quality_score"] == 1.0
    assert {p["pipeline"]: p["status"] for p in status["pipelines"]}["weather"] == "succeeded"
    history = json.loads(runner.invoke(app, ["history", "silver.weather", "--json"]).stdout)
    assert history["snapshots"][0]["refs"] == ["main"] and history["snapshots"][0]["run_id"]
    query = runner.invoke(app, ["query", "SELECT count(*) AS n, round(avg(temperature_c), 3) AS t FROM silver.weather", "--json"])
    assert query.exit_code == 0
    assert json.loads(query.stdout)["rows"][0][0] == 48
    refused = runner.invoke(app, ["query", "DROP TABLE silver.weather"])
    assert refused.exit_code == 2 and "only reads are allowed" in refused.output
    unknown = runner.invoke(app, ["history", "silver.nope"])
    assert unknown.exit_code == 2 and "known:" in unknown.output


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("INSERT INTO silver.carbon_intensity SELECT * FROM silver.carbon_intensity", "INSERT statement"),
        ("UPDATE silver.carbon_intensity SET actual = 0", "UPDATE statement"),
        ("COPY silver.carbon_intensity TO '/tmp/leak.csv'", "COPY statement"),
        ("ATTACH '/tmp/other.db'", "ATTACH statement"),
        ("SELECT 1; DELETE FROM silver.carbon_intensity", "one statement at a time"),
        ("SET enable_external_access = true", "SET statement"),
    ],
)
def test_query_refuses_anything_but_a_read(ctx: PlatformContext, sql: str, words: str) -> None:
    with pytest.raises(QueryRefusedError, match=words):
        run_query(ctx, sql)


def test_query_cannot_reach_files(ctx: PlatformContext) -> None:
    from config.errors import QueryError

    with pytest.raises(QueryError, match="file system operations are disabled"):
        run_query(ctx, "SELECT * FROM read_csv('/etc/passwd')")


def test_seven_day_hourly_aggregate_over_gold(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 15)))
    result = run_query(
        ctx,
        "SELECT hour(ts) AS h, round(avg(actual), 2) AS a FROM gold.carbon_intensity_hourly "
        "WHERE ts >= TIMESTAMPTZ '2023-03-01' AND ts < TIMESTAMPTZ '2023-03-08' GROUP BY 1 ORDER BY 1",
    )
    assert [r[0] for r in result.rows] == list(range(24))
    direct = run_query(
        ctx,
        "SELECT round(avg(actual), 2) FROM silver.carbon_intensity WHERE hour(ts) = 0 AND ts >= TIMESTAMPTZ '2023-03-01' AND ts < TIMESTAMPTZ '2023-03-08'",
    )
    assert result.rows[0][1] == direct.rows[0][0]


def test_run_first_recovers_the_window_of_an_abandoned_run(home: Path) -> None:
    import subprocess
    import sys

    from config.settings import load_settings
    from pipelines.ledger import Ledger
    from tests.conftest import utc

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    settings = load_settings()
    settings.ensure_home()
    ledger = Ledger(settings.ops_db)
    ledger.start_run(
        run_id="20230101T000000Z-weather-dead00",
        pipeline="weather",
        window_start=utc(2023, 2, 1),
        window_end=utc(2023, 2, 3),
        as_of=utc(2026, 1, 1),
    )
    with ledger.session() as s, s.begin():
        from pipelines.ledger import RunRow

        s.get(RunRow, "20230101T000000Z-weather-dead00").pid = int(dead.stdout)  # a process that has ended
    result = runner.invoke(app, ["run", "weather", "--start", "2023-03-01", "--end", "2023-03-02", "--json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [(r["window_start"][:10], r["window_end"][:10]) for r in runs] == [("2023-02-01", "2023-02-03"), ("2023-03-01", "2023-03-02")]
    lost = ledger.run("20230101T000000Z-weather-dead00")
    assert lost is not None and lost.status == "abandoned" and lost.recovered_by == runs[0]["run_id"]
    again = runner.invoke(app, ["run", "weather", "--start", "2023-03-01", "--end", "2023-03-02", "--json"])
    assert len(json.loads(again.stdout)["runs"]) == 1, "a recovered window is not re-run again"


def test_query_reads_what_the_pyiceberg_scan_reads(ctx: PlatformContext) -> None:
    from pipelines.lakehouse.catalog import load_table
    from tests.conftest import utc

    w = window((2024, 1, 12), (2024, 1, 13))
    run_pipeline(ctx, "carbon_intensity", w, as_of=utc(2024, 1, 12, 6, 5))
    run_pipeline(ctx, "carbon_intensity", w, as_of=utc(2024, 1, 12, 8, 35))  # overwrites the day: old files must not leak in
    for name in ("silver.carbon_intensity", "gold.carbon_intensity_hourly", "bronze.carbon_intensity"):
        table = load_table(ctx.catalog, name)
        order = ["ts"] + (["payload_hash"] if "payload_hash" in table.schema().column_names else [])
        read = run_query(ctx, f"SELECT * FROM {name} ORDER BY {', '.join(order)}", limit=None)
        scanned = table.scan().to_arrow().sort_by([(c, "ascending") for c in order])
        assert read.columns == scanned.column_names, name
        assert [dict(zip(read.columns, row, strict=True)) for row in read.rows] == scanned.to_pylist(), name


def _anomaly() -> Finding:
    return Finding(
        kind="value_anomaly",
        severity="warning",
        table="silver.carbon_intensity",
        cause_key="actual_intensity",
        title="actual_intensity: 1 anomalous point",
        evidence={
            "monitor": "actual_intensity",
            "direction": "high",
            "score": 6.0,
            "points": [{"ts": "2023-01-01T12:00:00+00:00", "score": 6.0}],
        },
    )


@pytest.fixture
def people(home: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformContext:
    """A platform with one open incident (id 1) and the bundled people: oncall, an approver."""
    for name in ("DATAOPS_APPROVERS", "DATAOPS_USER", "DATAOPS_TOKEN", "DATAOPS_PEOPLE_FILE", "DATAOPS_POLICY_FILE", "DATAOPS_SOURCE_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DATAOPS_REPLAY_START", raising=False)
    ctx = PlatformContext.open()
    ctx.incidents.report(_anomaly(), now=utc(2023, 1, 1, 13))
    return ctx


def _token(ctx: PlatformContext, name: str, role: str | None = None) -> dict[str, str]:
    """The environment of `name` on the CLI: their personal token (added to the ops database first when a role is given)."""
    from policies.people import PeopleStore, Person

    store = PeopleStore(ctx.ledger)
    if role is not None:
        store.add(Person.model_validate({"name": name, "role": role, "source": "database"}))
    return {"DATAOPS_TOKEN": store.issue_token(name)}


def test_incident_expected_from_the_cli_suppresses_lists_and_remembers(people: PlatformContext) -> None:
    from evals.cli import app as dataops
    from memory.store import IncidentMemory
    from pipelines.monitors.feedback import filter_findings

    shown = runner.invoke(dataops, ["incident", "1", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["status"] == "open", "`dataops incident ID` is `dataops incident show ID`"
    refused = runner.invoke(dataops, ["incident", "expected", "1", "--reason", "test day"], env=_token(people, "mallory", "viewer"))
    assert refused.exit_code == 2
    assert "mallory may not act on incidents: role viewer, operator or approver needed" in refused.output
    oncall = _token(people, "oncall")

    done = runner.invoke(
        dataops, ["incident", "expected", "1", "--reason", "curtailment test", "--for", "10", "--as", "oncall", "--json"], env=oncall
    )
    assert done.exit_code == 0, done.output
    outcome = json.loads(done.stdout)
    assert outcome["judgement"]["incident"]["status"] == "resolved" and outcome["judgement"]["label"]["verdict"] == "expected"
    assert outcome["judgement"]["suppression"]["expires_at"] == "2023-01-11T00:00:00Z", "10 days on the replay clock (at its start)"
    assert outcome["remembered"] == "expected-1"

    listed = json.loads(runner.invoke(dataops, ["monitors", "--json"]).stdout)
    by_name = {m["name"]: m for m in listed["monitors"]}
    assert {"name", "kind", "table", "severity", "suppressions"} <= set(by_name["actual_intensity"])
    [suppression] = by_name["actual_intensity"]["suppressions"]
    assert suppression["pattern"] == "value_anomaly actual_intensity on silver.carbon_intensity, direction high, score ≤ 7.50"
    assert (suppression["id"], suppression["actor"], suppression["channel"], suppression["hits"]) == (1, "oncall", "cli", 0)
    assert suppression["reason"].startswith("curtailment test")
    assert all(not m["suppressions"] for name, m in by_name.items() if name != "actual_intensity")

    assert filter_findings(people, [_anomaly()], utc(2023, 1, 5)) == []
    hits = {m["name"]: m for m in json.loads(runner.invoke(dataops, ["monitors", "--json"]).stdout)["monitors"]}
    assert hits["actual_intensity"]["suppressions"][0]["hits"] == 1
    text = runner.invoke(dataops, ["incident", "show", "1"])
    assert "oncall via cli [resolved] marked expected: curtailment test" in text.stdout
    record = IncidentMemory.open(people.settings).get("expected-1")
    assert record is not None and "curtailment test" in record.root_cause and record.outcome.startswith("expected")

    lifted = runner.invoke(dataops, ["monitors", "unsuppress", "1", "--as", "oncall"], env=oncall)
    assert lifted.exit_code == 0 and "suppression #1 lifted by oncall" in lifted.stdout
    again = runner.invoke(dataops, ["monitors", "unsuppress", "1"], env=oncall)
    assert again.exit_code == 2 and "suppression 1 was already lifted by oncall" in again.output
    assert not any(m["suppressions"] for m in json.loads(runner.invoke(dataops, ["monitors", "--json"]).stdout)["monitors"])


def test_incident_ack_and_resolve_from_the_cli_and_their_errors(people: PlatformContext) -> None:
    from evals.cli import app as dataops

    oncall, olive = _token(people, "oncall"), _token(people, "olive", "operator")
    unknown = runner.invoke(dataops, ["incident", "ack", "7", "--as", "oncall"], env=oncall)
    assert unknown.exit_code == 2 and "no incident 7; `dataops incidents` lists them" in unknown.output
    acked = runner.invoke(dataops, ["incident", "ack", "1", "--as", "olive"], env=olive)
    assert acked.exit_code == 0 and "incident 1 acknowledged by olive, labelled real" in acked.stdout
    resolved = runner.invoke(dataops, ["incident", "resolve", "1", "--reason", "meter replaced"], env=oncall)
    assert resolved.exit_code == 0, resolved.output
    again = runner.invoke(dataops, ["incident", "resolve", "1"], env=oncall)
    assert again.exit_code == 2 and "incident 1 is resolved; it can move to open, not resolved" in again.output
    notes = json.loads(runner.invoke(dataops, ["incident", "show", "1", "--json"]).stdout)["notes"]
    assert [(n["actor"], n["channel"], n["status"]) for n in notes] == [("olive", "cli", "acknowledged"), ("oncall", "cli", "resolved")]
    assert notes[1]["note"].startswith("resolved as real: meter replaced")


@pytest.mark.parametrize(
    ("sql", "label", "said"),
    [
        ("SELEC 1", "error", "does not parse"),
        ("SELECT nosuch FROM (SELECT 1 AS a)", "error", "Binder Error"),
        ("SELECT 'x'::INT", "error", "Conversion Error"),
        ("SELECT * FROM read_csv('/etc/passwd')", "refused", "reads the lake's tables only"),
    ],
)
def test_query_errors_the_asker_can_fix_exit_2(home: Path, sql: str, label: str, said: str) -> None:
    """Wrong SQL is a usage error (exit 2, one line); exit 1 stays for a lake that cannot be read."""
    result = runner.invoke(app, ["query", sql])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"{label}:") and said in result.output


def test_status_shows_a_paused_pipeline_and_why(home: Path) -> None:
    """`dataops pause --reason` says the reason is shown in status: it is, in the table's note and in --json."""
    assert runner.invoke(app, ["pause", "weather", "--reason", "sensor swap"]).exit_code == 0
    shown = runner.invoke(app, ["status", "--json"])
    assert shown.exit_code == 0, shown.output
    states = {p["pipeline"]: (p["paused"], p["paused_reason"]) for p in json.loads(shown.stdout)["pipelines"]}
    assert states["weather"] == (True, "sensor swap") and states["carbon_intensity"] == (False, None)
    text = runner.invoke(app, ["status"], env={"COLUMNS": "200"})
    assert "weather is paused by cli: sensor swap" in text.output
    assert runner.invoke(app, ["resume", "weather"]).exit_code == 0
    assert "is paused" not in runner.invoke(app, ["status"], env={"COLUMNS": "200"}).output


def test_serve_refuses_to_stop_before_it_starts(home: Path) -> None:
    """`serve --until` before the replay's start is a typo, not a request to run for ever."""
    result = runner.invoke(app, ["serve", "--start", "2023-01-05", "--until", "2023-01-02", "--no-console", "--no-metrics", "--no-agent"])
    assert result.exit_code == 2 and "is before the clock's start (2023-01-05" in result.output


def test_incident_expected_needs_a_reason(home: Path) -> None:
    """The reason is what the next person (and the agent's memory) reads about the suppression: blank is refused."""
    result = runner.invoke(app, ["incident", "expected", "1", "--reason", "  "])
    assert result.exit_code == 2 and "--reason is empty" in result.output


def test_piped_output_keeps_every_value_whole(home: Path) -> None:
    """`dataops status | grep paused` must see the whole line: piped, the width is 240 columns unless COLUMNS says otherwise."""
    import os
    import subprocess
    import sys

    reason = "the station's sensor was swapped on site and its first week of readings is under review by the met office"
    assert runner.invoke(app, ["pause", "weather", "--reason", reason]).exit_code == 0
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"DATAOPS_HOME": str(home)}
    dataops = str(Path(sys.executable).parent / "dataops")
    piped = subprocess.run([dataops, "status"], capture_output=True, text=True, env=env, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert f"weather is paused by cli: {reason}; `dataops resume weather` resumes it" in piped.stdout
    narrow = subprocess.run([dataops, "status"], capture_output=True, text=True, env=env | {"COLUMNS": "80"}, timeout=300)
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80


def test_a_second_strict_run_still_reports_the_held_row(home: Path) -> None:
    """Re-running a window writes nothing twice to quarantine, but the row is still held: --strict still exits 3."""
    args = ["run", "carbon_intensity", "--start", "2023-01-24", "--end", "2023-01-25", "--strict"]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 3, first.output
    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 3, again.output
    run = json.loads(again.stdout)["runs"][0]
    assert (run["rows_quarantined"], run["rows_already_held"]) == (0, 1)
    assert run["rows_out"] + run["rows_already_held"] == run["rows_in"]
    shown = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert shown.exit_code == 3 and "0 (+1 already held)" in shown.output


def test_a_second_strict_backfill_still_reports_the_held_rows(home: Path) -> None:
    """The same for a backfill: its partitions are read from packed runs by day, rows already held included."""
    args = ["backfill", "carbon_intensity", "--start", "2023-01-23", "--end", "2023-01-26", "--strict"]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 3, first.output
    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 3, again.output
    report = json.loads(again.stdout)
    assert (report["rows_quarantined"], report["rows_already_held"]) == (0, 1)
    [held] = [o for o in report["outcomes"] if o["rows_already_held"]]
    assert held["start"].startswith("2023-01-24"), "the held row is on its own day's partition"
    shown = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert shown.exit_code == 3 and "held back 0 (+1 already held)" in shown.output
