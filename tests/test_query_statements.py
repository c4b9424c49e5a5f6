"""What `dataops query` refuses before running anything, and how it names it: an empty query, a statement that is not
a read (named as it is written, not as DuckDB files it), a negative row limit; each exits 2 from the CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from config.errors import QueryArgumentError, QueryRefusedError, QuerySqlError
from config.settings import DataopsSettings
from pipelines.context import PlatformContext
from pipelines.query import run_query

runner = CliRunner()


@pytest.mark.parametrize("sql", ["", "   ", " ; ", "-- only a comment"])
def test_an_empty_query_says_it_is_empty(ctx: PlatformContext, sql: str) -> None:
    with pytest.raises(QuerySqlError, match=r"^the query is empty: give one SELECT, e\.g\. `dataops query"):
        run_query(ctx, sql)


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("INSTALL httpfs", "an INSTALL statement"),  # DuckDB's statement type for it is LOAD
        ("FORCE INSTALL httpfs", "a FORCE INSTALL statement"),
        ("LOAD httpfs", "a LOAD statement"),
        ("-- set up\n/* a comment */ install httpfs", "an INSTALL statement"),
        ("USE memory", "a USE statement"),  # DuckDB: SET
        ("CHECKPOINT", "a CHECKPOINT statement"),  # DuckDB: CALL
        ("ATTACH 'other.db'", "an ATTACH statement"),
        ("UPDATE silver.carbon_intensity SET actual = 0", "an UPDATE statement"),
        ("WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a", "an INSERT statement"),  # no keyword of its own: DuckDB's type
    ],
)
def test_a_refused_statement_is_named_as_it_is_written(ctx: PlatformContext, sql: str, named: str) -> None:
    with pytest.raises(QueryRefusedError) as refused:
        run_query(ctx, sql)
    assert str(refused.value).startswith(f"only reads are allowed: this is {named}. `dataops query` runs SELECT")


def test_a_negative_limit_is_refused_and_zero_gives_the_columns(ctx: PlatformContext) -> None:
    with pytest.raises(QueryArgumentError, match=r"^--limit -1 is negative: give the most rows to print, 0 or more"):
        run_query(ctx, "SELECT 1 AS one", limit=-1)
    empty = run_query(ctx, "SELECT 1 AS one", limit=0)
    assert (empty.columns, empty.rows, empty.truncated) == (["one"], [], True)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["query", ""], "error: the query is empty"),
        (["query", "INSTALL httpfs"], "refused: only reads are allowed: this is an INSTALL statement."),
        (["query", "SELECT 1", "--limit", "-1"], "error: --limit -1 is negative"),
    ],
)
def test_the_cli_exits_2_with_one_line(settings: DataopsSettings, argv: list[str], said: str) -> None:
    from evals.cli import app

    done = runner.invoke(app, argv, env={"DATAOPS_HOME": str(settings.home), "COLUMNS": "300"})
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith(said) and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""
