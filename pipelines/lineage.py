"""Table lineage from the inventory: which sources and tables feed a table, and what it feeds.

Edges: source → bronze → silver (and quarantine), and each mart's inputs → its gold table. The agent's
lineage tool and impact analysis read this one graph.
"""

from __future__ import annotations

from collections import defaultdict

from config.inventory import Inventory


def edges(inventory: Inventory) -> list[tuple[str, str]]:
    """(upstream, downstream) pairs; sources are named `source:<name>`."""
    found: set[tuple[str, str]] = set()
    for p in inventory.pipelines.values():
        found |= {(f"source:{p.source}", p.bronze), (p.bronze, p.silver), (p.bronze, p.quarantine)}
        for mart_name in p.marts:
            mart = inventory.mart(mart_name)
            found |= {(table, mart.table) for table in mart.inputs}
    return sorted(found)


def owning_pipeline(inventory: Inventory, table: str) -> str | None:
    """The pipeline that owns `table`: the one whose bronze/silver/quarantine it is, else the first whose mart writes it."""
    feeding = inventory.pipelines_feeding(table)
    own = [p for p in feeding if table in (p.bronze, p.silver, p.quarantine)]
    candidates = own or feeding
    return candidates[0].name if candidates else None


def _walk(start: str, graph: dict[str, set[str]]) -> list[str]:
    seen: list[str] = []
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in seen:
                seen.append(nxt)
                frontier.append(nxt)
    return seen


def upstream(inventory: Inventory, table: str) -> list[str]:
    """Every node `table` is derived from, nearest first."""
    inventory.table(table)
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges(inventory):
        graph[b].add(a)
    return _walk(table, graph)


def downstream(inventory: Inventory, table: str) -> list[str]:
    """Every table derived from `table`, nearest first: what a bad partition here would spoil."""
    inventory.table(table)
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges(inventory):
        graph[a].add(b)
    return _walk(table, graph)
