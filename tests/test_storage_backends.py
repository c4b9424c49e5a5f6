"""The same code on other storage by setting alone: S3 warehouse, Postgres catalog and ops DB, REST catalog.

The S3, Postgres and REST tests start real local servers (`moto_server`, Debian's PostgreSQL, an Iceberg REST
catalog on `http.server`) and run the real carbon_intensity pipeline on one day of bundled data; only settings
differ from the SQLite default.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

from config.errors import LakehouseError, SettingsError
from config.inventory import LAYERS
from config.settings import DataopsSettings, load_settings
from pipelines import faults
from pipelines.clock import ReplayClock
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import ensure_tables, file_io_properties, load_table, open_catalog
from pipelines.lakehouse.compaction import compact_table
from pipelines.lakehouse.maintenance import expire_and_clean
from pipelines.promotion import RunResult, run_pipeline
from pipelines.query import run_query
from pipelines.service import Service
from tests.conftest import window
from tests.fakes.postgres_server import PostgresServer, postgres_server_fixture
from tests.fakes.rest_catalog import RestCatalogServer, rest_catalog_server_fixture
from tests.fakes.s3_server import S3Server, s3_server_fixture

postgres_server = postgres_server_fixture
rest_catalog_server = rest_catalog_server_fixture
s3_server = s3_server_fixture

DAY = window((2023, 1, 24), (2023, 1, 25))
TABLES = ("bronze.carbon_intensity", "silver.carbon_intensity", "gold.carbon_intensity_hourly", "quarantine.carbon_intensity")


def _contents(ctx: PlatformContext) -> dict[str, list[str]]:
    """Every row of every table the pipeline writes, minus per-run columns, canonically ordered."""
    out = {}
    for name in TABLES:
        table = load_table(ctx.catalog, name)
        data = table.scan().to_arrow() if table.current_snapshot() else None
        rows = (
            []
            if data is None
            else data.drop_columns([c for c in ("run_id", "fetched_at", "quarantined_at") if c in data.column_names]).to_pylist()
        )
        out[name] = sorted(json.dumps(r, default=str, sort_keys=True) for r in rows)
    return out


def _run_day_twice(settings: DataopsSettings) -> tuple[PlatformContext, RunResult]:
    """The pipeline on one day, then again: the second run must change nothing."""
    ctx = PlatformContext.open(settings)
    first = run_pipeline(ctx, "carbon_intensity", DAY)
    assert first.status == "succeeded", first
    assert first.records_fetched == 48 and first.rows_out + first.rows_quarantined == 48
    before = _contents(ctx)
    second = run_pipeline(ctx, "carbon_intensity", DAY)
    assert second.status == "succeeded", second
    assert _contents(ctx) == before, "re-running a window is idempotent"
    assert len(before["silver.carbon_intensity"]) == first.rows_out
    return ctx, first


def _query_silver(ctx: PlatformContext, expected_rows: int) -> None:
    result = run_query(ctx, "SELECT count(*) AS n, min(ts) AS first FROM silver.carbon_intensity")
    assert result.rows[0][0] == expected_rows
    assert str(result.rows[0][1]).startswith("2023-01-24 00:00")


def _assert_ops_db_on(url: str, run_ids: set[str]) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            assert con.dialect.name == "postgresql"
            rows = con.execute(sa.text("SELECT run_id, pipeline, status FROM runs")).all()
            checks = con.execute(sa.text("SELECT count(*) FROM validation_results")).scalar_one()
    finally:
        engine.dispose()
    assert run_ids <= {r.run_id for r in rows}
    assert {(r.pipeline, r.status) for r in rows} == {("carbon_intensity", "succeeded")}
    assert checks > 0, "validation results are in the Postgres ops database"


def _assert_catalog_rows_on(url: str, catalog_name: str) -> dict[str, str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            rows = con.execute(sa.text("SELECT catalog_name, table_namespace, table_name, metadata_location FROM iceberg_tables")).all()
    finally:
        engine.dispose()
    assert {r.catalog_name for r in rows} == {catalog_name}
    registered = {f"{r.table_namespace}.{r.table_name}": r.metadata_location for r in rows}
    assert set(TABLES) <= set(registered)
    return registered


def _close(ctx: PlatformContext) -> None:
    ctx.ledger.engine.dispose()
    catalog = ctx.catalog
    if isinstance(catalog, SqlCatalog):
        catalog.engine.dispose()
    elif isinstance(catalog, RestCatalog):
        catalog.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith(("DATAOPS_", "AWS_", "PYICEBERG_")):
            monkeypatch.delenv(key)


# (a) S3 warehouse


@pytest.mark.slow
def test_s3_warehouse_on_a_local_s3_server(tmp_path: Path, clean_env: None, s3_server: S3Server) -> None:
    settings = load_settings(home=tmp_path / "home", warehouse=f"s3://{s3_server.bucket}/lake", **s3_server.settings())
    ctx, first = _run_day_twice(settings)
    try:
        keys = s3_server.keys("lake/")
        for name in TABLES:
            namespace, table = name.split(".")
            assert any(k.startswith(f"lake/{namespace}/{table}/metadata/") and k.endswith(".metadata.json") for k in keys), name
        silver_data = [k for k in keys if k.startswith("lake/silver/carbon_intensity/data/") and k.endswith(".parquet")]
        assert silver_data, keys
        assert load_table(ctx.catalog, "silver.carbon_intensity").location() == f"s3://{s3_server.bucket}/lake/silver/carbon_intensity"
        assert not any((tmp_path / "home" / "warehouse").rglob("*.parquet")), "no data file is written locally"
        _query_silver(ctx, first.rows_out)
    finally:
        _close(ctx)


# (b) Postgres SQL catalog and ops database


@pytest.mark.slow
def test_postgres_catalog_and_ops_database(tmp_path: Path, clean_env: None, postgres_server: PostgresServer) -> None:
    catalog_url = postgres_server.create_database("catalog_b")
    ops_url = postgres_server.create_database("ops_b")
    settings = load_settings(home=tmp_path / "home", catalog_uri=catalog_url, ops_db_url=ops_url, catalog_name="rest_backend")
    ctx, first = _run_day_twice(settings)
    try:
        assert ctx.catalog.name == "rest_backend"
        registered = _assert_catalog_rows_on(catalog_url, "rest_backend")
        assert registered["silver.carbon_intensity"].startswith((tmp_path / "home" / "warehouse").as_uri())
        _assert_ops_db_on(ops_url, {first.run_id})
        assert not (tmp_path / "home" / "catalog.db").exists() and not (tmp_path / "home" / "ops.db").exists()
        _query_silver(ctx, first.rows_out)
    finally:
        _close(ctx)


# (c) all at once: the platform moves by settings alone


@pytest.mark.slow
def test_postgres_catalog_s3_warehouse_and_postgres_ops_db_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None, postgres_server: PostgresServer, s3_server: S3Server
) -> None:
    catalog_url = postgres_server.create_database("catalog_c")
    ops_url = postgres_server.create_database("ops_c")
    # Through the environment, as a deployment sets them: no argument but the home reaches the code.
    env = {
        "DATAOPS_CATALOG_URI": catalog_url,
        "DATAOPS_OPS_DB_URL": ops_url,
        "DATAOPS_WAREHOUSE": f"s3://{s3_server.bucket}/prod",
        **{f"DATAOPS_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in s3_server.settings().items()},
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(home=tmp_path / "home")
    assert settings.catalog_type == "sql" and settings.catalog_name == "dataops"
    ctx, first = _run_day_twice(settings)
    try:
        registered = _assert_catalog_rows_on(catalog_url, "dataops")
        assert all(loc.startswith(f"s3://{s3_server.bucket}/prod/") for loc in registered.values())
        assert {loc.removeprefix(f"s3://{s3_server.bucket}/") for loc in registered.values()} <= set(s3_server.keys("prod/"))
        _assert_ops_db_on(ops_url, {first.run_id})
        _query_silver(ctx, first.rows_out)
        assert not any((tmp_path / "home").rglob("*.parquet")) and not any((tmp_path / "home").rglob("*.db"))
    finally:
        _close(ctx)
    # A second process (a fresh context on the same settings) sees the same lake.
    again = PlatformContext.open(load_settings(home=tmp_path / "home2"))
    try:
        _query_silver(again, first.rows_out)
    finally:
        _close(again)


# (d) REST catalog: the config path, against a local server that answers the protocol's config endpoint


class _RestConfigHandler(BaseHTTPRequestHandler):
    """Answers `GET /v1/config` as the Iceberg REST spec says; records requests. Not a catalog beyond that."""

    requests: list[str]

    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if self.path.startswith("/v1/config"):
            body = json.dumps({"defaults": {"rest-default": "yes"}, "overrides": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def rest_config_server() -> Iterator[tuple[str, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RestConfigHandler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_rest_catalog_is_built_from_settings(tmp_path: Path, clean_env: None, rest_config_server: tuple[str, list[str]]) -> None:
    uri, requests = rest_config_server
    settings = load_settings(
        home=tmp_path / "home",
        catalog_type="REST",
        rest_catalog_uri=uri,
        catalog_name="lake",
        warehouse="s3://warehouse/",
        s3_endpoint="http://127.0.0.1:9000",
        s3_access_key_id="key",
        s3_secret_access_key="secret",
    )
    catalog = open_catalog(settings)
    assert isinstance(catalog, RestCatalog)
    assert catalog.name == "lake" and catalog.uri == uri
    assert catalog.properties["s3.endpoint"] == "http://127.0.0.1:9000"
    assert catalog.properties["s3.region"] == "us-east-1"
    assert catalog.properties["s3.access-key-id"] == "key" and catalog.properties["s3.secret-access-key"] == "secret"
    assert catalog.properties["s3.force-virtual-addressing"] == "false"
    assert catalog.properties["rest-default"] == "yes", "the server's config defaults are merged"
    assert requests == ["/v1/config?warehouse=s3%3A%2F%2Fwarehouse%2F"]


def test_unreachable_rest_catalog_names_the_uri(tmp_path: Path, clean_env: None) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = load_settings(home=tmp_path / "home", catalog_type="rest", rest_catalog_uri=uri)
    with pytest.raises(LakehouseError, match=rf"the REST catalog at {uri} cannot be reached .*DATAOPS_REST_CATALOG_URI"):
        open_catalog(settings)


# (d2) REST catalog for real: a local server speaking the Iceberg REST protocol, backed by its own SqlCatalog


def _rest_settings(home: Path, server: RestCatalogServer, **extra: Any) -> DataopsSettings:
    return load_settings(home=home, catalog_type="rest", rest_catalog_uri=server.uri, catalog_name="lake", **extra)


def _assert_served_through(server: RestCatalogServer, ctx: PlatformContext) -> dict[str, str]:
    """Every table is the server's: same metadata file for the client and the backing catalog, commits over HTTP."""
    assert isinstance(ctx.catalog, RestCatalog) and ctx.catalog.name == "lake"
    locations = {}
    for name in TABLES:
        locations[name] = server.catalog.load_table(name).metadata_location
        assert load_table(ctx.catalog, name).metadata_location == locations[name], name
    namespace, table = "silver", "carbon_intensity"
    commits = [
        status for method, path, status in server.requests if (method, path) == ("POST", f"/v1/namespaces/{namespace}/tables/{table}")
    ]
    assert commits and set(commits) == {200}, server.requests
    assert ("POST", f"/v1/namespaces/{namespace}/tables", 200) in server.requests, "tables are created through REST"
    return locations


