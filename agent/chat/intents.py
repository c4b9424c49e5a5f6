"""Free-form chat into a typed `Intent`: what the person wants (kind) and its slots (table, days, snapshot...).

The kind comes from a small scikit-learn classifier (TF-IDF over character n-grams and words, logistic
regression) trained at first use on the `train` phrasings of `paraphrases.yaml` and kept for the process;
typos are mended against the corpus' own words first. Slots come from rules: names from the inventory
(`names.py`), dates from the platform clock (`dates.py`), numbers and words for the rest. When the best
kind is not clearly ahead, the intent is `unsure` and carries the two closest kinds, so the planner can
say what it understood instead of guessing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from agent.chat.dates import When, read_time, read_when
from agent.chat.day_hours import read_hours
from agent.chat.incidents import IncidentStatus, incident_number, incident_status
from agent.chat.mood import VERB_KINDS, is_request, opening_verb
from agent.chat.names import Names
from agent.chat.topic import topic_of
from config.errors import DefinitionError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

CORPUS = Path(__file__).resolve().parent / "paraphrases.yaml"
IntentKind = Literal[
    "incidents", "status", "value_at", "why_missing", "freshness", "quarantined", "aggregate", "greenest", "greenest_ahead",
    "run_report", "history", "lineage", "rows", "help", "rerun", "backfill", "quarantine", "release", "delete", "expire", "compact",
    "rollback", "pause", "resume", "approvals", "audit", "summary", "unknown",
]  # fmt: skip
ACTIONS: frozenset[str] = frozenset(
    {"rerun", "backfill", "quarantine", "release", "delete", "expire", "compact", "rollback", "pause", "resume"}
)
Metric = Literal["intensity", "forecast", "forecast_error", "forecast_bias", "temperature", "share", "mix"]
Aggregate = Literal["avg", "min", "max"]
SLOTS = ("table", "pipeline", "start", "end", "at", "snapshot_id", "aggregate", "metric", "hours", "within_hours", "day_hours")
# The kinds whose answer can be narrowed to part of each day ("yesterday morning"); the others work on whole days or
# one moment, so they keep the window aside (`unused_hours`) and the planner says it did not apply.
HOURLY: frozenset[str] = frozenset({"aggregate", "greenest", "greenest_ahead", "quarantined"})
# The greenest window in measured data ("greenest hour yesterday") or ahead in the forecast ("when should I run a
# 3-hour job tomorrow?"): the classifier tells them by wording, the dates decide when they are clear.
GREENEST = ("greenest", "greenest_ahead")
FORECAST_TABLE = "gold.carbon_intensity_forecast"
HORIZON_HOURS = 48  # how far one forecast issue reaches

# Below this confidence, or this close to the runner-up, the planner asks instead of acting. Chosen by
# 5-fold cross-validation on the train split (benchmarks/chat_intents.py never tunes on the test split).
SHARPNESS = 5.0
MIN_CONFIDENCE = 0.20
MIN_MARGIN = 0.03

FUELS = ("wind", "solar", "gas", "nuclear", "coal", "hydro", "biomass", "imports", "other")
# Fuels people ask about together. Renewable as the UK counts it (biomass included); low-carbon adds nuclear.
FUEL_GROUPS: dict[str, tuple[str, ...]] = {
    "renewables": ("wind", "solar", "hydro", "biomass"),
    "low_carbon": ("wind", "solar", "hydro", "biomass", "nuclear"),
    "fossil": ("gas", "coal"),
}
_GROUP_WORDS = (
    ("low_carbon", re.compile(r"\blow[- ]carbon\s+(?:generation|share|power|sources?|electricity|energy|fuels?)\b")),
    ("renewables", re.compile(r"\brenewables?\b|\bgreen (?:generation|energy|power|sources?)\b")),
    ("fossil", re.compile(r"\bfossil\b")),
)


class Intent(BaseModel):
    """What a chat message asks for. Slots the message does not give are None."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: IntentKind
    confidence: float = Field(ge=0, le=1, description="The classifier's probability of `kind`")
    unsure: bool = Field(default=False, description="The best kind was not clearly ahead; `closest` holds the candidates")
    closest: tuple[IntentKind, ...] = Field(default=(), description="The two most likely kinds, best first")
    table: str | None = None
    pipeline: str | None = None
    start: date | None = Field(default=None, description="First UTC day, inclusive")
    end: date | None = Field(default=None, description="Day after the last one, exclusive")
    at: time | None = Field(default=None, description="Time of day, UTC")
    snapshot_id: int | None = None
    aggregate: Aggregate | None = None
    metric: Metric | None = None
    fuel: str | None = None
    dirtiest: bool = Field(default=False, description="A greenest question asking for the highest-carbon window instead ('dirtiest hour')")
    by_day: bool = Field(default=False, description="A lowest or highest asked of whole days ('which day had the lowest ...'): daily means")
    outlook: bool = Field(
        default=False,
        description="What the forecast expects over a coming period ('what will the intensity be tomorrow?'), not when to run",
    )
    hours: int | float | None = Field(
        default=None, ge=0.5, le=HORIZON_HOURS, description="Length of the window a greenest question asks about, a multiple of 0.5"
    )
    within_hours: int | float | None = Field(
        default=None,
        gt=0,
        le=HORIZON_HOURS,
        description="A greenest-ahead window must end this many hours from now ('in the next 12 hours')",
    )
    day_hours: tuple[int, int] | None = Field(
        default=None, description="Whole UTC hours [from, to) each day is narrowed to ('yesterday morning': (6, 12)); HOURLY kinds only"
    )
    unused_hours: tuple[int, int] | None = Field(
        default=None, description="A part of the day the message named that this kind cannot use (an action works on whole days)"
    )
    hours_problem: str | None = Field(default=None, description="Why the hours cannot be used, e.g. a range across midnight")
    requested: bool = Field(
        default=False,
        description="An action kind the message asks to be done now; False when it only asks about it (agent/chat/mood.py)",
    )
    other_periods: tuple[str, ...] = Field(default=(), description="Periods the message also named that the slots do not cover")
    other_ranges: tuple[tuple[date, date], ...] = Field(
        default=(), description="The further periods that are whole days, [start, end): what a comparison compares with"
    )
    incident_id: int | None = Field(default=None, description="The incident a question names by number ('incident #6')")
    incident_status: IncidentStatus | None = Field(default=None, description="Which incidents a list question asks for")
    unknown_table: str | None = Field(default=None, description="A table name the message used that the inventory lacks")
    ambiguous_tables: tuple[str, ...] = Field(default=(), description="Tables the message's words fit alike ('the daily mart')")
    unknown_pipeline: str | None = None
    date_problem: str | None = Field(default=None, description="Why the dates cannot be used, e.g. an end before the start")
    off_topic: bool = Field(default=False, description="No word of the message is about the platform (agent/chat/topic.py)")
    latest: bool = Field(default=False, description="A value_at question for the measure's newest reading ('the intensity now')")
    threshold: float | None = Field(
        default=None, description="How many readings or days lie beyond this value ('how many hours above 200')"
    )
    above: bool = Field(default=True, description="Beyond the threshold upwards (above) or downwards (below)")
    count_days: bool = Field(default=False, description="Count days by their daily mean instead of readings")
    per: Literal["day", "week"] | None = Field(
        default=None, description="A breakdown asked for: each day's or week's mean ('by day', 'weekly averages', 'which week')"
    )

    @property
    def acts(self) -> bool:
        """A write to propose: an action kind, asked for as a request (never a question about the action)."""
        return self.kind in ACTIONS and self.requested

    @property
    def day(self) -> date | None:
        return When(start=self.start, end=self.end).day

    @property
    def when(self) -> When:
        return When(start=self.start, end=self.end, at=self.at, hours=self.day_hours, problem=self.date_problem)

    def slots(self) -> dict[str, Any]:
        """The slots as plain values (dates ISO, time HH:MM), for the benchmark and the echo."""
        out: dict[str, Any] = {}
        for name in SLOTS:
            value = getattr(self, name)
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, time):
                value = value.strftime("%H:%M")
            elif name == "day_hours" and value is not None:
                value = f"{value[0]:02d}:00-{value[1]:02d}:00"
            out[name] = value
        return out


class ParaphraseCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    intent: IntentKind
    split: Literal["train", "test"]
    slots: dict[str, Any] = Field(default_factory=dict)


class Corpus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    now: datetime
    cases: tuple[ParaphraseCase, ...]

    def split(self, name: str) -> list[ParaphraseCase]:
        return [c for c in self.cases if c.split == name]


def load_corpus(path: Path = CORPUS) -> Corpus:
    """Read the paraphrase corpus; a case naming an unknown intent fails here, with its text."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        cases = []
        for kind, parts in (raw.get("intents") or {}).items():
            for split in ("train", "test"):
                for item in (parts or {}).get(split) or []:
                    body = item if isinstance(item, dict) else {"text": item}
                    cases.append(ParaphraseCase.model_validate({"intent": kind, "split": split, **body}))
        return Corpus(now=raw["now"], cases=tuple(cases))
    except FileNotFoundError:
        raise DefinitionError(f"the chat paraphrase corpus {path} is missing; restore agent/chat/paraphrases.yaml") from None
    except (yaml.YAMLError, KeyError, ValueError) as exc:
        raise DefinitionError(f"the chat paraphrase corpus {path} is invalid: {exc}") from None


# -- text the classifier sees ---------------------------------------------------------------------------------
_TOKEN = re.compile(r"[a-z]+")
_MASKS = (
    (re.compile(r"\b[a-z]{3,12}\.[a-z][a-z0-9_]*\b"), " TABLE "),
    (re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b"), " DATE "),
    (re.compile(r"\b\d{1,2}:\d{2}\b"), " TIME "),
    (re.compile(r"\b\d+\b"), " NUM "),
)


def _mend(text: str, vocabulary: frozenset[str]) -> str:
    """Replace words the corpus never uses by the closest word it does ("quarentine" -> "quarantine")."""

    def fix(m: re.Match[str]) -> str:
        word = m[0]
        if len(word) < 4 or word in vocabulary:
            return word
        close = difflib.get_close_matches(word, [v for v in vocabulary if abs(len(v) - len(word)) <= 2], n=1, cutoff=0.8)
        return close[0] if close else word

    return _TOKEN.sub(fix, text)


def normalise(text: str, vocabulary: frozenset[str]) -> str:
    lowered = text.lower().replace("’", "'")
    for pattern, mask in _MASKS:
        lowered = pattern.sub(mask.lower(), lowered)
    return _mend(lowered, vocabulary)


def corpus_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    words = {w for t in texts for w in _TOKEN.findall(t.lower())}
    return frozenset(words | {"table", "date", "time", "num"})


class IntentClassifier:
    """Kind of a message, with a confidence for each kind.

    A linear SVM over TF-IDF character n-grams (robust to typos and word order) and word pairs; it trains in
    a tenth of a second. Confidences are the softmax of the decision values: good enough to rank and to
    tell a clear winner from a close call, not calibrated probabilities.
    """

    def __init__(self, texts: list[str], kinds: list[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion, make_pipeline
        from sklearn.svm import LinearSVC

        self.vocabulary = corpus_vocabulary(texts)
        self.domain_texts = tuple(t for t, k in zip(texts, kinds, strict=True) if k != "unknown")  # what the platform is about
        features = FeatureUnion(
            [
                ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)),
                ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"[a-z]+")),
            ]
        )
        self.model: Pipeline = make_pipeline(features, LinearSVC(C=1.0))
        self.model.fit([normalise(t, self.vocabulary) for t in texts], kinds)

    def rank(self, text: str) -> list[tuple[str, float]]:
        """Every kind with its confidence, most likely first."""
        import numpy as np

        scores = self.model.decision_function([normalise(text, self.vocabulary)])[0]
        weights = np.exp(SHARPNESS * (scores - scores.max()))
        confidences = weights / weights.sum()
        return sorted(zip(self.model.classes_, (float(c) for c in confidences), strict=True), key=lambda kc: -kc[1])


@lru_cache(maxsize=2)
def classifier(path: Path = CORPUS) -> IntentClassifier:
    """The classifier trained on the corpus' train split, built once per process (about a second)."""
    train = load_corpus(path).split("train")
    return IntentClassifier([c.text for c in train], [c.intent for c in train])


