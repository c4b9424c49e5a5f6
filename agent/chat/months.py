"""Month names as people type them in chat: full, abbreviated ("Sept."), or with a typo that keeps the first letter."""

from __future__ import annotations

import calendar
import difflib

MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_name) if name}
_ABBREVIATIONS = {name.lower(): n for n, name in enumerate(calendar.month_abbr) if name} | {"sept": 9}
_MIN_FUZZY = 5  # a word, and the month it may be a typo of, must be this long to be matched fuzzily
_NOT_MONTHS = {"match", "mark", "marks", "maybe", "marsh", "junk", "julia", "augment"}


def month_word(word: str) -> int | None:
    word = word.lower().strip(".")
    if word in MONTHS:
        return MONTHS[word]
    if word in _ABBREVIATIONS:
        return _ABBREVIATIONS[word]
    if len(word) >= _MIN_FUZZY and word.isalpha() and word not in _NOT_MONTHS:
        # A typo keeps the first letter: "febuary", "mrach"; "member" is not "december". Short names (may, june,
        # july) are taken only as written: a word one letter off them is usually an English word ("many" is not May).
        same_start = [name for name in MONTHS if len(name) >= _MIN_FUZZY and name[0] == word[0] and abs(len(name) - len(word)) <= 2]
        close = difflib.get_close_matches(word, same_start, n=1, cutoff=0.8)
        if close:
            return MONTHS[close[0]]
    return None
