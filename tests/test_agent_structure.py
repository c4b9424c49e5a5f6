"""The agent's core keeps its shape: a small graph, tools known by their traits, a journal of typed transitions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipelines.ledger import Ledger
from pipelines.remediation import Operation
from policies.audit import AuditLog, AuditTransitionError, Verdict
from tests.conftest import REPO
from tools import names
from tools.base import ToolSpec
from tools.registry import REGISTRY

SKIPPED = {"tools", "tests", ".venv", "build", "dist"}
# Where a tool's name may still be a string outside tools/, and why; an entry that no longer matches anything fails.
ALLOWED_NAMES = {
    ("pipelines/remediation.py", "Operation"): "snapshot labels written into table history; pipelines may not import tools",
}


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _owners(tree: ast.Module) -> dict[int, str]:
    """The top-level class, function or assigned name each string constant sits in."""
    owners: dict[int, str] = {}
    for top in tree.body:
        if isinstance(top, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            name = top.name
        elif isinstance(top, ast.Assign) and isinstance(top.targets[0], ast.Name):
            name = top.targets[0].id
        elif isinstance(top, ast.AnnAssign) and isinstance(top.target, ast.Name):
            name = top.target.id
        else:
            name = "<module>"
        owners |= {id(node): name for node in ast.walk(top)}
    return owners


def tool_name_literals() -> list[tuple[str, str, int, str]]:
    """(path, owner, line, name) of every string constant outside tools/ and tests/ that is a tool's name."""
    found = []
    for path in sorted(REPO.rglob("*.py")):
        relative = path.relative_to(REPO)
        if relative.parts[0] in SKIPPED or any(part.startswith(".") for part in relative.parts):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings, owners = _docstrings(tree), _owners(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names.ALL and id(node) not in docstrings:
                found.append((relative.as_posix(), owners.get(id(node), "<module>"), node.lineno, str(node.value)))
    return found


def test_no_tool_name_is_a_string_outside_tools() -> None:
    found = tool_name_literals()
    unexplained = [f"{p}:{line} {name!r} (in {owner})" for p, owner, line, name in found if not _allowed(p, owner)]
    assert not unexplained, "name tools through tools.names or a ToolSpec trait, not a string:\n" + "\n".join(unexplained)
    stale = [key for key in ALLOWED_NAMES if not any(_matches(key, p, owner) for p, owner, _, _ in found)]
    assert not stale, f"allowed exceptions that no longer occur; delete them: {stale}"


def _allowed(path: str, owner: str) -> bool:
    return any(_matches(key, path, owner) for key in ALLOWED_NAMES)


def _matches(key: tuple[str, str], path: str, owner: str) -> bool:
    return key == (path, owner)


def test_the_scan_sees_strings_and_ignores_docstrings() -> None:
    source = f'"""Mentions {names.RERUN_WINDOW} in prose."""\nTOOL = "{names.RERUN_WINDOW}"\n'
    tree = ast.parse(source)
    constants = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in _docstrings(tree)]
    assert [c.value for c in constants] == [names.RERUN_WINDOW]


def test_graph_is_only_the_wiring() -> None:
    lines = len((REPO / "agent" / "graph.py").read_text().splitlines())
    assert lines < 200, f"agent/graph.py has {lines} lines; steps belong in agent/review.py, agent/execute.py or agent/state.py"


def test_remediation_labels_are_the_names_of_their_tools() -> None:
    assert {op.value for op in Operation} == {names.QUARANTINE_PARTITION, names.RELEASE_PARTITION, names.DELETE_PARTITION}


def test_traits_are_declared_where_the_code_relies_on_them() -> None:
    def having(trait: str) -> set[str]:
        return {name for name, spec in REGISTRY.items() if getattr(spec, trait)}

    assert having("runs_pipeline") == {names.RERUN_WINDOW, names.BACKFILL_RANGE}
    assert having("checks_containment") == {names.VALIDATE_PARTITION}
    assert having("settles_incident") == {names.ANNOTATE_INCIDENT, names.RESOLVE_INCIDENT, names.ESCALATE_INCIDENT}
    assert having("needs_verification") == {names.RESOLVE_INCIDENT}
    assert having("restores_snapshot") == {names.ROLLBACK_TABLE}
    assert having("reads_only") == {name for name, spec in REGISTRY.items() if spec.effect == "read"}