@pytest.mark.slow
def test_rest_catalog_runs_the_pipeline_on_a_local_rest_server(
    tmp_path: Path, clean_env: None, rest_catalog_server: RestCatalogServer
) -> None:
    server = rest_catalog_server
    ctx, first = _run_day_twice(_rest_settings(tmp_path / "home", server))
    try:
        locations = _assert_served_through(server, ctx)
        assert all(loc.startswith(server.warehouse + "/") for loc in locations.values()), "no warehouse setting: the server's"
        assert server.catalog.load_table("silver.carbon_intensity").scan().to_arrow().num_rows == first.rows_out
        assert not (tmp_path / "home" / "catalog.db").exists(), "no local SQL catalog is opened"
        assert not any((tmp_path / "home").rglob("*.parquet")) and not any((tmp_path / "home").rglob("*.metadata.json"))
        _query_silver(ctx, first.rows_out)
    finally:
        _close(ctx)
    again = PlatformContext.open(_rest_settings(tmp_path / "home2", server))  # another process, same catalog
    try:
        _query_silver(again, first.rows_out)
    finally:
        _close(again)


def test_rest_commit_on_a_stale_table_is_refused_with_409(tmp_path: Path, clean_env: None, rest_catalog_server: RestCatalogServer) -> None:
    server = rest_catalog_server
    catalog = open_catalog(_rest_settings(tmp_path / "home", server))
    schema = Schema(NestedField(field_id=1, name="n", field_type=LongType()))

    def rows(n: int) -> pa.Table:
        return pa.table({"n": pa.array([n], pa.int64())})

    try:
        catalog.create_namespace(("ops", "race"))  # two levels: %1F in the path
        # pyiceberg retries a failed commit of an append by itself; with retries off the 409 reaches the caller
        catalog.create_table(("ops", "race", "t"), schema=schema, properties={"commit.retry.num-retries": "0"})
        writer_a, writer_b = catalog.load_table(("ops", "race", "t")), catalog.load_table(("ops", "race", "t"))
        writer_a.append(rows(1))
        with pytest.raises(CommitFailedException, match=r"CommitFailedException: Requirement failed: branch main"):
            writer_b.append(rows(2))  # main moved since writer_b loaded it: assert-ref-snapshot-id is stale
        assert server.requests[-1] == ("POST", "/v1/namespaces/ops%1Frace/tables/t", 409)
        writer_b.refresh().append(rows(2))  # reload, commit again
        assert sorted(server.catalog.load_table(("ops", "race", "t")).scan().to_arrow()["n"].to_pylist()) == [1, 2]

        # With pyiceberg's default retries, the stale writer's 409 is followed by a refresh and a commit that lands.
        catalog.create_table(("ops", "race", "u"), schema=schema)
        writer_a, writer_b = catalog.load_table(("ops", "race", "u")), catalog.load_table(("ops", "race", "u"))
        writer_a.append(rows(1))
        del server.requests[:]
        writer_b.append(rows(2))
        commits = [status for method, path, status in server.requests if (method, path) == ("POST", "/v1/namespaces/ops%1Frace/tables/u")]
        assert commits == [409, 200], server.requests
        assert sorted(server.catalog.load_table(("ops", "race", "u")).scan().to_arrow()["n"].to_pylist()) == [1, 2]
    finally:
        catalog.close()


