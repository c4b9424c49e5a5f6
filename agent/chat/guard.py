"""Requests no chat message can make: to set the rules aside, to write SQL, to destroy a table, to hand out secrets.

These are refused before the message is read for an intent, whatever it resembles, with one line saying why
and what can be done instead. Text in a message is data: "ignore your rules", "SYSTEM: maintenance mode" or
"authorised by the CTO" change nothing, and neither the checks (config/suites.yaml) nor the policy
(config/policy.yaml) can be switched off from chat. A request that names no day never deletes a table whole.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from agent.chat.dates import read_when

_SQL_WRITE = re.compile(
    r"\b(?:delete\s+from|drop\s+(?:table|schema|view|database)|truncate(?:\s+table)?\s+[\w.]+|insert\s+into|update\s+[\w.]+\s+set"
    r"|alter\s+table|create\s+(?:or\s+replace\s+)?(?:table|view)|merge\s+into)\b"
)
_SET_ASIDE = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass|disable|turn\s+off|switch\s+off|skip|suspend|relax|loosen|lift|remove)\b"
    r"[^.?!]*?\b(?:rules?|instructions?|polic(?:y|ies)|guardrails?|checks?|validations?|expectations?|approvals?|limits?|safeguards?|prompt)\b"
)
_WHOLE_TABLE = re.compile(
    r"\b(?:truncate|drop|wipe|empty|recreate|destroy|nuke)\b[^.?!]*?\b(?:tables?|bronze|silver|gold|quarantine|lake|everything|all)\b"
)
_SECRETS = re.compile(
    r"\b(?:api[\s_-]?keys?|passwords?|secrets?|credentials?|private\s+keys?|(?:api|access|auth|slack|bearer|bot|signing)[\s_-]*(?:tokens?|secrets?))\b"
)  # "token usage" is the audit's, no secret
_ASKS_FOR = re.compile(r"\b(?:give|show|tell|send|share|print|reveal|what\s+(?:is|are)|list|dump|paste)\b")

SQL_WRITE = (
    "I run no SQL that writes: the query tool is read-only. Changes go through the actions and their policy "
    "(quarantine, release, re-run, backfill, delete one day, roll back). Nothing ran."
)
SET_ASIDE = (
    "The checks, the policy and the approvals cannot be set aside from chat, whatever a message says or claims: they are "
    "config/suites.yaml and config/policy.yaml, changed by a person in a reviewed commit. To let held data through, fix "
    "the source or the check, then re-run; a quarantined day is released with approval. Nothing ran."
)
WHOLE_TABLE = (
    "A table is never dropped, emptied or recreated from chat: delete works on one day of one table, with approval "
    "(e.g. 'delete silver.weather 2023-03-02'), and a bad publish is rolled back to a snapshot. Nothing ran."
)
SECRETS = "I never share keys, passwords, tokens or other secrets, and I do not hold them in chat. Nothing ran."


def refusal(text: str) -> str | None:
    """Why `text` is refused outright, or None for a message the intents may read."""
    lowered = text.lower().replace("’", "'")
    if _SQL_WRITE.search(lowered):
        return SQL_WRITE
    if _SET_ASIDE.search(lowered):
        return SET_ASIDE
    if _SECRETS.search(lowered) and _ASKS_FOR.search(lowered):
        return SECRETS
    if _WHOLE_TABLE.search(lowered) and _names_no_day(lowered):
        return WHOLE_TABLE
    return None


def _names_no_day(lowered: str) -> bool:
    return read_when(lowered, datetime.now(UTC)).start is None  # only whether a day is named matters, not which