def test_a_trait_that_contradicts_the_effect_is_refused() -> None:
    spec = REGISTRY[names.VALIDATE_PARTITION]
    with pytest.raises(Exception, match="'look' is declared read but has traits of a write: runs_pipeline"):
        ToolSpec(name="look", description="d", input=spec.input, result=spec.result, effect="read", run=spec.run, runs_pipeline=True)
    with pytest.raises(Exception, match="'fix' declares checks_containment, which only a read tool may; its effect is 'write'"):
        ToolSpec(name="fix", description="d", input=spec.input, result=spec.result, effect="write", run=spec.run, checks_containment=True)


# -- the audit journal ----------------------------------------------------------------------------------


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(Ledger(f"sqlite:///{tmp_path / 'ops.db'}"))


def _judge(audit: AuditLog, call_id: str, decision: Verdict) -> None:
    audit.judged(
        call_id=call_id,
        thread_id="t",
        incident_id=None,
        actor="agent",
        planner="runbook",
        tokens=0,
        tool=names.RERUN_WINDOW,
        arguments={},
        decision=decision,
        reason="because",
    )


def test_an_approved_call_runs_and_finishes(audit: AuditLog) -> None:
    _judge(audit, "c1", "needs_approval")
    assert audit.approval_requested("c1", "apr-1").status == "pending_approval"
    assert audit.approved("c1", by="oncall").approver == "oncall"
    assert audit.approved("c1", by="oncall").status == "pending_approval", "a resumed review repeats the transition"
    assert audit.started("c1", idem_key="k").status == "running"
    assert audit.started("c1", idem_key="k").status == "running", "a crash mid-tool starts it again"
    done = audit.succeeded("c1", result={"runs": []}, duration_ms=1.5)
    assert (done.status, done.result, done.duration_ms, done.approval_id) == ("ok", {"runs": []}, 1.5, "apr-1")
    assert audit.finished("c1") is not None


def test_a_call_waiting_for_approval_cannot_start(audit: AuditLog) -> None:
    _judge(audit, "c2", "needs_approval")
    with pytest.raises(AuditTransitionError, match="cannot take 'started' from status 'pending_approval' without an approver"):
        audit.started("c2", idem_key="k")
    assert audit.refused("c2", by="oncall").status == "denied"
    with pytest.raises(AuditTransitionError, match="'started' follows allowed, pending_approval, running"):
        audit.started("c2", idem_key="k")


def test_illegal_transitions_are_refused_with_the_status(audit: AuditLog) -> None:
    _judge(audit, "c3", "allow")
    with pytest.raises(AuditTransitionError, match=r"cannot take 'succeeded' from status 'allowed'; 'succeeded' follows running"):
        audit.succeeded("c3", result={}, duration_ms=0.0)
    with pytest.raises(AuditTransitionError, match="'approved' follows pending_approval"):
        audit.approved("c3", by="oncall")
    audit.started("c3", idem_key="k")
    assert audit.failed("c3", error="boom", duration_ms=2.0).status == "error"
    with pytest.raises(AuditTransitionError, match="cannot be judged again: its status is 'error'"):
        _judge(audit, "c3", "allow")
    with pytest.raises(AuditTransitionError, match="call nope has no audit row"):
        audit.expired("nope", by="system")


def test_a_repeated_write_records_the_original_result(audit: AuditLog) -> None:
    _judge(audit, "first", "allow")
    audit.started("first", idem_key="k")
    original = audit.succeeded("first", result={"rows": 3}, duration_ms=1.0)
    _judge(audit, "second", "allow")
    entry = audit.skipped_repeat("second", idem_key="k", original=original, note="not repeated")
    assert (entry.status, entry.result, entry.error, entry.duration_ms) == ("ok", {"rows": 3}, "not repeated", 0.0)