def test_rest_errors_follow_the_spec_error_model(tmp_path: Path, clean_env: None, rest_catalog_server: RestCatalogServer) -> None:
    server = rest_catalog_server
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{server.uri}/v1/namespaces/bronze/tables/nope")
    error = json.loads(raised.value.read())["error"]
    assert raised.value.code == 404 and set(error) == {"message", "type", "code"}
    assert (error["type"], error["code"]) == ("NoSuchTableException", 404) and "bronze.nope" in error["message"]
    catalog = open_catalog(_rest_settings(tmp_path / "home", server))
    try:
        catalog.create_namespace("bronze")
        with pytest.raises(NamespaceAlreadyExistsError, match=r"AlreadyExistsException"):
            catalog.create_namespace("bronze")
        with pytest.raises(NoSuchTableError, match=r"NoSuchTableException"):
            catalog.load_table("bronze.nope")
        with pytest.raises(LakehouseError, match=r"table bronze.nope does not exist yet"):
            load_table(catalog, "bronze.nope")
        assert not catalog.table_exists("bronze.nope") and ("HEAD", "/v1/namespaces/bronze/tables/nope", 404) in server.requests
    finally:
        catalog.close()


def test_rest_catalog_credential_is_checked(tmp_path: Path, clean_env: None) -> None:
    with RestCatalogServer(root=tmp_path / "rest", credential="dataops:s3cret") as server:
        catalog = open_catalog(_rest_settings(tmp_path / "home", server, rest_catalog_credential="dataops:s3cret"))
        catalog.create_namespace("bronze")
        assert catalog.list_namespaces() == [("bronze",)]
        catalog.close()
        with pytest.raises(LakehouseError, match=rf"the REST catalog at {server.uri} .*\(OAuthError: invalid_client: ") as refused:
            open_catalog(_rest_settings(tmp_path / "home", server, rest_catalog_credential="dataops:guessed"))
        assert "guessed" not in str(refused.value) and "s3cret" not in str(refused.value)
        with pytest.raises(LakehouseError, match=r"UnauthorizedError: NotAuthorizedException: missing or invalid bearer token"):
            open_catalog(_rest_settings(tmp_path / "home", server))
        assert ("POST", "/v1/oauth/tokens", 401) in server.requests and ("GET", "/v1/config", 401) in server.requests


