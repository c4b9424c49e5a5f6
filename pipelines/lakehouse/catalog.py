"""The Iceberg catalog (SQL or REST, on a local or s3:// warehouse) and the tables the inventory declares.

Which catalog and which storage is a matter of settings alone: `catalog_type` picks pyiceberg's
`SqlCatalog` (any SQLAlchemy URL: SQLite by default, `postgresql+psycopg2://...`) or `RestCatalog`;
`warehouse` is a path or `s3://bucket/prefix`, reached through the `s3_*` settings (pyarrow's S3 file
system reads no AWS_ENDPOINT_URL, so the endpoint must travel as a FileIO property)."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
from pyiceberg.io import S3_ACCESS_KEY_ID, S3_ENDPOINT, S3_FORCE_VIRTUAL_ADDRESSING, S3_REGION, S3_SECRET_ACCESS_KEY
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import CommitTableResponse, Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.transforms import DayTransform, HourTransform, IdentityTransform, MonthTransform, YearTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from config.errors import LakehouseError
from config.inventory import LAYERS, Inventory, TableSpec
from config.settings import DataopsSettings
from pipelines.lakehouse import metadata_cache

CATALOG_NAME = "dataops"  # the default of the catalog_name setting
_S3_DEFAULT_REGION = "us-east-1"  # S3-compatible stores accept any; unset, pyiceberg asks AWS for the bucket's region

_TYPES: dict[str, IcebergType] = {
    "timestamptz": TimestamptzType(),
    "date": DateType(),
    "double": DoubleType(),
    "long": LongType(),
    "int": IntegerType(),
    "string": StringType(),
    "boolean": BooleanType(),
}
_TRANSFORMS = {"day": DayTransform, "hour": HourTransform, "month": MonthTransform, "year": YearTransform, "identity": IdentityTransform}


def open_catalog(settings: DataopsSettings) -> Catalog:
    """The catalog the settings name: SQL on `catalog_url` or REST on `rest_catalog_uri`, with the S3 FileIO properties."""
    settings.ensure_home()
    metadata_cache.install()  # every table of this catalog commits with metadata computed once per change
    properties = file_io_properties(settings)
    if settings.catalog_type == "rest":
        return _open_rest_catalog(settings, properties)
    return ParsedOnceSqlCatalog(settings.catalog_name, uri=settings.catalog_url, warehouse=settings.warehouse_location, **properties)


class ParsedOnceSqlCatalog(SqlCatalog):
    """pyiceberg's SQL catalog, parsing each metadata file once.

    A metadata file never changes once written: every commit writes a new one and swaps the catalog row to it
    (guarded by the old location, so a concurrent writer fails and retries). pyiceberg re-reads and parses the
    current file on every load, refresh and commit check, at a cost that grows with the table's history (the
    file lists every snapshot): about 45 times per one-day run. Here the parsed metadata is kept per location
    (the last `PARSED_MAX` of them) and reused whenever the row still names that location; a commit's own
    result is remembered too. The catalog row is still read every time, so a load never misses a commit, and
    pyiceberg's metadata models are frozen (every update builds new ones; see metadata_cache.py), so sharing
    a parsed value between tables and threads is safe.
    """

    PARSED_MAX = 64

    def __init__(self, name: str, **properties: Any) -> None:
        super().__init__(name, **properties)
        self._parsed: OrderedDict[str, TableMetadata] = OrderedDict()
        self._parsed_lock = threading.Lock()

    def _remember(self, location: str, metadata: TableMetadata) -> None:
        with self._parsed_lock:
            self._parsed[location] = metadata
            self._parsed.move_to_end(location)
            while len(self._parsed) > self.PARSED_MAX:
                self._parsed.popitem(last=False)

    def _convert_orm_to_iceberg(self, orm_table: Any) -> Table:
        location = orm_table.metadata_location
        with self._parsed_lock:
            metadata = self._parsed.get(location) if location else None
        if metadata is None or not orm_table.table_namespace or not orm_table.table_name:
            table = super()._convert_orm_to_iceberg(orm_table)  # reads the file; raises for a broken row
            self._remember(table.metadata_location, table.metadata)
            return table
        return Table(
            identifier=(*Catalog.identifier_to_tuple(orm_table.table_namespace), orm_table.table_name),
            metadata=metadata,
            metadata_location=location,
            io=self._load_file_io(metadata.properties, location),
            catalog=self,
        )

    def commit_table(self, table: Table, requirements: Any, updates: Any) -> CommitTableResponse:
        response = super().commit_table(table, requirements, updates)
        self._remember(response.metadata_location, response.metadata)
        return response


def file_io_properties(settings: DataopsSettings) -> dict[str, str]:
    """pyiceberg FileIO properties from the `s3_*` settings; empty when none is set (local warehouse, AWS defaults)."""
    properties: dict[str, str] = {}
    if settings.s3_endpoint:
        properties[S3_ENDPOINT] = settings.s3_endpoint
    region = settings.s3_region or (_S3_DEFAULT_REGION if settings.s3_endpoint else None)
    if region:
        properties[S3_REGION] = region
    if settings.s3_access_key_id:
        properties[S3_ACCESS_KEY_ID] = settings.s3_access_key_id
    if settings.s3_secret_access_key:
        properties[S3_SECRET_ACCESS_KEY] = settings.s3_secret_access_key
    if settings.s3_endpoint or settings.warehouse_location.startswith(("s3://", "s3a://", "s3n://")):
        properties[S3_FORCE_VIRTUAL_ADDRESSING] = "false" if settings.s3_path_style else "true"
    return properties


def _open_rest_catalog(settings: DataopsSettings, properties: dict[str, str]) -> Catalog:
    from pyiceberg.catalog.rest import OAUTH2_SERVER_URI, RestCatalog

    uri = settings.rest_catalog_uri
    assert uri, "checked by the settings"
    if settings.warehouse:  # unset: the REST server's own warehouse (never our local default)
        properties["warehouse"] = settings.warehouse
    if settings.rest_catalog_credential:
        properties["credential"] = settings.rest_catalog_credential
        # The catalog's own token endpoint, named explicitly: pyiceberg's implicit fallback to it goes away in 1.0.
        properties[OAUTH2_SERVER_URI] = uri.rstrip("/") + "/v1/oauth/tokens"
    try:
        return RestCatalog(settings.catalog_name, uri=uri, **properties)
    except Exception as exc:  # requests' connection errors, HTTP errors mapped by pyiceberg, bad JSON
        check = (
            "DATAOPS_REST_CATALOG_URI, DATAOPS_REST_CATALOG_CREDENTIAL" if settings.rest_catalog_credential else "DATAOPS_REST_CATALOG_URI"
        )
        raise LakehouseError(
            f"the REST catalog at {uri} cannot be reached or refused its config request ({type(exc).__name__}: {exc}); "
            f"check {check} and that the server is up"
        ) from exc


def iceberg_schema(spec: TableSpec) -> Schema:
    return Schema(
        *(
            NestedField(field_id=i, name=c.name, field_type=_TYPES[c.type], required=c.required, doc=c.doc or None)
            for i, c in enumerate(spec.columns, start=1)
        )
    )


def arrow_schema(spec: TableSpec) -> pa.Schema:
    return iceberg_schema(spec).as_arrow()


def partition_spec(spec: TableSpec, schema: Schema) -> PartitionSpec:
    fields = []
    for i, expression in enumerate(spec.partition_by):
        match = re.fullmatch(r"(\w+)\((\w+)\)", expression)
        assert match, expression  # checked when the inventory loaded
        transform, column = match.groups()
        source = schema.find_field(column)
        name = column if transform == "identity" else f"{column}_{transform}"
        fields.append(PartitionField(source_id=source.field_id, field_id=1000 + i, transform=_TRANSFORMS[transform](), name=name))
    return PartitionSpec(*fields)


def ensure_tables(catalog: Catalog, inventory: Inventory) -> None:
    """Create missing namespaces and tables; existing tables are left as they are."""
    # Several processes may start on an empty catalog at once (backfill workers): whoever loses a race to
    # create finds the thing there. pyiceberg's SqlCatalog reports a lost namespace race on Postgres as a raw
    # IntegrityError rather than NamespaceAlreadyExistsError, so the check after any failure decides.
    # One listing per layer, not a load per table: every command that touches the lake opens the catalog.
    namespaces = {tuple(ns) for ns in catalog.list_namespaces()}
    for layer in LAYERS:
        if (layer,) in namespaces:
            continue
        try:
            catalog.create_namespace(layer)
        except Exception:
            if not catalog.namespace_exists(layer):
                raise
    existing = {".".join(identifier) for layer in LAYERS for identifier in catalog.list_tables(layer)}
    for spec in inventory.tables.values():
        if spec.name in existing:
            continue
        schema = iceberg_schema(spec)
        try:
            catalog.create_table(
                spec.name,
                schema=schema,
                partition_spec=partition_spec(spec, schema),
                properties={"format-version": "2", "write.parquet.compression-codec": "zstd", "comment": spec.doc},
            )
        except Exception as exc:
            if not isinstance(exc, TableAlreadyExistsError) and not catalog.table_exists(spec.name):
                raise


def load_table(catalog: Catalog, name: str) -> Table:
    try:
        return catalog.load_table(name)
    except NoSuchTableError:
        raise LakehouseError(f"table {name} does not exist yet; run `dataops run` once to create the tables") from None
