"""Builds the connector a source declaration asks for, live or replayed per `source_mode`."""

from __future__ import annotations

from config.errors import SettingsError
from config.inventory import SourceSpec
from config.settings import DataopsSettings
from pipelines.ledger import Ledger
from pipelines.sources.base import Source
from pipelines.sources.drop_manifest import DropManifest
from pipelines.sources.file_drop import FileDropSource
from pipelines.sources.http import HttpFetcher
from pipelines.sources.neso import NesoSource
from pipelines.sources.weather import WeatherSource

MODES = ("replay", "http")


def build_source(spec: SourceSpec, settings: DataopsSettings, *, fetcher: HttpFetcher | None = None) -> Source:
    if settings.source_mode not in MODES:
        raise SettingsError(f"DATAOPS_SOURCE_MODE={settings.source_mode!r} is not a mode; valid: {', '.join(MODES)}")
    live = settings.source_mode == "http"
    if live and fetcher is None:
        fetcher = HttpFetcher(settings)
    if spec.kind in ("carbon_intensity", "generation_mix"):
        return NesoSource(spec, base_url=settings.carbon_intensity_base_url, fetcher=fetcher if live else None)
    if spec.kind == "weather":
        return WeatherSource(spec, base_url=settings.open_meteo_base_url, fetcher=fetcher if live else None)
    folder = settings.drop_folder / spec.name
    manifest = DropManifest(Ledger(settings.ops_db))
    return FileDropSource(spec, folder=folder, include_bundled=not live, manifest=manifest, max_bytes=settings.drop_max_bytes)
