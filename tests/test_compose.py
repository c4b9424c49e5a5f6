"""docker-compose.yml holds together without Docker: it parses, pins its images, health-checks its long-running
services, mounts files that exist, declares its volumes, publishes no host port twice, and wires the platform,
Postgres, MinIO, the REST catalog, Prometheus, Grafana and Trino to each other; .env.example lists every setting."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from config.settings import DataopsSettings
from tests.conftest import REPO

COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PLATFORM = "dataops"  # the service name the shipped config/prometheus/prometheus.yml scrapes
NEEDED = {PLATFORM, "postgres", "minio", "minio-init", "iceberg-rest", "prometheus", "grafana", "trino", "ray-head"}
ENV_EXAMPLE_TEXT = (REPO / ".env.example").read_text()
ENV_EXAMPLE = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE_TEXT, re.MULTILINE))
INTERPOLATION = re.compile(r"(?<!\$)\$\{(\w+)(?:[:?-][^}]*)?\}")


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Target service -> condition, for the list and the mapping form."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


ONE_SHOTS = {name for s in SERVICES.values() for name, cond in depends_on(s).items() if cond == "service_completed_successfully"}


def interpolate(value: str) -> str:
    """Fill ${VAR} from .env.example, as docker compose does from the .env copied from it."""
    return INTERPOLATION.sub(lambda m: ENV_EXAMPLE.get(m.group(1), ""), value).replace("$$", "$")


def strings(node: Any) -> list[str]:
    """Every string in a parsed YAML tree, keys included (comments are gone)."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [*strings(k), *strings(v)]]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def environment(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def mounts(name: str) -> list[tuple[str, str]]:
    """(source, target) of every volume entry of a service, short or long syntax."""
    out = []
    for entry in SERVICES[name].get("volumes", []):
        if isinstance(entry, dict):
            out.append((entry["source"], entry["target"]))
        else:
            source, target = entry.split(":")[:2]
            out.append((source, target))
    return out


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def repo_path(source: str) -> Path:
    path = (REPO / source).resolve()
    assert path.is_relative_to(REPO), f"{source} points outside the repository"
    return path


def repo_file_at(name: str, container_path: str) -> Path:
    """The repository file a container path of a service comes from, through its bind mounts."""
    wanted = PurePosixPath(container_path)
    for source, target in sorted(mounts(name), key=lambda m: -len(m[1])):
        if is_bind(source) and wanted.is_relative_to(target):
            return repo_path(source) / wanted.relative_to(target)
    raise AssertionError(f"{name} does not mount anything from the repository at {container_path}")


def host_ports(name: str) -> list[tuple[str, int, str]]:
    """(host ip, host port, protocol) of every published port of a service."""
    out = []
    for entry in SERVICES[name].get("ports", []):
        if isinstance(entry, dict):
            if "published" in entry:
                out.append((entry.get("host_ip", "0.0.0.0"), int(entry["published"]), entry.get("protocol", "tcp")))
            continue
        spec, _, protocol = str(entry).partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only: Docker picks a free host port
        ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((ip, int(parts[-2]), protocol or "tcp"))
    return out


def properties(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith(("#", "!")))


def test_the_stack_has_every_service_the_platform_needs() -> None:
    missing = NEEDED - SERVICES.keys()
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"
    assert sorted(ONE_SHOTS) == ["minio-init"], "only the bucket set-up runs once"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_image_is_pinned_to_a_version(name: str) -> None:
    service = SERVICES[name]
    if "build" in service:
        build = service["build"] if isinstance(service["build"], dict) else {"context": service["build"]}
        dockerfile = repo_path(build["context"]) / build.get("dockerfile", "Dockerfile")
        images = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
        assert images, f"{dockerfile} has no FROM"
    else:
        images = [service["image"]]
    for image in images:
        name_part, _, tag = image.partition("@")[0].rpartition(":")
        assert name_part and "/" not in tag, f"{name}: image {image} has no tag"
        pinned = "@sha256:" in image or re.search(r"\d+\.\d+|^\d{3,}$|^RELEASE\.", tag)
        assert pinned, f"{name}: image {image} is not pinned to a version (tag {tag!r})"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_long_running_services_have_health_checks_and_one_shots_do_not_restart(name: str) -> None:
    service = SERVICES[name]
    if name in ONE_SHOTS:
        assert service.get("restart", "no") == "no", f"{name} runs once; restarting it would loop"
        return
    check = service.get("healthcheck", {})
    assert check.get("test") and not check.get("disable"), f"{name} runs for good but has no health check"
    assert check["test"][0] in {"CMD", "CMD-SHELL"}


