"""`--help` rewraps each paragraph of a docstring to the terminal (no break where the source line ended), keeps the
blank line between paragraphs, and shows brackets as written (pipelines/help_text.py)."""

from __future__ import annotations

import inspect
import itertools

import pytest
import typer
from typer.testing import CliRunner

from pipelines.error_report import ReportingGroup
from pipelines.help_text import reflow

runner = CliRunner()


def _help(argv: list[str], width: int) -> list[str]:
    from evals.cli import app

    done = runner.invoke(app, [*argv, "--help"], env={"COLUMNS": str(width)}, terminal_width=width)
    assert done.exit_code == 0, done.output
    return [line.strip() for line in done.stdout.splitlines()]


def _description(lines: list[str]) -> list[list[str]]:
    """The paragraphs of a command's description: after the usage line, before the first panel."""
    start = next(i for i, line in enumerate(lines) if line.startswith("Usage:")) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("╭"))
    paragraphs: list[list[str]] = [[]]
    for line in lines[start:end]:
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


@pytest.mark.parametrize("width", [80, 100, 160])
@pytest.mark.parametrize("argv", [["run"], ["backfill"], ["serve"], ["incident", "expected"], ["forecast", "run"], ["query"], ["greenest"]])
def test_description_lines_are_filled_to_the_terminal(argv: list[str], width: int) -> None:
    """A line ends where the next word would not fit, never where the docstring's source line ended."""
    paragraphs = _description(_help(argv, width))
    assert len(paragraphs) >= 2, paragraphs
    for paragraph in paragraphs:
        for line, following in itertools.pairwise(paragraph):
            assert len(line) + 1 + len(following.split()[0]) > width - 4, f"broken early at width {width}: {line!r} / {following!r}"


def test_run_help_joins_a_sentence_across_a_docstring_line_and_keeps_the_paragraphs() -> None:
    from pipelines.cli import run

    source = inspect.getdoc(run) or ""
    assert "request limit; a\nprogress bar counts them" in source, "the docstring this test is about changed"
    paragraphs = _description(_help(["run"], 160))
    assert paragraphs[0] == ["Ingest a window through bronze, silver (validated, write-audit-publish) and gold."]
    assert "request limit; a progress bar counts them" in paragraphs[1][0], paragraphs
    assert " ".join(paragraphs[1]).endswith("3 with --strict when anything was quarantined.")


def test_dataops_help_lists_every_command_on_one_entry_each() -> None:
    import typer.main

    from evals.cli import app

    names = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    lines = _help([], 100)
    listed = [line.strip("│ ").split()[0] for line in lines if line.startswith("│ ") and not line.strip("│ ").startswith("-")]
    assert [n for n in names if n in listed] == names, listed


def test_reflow_joins_lines_keeps_paragraphs_list_items_and_unwrapped_blocks() -> None:
    text = "First line\ngoes on.\n\nSecond paragraph\n--for days stays joined.\n\n- one item\n  continued\n- two\n\n\b\nkept\nas is"
    assert (
        reflow(text) == "First line goes on.\n\nSecond paragraph --for days stays joined.\n\n- one item continued\n- two\n\n\b\nkept\nas is"
    )
    assert reflow(reflow(text)) == reflow(text)


def test_brackets_in_help_are_shown_as_written() -> None:
    """Rich markup would take `[local|ray]` for a style and drop it; help text is plain text."""
    app = typer.Typer(cls=ReportingGroup, add_completion=False)

    @app.command()
    def go(
        executor: str = typer.Option("local", help="Where it runs [local|ray]; see [x] and `code`."),
    ) -> None:
        """Run it [local|ray] with `backticks`.

        A second paragraph with [bold]no markup[/bold] and a
        line break in the middle.
        """

    @app.command()
    def other() -> None:
        """Another command, so the group lists both."""

    done = runner.invoke(app, ["go", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert done.exit_code == 0, done.output
    text = " ".join(done.stdout.split())
    for written in (
        "Run it [local|ray] with `backticks`.",
        "[bold]no markup[/bold] and a line break in the middle.",
        "[local|ray]; see [x]",
    ):
        assert written in text, done.stdout