@pytest.mark.slow
def test_rest_catalog_on_an_s3_warehouse(tmp_path: Path, clean_env: None, s3_server: S3Server) -> None:
    bucket = s3_server.bucket
    server_io = file_io_properties(load_settings(home=tmp_path / "server", **s3_server.settings()))
    with RestCatalogServer(root=tmp_path / "rest", warehouse=f"s3://{bucket}/rest", properties=server_io) as server:
        ctx, first = _run_day_twice(_rest_settings(tmp_path / "home", server, **s3_server.settings()))
        try:
            locations = _assert_served_through(server, ctx)
            assert all(loc.startswith(f"s3://{bucket}/rest/") for loc in locations.values())
            keys = set(s3_server.keys("rest/"))
            assert {loc.removeprefix(f"s3://{bucket}/") for loc in locations.values()} <= keys
            assert any(k.startswith("rest/silver/carbon_intensity/data/") and k.endswith(".parquet") for k in keys)
            assert not any(tmp_path.rglob("*.parquet")), "no data file is written locally"
            _query_silver(ctx, first.rows_out)
        finally:
            _close(ctx)


# (e) bad settings, clear words


def test_unknown_catalog_type_names_the_valid_ones(tmp_path: Path, clean_env: None) -> None:
    with pytest.raises(SettingsError, match=r"catalog_type 'hive' is not supported; valid: 'sql', 'rest'"):
        load_settings(home=tmp_path, catalog_type="hive")


