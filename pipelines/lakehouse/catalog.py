"""The Iceberg catalog named `dataops` and the tables the inventory declares."""

from __future__ import annotations

import re

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
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

CATALOG_NAME = "dataops"

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
    """The SQL catalog on `catalog_url` with the configured warehouse."""
    settings.ensure_home()
    return SqlCatalog(CATALOG_NAME, uri=settings.catalog_url, warehouse=settings.warehouse_location)


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
    for layer in LAYERS:
        try:
            catalog.create_namespace(layer)
        except NamespaceAlreadyExistsError:
            pass
    for spec in inventory.tables.values():
        if catalog.table_exists(spec.name):
            continue
        schema = iceberg_schema(spec)
        try:
            catalog.create_table(
                spec.name,
                schema=schema,
                partition_spec=partition_spec(spec, schema),
                properties={"format-version": "2", "write.parquet.compression-codec": "zstd", "comment": spec.doc},
            )
        except TableAlreadyExistsError:
            pass  # another process created it between the check and the create


def load_table(catalog: Catalog, name: str) -> Table:
    try:
        return catalog.load_table(name)
    except NoSuchTableError:
        raise LakehouseError(f"table {name} does not exist yet; run `dataops run` once to create the tables") from None
