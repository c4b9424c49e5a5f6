"""Whether a chat message asks the platform to act, or asks about acting: the grammatical mood of the message.

The classifier says what a message is about ("quarantine", "backfill"); it cannot tell "quarantine
silver.weather on 2023-01-27" from "would quarantining silver.weather on 2023-01-27 help?". Only a
request may become a write, so this module reads the form of the message, clause by clause:

- a clause is a request when, after fillers ("ok", "hey", "then", "just"), it opens with an action verb
  ("quarantine X", "re-run weather"), or with a polite opener ("please", "can you", "could you", "would
  you", "go ahead and", "I want you to", "let's") followed by anything but a read verb or a question word
  ("can we ..." asks whether it is possible, and is answered);
- a clause stating a need is a request ("yesterday's generation mix needs a rerun");
- a message is a request when one of its clauses is one and nothing in it says not to act ("don't",
  "do not", "never", "no need") or asks to be told ("I want to know whether ...").

Everything else is a question about the action: wh-questions ("how do I release ...", "what would expire
snapshots do"), questions opening with an auxiliary ("is it safe to pause ...", "should we rerun ...",
"would quarantining ... help"), read verbs ("explain ...", "show me ... before I delete it") and
statements ("I only want to know whether ..."). A question is never turned into a write: when unsure,
the safe reading is to answer.
"""

from __future__ import annotations

import difflib
import re

# Verbs that open a request to change something; typos within difflib's 0.8 ratio count ("quarentine").
ACTION_VERBS = frozenset(
    {
        "quarantine", "unquarantine", "release", "delete", "drop", "remove", "purge", "wipe", "erase", "expire", "clean",
        "prune", "trim", "garbage", "vacuum", "compact", "optimize", "optimise", "merge", "combine", "rewrite", "roll",
        "rollback", "revert", "restore", "undo", "reset", "go", "time", "pause", "stop", "halt", "suspend", "disable",
        "freeze", "resume", "unpause", "unfreeze", "restart", "enable", "continue", "turn", "rerun", "run", "redo",
        "reprocess", "reload", "recompute", "retry", "republish", "backfill", "fill", "refill", "load", "populate",
        "ingest", "hold", "isolate", "hide", "block", "take", "pull", "move", "put", "bring", "let", "get", "start", "kick",
        "trigger",
    }
)  # fmt: skip
# Verbs that ask to be told or shown something: a request to read, never to act.
READ_VERBS = frozenset(
    {
        "show", "tell", "explain", "describe", "list", "check", "look", "find", "give", "display", "summarise", "summarize",
        "compare", "say", "see", "help", "count", "confirm", "verify", "know", "wonder", "ask",
    }
)  # fmt: skip
# Words that open a question (wh-words and auxiliaries), and subjects that open a statement.
QUESTION_WORDS = frozenset(
    {
        "what", "whats", "which", "when", "where", "why", "how", "hows", "who", "whose", "whom", "whether", "if",
        "is", "are", "was", "were", "isnt", "arent", "do", "does", "did", "should", "shall", "would",
        "could", "can", "will", "has", "have", "had", "may", "might", "must",
    }
)  # fmt: skip
_SUBJECTS = frozenset({"i", "we", "you", "it", "there", "im", "its", "theres", "ive", "id"})
_FILLERS = frozenset(
    {"ok", "okay", "so", "hey", "hi", "right", "then", "now", "and", "but", "also", "just", "alright", "yes", "sure", "actually", "oh",
     "oops", "sorry", "well", "fine", "hmm", "great", "thanks", "cool"}
)  # fmt: skip
_POLITE = re.compile(
    r"^(?:please|pls|plz|kindly|go ahead and|(?:can|could|would|will) (?:you|u)(?: please)?"
    r"|i(?: want| need| would like|'?d like) you to|let'?s|lets)\b\s*"
)
_NEGATION = re.compile(r"\b(?:don'?t|dont|do not|never|not to|no need|shouldn'?t|mustn'?t|won'?t)\b")
# Asking to be told, not to act: "I only want to know whether ...", "wondering if ...".
_TO_KNOW = re.compile(r"\b(?:whether|wondering|curious|want to know|like to know|need to know|not sure)\b")
# A need stated as a fact is a request: "yesterday's generation mix needs a rerun", "we need february backfilled".
_NEEDS = re.compile(r"\bneeds?\b")
_CLAUSES = re.compile(r"[,;:.!?\n]+|\s+-\s+|\b(?:and then|but|then)\b")
# Openers that look like action verbs but are not ("hold on, ...", "let me know ...", "time to ...?").
_NOT_ACTIONS = re.compile(r"^(?:hold on|hold up|let me|let us know|time to|time of|time for|go through|go over)\b")
_WORD = re.compile(r"[a-z][a-z'-]*")