def test_rest_catalog_without_uri_is_refused(tmp_path: Path, clean_env: None) -> None:
    with pytest.raises(SettingsError, match=r"catalog_type 'rest' needs rest_catalog_uri \(DATAOPS_REST_CATALOG_URI="):
        load_settings(home=tmp_path, catalog_type="rest")


def test_default_is_sqlite_catalog_named_dataops_with_no_s3_properties(tmp_path: Path, clean_env: None) -> None:
    settings = load_settings(home=tmp_path / "home")
    assert file_io_properties(settings) == {}
    catalog = open_catalog(settings)
    assert isinstance(catalog, SqlCatalog) and catalog.name == "dataops"
    assert catalog.properties["uri"] == f"sqlite:///{(tmp_path / 'home' / 'catalog.db').resolve()}"
    catalog.engine.dispose()


def test_s3_warehouse_without_endpoint_keeps_aws_defaults(tmp_path: Path, clean_env: None) -> None:
    settings = load_settings(home=tmp_path / "home", warehouse="s3://bucket/lake", s3_path_style=False)
    assert file_io_properties(settings) == {"s3.force-virtual-addressing": "true"}, "AWS: region resolved from the bucket"
    settings = load_settings(home=tmp_path / "home", s3_endpoint="http://minio:9000", s3_region="eu-west-2")
    assert file_io_properties(settings) == {
        "s3.endpoint": "http://minio:9000",
        "s3.region": "eu-west-2",
        "s3.force-virtual-addressing": "false",
    }


def test_s3_secrets_stay_out_of_repr(tmp_path: Path, clean_env: None) -> None:
    settings = load_settings(home=tmp_path, s3_access_key_id="AKIDSECRET", s3_secret_access_key="very-secret")
    assert "AKIDSECRET" not in repr(settings) and "very-secret" not in repr(settings)


# (e) Upkeep and the scheduler on the shared services


