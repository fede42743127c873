"""Every shipped deployment file, checked by the real tool or schema (installed by .ci/run)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml
from infra import ensure_free, wait_for
from servers import free_port, make_certificate

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*args, env=None, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=cwd, env={**os.environ, **(env or {})}
    )


def tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    assert path, f"{name} is not installed (.ci/run installs it)"
    return path


def test_nginx_configuration_is_valid(tmp_path):
    crt, key, _ = make_certificate(tmp_path)
    for name in ("nginx.conf", "altus4.conf", "upstream.conf"):
        text = (ROOT / "nginx" / name).read_text()
        for host in ("app1", "app2", "app3", "app-backup"):  # names only Docker's DNS knows
            text = text.replace(f"{host}:3000", "127.0.0.1:3000")
        text = text.replace("/etc/nginx/certs/altus4.crt", str(crt)).replace("/etc/nginx/certs/altus4.key", str(key))
        (tmp_path / name).write_text(text)
    result = run(
        tool("nginx"),
        "-t",
        "-p",
        f"{tmp_path}/",
        "-c",
        tmp_path / "nginx.conf",
        "-g",
        f"pid {tmp_path}/nginx.pid;",
        "-e",
        tmp_path / "error.log",
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_configuration_says_what_the_scaling_guide_promises():
    site = (ROOT / "nginx" / "altus4.conf").read_text()
    upstream = (ROOT / "nginx" / "upstream.conf").read_text()
    assert "least_conn;" in upstream and "keepalive 64;" in upstream and " backup;" in upstream
    assert "default altus4_app;" in upstream and "proxy_pass http://altus4_app" not in site
    assert "proxy_timeout" not in site  # a stream-module directive: invalid in http
    assert "return 301 https://" in site and "ssl_protocols TLSv1.2 TLSv1.3;" in site
    assert "limit_req zone=altus4_api" in site and "proxy_http_version 1.1;" in site
    # retries of POSTs only where it is safe: the search location
    search = site.split("location = /api/v1/search {")[1].split("}")[0]
    assert "non_idempotent" in search
    assert site.count("non_idempotent") == 1
    health = site.split("listen 127.0.0.1:8081;")[1].split("location / {")[0]
    assert "access_log off;" in health and "proxy_read_timeout 2s;" in health
    plain = site.split("listen 80 default_server;")[1].split("server {")[0]
    assert "/health" not in plain and "return 301 https://$host$altus4_https_suffix$request_uri;" in plain
    assert "location = /metrics" not in site  # Prometheus scrapes the app servers, not the edge


def test_swarm_upstream_is_valid_too(tmp_path):
    crt, key, _ = make_certificate(tmp_path)
    for name in ("nginx.conf", "altus4.conf"):
        text = (ROOT / "nginx" / name).read_text()
        text = text.replace("/etc/nginx/certs/altus4.crt", str(crt)).replace("/etc/nginx/certs/altus4.key", str(key))
        (tmp_path / name).write_text(text)
    upstream = (ROOT / "nginx" / "upstream.swarm.conf").read_text()
    assert "resolver 127.0.0.11 valid=5s" in upstream and "default tasks.api:3000;" in upstream
    # a template: the image's entrypoint substitutes the service's environment (envsubst) into it
    assert "default ${ALTUS4_HTTPS_PORT};" in upstream
    rendered = upstream.replace("127.0.0.11", "127.0.0.1").replace("${ALTUS4_HTTPS_PORT}", "18443")
    (tmp_path / "upstream.conf").write_text(rendered)
    result = run(
        tool("nginx"),
        "-t",
        "-p",
        f"{tmp_path}/",
        "-c",
        tmp_path / "nginx.conf",
        "-g",
        f"pid {tmp_path}/nginx.pid;",
        "-e",
        tmp_path / "error.log",
    )
    assert result.returncode == 0, result.stderr


def test_haproxy_configuration_is_valid(tmp_path):
    _, _, pem = make_certificate(tmp_path)
    result = run(tool("haproxy"), "-c", "-f", ROOT / "haproxy" / "haproxy.cfg", env={"HAPROXY_CERT": str(pem)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
    text = (ROOT / "haproxy" / "haproxy.cfg").read_text()
    for directive in (
        "balance leastconn",
        "option httpchk GET /health",
        "option redispatch",
        "retries 3",
        " backup",
        'http-request redirect location "https://',
        "monitor-uri /healthz",
        "bind 127.0.0.1:8404",
    ):
        assert directive in text, directive


def test_haproxy_without_a_certificate_is_refused(tmp_path):
    result = run(tool("haproxy"), "-c", "-f", ROOT / "haproxy" / "haproxy.cfg", env={"HAPROXY_CERT": ""})
    assert result.returncode != 0


def test_prometheus_config_rules_and_rule_tests():
    promtool = tool("promtool")
    for name in ("prometheus.yml", "prometheus.swarm.yml"):  # VMs; the Swarm monitoring stack's
        config = run(promtool, "check", "config", f"config/prometheus/{name}")
        assert config.returncode == 0, config.stdout + config.stderr
    rules = run(promtool, "check", "rules", "config/prometheus/alerts.yml")
    assert rules.returncode == 0 and "SUCCESS: 8 rules found" in rules.stdout, rules.stdout + rules.stderr
    tests = run(promtool, "test", "rules", "alerts_test.yml", cwd=ROOT / "config" / "prometheus")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    alerts = {
        r.get("alert")
        for g in yaml.safe_load((ROOT / "config/prometheus/alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }
    assert {
        "Altus4HighLatencyP95",
        "Altus4HighCPU",
        "Altus4HighMemory",
        "Altus4PoolExhausted",
        "Altus4LowCacheHitRate",
        "Altus4HighErrorRate",
    } <= alerts


def test_grafana_dashboard_queries_are_valid_promql(tmp_path):
    dashboard = json.loads((ROOT / "config/grafana/altus4-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    result = run(tool("promtool"), "check", "rules", tmp_path / "dashboard.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    names = set(re.findall(r"altus4_[a-z_]+", " ".join(exprs)))
    assert {
        "altus4_request_duration_seconds_bucket",
        "altus4_cache_requests_total",
        "altus4_db_pool_exhausted_total",
        "altus4_database_connections_active",
    } <= names


def _stack_config(tmp_path, files=("swarm-stack.yml",), **env) -> dict:
    """`docker stack config` of swarm-stack.yml (and more files over it), with a certificate in place
    (scripts/stack.sh cert makes one)."""
    crt, key, _ = make_certificate(tmp_path)
    docker = shutil.which("docker")
    assert docker, "the docker CLI is not installed (.ci/run installs it)"
    files_args = [arg for name in files for arg in ("-c", name)]
    config = run(docker, "stack", "config", *files_args, env={"ALTUS4_TLS_CERT": crt, "ALTUS4_TLS_KEY": key, **env})
    assert config.returncode == 0, config.stderr
    return yaml.safe_load(config.stdout)


def test_swarm_stack_is_valid(tmp_path):
    schema = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "swarm-stack.yml")
    assert schema.returncode == 0, schema.stdout + schema.stderr
    stack = _stack_config(tmp_path)
    api = stack["services"]["api"]
    assert api["deploy"]["update_config"]["failure_action"] == "rollback"
    assert api["deploy"]["update_config"]["parallelism"] == 1
    assert api["deploy"]["resources"]["limits"]["memory"] and api["deploy"]["resources"]["reservations"]["cpus"]
    assert "/health" in " ".join(api["healthcheck"]["test"])
    env = api["environment"]
    assert not {"JWT_SECRET", "ENCRYPTION_KEY", "DB_PASSWORD", "REDIS_PASSWORD"} & set(env)  # secrets, not env
    assert env["JWT_SECRET_FILE"].startswith("/run/secrets/")
    assert {"mysql-primary", "mysql-replica", "redis-primary", "sentinel", "nginx"} <= set(stack["services"])
    assert stack["networks"]["backend"]["driver"] == "overlay"
    for ref in (v["file"] for v in [*stack["configs"].values(), *stack["secrets"].values()] if "file" in v):
        assert Path(ref).exists(), ref  # docker stack config does not check these
    # what `make test-stack` showed a swarm needs (the reasons are in the stack file's header)
    for name, service in stack["services"].items():
        assert service["deploy"].get("endpoint_mode") == "dnsrr", name  # no virtual IP between services
    edge = stack["services"]["nginx"]
    assert edge["deploy"]["mode"] == "global" and {p["mode"] for p in edge["ports"]} == {"host"}
    assert stack["services"]["migrate"]["command"] == ["altus4", "migrate"]
    assert stack["services"]["indexer"]["command"] == ["altus4", "index", "--follow"]
    assert "vectors:/var/lib/altus4/vectors" in " ".join(str(v) for v in api.get("volumes", [])) or any(
        v.get("target") == "/var/lib/altus4/vectors" for v in api.get("volumes", []) if isinstance(v, dict)
    )
    assert int(env["SHUTDOWN_DELAY"]) > 5  # longer than nginx caches tasks.api (resolver valid=5s)


def test_the_galera_variant_replaces_the_metadata_tier(tmp_path):
    """swarm-galera.yml over swarm-stack.yml: three Galera nodes, each its own service with its volume, host
    label, health and start script; the primary and replica scaled to 0; every API process lists the nodes."""
    schema = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "swarm-galera.yml")
    assert schema.returncode == 0, schema.stdout + schema.stderr
    stack = _stack_config(tmp_path, ("swarm-stack.yml", "swarm-galera.yml"))
    services = stack["services"]
    assert services["mysql-primary"]["deploy"]["replicas"] == 0 == services["mysql-replica"]["deploy"]["replicas"]
    for name in ("api", "migrate", "indexer"):
        assert services[name]["environment"]["DB_HOST"] == "galera-1,galera-2,galera-3", name
        assert services[name]["environment"]["DB_READ_HOSTS"].strip() == "", name
    for n in (1, 2, 3):
        node = services[f"galera-{n}"]
        assert node["deploy"]["endpoint_mode"] == "dnsrr" and node["deploy"]["replicas"] == 1
        assert node["deploy"]["placement"]["constraints"] == [f"node.labels.altus4.galera-{n} == true"]
        assert node["deploy"]["update_config"]["order"] == "stop-first"
        assert node["volumes"][0]["source"] == f"galera-{n}-data"
        assert "wsrep_ready" in " ".join(node["healthcheck"]["test"]) and "Synced" in " ".join(
            node["healthcheck"]["test"]
        )
        assert node["entrypoint"] == ["bash", "/etc/mysql/galera-node.sh"]
        assert node["environment"]["GALERA_BOOTSTRAP_CANDIDATE"] == ("1" if n == 1 else "0")  # one only
    assert "gcomm://galera-1,galera-2,galera-3" in Path("config/mysql/galera.cnf").read_text()


def test_swarm_stack_passes_the_production_review(tmp_path):
    """Issue #30's review of swarm-stack.yml, item by item (what stays is argued in the README)."""
    stack = _stack_config(tmp_path, ALTUS4_STACK="shop", ALTUS4_CFG_NGINX_SITE="abc123")
    services = stack["services"]
    for name, service in services.items():
        assert service["logging"]["options"]["max-size"] and service["logging"]["options"]["max-file"], name
        limits = service["deploy"]["resources"]["limits"]
        assert limits.get("cpus") and limits.get("memory"), name  # every service, migrate included
        if name != "migrate":
            assert service["healthcheck"]["test"], name  # redis, its replica and the sentinels too
    assert services["redis-primary"]["deploy"]["placement"]["constraints"] == [
        "node.labels.altus4.redis-primary == true"
    ]
    assert {"spread": "node.id"} in services["sentinel"]["deploy"]["placement"]["preferences"]
    # MariaDB's root and the application's account do not share a password
    primary = services["mysql-primary"]["environment"]
    assert primary["MARIADB_ROOT_PASSWORD_FILE"] != primary["MARIADB_PASSWORD_FILE"]
    for network in stack["networks"].values():
        assert network["driver_opts"]["encrypted"] == "true" and not network.get("attachable")
    # per stack, and configs per content: a second stack and a changed file both deploy
    assert {s["name"] for s in stack["secrets"].values() if s.get("external")} == {
        f"shop_{n}"
        for n in ("db_password", "db_root_password", "redis_password", "jwt_secret", "encryption_key", "repl_password")
    }
    assert stack["configs"]["nginx_site"]["name"] == "shop_nginx_site_abc123"
    assert all(c["name"].startswith("shop_") for c in stack["configs"].values())
    # images can be pinned by digest
    pinned = _stack_config(tmp_path, ALTUS4_IMAGE="registry.example/altus4@sha256:" + "a" * 64)
    assert {s["image"] for n, s in pinned["services"].items() if n in ("api", "indexer", "migrate")} == {
        "registry.example/altus4@sha256:" + "a" * 64
    }