def _verb(word: str) -> str:
    """The action verb `word` is, forgiving an apostrophe ("what's" is whats), a hyphen ("re-run") and a typo ("quarentine"); else the word itself."""
    plain = word.replace("-", "").replace("'", "")
    if plain in ACTION_VERBS or len(plain) < 5:
        return plain
    if plain.endswith(("ed", "ing", "s")):  # "deleted?", "restarted?", "backfills in february?" ask about an action
        return plain
    close = difflib.get_close_matches(plain, [v for v in ACTION_VERBS if len(v) >= 5], n=1, cutoff=0.8)
    return close[0] if close else plain


# Action verbs that name one action kind whatever else the message says ("quarantine carbon for monday, numbers
# look off" is a quarantine, though it reads like a question about wrong numbers). Verbs of several actions
# ("stop", "run", "clean", "take") are left to the classifier.
VERB_KINDS = {
    "quarantine": "quarantine", "unquarantine": "release", "release": "release", "delete": "delete", "purge": "delete",
    "wipe": "delete", "erase": "delete", "expire": "expire", "prune": "expire", "compact": "compact", "optimize": "compact",
    "optimise": "compact", "rollback": "rollback", "revert": "rollback", "pause": "pause", "suspend": "pause", "halt": "pause",
    "resume": "resume", "unpause": "resume", "unfreeze": "resume", "rerun": "rerun", "reprocess": "rerun", "recompute": "rerun",
    "backfill": "backfill",
}  # fmt: skip


def opening_verb(text: str) -> str | None:
    """The action verb the first request clause of `text` opens with ("ok, quarantine X, ..." -> quarantine), or None."""
    lowered = text.lower().replace("’", "'")
    masked = re.sub(r"(?<=[a-z0-9])\.(?=[a-z0-9])", "_", lowered)
    for clause in (c.strip() for c in _CLAUSES.split(masked) if c.strip()):
        if _clause_is_request(clause):
            words = [w for w in _WORD.findall(clause) if w not in _FILLERS]
            while words and _POLITE.match(" ".join(words)):
                words = _WORD.findall(_POLITE.sub("", " ".join(words), count=1))
            return _verb(words[0]) if words else None
    return None


def _clause_is_request(clause: str) -> bool:
    words = clause.split()
    while words and words[0] in _FILLERS:
        words = words[1:]
    rest = " ".join(words)
    if _NOT_ACTIONS.match(rest):
        return False
    polite = None
    while opener := _POLITE.match(rest):  # "please can you rerun ...": every opener, then the verb
        polite, rest = opener, rest[opener.end() :]
    first = next(iter(_WORD.findall(rest)), "")
    if not first:
        return False
    verb = _verb(first)
    if verb in ACTION_VERBS:
        return True
    if polite:
        # "please, weather for yesterday" is a request; "can you show me ..." is a read, "please, why ..." a question.
        return verb not in READ_VERBS and verb not in QUESTION_WORDS and verb not in _SUBJECTS
    return verb not in QUESTION_WORDS and verb not in READ_VERBS and bool(_NEEDS.search(rest))


def is_request(text: str) -> bool:
    """True when `text` asks the platform to act now, False for a question about acting (see the module docstring)."""
    lowered = text.lower().replace("’", "'")
    if _NEGATION.search(lowered) or _TO_KNOW.search(lowered):
        return False
    # A table name's dot ("silver.weather") and a date's dashes are not clause breaks.
    masked = re.sub(r"(?<=[a-z0-9])\.(?=[a-z0-9])", "_", lowered)
    clauses = [c.strip() for c in _CLAUSES.split(masked) if c.strip()]
    requests = [_clause_is_request(c) for c in clauses]
    if masked.rstrip().endswith("?") and clauses and not requests[-1]:
        # "rerun X - is that safe?", "rerun X, or wait for the schedule?": the question is about the request before it
        last = clauses[-1].split()[0]
        if last in QUESTION_WORDS or last == "or":
            return False
    return any(requests)
