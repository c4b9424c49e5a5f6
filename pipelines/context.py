"""The context object every runner, tool and command receives: settings, inventory, catalog and ledger."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from pyiceberg.catalog import Catalog

from config.inventory import Inventory, load_inventory
from config.settings import DataopsSettings, load_settings
from pipelines.lakehouse.catalog import ensure_tables, open_catalog
from pipelines.ledger import Ledger


@dataclass(kw_only=True)
class PlatformContext:
    settings: DataopsSettings
    inventory: Inventory

    @classmethod
    def open(cls, settings: DataopsSettings | None = None) -> PlatformContext:
        settings = settings or load_settings()
        settings.ensure_home()
        return cls(settings=settings, inventory=load_inventory(settings.config_dir))

    @cached_property
    def catalog(self) -> Catalog:
        catalog = open_catalog(self.settings)
        ensure_tables(catalog, self.inventory)
        return catalog

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.settings.ops_db)
