"""The context object every runner, tool and command receives: settings, inventory, catalog and ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from config.inventory import Inventory, load_inventory
from config.settings import DataopsSettings, load_settings
from pipelines.fault_injection import SourceFaults

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from pipelines.control import PipelineControl
    from pipelines.incidents import IncidentStore
    from pipelines.ledger import Ledger


@dataclass(kw_only=True)
class PlatformContext:
    settings: DataopsSettings
    inventory: Inventory
    # Source faults this context's replayed sources serve (tests, eval scenarios, the demo); empty otherwise, and
    # never shared with another context.
    faults: SourceFaults = field(default_factory=SourceFaults, compare=False)

    @classmethod
    def open(cls, settings: DataopsSettings | None = None) -> PlatformContext:
        settings = settings or load_settings()
        settings.ensure_home()
        return cls(settings=settings, inventory=load_inventory(settings.config_dir))

    @cached_property
    def catalog(self) -> Catalog:
        """The Iceberg catalog, opened (with pyiceberg imported) on first use: commands that read only the ops
        database (incidents, approvals, audit) never pay for it."""
        from pipelines.lakehouse.catalog import ensure_tables, open_catalog

        catalog = open_catalog(self.settings)
        ensure_tables(catalog, self.inventory)
        return catalog

    @cached_property
    def ledger(self) -> Ledger:
        """The ops database, opened (with SQLAlchemy imported) on first use: `dataops query` never pays for it."""
        # Import the modules whose tables share the ledger's metadata, so create_all makes them all.
        import pipelines.control
        import pipelines.incidents
        import pipelines.monitors.tables  # noqa: F401
        from pipelines.ledger import Ledger

        return Ledger(self.settings.ops_db)

    @cached_property
    def incidents(self) -> IncidentStore:
        from pipelines.incidents import IncidentStore

        return IncidentStore(self.ledger)

    @cached_property
    def control(self) -> PipelineControl:
        from pipelines.control import PipelineControl

        return PipelineControl(self.ledger, self.settings.home)
