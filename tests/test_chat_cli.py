"""`dataops chat` in the terminal reads days on the platform clock, as the console and the service do (agent/cli.py)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import agent_for_cli
from evals.cli import app
from tests.conftest import utc

runner = CliRunner()
REPLAY_START = utc(2023, 3, 4, 1)  # the machine's calendar is years later
SERVED_UNTIL = utc(2023, 3, 9, 13, 30)  # where `dataops serve` left the replay clock


@pytest.fixture
def replay_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("DATAOPS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DATAOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATAOPS_SOURCE_MODE", "replay")
    monkeypatch.setenv("DATAOPS_REPLAY_START", REPLAY_START.isoformat())
    return tmp_path / "home"


def _served(until: datetime) -> None:
    """Save the replay clock as `dataops serve` does when it ticks or stops (pipelines/service_clock.py)."""
    from config.settings import load_settings
    from pipelines.context import PlatformContext
    from pipelines.monitors.state import CLOCK_STATE, MonitorStateRow

    ctx = PlatformContext.open(load_settings())
    with ctx.ledger.session() as s, s.begin():
        s.add(MonitorStateRow(name=CLOCK_STATE, state={"start": REPLAY_START.isoformat(), "now": until.isoformat()}))


def test_the_cli_agent_runs_on_the_clock_the_service_saved(replay_home: Path) -> None:
    _served(SERVED_UNTIL)
    agent = agent_for_cli()
    try:
        assert agent.runtime.clock() == SERVED_UNTIL
    finally:
        agent.close()


def test_a_home_the_service_never_ran_in_keeps_the_wall_clock(replay_home: Path) -> None:
    """`dataops run` reads the replay as of the wall clock: the replay start would put its data in the future."""
    agent = agent_for_cli()
    try:
        assert abs(agent.runtime.clock() - datetime.now(UTC)) < timedelta(minutes=5)
    finally:
        agent.close()


def test_cli_chat_answers_relative_to_the_platform_clock_not_the_machine(replay_home: Path) -> None:
    _served(SERVED_UNTIL)
    result = runner.invoke(app, ["chat", "-m", "is the data fresh?"])
    assert result.exit_code == 0, result.output
    assert "As of 2023-03-09 13:30 UTC (platform clock)" in result.output


def test_an_interactive_session_reads_who_asks_every_turn(replay_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A role changed or a token revoked mid-session counts from the next turn, not from the next session."""
    import agent.cli as cli
    from agent.runtime import Agent
    from policies.people import Actor

    roles = iter(["operator", "operator", "viewer", "viewer"])
    seen: list[str | None] = []

    def asker(_ctx: object, _as_user: str | None) -> Actor:
        return Actor(id="bob", channel="cli", role=next(roles))

    real_chat = Agent.chat

    def chat(self: object, thread_id: str, text: str, *, user: Actor) -> object:
        seen.append(user.role)
        return real_chat(self, thread_id, text, user=user)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "cli_asker", asker)
    monkeypatch.setattr(Agent, "chat", chat)
    result = runner.invoke(app, ["chat"], input="is the data fresh?\nis the data fresh?\nquit\n")
    assert result.exit_code == 0, result.output
    assert seen == ["operator", "viewer"], "the first call refuses a bad --as before any question; then one per turn"


def test_the_console_agent_runs_on_the_clock_the_service_saved(replay_home: Path) -> None:
    """The console started on its own (not inside `dataops serve`) decides and chats on the replay clock too."""
    from agent.console.actions import AgentDecider
    from config.settings import load_settings
    from pipelines.context import PlatformContext

    _served(SERVED_UNTIL)
    decider = AgentDecider(PlatformContext.open(load_settings()))
    try:
        assert decider.agent().runtime.clock() == SERVED_UNTIL
    finally:
        decider.close()
