"""Tables and pipelines in a chat message, matched against the inventory: exact names, typos and plain words.

"silver.carbon_intensty" is silver.carbon_intensity (a typo); "the carbon table", "weather" and "grid mix"
name silver tables by their words; "gold carbon hourly" is gold.carbon_intensity_hourly. A name that looks
like a table or a pipeline but is none ("silver.carbon", "solar_farm") is reported as unknown, so the
planner can answer with the valid choices instead of guessing.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from config.inventory import LAYERS, Inventory, load_inventory

# Plain words people use for a table's subject, beyond the words of its name.
ALIASES: dict[str, tuple[str, ...]] = {
    "carbon_intensity": ("carbon", "intensity", "co2", "ci", "emissions", "grid intensity"),
    "generation_mix": ("generation", "gen", "mix", "fuel", "fuels", "grid mix", "fuel mix", "wind", "solar"),
    "weather": ("weather", "temperature", "temperatures", "temp", "temps"),
    "country_intensity": ("country", "countries", "ember"),
    "carbon_intensity_hourly": ("hourly",),
    "intensity_vs_temperature_daily": ("vs", "versus", "against"),
    "generation_share_daily": ("share", "shares"),
}
_STOP = {"the", "a", "an", "of", "for", "on", "in", "to", "my", "our", "this", "that", "which", "what", "whole", "entire", "data", "each"}
_DOTTED = re.compile(r"\b([a-z]{3,12})\.([a-z][a-z0-9_]*)\b")
_SNAKE = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")
_TABLE_WORD = re.compile(
    r"\b([a-z][a-z0-9_]{2,})\s+(?:table|dataset)\b|\b(?:table|dataset)\s+(?:called\s+|named\s+)?([a-z][a-z0-9_]{2,})\b"
)


@dataclass(frozen=True, kw_only=True)
class NameMatch:
    """What the message names: a known table and pipeline, and any name that matched nothing."""

    table: str | None = None
    pipeline: str | None = None
    unknown_table: str | None = None
    unknown_pipeline: str | None = None
    layer: str | None = None
    ambiguous: tuple[str, ...] = ()  # tables the words fit equally well ("the daily mart": two daily marts)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _near(word: str, vocabulary: set[str]) -> bool:
    if word in vocabulary:
        return True
    if len(word) < 5:
        return False
    return bool(difflib.get_close_matches(word, [v for v in vocabulary if len(v) >= 5], n=1, cutoff=0.84))


@dataclass(frozen=True, kw_only=True)
class Names:
    """The tables and pipelines of one inventory, and how to find them in a message."""

    tables: tuple[str, ...]
    pipelines: tuple[str, ...]
    owner: dict[str, str] = field(default_factory=dict, repr=False)  # table -> the pipeline that writes it
    silver: dict[str, str] = field(default_factory=dict, repr=False)  # pipeline -> its silver table
    quarantine: dict[str, str] = field(default_factory=dict, repr=False)  # pipeline -> its quarantine table
    slots_per_day: dict[str, int] = field(default_factory=dict, repr=False)  # silver table -> slots the source publishes a day
    max_lag_minutes: dict[str, int] = field(default_factory=dict, repr=False)  # table -> its freshness monitor's limit
    coverage: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict, repr=False)  # pipeline -> replay data [start, end)
    # table -> the tables it is built from, in the order declared (a mart may join several), for lineage drawings
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    # table -> its time column (the timestamptz column its days are partitioned by), for "from when to when"
    time_column: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, inventory: Inventory) -> Names:
        owner: dict[str, str] = {}
        for table in inventory.tables:
            feeding = inventory.pipelines_feeding(table)
            if feeding:
                owner[table] = feeding[0].name
        order = {layer: n for n, layer in enumerate(("silver", "gold", "bronze", "quarantine"))}
        tables = tuple(sorted(inventory.tables, key=lambda t: (order.get(t.split(".")[0], 9), list(inventory.tables).index(t))))
        parents: dict[str, tuple[str, ...]] = {}
        for p in inventory.pipelines.values():
            parents |= {p.silver: (p.bronze,), p.quarantine: (p.bronze,), p.bronze: (f"source:{p.source}",)}
            for mart in p.marts:
                # Every input, not the listing pipeline's silver table alone: a mart may join several silver tables.
                parents[inventory.mart(mart).table] = tuple(inventory.mart(mart).inputs)
        return cls(
            tables=tables,
            pipelines=tuple(inventory.pipelines),
            owner=owner,
            silver={p.name: p.silver for p in inventory.pipelines.values()},
            quarantine={p.name: p.quarantine for p in inventory.pipelines.values()},
            slots_per_day={p.silver: 1440 // inventory.source(p.source).cadence_minutes for p in inventory.pipelines.values()},
            max_lag_minutes={
                m.table: m.max_lag_minutes for m in inventory.monitors.values() if m.kind == "freshness" and m.max_lag_minutes
            },
            coverage={p.name: inventory.source(p.source).replay_coverage for p in inventory.pipelines.values()},
            parents=parents,
            time_column={
                name: column.name
                for name, spec in inventory.tables.items()
                for column in spec.columns
                if column.type == "timestamptz" and any(p in (f"day({column.name})", f"hour({column.name})") for p in spec.partition_by)
            },
        )

    # -- tables ------------------------------------------------------------------------------------------
    def _layer(self, words: list[str]) -> str | None:
        for word in words:
            if word in ("bronze", "silver", "gold", "raw", "mart", "marts") or (len(word) >= 5 and _near(word, {"bronze", "silver"})):
                return {"raw": "bronze", "mart": "gold", "marts": "gold"}.get(word) or difflib.get_close_matches(
                    word, ["bronze", "silver", "gold"], n=1, cutoff=0.7
                )[0]
        return None

    def _dotted(self, text: str) -> tuple[str | None, str | None]:
        """An explicit layer.name: the table it is (typos forgiven), or the unknown name."""
        for m in _DOTTED.finditer(text):
            layer = difflib.get_close_matches(m[1], list(LAYERS), n=1, cutoff=0.7)
            if not layer:
                continue
            written = f"{layer[0]}.{m[2]}"
            if written in self.tables:
                return written, None
            close = difflib.get_close_matches(written, list(self.tables), n=1, cutoff=0.88)
            return (close[0], None) if close else (None, m[0])
        return None, None

    def _ranked_by_words(self, words: list[str], layer: str | None) -> list[str]:
        """The best table for `words`, then any other table the very same words name when they do not spell out the
        best one's whole name: "the daily mart" fits two marts alike, "carbon intensity" one table."""
        said = set(words)
        text = " ".join(words)
        best: tuple[float, int, str] | None = None
        matched: dict[str, frozenset[str]] = {}
        whole: set[str] = set()  # tables every part of whose name was said
        for rank, table in enumerate(self.tables):
            table_layer, short = table.split(".", 1)
            if layer is not None and table_layer != layer:
                continue
            if layer is None and table_layer == "quarantine":
                continue  # quarantined rows are their own question; "quarantine" alone is a verb or that question
            parts = [p for p in short.split("_") if p not in _STOP]
            hit_parts = [p for p in parts if _near(p, said)]
            aliases = [a for a in ALIASES.get(short, ()) if re.search(rf"\b{re.escape(a)}\b", text)]
            hits, alias_hits = len(hit_parts), len(aliases)
            if not hits and not alias_hits:
                continue
            matched[table] = frozenset(hit_parts) | frozenset(aliases)
            if hits == len(parts):
                whole.add(table)
            score = hits / len(parts) + 0.5 * min(alias_hits, 1) - 0.05 * (len(parts) - hits)
            key = (score, -rank, table)
            if best is None or key[:2] > best[:2]:
                best = key
        if best is None:
            return []
        if best[2] in whole:
            return [best[2]]  # "carbon intensity" is silver.carbon_intensity, not also the hourly mart
        return [best[2], *(t for t, words_hit in matched.items() if t != best[2] and words_hit == matched[best[2]])]

    def find(self, text: str, *, skip: tuple[str, ...] = ()) -> NameMatch:
        """The table and pipeline `text` names; `skip` words (the request's verb, e.g. quarantine) are not names."""
        lowered = text.lower()
        for word in skip:
            lowered = re.sub(rf"\b{re.escape(word)}\b(?!\.)", " ", lowered, count=1)
        table, unknown_table = self._dotted(lowered)
        words = [w for w in _words(_DOTTED.sub(" ", lowered)) if w not in _STOP]
        layer = table.split(".")[0] if table else self._layer(words)
        pipeline, unknown_pipeline = self._pipeline(lowered, words)
        if table is None and unknown_table is None and unknown_pipeline is None:
            named = _TABLE_WORD.search(lowered)
            ranked = self._ranked_by_words(words, layer)
            table = ranked[0] if ranked else None
            if len(ranked) > 1 and pipeline is None:
                return NameMatch(layer=layer, ambiguous=tuple(ranked))
            if table is None and pipeline is not None:
                table = self._of_pipeline(pipeline, layer)
            if table is None and named is not None:
                word = named[1] or named[2]
                if word not in _STOP and word not in ("the", "which", "that", "history", "lineage"):
                    unknown_table = word
        if pipeline is None and table is not None:
            pipeline = self.owner.get(table)
        return NameMatch(table=table, pipeline=pipeline, unknown_table=unknown_table, unknown_pipeline=unknown_pipeline, layer=layer)

    def _of_pipeline(self, pipeline: str, layer: str | None) -> str | None:
        silver = self.silver.get(pipeline)
        if layer in (None, "silver") or silver is None:
            return silver
        candidates = [t for t, p in self.owner.items() if p == pipeline and t.startswith(f"{layer}.")]
        return candidates[0] if candidates else None

    # -- pipelines ---------------------------------------------------------------------------------------
    def _pipeline(self, text: str, words: list[str]) -> tuple[str | None, str | None]:
        for m in _SNAKE.finditer(_DOTTED.sub(" ", text)):
            if m[0] in self.pipelines:
                return m[0], None
            close = difflib.get_close_matches(m[0], list(self.pipelines), n=1, cutoff=0.85)
            if close:
                return close[0], None
            if not difflib.get_close_matches(m[0], [t.split(".", 1)[1] for t in self.tables], n=1, cutoff=0.85):
                return None, m[0]
        said = set(words)
        joined = " ".join(words)
        for pipeline in self.pipelines:
            parts = pipeline.split("_")
            if all(_near(p, said) for p in parts):
                return pipeline, None
        for pipeline in self.pipelines:
            if any(re.search(rf"\b{re.escape(a)}\b", joined) for a in ALIASES.get(pipeline, ())):
                return pipeline, None
        return None, None


@lru_cache(maxsize=4)
def names_of(config_dir: Path) -> Names:
    """The names of the inventory declared in `config_dir`, read once per process."""
    return Names.of(load_inventory(config_dir))
