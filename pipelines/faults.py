"""Fault injection for the demo and the eval suite: faults at the source and bad publishes to the lake.

One front for the three parts, and the reader of a scenario's fault dicts (`load_fault`):

    pipelines/source_faults.py     SourceFault: what a replayed API gets wrong, where and how often (the kinds table)
    pipelines/fault_injection.py   SourceFaults: the faults a caller injects (`ctx.faults`), served to its sources
    pipelines/faulty_responses.py  how each source fault changes a response body
    pipelines/lake_faults.py       LakeFault, bad_publish: writes straight to `main`, bypassing write-audit-publish

There is no process-wide fault state: a test or a scenario injects into the `SourceFaults` of its own context,
so it says exactly what it breaks and breaks nothing of anyone else's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from config.errors import DefinitionError
from pipelines.fault_injection import SourceFaults as SourceFaults
from pipelines.lake_faults import LakeFault as LakeFault
from pipelines.lake_faults import apply_lake_fault as apply_lake_fault
from pipelines.lake_faults import bad_publish as bad_publish
from pipelines.lake_faults import negate as negate
from pipelines.lake_faults import scale as scale
from pipelines.lake_faults import set_value as set_value
from pipelines.source_faults import SOURCE_FAULT_KINDS as SOURCE_FAULT_KINDS
from pipelines.source_faults import FaultKind as FaultKind
from pipelines.source_faults import SourceFault as SourceFault

FAULT_KINDS: tuple[str, ...] = tuple(sorted((*SOURCE_FAULT_KINDS, "bad_publish")))

Fault = SourceFault | LakeFault


def load_fault(raw: Mapping[str, Any], *, sources: Collection[str] | None = None, tables: Collection[str] | None = None) -> Fault:
    """A source or lake fault from a scenario's dict; `DefinitionError` names the bad field and the valid kinds."""
    valid = f"valid kinds: {', '.join(FAULT_KINDS)}"
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"a fault is a mapping with a `kind`, not {type(raw).__name__}; {valid}")
    kind = raw.get("kind")
    if kind not in FAULT_KINDS:
        raise DefinitionError(
            f"unknown fault kind {kind!r}; {valid}" if kind is not None else f"fault {dict(raw)!r} has no `kind`; {valid}"
        )
    try:
        fault: Fault = LakeFault.model_validate(dict(raw)) if kind == "bad_publish" else SourceFault.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
        raise DefinitionError(f"fault {kind} is invalid: {problems} ({valid})") from None
    if isinstance(fault, SourceFault) and sources is not None and fault.source not in sources:
        raise DefinitionError(f"fault {kind}: unknown source {fault.source!r}; known: {', '.join(sorted(sources))}")
    if isinstance(fault, LakeFault) and tables is not None and fault.table not in tables:
        raise DefinitionError(f"fault {kind}: unknown table {fault.table!r}; known: {', '.join(sorted(tables))}")
    return fault


def _problem(loc: tuple[int | str, ...], msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    return f"{'.'.join(str(p) for p in loc)}: {msg}" if loc else msg