def test_depends_on_targets_exist_and_wait_for_readiness() -> None:
    for name, service in SERVICES.items():
        for target, condition in depends_on(service).items():
            assert target in SERVICES, f"{name} depends on unknown service {target}"
            wanted = "service_completed_successfully" if target in ONE_SHOTS else "service_healthy"
            assert condition == wanted, f"{name} waits for {target} with {condition}; use {wanted}"
    # No cycles: every service can be started after the ones it depends on.
    started: set[str] = set()
    while len(started) < len(SERVICES):
        ready = {n for n, s in SERVICES.items() if n not in started and depends_on(s).keys() <= started}
        assert ready, f"depends_on has a cycle among {sorted(SERVICES.keys() - started)}"
        started |= ready


def test_every_referenced_file_exists() -> None:
    for name, service in SERVICES.items():
        for source, target in mounts(name):
            if is_bind(source):
                assert repo_path(source).exists(), f"{name} mounts {source} at {target}, which does not exist"
        env_files = service.get("env_file", [])
        for entry in [env_files] if isinstance(env_files, str | dict) else env_files:
            path = entry["path"] if isinstance(entry, dict) else entry
            # .env is the user's copy of .env.example (README: cp .env.example .env), never committed.
            assert repo_path(path + ".example" if path == ".env" else path).is_file(), f"{name} reads missing {path}"
        for config in service.get("configs", []):
            source = config["source"] if isinstance(config, dict) else config
            assert source in COMPOSE.get("configs", {}), f"{name} uses undeclared config {source}"
    for name, config in COMPOSE.get("configs", {}).items():
        assert "content" in config or repo_path(config["file"]).is_file(), f"config {name} has no content or file"


def test_named_volumes_are_declared_and_hold_every_service_state() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    used = {source for name in SERVICES for source, _ in mounts(name) if not is_bind(source)}
    assert used <= declared, f"undeclared volumes: {sorted(used - declared)}"
    assert declared <= used, f"declared but unused volumes: {sorted(declared - used)}"
    minio_data = SERVICES["minio"]["command"][1]
    state = {
        PLATFORM: environment(PLATFORM)["DATAOPS_HOME"],
        "postgres": "/var/lib/postgresql/data",
        "minio": minio_data,
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
    }
    for name, folder in state.items():
        on_volume = [s for s, t in mounts(name) if t == folder and not is_bind(s)]
        assert on_volume, f"{name} keeps its state in {folder}, which is not on a named volume"


def test_host_ports_do_not_clash() -> None:
    seen: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for name in SERVICES:
        for ip, port, protocol in host_ports(name):
            for other_ip, other in seen.get((port, protocol), []):
                assert "0.0.0.0" not in {ip, other_ip} and ip != other_ip, f"host port {port}/{protocol}: {other} and {name}"
            seen.setdefault((port, protocol), []).append((ip, name))
    published = {port for _, port, _ in host_ports(PLATFORM)}
    assert int(environment(PLATFORM)["DATAOPS_METRICS_PORT"]) in published


