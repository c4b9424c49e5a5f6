"""Whether a chat message is about the platform at all, and the small talk that needs no tool.

The intent classifier always picks the nearest of its kinds, so "what is the capital of France?" comes out as
a freshness question and "is the stock market up today?" as a status one. A message is *off topic* when it
has content words and not one of them is a word the platform's own vocabulary uses: the training phrasings
of every real intent (`paraphrases.yaml`, the `unknown` ones left out), the table and pipeline names, and a
short list of the domain's words people use that the phrasings happen not to (co2, electricity, ...). Typos
are mended against that vocabulary first ("temprature" is a domain word). Function words and words of time
("today", "tomorrow", "March") are neither: "what was it at 18:00 yesterday?" has no content word and is
left to the classifier, which asks when it is unsure.

Small talk ("thanks", "bye") gets a one-line answer rather than a guess at an intent.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from functools import lru_cache

_WORD = re.compile(r"[a-z][a-z0-9]+")  # "co2" and "gco2" are words


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words of time and politeness: they place or soften a question, they never make it one about the platform.
_NEUTRAL = _words(
    """
    time today tonight tomorrow yesterday now day days week weeks weekend month months year years hour hours
    minute minutes morning afternoon evening night noon midnight ago next last past recent recently currently current
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
    september october november december jan feb mar apr jun jul aug sep sept oct nov dec utc gmt bst
    btw fyi quick question please pls plz thanks thank thx ta cheers hey hi hello ok okay yes yeah yep no nope sure just really right
    tell know want need like let make give show get got say said ask can could would should will did does do
    good great nice cool fine bad happen happened happening thing things stuff lot bit kind kinds sort sorts type types way ways
    """
)
# Domain words a person may use that the training phrasings do not happen to contain.
_DOMAIN_EXTRA = _words(
    """
    co co2 gco2 emission emissions emit emitted electricity power energy kwh mwh gw gwh mw demand grid grids neso
    renewable renewables fossil low zero nuclear coal gas wind solar hydro biomass imports interconnector
    era5 celsius degrees humidity meteo openmeteo
    iceberg lake warehouse parquet schema column columns partition partitions snapshot snapshots expire prune
    monitor monitors alert alerts alarm alarms page paged metric metrics dashboard anomaly anomalies outage outages
    approval approvals approve approved deny denied slack runbook runbooks policy policies agent bot
    audit log logs change changed changes action actions duplicate duplicates dupes copies flagged held rejected refused
    quarantined readings reading slot slots half hourly daily weekly gap gaps missing late stale fresh outage published
    warmer colder hotter cooler greener cleaner dirtier windier sunnier rain rainfall snow precipitation humidity
    """
)
_SMALL_TALK: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"^\W*(?:thanks?(?: you)?|thank u|thx|ty|cheers|ta|much appreciated|great,? thanks?)(?: (?:a lot|so much|very much))?\W*$"
        ),
        "You're welcome.",
    ),
    (re.compile(r"^\W*(?:bye|goodbye|good night|see you|see ya|later|cya)\W*$"), "Bye. I keep watching the pipelines."),
    (
        re.compile(r"^\W*(?:ok|okay|cool|nice|great|perfect|got it|understood|noted|k)\W*$"),
        "Good. Ask me anything about the data or the pipelines.",
    ),
)
OFF_TOPIC = (
    "That is outside what I look after: I answer questions about this platform's carbon-intensity, generation-mix "
    "and UK temperature data, its pipelines, incidents and quarantine, and run actions on them (say 'help' for "
    "examples). Nothing ran."
)


class Topic:
    """The platform's vocabulary, and the judgement of whether a message stays within it."""

    def __init__(self, domain_texts: Iterable[str], names: Iterable[str]) -> None:
        words = {w for text in domain_texts for w in _WORD.findall(text.lower())}
        words |= {w for name in names for w in _WORD.findall(name.lower())}
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # the classifier has loaded sklearn already

        self.ignored = frozenset(ENGLISH_STOP_WORDS) | _NEUTRAL
        self.domain = frozenset(words | _DOMAIN_EXTRA) - self.ignored

    def content_words(self, text: str) -> list[str]:
        """The words of `text` that could name a subject: neither function words nor words of time."""
        return [w for w in _WORD.findall(text.lower()) if w not in self.ignored]

    def off_topic(self, text: str) -> bool:
        """True when `text` has content words and none is (or is a typo of) a word of the platform."""
        content = self.content_words(text)
        return bool(content) and not any(self._domain_word(w) for w in content)

    def _domain_word(self, word: str) -> bool:
        if word in self.domain:
            return True
        if len(word) < 4:
            return False
        near = [v for v in self.domain if abs(len(v) - len(word)) <= 1]  # 'market' is no typo of 'mart'
        return bool(difflib.get_close_matches(word, near, n=1, cutoff=0.8))


def small_talk(text: str) -> str | None:
    """The reply to thanks, goodbye or a bare acknowledgement; None for anything else."""
    lowered = text.lower().strip()
    return next((reply for pattern, reply in _SMALL_TALK if pattern.match(lowered)), None)


@lru_cache(maxsize=4)
def topic_of(domain_texts: tuple[str, ...], names: tuple[str, ...]) -> Topic:
    """One `Topic` per vocabulary, built once per process."""
    return Topic(domain_texts, names)


# Weather the platform does not hold: silver.weather is the hourly 2 m air temperature only. ("windiest" is wind's
# share of generation, which the platform does hold.)
_UNHELD = re.compile(
    r"\b(rain\w*|precipitation|snow\w*|humidity|wind\s*speeds?|gusts?|air\s*pressure|pressure|sunshine\s*hours|cloud\w*|visibility|fog)\b"
)


def unheld_measure(text: str) -> str | None:
    """The weather measure `text` asks about that the platform does not hold ("rainfall"), or None."""
    m = _UNHELD.search(text.lower())
    return m[1] if m else None


def unheld(measure: str) -> str:
    return (
        f"The platform holds no {measure}: silver.weather has only the hourly 2 m air temperature at one point over the UK "
        "(ERA5 reanalysis); wind and solar appear as shares of generation in silver.generation_mix. Nothing ran."
    )
