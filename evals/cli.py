"""`dataops`, assembled: every command group of every layer, named here and nowhere else. The installed entry point.

Each layer keeps its commands as plain functions (pipelines/cli.py, pipelines/backfill_cli.py,
pipelines/incident_cli.py, agent/cli.py, agent/people_cli.py, agent/deferred_cli.py, evals/eval_cli.py) whose modules import only typer, rich and the standard library;
a command imports the heavy libraries it needs when it runs. So `dataops --help` and `dataops --version`
cost a fraction of a second, and `status` or `query` pay for the lake, never for the agent.
"""

from __future__ import annotations

import typer

from agent import cli as agent_cli
from agent import deferred_cli, people_cli
from agent.console import cli as console_cli
from evals import eval_cli
from pipelines import backfill_cli, incident_cli
from pipelines import cli as pipelines_cli
from pipelines.error_report import ReportingGroup
from pipelines.forecast import cli as forecast_commands

__all__ = ["app"]

app = typer.Typer(
    cls=ReportingGroup,  # errors a person can fix: one line, exit 2; tracebacks only for bugs, with --debug
    help=pipelines_cli.HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(pipelines_cli.main)

# Pipelines and the lake.
app.command()(pipelines_cli.run)
app.command()(backfill_cli.backfill)
app.command("serve")(console_cli.with_console_option(pipelines_cli.serve_command, agent=agent_cli.attach_agent))
app.command()(pipelines_cli.pause)
app.command()(pipelines_cli.resume)
app.command()(pipelines_cli.status)
app.command()(pipelines_cli.history)
app.command()(pipelines_cli.query)
app.command()(agent_cli.maintain)
app.command()(forecast_commands.greenest)

# Incidents, monitors and people's judgement.
app.command()(incident_cli.incidents)
incident_app = typer.Typer(
    cls=incident_cli.IncidentGroup,
    help="One incident: `show` it (also `dataops incident ID`), or record a person's judgement: `ack`, `resolve`, `expected`.",
    no_args_is_help=True,
)
incident_app.command("show")(incident_cli.incident_show)
incident_app.command("ack")(agent_cli.incident_ack)
incident_app.command("resolve")(agent_cli.incident_resolve)
incident_app.command("expected")(agent_cli.incident_expected)
app.add_typer(incident_app, name="incident")
monitors_app = typer.Typer(help="The monitors of the inventory with their active suppressions; `unsuppress ID` lifts one.")
monitors_app.callback(invoke_without_command=True)(incident_cli.monitors)
monitors_app.command("unsuppress")(agent_cli.monitors_unsuppress)
app.add_typer(monitors_app, name="monitors")

# Forecasts.
forecast_app = typer.Typer(help="Day-ahead carbon-intensity forecasts: `run` issues one now, `show` reads the latest with its accuracy.")
forecast_app.command("run")(forecast_commands.forecast_run)
forecast_app.command("show")(forecast_commands.forecast_show)
app.add_typer(forecast_app, name="forecast")

# The agent, its approvals and its audit.
app.command()(agent_cli.remediate)
app.command()(agent_cli.chat)
app.command()(agent_cli.approvals)
app.command()(agent_cli.approve)
app.command()(agent_cli.deny)
app.command()(agent_cli.audit)
deferred_app = typer.Typer(help=deferred_cli.DEFERRED_HELP, no_args_is_help=True)
deferred_app.command("list")(deferred_cli.deferred_list)
deferred_app.command("release")(deferred_cli.deferred_release)
app.add_typer(deferred_app, name="deferred")
app.command()(agent_cli.demo)

# The operator console (also served by `dataops serve`).
app.command("console")(console_cli.console_command)

# People and roles.
users_app = typer.Typer(help=people_cli.USERS_HELP, no_args_is_help=True)
users_app.command("list")(people_cli.users_list)
users_app.command("add")(people_cli.users_add)
users_app.command("remove")(people_cli.users_remove)
users_app.command("token")(people_cli.users_token)
users_app.command("password")(people_cli.users_password)
app.add_typer(users_app, name="users")

# The eval suite.
app.command(name="eval")(eval_cli.eval_command)

if __name__ == "__main__":  # `python -m evals.cli`, the same as the installed `dataops`
    app()