# -- slots -----------------------------------------------------------------------------------------------------
_AGGREGATES: tuple[tuple[Aggregate, re.Pattern[str]], ...] = (
    ("avg", re.compile(r"\b(average|avg|mean|typical)\b")),
    ("max", re.compile(r"\b(max|maximum|highest|peak|top|most|worst|warmest|hottest|dirtiest|windiest|sunniest)\b|how (high|warm|hot)")),
    ("min", re.compile(r"\b(min|minimum|lowest|least|smallest|best|coldest|coolest|chilliest|cleanest)\b|how (low|cold)")),
)
_NUMBER = r"\d{1,2}(?:\.\d)?|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
_HOURS = re.compile(
    rf"\b({_NUMBER})(\s+and\s+a\s+half|\s+1/2)?[\s-]*(?:hours?|hrs?|h)\b(?!\s*(?:ago|old))(\s+and\s+a\s+half)?"
    r"|\b(\d{2,3}|ninety|thirty|forty[\s-]five)[\s-]*(?:minutes?|mins?|m)\b|\b(half\s+an\s+hour|half[\s-]hour(?:ly)?)\b"
)
_WITHIN = re.compile(
    rf"\b(?:(?:in|within|over|during|for)\s+)?(?:the\s+)?(?:next|coming|following)\s+({_NUMBER}|couple\s+of|few)?\s*(hours?|hrs?|h|days?)\b"
    rf"|\bwithin\s+({_NUMBER})\s*(hours?|hrs?|h|days?)\b"
)
_DEADLINE = re.compile(r"\b(?:by|before|until|till|no later than)\s+$")
_SNAPSHOT = re.compile(
    r"\b(?:snapshot|snap|version)\s*(?:id\s*)?(?:number\s*)?#?(\d+)\b|\bto\s+#?(\d+)\b(?![-/:.]\d)|\b(\d{3,})\b(?![-/:.]\d)"
)
_WORD_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
_WORD_NUMBERS |= {"nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "couple of": 2, "few": 3}
_MINUTE_WORDS = {"thirty": 30, "ninety": 90, "forty five": 45, "forty-five": 45}
_VERBS = {
    "quarantine": ("quarantine", "quarentine", "quarantene"),
    "release": ("release", "relase", "unquarantine"),
}


# A question about the forecast that asks when to act ("when should I run", "best time to charge", "greenest window"),
# rather than what it expects ("what will the intensity be tomorrow?").
_WHEN_TO_RUN = re.compile(
    r"\b(?:when|best|greenest|cleanest|lowest|run|running|schedule|charge|charging|start|window|job|shift|plan|slot|time to)\b"
)
# A lowest or highest asked of whole days: "which day had the lowest ...", "the greenest day last week".
_BY_DAY = re.compile(
    r"\b(?:which|what)\s+(?:day|date)\b|\b(?:greenest|cleanest|dirtiest|best|worst|lowest|highest|coldest|warmest|hottest|windiest|sunniest)\s+day\b"
)
# The other end of a greenest question: the window with the most carbon.
_DIRTIEST = re.compile(r"\b(?:dirtiest|dirtyest|worst|least green|brownest|most carbon|highest[- ]carbon|most polluting)\b")


def _metric(text: str) -> tuple[Metric, str | None]:
    mix_words = r"\b(?:which|what)\s+(?:fuel|source|kind of generation)s?\b|\b(?:fuel|generation|energy|power)\s+mix\b"
    if re.search(mix_words, text) and not any(re.search(rf"\b{f}\b", text) for f in FUELS):
        return "mix", None  # every fuel's share, largest first
    if superlative := re.search(r"\b(windiest|sunniest)\b", text):
        return "share", "wind" if superlative[1] == "windiest" else "solar"  # the fuel's share at its highest
    group = next((name for name, pattern in _GROUP_WORDS if pattern.search(text)), None)
    if group is not None:
        return "share", group  # "the renewable share": the group's fuels summed slot by slot
    fuel = next((f for f in FUELS if re.search(rf"\b{f}\b", text)), None)
    if fuel is not None and (
        re.search(r"\b(share|percent|percentage|%|mix|generation)\b|share", text)
        or not re.search(r"intensity|carbon|co2|forecast|temp", text)
    ):
        return "share", fuel  # "the most wind", "how much gas": a fuel named alone is its share
    if re.search(r"\btemp\w*|\bweather\b|\bcold\w*|\bwarm\w*|\bhot\w*|\bdegrees?\b|°c?|\bcelsius\b", text):
        return "temperature", None
    if re.search(r"\b(?:over|under)[- ]?(?:estimat|predict|forecast)\w*|\bforecast\w*\s+(?:bias|too high|too low)|\bbias\w*\b", text):
        return "forecast_bias", None  # which way the forecast missed: forecast minus actual, signed
    if re.search(
        r"\bforecast\w*\s+(?:error|miss|deviation|accuracy|was off)|\bmiss\w*\b.*\bforecast|\bhow far off\b|\bhow accurate\b.*\bforecast",
        text,
    ):
        return "forecast_error", None  # how far the published forecast missed the actual, in absolute value
    if re.search(r"\bforecast", text):
        return "forecast", None
    return "intensity", None


_INTENSITY_WORDS = re.compile(r"intensity|carbon|co2|gco2|green|clean|dirt|emission|polluting")


def names_a_metric(text: str) -> bool:
    """Whether `text` says what it measures (a fuel, temperature, the forecast, carbon intensity) or leaves it open."""
    lowered = text.lower()
    return _metric(lowered) != ("intensity", None) or bool(_INTENSITY_WORDS.search(lowered))


def _count(word: str) -> float:
    word = re.sub(r"\s+", " ", word)
    return float(word) if word[0].isdigit() else _WORD_NUMBERS[word]


def _hours(text: str) -> int | float | None:
    """The length of the job or window: "3-hour", "two hours", "90 minutes", "2.5h", "an hour and a half"; whole
    hours as an int. None when absent or not a multiple of half an hour up to the forecast's 48 hours."""
    m = _HOURS.search(text)
    if m is None:
        return None
    if m[5]:
        hours = 0.5
    elif m[4]:
        minutes = m[4].replace("-", " ")
        hours = (int(minutes) if minutes.isdigit() else _MINUTE_WORDS[minutes]) / 60
    else:
        hours = _count(m[1]) + (0.5 if m[2] or m[3] else 0)
    if not 0.5 <= hours <= HORIZON_HOURS or hours * 2 != int(hours * 2):
        return None
    return _whole(hours)


def _whole(hours: float) -> int | float:
    return int(hours) if hours == int(hours) else hours


def _within(text: str, now: datetime) -> tuple[int | float | None, str]:
    """Hours from now by which a window ahead must end ("in the next 12 hours", "within 2 days", "by 18:00"), and the
    text with that phrase blanked out so its hours are not read as the job's length."""
    m = _WITHIN.search(text)
    if m is not None:
        number, unit = (m[1], m[2]) if m[2] else (m[3], m[4])
        blanked = text[: m.start()] + " " * (m.end() - m.start()) + text[m.end() :]
        if not number and unit.endswith("s"):  # "in the coming hours": no length given, the default deadline holds
            return None, blanked
        hours = (_count(number) if number else 1.0) * (24 if unit.startswith("d") else 1)
        return _whole(min(hours, HORIZON_HOURS)), blanked
    at, where = read_time(text)
    if at is not None and where is not None and _DEADLINE.search(text[: where[0]]):
        deadline = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
        if deadline <= now:
            deadline += timedelta(days=1)
        return _whole(round((deadline - now).total_seconds() / 3600, 2)), text
    return None, text


def _ahead_or_past(kind: str, when: When, within: float | None, now: datetime) -> str:
    """Between the two greenest kinds, what the dates say: a period after today is ahead, one that ended is past; so
    are today's hours ("tonight" at 13:00 is ahead, "this morning" at 13:00 is past)."""
    today = now.date()
    if within is not None or (when.start is not None and when.start > today):
        return "greenest_ahead"
    if when.end is not None and when.end <= today:
        return "greenest"
    if when.hours is not None and when.day == today:
        midnight = datetime(today.year, today.month, today.day, tzinfo=now.tzinfo)
        if midnight + timedelta(hours=when.hours[0]) >= now:
            return "greenest_ahead"
        if midnight + timedelta(hours=when.hours[1]) <= now:
            return "greenest"
    return kind


def _snapshot(text: str) -> int | None:
    for m in _SNAPSHOT.finditer(text):
        value = m[1] or m[2] or m[3]
        if value and not re.fullmatch(r"(19|20)\d{2}", value):
            return int(value)
    return None


# "out of quarantine" (group 1) or out of anything else, after a verb that moves rows.
_OUT_OF = re.compile(r"\b(?:take|took|pull|get|move|bring|let)\b.*?\bout\s+of\s+(?:the\s+)?(quarantine\b)?")
# "than usual", "than average", "than normal": a period set against the USUAL_DAYS before it.
_THAN_USUAL = re.compile(r"\bthan\s+(?:the\s+|it\s+)?(?:average|usual|normal|typical|is\s+typical)\b")
USUAL_DAYS = 28
# Two periods set against each other by a word of comparison: the averages are compared, not the greenest hours.
_COMPARED = re.compile(
    r"\b(?:greener|cleaner|dirtier|browner|better|worse|higher|lower|warmer|colder)\s+than\b|\bcompar|\bvs\.?\b|\bversus\b"
)


# "now" in a question about a measure: its newest reading. Words about incidents keep it a question about them.
_NOW = re.compile(r"\b(?:right now|now|currently|current|at the moment|at present|latest|most recent|newest)\b")
_ABOUT_INCIDENTS = re.compile(
    r"\b(?:incidents?|alerts?|problems?|broke|broken|open|issues?|fail\w*|wrong|errors?|runs?|outages?|gaps?|missing|late|held"
    r"|quarantin\w*|duplicat\w*|anomal\w*|stale|fresh\w*)\b"
)


# "the wind share by day", "daily averages", "day by day", "per week", "which week of August was the cleanest?"
_PER = re.compile(
    r"\b(?:by|per|each|every|for each)\s+(day|week)\b|\b(daily|weekly)\s+(?:averages?|means?|values?|figures?|breakdown|numbers?)\b"
    r"|\b(day|week)[- ]by[- ](?:day|week)\b|\b(?:which|what)\s+(week)\b"
)


def _per(lowered: str) -> Literal["day", "week"] | None:
    m = _PER.search(lowered)
    if m is None:
        return None
    word = next(g for g in m.groups() if g)
    return "week" if word.startswith("week") else "day"


# "how many days in August had an average under 100?", "how many hours were above 200 gCO2 last week?"
_THRESHOLD = re.compile(
    r"\bhow many\s+(days?|hours?|half[\s-]?hours?|slots?|readings?|periods?)\b.*?"
    r"\b(above|over|more than|higher than|greater than|exceeding|at least|below|under|less than|lower than|beneath)\s+(-?\d+(?:\.\d+)?)"
)
_BELOW = ("below", "under", "less than", "lower than", "beneath")


# "is the weather data ok now?" asks how the data stands, not for its newest value.
_HEALTH = re.compile(r"\b(?:ok|okay|fine|healthy|alright|all right|complete|working|sane|correct)\b")


def _asks_latest(kind: str, lowered: str, when: When, metric: Metric, measured: bool) -> bool:
    """A question for a measure's newest reading: "now" or "current", no day or time, a measure named, no incident."""
    return (
        kind in ("value_at", "aggregate", "incidents", "status", "freshness", "unknown")
        and metric in ("intensity", "temperature", "share", "mix")
        and when.start is None
        and when.at is None
        and bool(_NOW.search(lowered))
        and measured
        and not _ABOUT_INCIDENTS.search(lowered)
        and not _HEALTH.search(lowered)
    )


def _moment(when: When, lowered: str) -> datetime | None:
    """The UTC moment a message names ("tonight at 8pm"), or None without a day and a time."""
    at = when.at or read_time(lowered)[0]
    if when.start is None or at is None or when.days != 1:
        return None
    return datetime.combine(when.start, at, tzinfo=UTC)


def read_intent(text: str, *, now: datetime, names: Names, model: IntentClassifier | None = None) -> Intent:
    """The intent of `text`, with its slots read against the platform clock `now` and the inventory's `names`."""
    model = model or classifier()
    ranked = model.rank(text)
    (best, p1), (second, p2) = ranked[0], ranked[1]
    if best in GREENEST and second in GREENEST:
        # Greenest either way: whether ahead or past is settled below from the dates, so the pair's confidence counts.
        p1, p2 = p1 + p2, ranked[2][1]
    closest = tuple(k for k, _ in ranked if k != "unknown")[:2]
    lowered = text.lower()
    kind: str = best
    unsure = p1 < MIN_CONFIDENCE or p1 - p2 < MIN_MARGIN
    measured = names_a_metric(text)  # the message names what it measures (a fuel, temperature, intensity ...)
    off_topic = not measured and topic_of(model.domain_texts, names.tables + names.pipelines).off_topic(text)
    if off_topic:
        kind, unsure = "unknown", False  # "what is the capital of France?" is no freshness question, however near it reads
    within, lowered = _within(lowered, now) if kind in GREENEST else (None, lowered)
    when = read_when(lowered, now)
    if kind in GREENEST:
        kind = _ahead_or_past(kind, when, within, now)
    if kind in ("aggregate", "greenest") and not when.other_ranges and when.start is not None and _THAN_USUAL.search(lowered):
        # "was yesterday greener than usual?": against the 28 days before it
        usual = (when.start - timedelta(days=USUAL_DAYS), when.start)
        when = when.model_copy(update={"other_ranges": (usual,), "others": (f"the {USUAL_DAYS} days before",)})
    if kind == "greenest" and when.other_ranges and _COMPARED.search(lowered):
        kind, unsure = "aggregate", False  # "was March greener than February?" compares two averages
    said_metric, said_fuel = _metric(lowered)  # what is measured, whatever the kind turns out to be
    if kind == "value_at" and said_metric == "mix":
        # The mix is every fuel's share: "on 4 April" is the day's mean shares, "at 18:00" those of that hour.
        at = when.at or read_time(lowered)[0]
        if at is not None and when.hours is None:
            when = when.model_copy(update={"hours": (at.hour, at.hour + 1)})
        kind, unsure = "aggregate", False
    if kind in ("incidents", "status") and measured and not _ABOUT_INCIDENTS.search(lowered) and when.start is not None:
        kind, unsure = "aggregate", False  # "what's the weather like today?" asks about the data, not about incidents
    if _THRESHOLD.search(lowered) and kind not in ACTIONS and kind not in ("incidents", "quarantined"):
        kind, unsure = "aggregate", False  # "how many hours were above 200 last week?": readings counted past a value
    if kind in ("value_at", "aggregate", "unknown") and when.start is None and _HEALTH.search(lowered) and _NOW.search(lowered):
        kind, unsure = "status", False  # "is the weather data ok now?": incidents, runs and held days of every pipeline
    latest = _asks_latest(kind, lowered, when, said_metric, measured)
    if latest:
        kind, unsure = "value_at", False  # "what's the carbon intensity now?": the newest reading, whatever else it resembles
    future = when.start is not None and when.start > now.date()
    if kind in GREENEST and said_metric == "temperature" and not _WHEN_TO_RUN.search(lowered):
        # "the warmest hour on the 8th" is the temperature's extreme, not the greenest hour; "the weather
        # tomorrow" is refused below: the platform has measured temperatures, no weather forecast.
        kind = "aggregate"
    moment = _moment(when, lowered)
    if kind == "value_at" and said_metric in ("intensity", "forecast") and moment is not None and moment > now:
        # "the intensity tonight at 8pm": only the platform's forecast knows a moment to come; its hour is asked of it
        kind, when = "greenest_ahead", when.model_copy(update={"hours": (moment.hour, moment.hour + 1), "at": None})
    if kind == "aggregate" and future and said_metric in ("intensity", "forecast"):
        kind = "greenest_ahead"  # "average forecast tomorrow": only the platform's forecast covers a coming day
    outlook = kind == "greenest_ahead" and not _WHEN_TO_RUN.search(lowered)
    by_day = bool(_BY_DAY.search(lowered)) and (when.days or 7) > 1
    per = _per(lowered) if (when.days or 7) > 1 else None
    if kind in (*GREENEST, "unknown", "status", "incidents") and per is not None and measured:
        kind, unsure = "aggregate", False  # "which week of August was the cleanest?": weekly means, not an hour
    if kind == "greenest" and by_day:
        kind, unsure = "aggregate", False  # "the greenest day last week": the day with the lowest mean, not an hour
    if kind == "summary" and (by_day or measured):
        kind, unsure = "aggregate", False  # "the dirtiest day this week" asks for one measure, not the week's summary
    if kind in ("quarantine", "release") and (direction := _OUT_OF.search(lowered)):
        # "take X out of quarantine" releases it; "take X out of silver.weather" quarantines it: the words after
        # "out of" say which way the rows move, whatever else the message resembles.
        kind = "release" if direction[1] else "quarantine"
    verb_kind = VERB_KINDS.get(opening_verb(text) or "") if is_request(text) else None
    if verb_kind is not None and verb_kind != kind:
        kind, unsure = verb_kind, False  # an imperative action verb says which action, whatever else the message resembles
    requested = kind in ACTIONS and is_request(text)
    number = incident_number(lowered)
    if number is not None and not requested:
        kind = "incidents"  # "why did incident 7 get escalated?" is about that incident, whatever else it says
    skip = _VERBS.get(kind, ())
    found = names.find(lowered, skip=skip)
    slots: dict[str, Any] = {
        "table": found.table,
        "pipeline": found.pipeline,
        "unknown_table": found.unknown_table,
        "ambiguous_tables": found.ambiguous,
        "unknown_pipeline": found.unknown_pipeline,
        "start": when.start,
        "end": when.end,
        "at": when.at,
        "date_problem": when.problem,
        "off_topic": off_topic,
        "latest": latest,
        # A part of the day narrows only what can be narrowed; elsewhere it is kept aside so the planner can say so.
        "day_hours": when.hours if kind in HOURLY else None,
        "unused_hours": None if kind in HOURLY else when.hours,
        "hours_problem": when.hours_problem if kind in HOURLY else None,
        "other_periods": when.others + (when.other_hours if kind in HOURLY else ()),
        "other_ranges": when.other_ranges,
        # The one place a message becomes a write: only its form as a request makes an action kind act.
        "requested": requested,
    }
    if kind == "incidents":
        slots |= {"incident_id": number, "incident_status": incident_status(lowered)}
    if kind in ("value_at", "aggregate", *GREENEST):
        metric, fuel = said_metric, said_fuel
        if kind in GREENEST:
            metric, fuel = "intensity", None
        slots |= {"metric": metric, "fuel": fuel}
        if kind == "greenest_ahead":
            slots |= {"table": FORECAST_TABLE, "pipeline": names.owner.get(FORECAST_TABLE), "within_hours": within}
        elif found.unknown_table is None and (found.table is None or found.layer is None or kind == "greenest"):
            # The metric names the table unless a layer.table was written out.
            slots["table"] = {"temperature": "silver.weather", "share": "silver.generation_mix", "mix": "silver.generation_mix"}.get(
                metric, "silver.carbon_intensity"
            )
            slots["pipeline"] = names.owner.get(slots["table"])
    if kind == "aggregate" and (beyond := _THRESHOLD.search(lowered)) is not None:
        slots |= {"threshold": float(beyond[3]), "above": beyond[2] not in _BELOW, "count_days": beyond[1].startswith("day")}
    if kind == "aggregate":
        slots["aggregate"] = next((a for a, pattern in _AGGREGATES if pattern.search(lowered)), "avg")
        if by_day and slots["aggregate"] == "avg":
            slots["aggregate"] = "max" if _DIRTIEST.search(lowered) else "min"  # "the greenest day" names no extreme word
        slots["by_day"] = by_day and per is None
        slots["per"] = per
    if kind in GREENEST:
        slots["hours"] = _hours(read_hours(lowered).text) or 1  # "from 14h to 18h" is when, not how long
        slots["dirtiest"] = bool(_DIRTIEST.search(lowered))
        slots["outlook"] = outlook
    if kind == "value_at" and when.at is None:
        slots["at"] = read_time(lowered)[0]
    if kind == "rollback":
        slots["snapshot_id"] = _snapshot(_MASKS[0][0].sub(" ", lowered))
    if kind != "value_at":
        slots["at"] = None  # a time of day only matters to a question about one moment
    return Intent(
        kind=kind,  # type: ignore[arg-type]
        confidence=round(p1, 3),
        unsure=unsure,
        closest=closest,  # type: ignore[arg-type]
        **slots,
    )