def test_monitoring_stack_is_valid():
    """Prometheus joins the Altus 4 stack's backend network and finds its tasks by DNS; Grafana is provisioned
    with the data source and the shipped dashboard; configs are named per stack and content as the stack's."""
    schema = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "monitoring-stack.yml")
    assert schema.returncode == 0, schema.stdout + schema.stderr
    config = run(shutil.which("docker"), "stack", "config", "-c", "monitoring-stack.yml", env={"ALTUS4_STACK": "shop"})
    assert config.returncode == 0, config.stderr
    stack = yaml.safe_load(config.stdout)
    assert stack["networks"]["altus4"] == {"external": True, "name": "shop_backend"}
    for ref in (v["file"] for v in stack["configs"].values()):
        assert Path(ref).exists(), ref
    scrape = yaml.safe_load((ROOT / "config/prometheus/prometheus.swarm.yml").read_text())["scrape_configs"]
    assert {s["dns_sd_configs"][0]["names"][0] for s in scrape} == {"tasks.api", "tasks.indexer"}
    grafana = stack["services"]["grafana"]
    targets = {c["target"] for c in grafana["configs"]}
    assert "/var/lib/grafana/dashboards/altus4/altus4-dashboard.json" in targets
    provider = yaml.safe_load((ROOT / "config/grafana/dashboards.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/altus4"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")


def test_kubernetes_manifests_are_valid():
    files = [f"config/k8s/{n}.yaml" for n in ("deployment", "indexer", "service", "hpa", "pdb")]
    result = run(BIN / "kubernetes-validate", "--strict", "-k", "1.30.0", *files)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "WARN" not in output and "ERROR" not in output, output
    vpa = run(
        BIN / "check-jsonschema", "--schemafile", "config/k8s/schemas/vpa-v1.strict.schema.json", "config/k8s/vpa.yaml"
    )
    assert vpa.returncode == 0, vpa.stdout + vpa.stderr
    hpa = yaml.safe_load((ROOT / "config/k8s/hpa.yaml").read_text())["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 20)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["metrics"]}
    assert targets == {"cpu": 70, "memory": 80}
    assert hpa["behavior"]["scaleUp"] and hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_a_strict_schema_catches_a_typo(tmp_path):
    """The VPA schema is strict: a misspelt key fails (so a passing file means something)."""
    broken = (ROOT / "config/k8s/vpa.yaml").read_text().replace("containerName", "containerNme")
    (tmp_path / "vpa.yaml").write_text(broken)
    result = run(
        BIN / "check-jsonschema",
        "--schemafile",
        ROOT / "config/k8s/schemas/vpa-v1.strict.schema.json",
        tmp_path / "vpa.yaml",
    )
    assert result.returncode != 0


@pytest.mark.parametrize("name", ["primary.cnf", "replica.cnf"])
def test_mysql_server_settings_are_accepted_by_mariadbd(name):
    result = run(
        "mariadbd",
        f"--defaults-file={ROOT / 'config/mysql' / name}",
        "--help",
        "--verbose",
        *(["--user=root"] if os.getuid() == 0 else []),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "unknown variable" not in result.stderr


def test_sentinel_configuration_runs(tmp_path):
    port = free_port()
    ensure_free(port)
    conf = (ROOT / "config/redis/sentinel.conf").read_text()
    conf = conf.replace("port 26379", f"port {port}\nbind 127.0.0.1\ndir {tmp_path}")
    conf = conf.replace("redis-primary 6379", "127.0.0.1 6379").replace("sentinel resolve-hostnames yes\n", "")
    (tmp_path / "sentinel.conf").write_text(conf)
    with open(tmp_path / "sentinel.log", "wb") as log:
        proc = subprocess.Popen(
            ["redis-server", str(tmp_path / "sentinel.conf"), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        master = wait_for(
            lambda: redis.Redis(port=port, decode_responses=True).sentinel_master("altus4-master"),
            10,
            "sentinel",
            alive=lambda: proc.poll() is None,
        )
        assert master["quorum"] == 2 and master["down-after-milliseconds"] == 5000
    finally:
        proc.terminate()
        proc.wait(10)


def test_cluster_bootstrap_script_is_shellcheck_clean_enough():
    assert run("bash", "-n", "config/redis/cluster-bootstrap.sh").returncode == 0
    usage = run("bash", "config/redis/cluster-bootstrap.sh")
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_the_stack_helper_checks_its_input_before_touching_docker(tmp_path):
    """scripts/stack.sh: usage without a command, a bad stack name refused, and a deploy refused without
    secrets, each before any change (no docker daemon is needed to say so)."""
    helper = ROOT / "scripts" / "stack.sh"
    assert run("bash", "-n", helper).returncode == 0
    usage = run(helper)
    assert usage.returncode == 2 and "scripts/stack.sh deploy STACK" in usage.stdout
    bad = run(helper, "secrets", "Bad Name!")
    assert bad.returncode == 1 and "a stack name" in bad.stderr
    # configs are versioned by content: the same file, the same name; an edited one, another
    versions = 'source <(sed -n "/^digest()/p" scripts/stack.sh); digest "$1"'
    a = run("bash", "-c", versions, "_", "nginx/altus4.conf").stdout
    (tmp_path / "altus4.conf").write_text((ROOT / "nginx/altus4.conf").read_text() + "# edited\n")
    b = run("bash", "-c", versions, "_", tmp_path / "altus4.conf").stdout
    assert len(a.strip()) == 12 and a != b