@pytest.mark.slow
def test_upkeep_on_an_s3_warehouse(tmp_path: Path, clean_env: None, s3_server: S3Server) -> None:
    """Compaction, snapshot expiry and orphan-file deletion work on object storage as on local files."""
    settings = load_settings(home=tmp_path / "home", warehouse=f"s3://{s3_server.bucket}/upkeep", **s3_server.settings())
    ctx = PlatformContext.open(settings)
    try:
        # The same day three times, revised after the first fetch: new snapshots, replaced and added files.
        ctx.faults.inject(faults.SourceFault(kind="late_revision", source="carbon_intensity", field="intensity.forecast", value=1))
        for _ in range(3):
            assert run_pipeline(ctx, "carbon_intensity", DAY).status == "succeeded"
        ctx.faults.clear()
        before = _contents(ctx)
        keys_before = set(s3_server.keys("upkeep/silver/carbon_intensity/"))
        compacted = compact_table(ctx, "bronze.carbon_intensity", run_id="upkeep-test", min_files=2)
        assert compacted.days_compacted == ["2023-01-24"] and compacted.files_after == 1
        cleaned = expire_and_clean(ctx, "silver.carbon_intensity", older_than=timedelta(0), retain_last=1, grace=timedelta(0))
        assert cleaned.snapshots_expired > 0 and cleaned.files_deleted > 0
        keys_after = set(s3_server.keys("upkeep/silver/carbon_intensity/"))
        root = f"s3://{s3_server.bucket}/"
        deleted = {f"upkeep/silver/carbon_intensity/{path}" for path in cleaned.deleted_files}
        assert deleted and deleted <= keys_before and not deleted & keys_after, "the orphans are gone from the bucket, nothing else"
        table = load_table(ctx.catalog, "silver.carbon_intensity")
        assert table.location().startswith(root)
        assert _contents(ctx) == before, "upkeep changes files, never rows"
    finally:
        _close(ctx)


@pytest.mark.slow
def test_the_scheduler_keeps_its_jobs_in_a_postgres_ops_database(tmp_path: Path, clean_env: None, postgres_server: PostgresServer) -> None:
    ops_url = postgres_server.create_database("ops_scheduler")
    ctx = PlatformContext.open(load_settings(home=tmp_path / "home", ops_db_url=ops_url))
    service = Service(ctx, clock=ReplayClock(start=DAY.start, speed=1.0))
    service.start()
    try:
        engine = sa.create_engine(ops_url)
        with engine.connect() as con:
            jobs = {row[0] for row in con.execute(sa.text("SELECT id FROM scheduler_jobs"))}
        engine.dispose()
        assert {f"pipeline:{name}" for name in ctx.inventory.pipelines} <= jobs and {"monitors", "upkeep"} <= jobs
    finally:
        service.stop()
        _close(ctx)


def test_creating_the_tables_tolerates_losing_the_race_to_another_process(tmp_path: Path, clean_env: None) -> None:
    """Backfill workers open an empty catalog together. A worker whose create loses the race to another finds
    the namespace or table there and carries on, also when the catalog reports the loss as a raw database
    IntegrityError (pyiceberg's SqlCatalog on Postgres does, for namespaces)."""
    settings = load_settings(home=tmp_path / "home")
    settings.ensure_home()
    ours, theirs = open_catalog(settings), open_catalog(settings)
    assert isinstance(ours, SqlCatalog)
    inventory = PlatformContext.open(settings).inventory
    real_namespace_exists, real_create_table = ours.namespace_exists, ours.create_table
    checks: Counter[str] = Counter()
    attempted: set[str] = set()

    def list_namespaces(*_args: Any, **_kwargs: Any) -> list[tuple[str, ...]]:  # our listing ran before the other process
        ensure_tables(theirs, inventory)
        return []

    def namespace_exists(name: Any) -> bool:  # SqlCatalog's own check also ran before it: the insert hits the row
        checks[str(name)] += 1
        return False if checks[str(name)] == 1 else real_namespace_exists(name)

    def create_table(identifier: Any, *args: Any, **kwargs: Any) -> Any:
        attempted.add(str(identifier))
        return real_create_table(identifier, *args, **kwargs)

    ours.list_namespaces = list_namespaces  # type: ignore[method-assign]
    ours.list_tables = lambda *_a, **_k: []  # type: ignore[method-assign]
    ours.namespace_exists = namespace_exists  # type: ignore[method-assign]
    ours.create_table = create_table  # type: ignore[method-assign]
    ensure_tables(ours, inventory)  # every create loses (a raw IntegrityError for namespaces) and is found done
    assert all(checks[layer] >= 2 for layer in LAYERS), "every namespace create was attempted, lost and checked again"
    assert set(inventory.tables) <= attempted, "every table create was attempted and lost"
    assert all(theirs.table_exists(name) for name in inventory.tables)
