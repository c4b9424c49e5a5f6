"""`dataops demo` end to end, as a user runs it: every incident fixed or escalated within policy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_fixes_or_escalates_every_incident_within_policy(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")} | {"DATAOPS_HOME": str(tmp_path / "unused")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dataops"), "demo", "--json"], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    kinds = {i["kind"]: i["status"] for i in report["incidents"]}
    assert kinds == {
        "validation": "resolved",  # the real 24/26/31 January defects, contained in quarantine
        "source_failure": "resolved",  # the injected 503, re-run
        "bad_publish": "resolved",  # rolled back after approval
        "schema_drift": "escalated",  # paused, a human updates the contract
        "completeness": "escalated",  # the day the drift held back; the pipeline is paused
    }
    assert sum(1 for i in report["incidents"] if i["kind"] == "validation") == 3
    assert report["policy_violations"] == []
    assert report["approvals"] == [
        {
            "id": report["approvals"][0]["id"],
            "tool": "rollback_table",
            "rule": "rollback_approval",
            "status": "approved",
            "decided_by": "oncall",
        }
    ]
    decisions = {(a["tool"], a["decision"], a["status"]) for a in report["actions"]}
    assert ("rollback_table", "needs_approval", "ok") in decisions
    assert ("pause_pipeline", "allow", "ok") in decisions
    assert ("rerun_window", "allow", "ok") in decisions
    assert report["planner"] == "runbook planner"
    held = next(h for h in report["per_incident"] if h["kind"] == "completeness")
    assert "Cause: schema drift" in held["message"] and "late data" not in held["message"], "the drift held the day, not lateness"
    doubled = [h["id"] for h in report["per_incident"] if re.search(r"\.\.(\s|$)", h["message"])]  # not a range like 02-01..02-02
    assert doubled == [], "every sentence ends with one full stop"
    assert not (tmp_path / "unused").exists(), "the demo runs in a state folder of its own"
