"""What a diagnosis is: the cause the agent names before planning, its confidence and the facts behind it.

The rules that find causes are in agent/diagnose.py (runs, validation, anomalies, publishes) and
agent/diagnose_gaps.py (missing and held data); the runbooks key on `Diagnosis.cause`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.extent import Extent
from pipelines.incidents import Incident

Cause = Literal[
    "source_outage",
    "late_data",
    "transient_source_failure",
    "pipeline_bug",
    "schema_drift",
    "unit_change",
    "duplicates_changed",
    "clock_shift",
    "bad_publish",
    "bad_values",
    "expected_behaviour",
    "unknown",
]
CAUSES: tuple[str, ...] = Cause.__args__  # type: ignore[attr-defined]


class Diagnosis(BaseModel):
    """The cause the agent settled on before planning, with what it rests on."""

    model_config = ConfigDict(frozen=True)

    cause: Cause
    confidence: float = Field(ge=0.0, le=1.0)
    summary: str = Field(description="One sentence a person can act on, without its full stop (reports add it)")
    evidence: list[str] = Field(default_factory=list, description="The facts behind it, each with its numbers")
    extent: Extent | None = None

    @field_validator("summary")
    @classmethod
    def _no_full_stop(cls, value: str) -> str:
        # Reports end the sentence themselves ("Cause: ...: {summary}."); a summary quoting a source's
        # message that ends in a full stop would otherwise print two.
        return value.rstrip().rstrip(".").rstrip()

    def line(self) -> str:
        return f"{self.cause.replace('_', ' ')} ({self.confidence:.0%}): {self.summary}"


def latest(incident: Incident) -> dict[str, Any]:
    """The newest evidence entry of an incident (its latest occurrence), or an empty dict."""
    last = incident.evidence[-1] if incident.evidence else {}
    return last if isinstance(last, dict) else {}


def quarantine_facts(rows: list[dict[str, Any]]) -> list[str]:
    """One evidence line for quarantine rows: how many, from when to when, and the first reason."""
    if not rows:
        return []
    stamps = sorted(r["ts"] for r in rows if r["ts"] is not None)
    span = f" from {stamps[0]:%Y-%m-%d %H:%M} to {stamps[-1]:%H:%M}" if stamps else ""
    return [f"{len(rows)} row(s) in quarantine{span}: {str(rows[0]['reason'])[:160]}"]