def test_prometheus_scrapes_the_platform_and_loads_the_shipped_alert_rules() -> None:
    flags = dict(arg.split("=", 1) for arg in SERVICES["prometheus"]["command"] if "=" in arg)
    config_path = PurePosixPath(flags["--config.file"])
    config_file = repo_file_at("prometheus", str(config_path))
    config = yaml.safe_load(config_file.read_text())

    env = environment(PLATFORM)
    assert env["DATAOPS_METRICS_ADDR"] == "0.0.0.0", "the platform must listen beyond its container's loopback"
    target = f"{PLATFORM}:{env['DATAOPS_METRICS_PORT']}"
    targets = {t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    assert target in targets, f"{config_file.relative_to(REPO)} scrapes {sorted(targets)}, not the platform at {target}"

    rule_files = [repo_file_at("prometheus", str(config_path.parent / r)) for r in config["rule_files"]]
    assert REPO / "config" / "prometheus" / "alerts.yml" in rule_files
    for rule_file in rule_files:
        rules = [r for g in yaml.safe_load(rule_file.read_text())["groups"] for r in g["rules"]]
        assert rules and all("alert" in r and "expr" in r for r in rules), f"{rule_file} has no alert rules"


def test_grafana_provisions_the_prometheus_datasource_and_the_shipped_dashboard() -> None:
    datasources_dir = repo_file_at("grafana", "/etc/grafana/provisioning/datasources")
    datasources = [d for f in sorted(datasources_dir.glob("*.yml")) for d in yaml.safe_load(f.read_text())["datasources"]]
    prometheus = [d for d in datasources if d["type"] == "prometheus"]
    assert prometheus, f"no Prometheus data source in {datasources_dir.relative_to(REPO)}"
    url = urlsplit(prometheus[0]["url"])
    assert (url.hostname, url.port) == ("prometheus", 9090)
    flags = dict(arg.split("=", 1) for arg in SERVICES["prometheus"]["command"] if "=" in arg)
    assert url.port == int(flags.get("--web.listen-address", ":9090").rsplit(":", 1)[1])

    providers_dir = repo_file_at("grafana", "/etc/grafana/provisioning/dashboards")
    providers = [p for f in sorted(providers_dir.glob("*.yml")) for p in yaml.safe_load(f.read_text())["providers"]]
    assert providers, f"no dashboard provider in {providers_dir.relative_to(REPO)}"
    dashboard_file = repo_file_at("grafana", f"{providers[0]['options']['path']}/dataops_dashboard.json")
    assert dashboard_file == REPO / "config" / "grafana" / "dataops_dashboard.json"
    dashboard = json.loads(dashboard_file.read_text())
    # Panels ask for ${datasource}: a variable listing the Prometheus data sources, defaulting to the provisioned one.
    variables = {v["name"]: v for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    resolved = {f"${{{name}}}": v["current"]["value"] for name, v in variables.items() if v["query"] == "prometheus"}
    wanted_uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in [p, *p.get("targets", [])] if "datasource" in t}
    wanted_uids = {resolved.get(uid, uid) for uid in wanted_uids}
    assert wanted_uids <= {d.get("uid") for d in prometheus}, f"the dashboard asks for data sources {sorted(wanted_uids)}"
    home = environment("grafana").get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home is None or repo_file_at("grafana", home) == dashboard_file


def test_trino_reads_the_rest_catalog_and_minio() -> None:
    catalog_file = repo_file_at("trino", "/etc/trino/catalog/iceberg.properties")
    props = properties(catalog_file)
    assert props["connector.name"] == "iceberg"
    assert props["iceberg.catalog.type"] == "rest"
    rest = urlsplit(props["iceberg.rest-catalog.uri"])
    assert (rest.hostname, rest.port) == ("iceberg-rest", int(environment("iceberg-rest").get("REST_PORT", "8181")))
    assert props["fs.native-s3.enabled"] == "true"
    assert urlsplit(props["s3.endpoint"]).hostname == "minio"
    assert props["s3.path-style-access"] == "true"
    assert props["s3.region"]
    trino_env = environment("trino")
    for key in ("s3.aws-access-key", "s3.aws-secret-key"):
        variable = re.fullmatch(r"\$\{ENV:(\w+)\}", props[key])
        assert variable and variable.group(1) in trino_env, f"{key} must come from the trino service's environment"


def test_platform_and_rest_catalog_share_the_catalog_database_and_the_bucket() -> None:
    platform, rest = environment(PLATFORM), environment("iceberg-rest")
    catalog = urlsplit(platform["DATAOPS_CATALOG_URI"])
    rest_catalog = urlsplit(rest["CATALOG_URI"].removeprefix("jdbc:"))
    assert (catalog.hostname, catalog.port, catalog.path) == (rest_catalog.hostname, rest_catalog.port, rest_catalog.path)
    assert catalog.hostname == "postgres" and catalog.username == ENV_EXAMPLE["POSTGRES_USER"]
    assert catalog.password == rest["CATALOG_JDBC_PASSWORD"] == ENV_EXAMPLE["POSTGRES_PASSWORD"]
    database = catalog.path.lstrip("/")
    assert f"CREATE DATABASE {database};" in COMPOSE["configs"]["postgres-init"]["content"]
    ops = urlsplit(platform["DATAOPS_OPS_DB_URL"])
    assert ops.hostname == "postgres" and ops.path.lstrip("/") == environment("postgres")["POSTGRES_DB"]

    bucket = urlsplit(rest["CATALOG_WAREHOUSE"]).hostname
    assert f"mb --ignore-existing stack/{bucket}" in " ".join(SERVICES["minio-init"]["command"])
    assert urlsplit(properties(REPO / "config/trino/catalog/iceberg.properties")["iceberg.rest-catalog.warehouse"]).hostname == bucket


def test_env_example_documents_every_setting_and_every_variable_compose_uses() -> None:
    listed = set(re.findall(r"^(?:# )?(DATAOPS_[A-Z0-9_]+)=", ENV_EXAMPLE_TEXT, re.MULTILINE))
    settings = {f"DATAOPS_{name.upper()}" for name in DataopsSettings.model_fields}
    assert not settings - listed, f".env.example does not document {', '.join(sorted(settings - listed))}"
    assert not listed - settings, f".env.example lists unknown settings {', '.join(sorted(listed - settings))}"
    used = {variable for value in strings(COMPOSE) for variable in INTERPOLATION.findall(value)}
    assert used <= ENV_EXAMPLE.keys(), f".env.example does not set {', '.join(sorted(used - ENV_EXAMPLE.keys()))}"


def test_dockerfile_installs_every_package_and_serves() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    include = re.search(r"include = \[(.*?)\]", pyproject.split("[tool.setuptools.packages.find]", 1)[1])
    assert include, "pyproject.toml has no [tool.setuptools.packages.find] include"
    for package in re.findall(r'"(\w+)\*"', include.group(1)):
        assert f"COPY {package}/ {package}/" in dockerfile, f"the Dockerfile does not copy package {package}"
    # Dependencies from the lock, hashed; then the project alone (tests/test_dependencies.py checks the lock).
    assert re.search(r"^RUN pip install --require-hashes -r requirements\.lock$", dockerfile, re.MULTILINE)
    assert re.search(r'^RUN pip install --no-deps "\.\[[\w,]+\]" ', dockerfile, re.MULTILINE)
    assert "pip check" in dockerfile, "the image proves its dependencies complete"
    assert '".[ray,postgres]"' in dockerfile, "the image is also the Ray cluster's (ray extra) and talks to Postgres"
    assert 'CMD ["dataops", "serve"]' in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".env", ".venv", ".dataops"} <= set(ignored)


def test_the_platform_joins_the_ray_head_with_its_token() -> None:
    head, platform = SERVICES["ray-head"], environment(PLATFORM)
    command = head["command"]
    client_port = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--ray-client-server-port="))
    assert platform["DATAOPS_RAY_ADDRESS"] == f"ray://ray-head:{client_port}"
    assert "--head" in command and "--block" in command, "the head stays in the foreground, as a service must"
    head_env = environment("ray-head")
    for env in (head_env, platform):
        assert env["RAY_AUTH_MODE"] == "token", "an unauthenticated Ray cluster runs anyone's code"
    assert head_env["RAY_AUTH_TOKEN"] == platform["RAY_AUTH_TOKEN"] == ENV_EXAMPLE["RAY_AUTH_TOKEN"], "one shared secret from .env"
    assert host_ports("ray-head") == [], "the cluster is reachable from the compose network only"
    assert head.get("build") == SERVICES[PLATFORM].get("build"), "same image: the tasks run the platform's code"
