"""Builds the connector a source declaration asks for, live or replayed per `source_mode`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.errors import SettingsError
from config.inventory import SourceSpec
from config.settings import DataopsSettings
from pipelines.ledger import Ledger
from pipelines.sources.base import Source
from pipelines.sources.drop_manifest import DropManifest
from pipelines.sources.file_drop import FileDropSource
from pipelines.sources.http import HttpFetcher
from pipelines.sources.neso import NesoSource
from pipelines.sources.replay_filter import as_recorded
from pipelines.sources.weather import WeatherSource

if TYPE_CHECKING:
    from pipelines.fault_injection import SourceFaults

MODES = ("replay", "http")


def build_source(
    spec: SourceSpec, settings: DataopsSettings, *, fetcher: HttpFetcher | None = None, faults: SourceFaults | None = None
) -> Source:
    """The connector for `spec`; a replayed API serves it through `faults` (the caller's `ctx.faults`) when given."""
    if settings.source_mode not in MODES:
        raise SettingsError(f"DATAOPS_SOURCE_MODE={settings.source_mode!r} is not a mode; valid: {', '.join(MODES)}")
    live = settings.source_mode == "http"
    if live and fetcher is None:
        fetcher = HttpFetcher(settings)
    replay_filter = faults.filter_for(spec.name) if faults is not None else as_recorded
    if spec.kind in ("carbon_intensity", "generation_mix"):
        return NesoSource(spec, base_url=settings.carbon_intensity_base_url, fetcher=fetcher if live else None, replay_filter=replay_filter)
    if spec.kind == "weather":
        return WeatherSource(spec, base_url=settings.open_meteo_base_url, fetcher=fetcher if live else None, replay_filter=replay_filter)
    folder = settings.drop_folder / spec.name
    manifest = DropManifest(Ledger(settings.ops_db))
    return FileDropSource(spec, folder=folder, include_bundled=not live, manifest=manifest, max_bytes=settings.drop_max_bytes)
