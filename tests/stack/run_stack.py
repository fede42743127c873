"""`make test-stack`: the shipped swarm-stack.yml deployed on a one-node swarm by following the README's
"Deploy on Docker Swarm" commands (read from the README itself), used through its TLS edge, and put through
scaling, a rolling update and its rollback, killed tasks, a redeploy after a configuration change and the
monitoring stack, all under a steady search load.

Everything runs on this machine: its own dockerd (data root /var/lib/altus4-stack) when none answers, the
API image from the project's Dockerfile, and stand-ins for the third-party images built from Debian's
packages (tests/stack/images: no container registry is reachable here). The stack is named altus4-test and
labelled as this test's (ALTUS4_OWNER): the test refuses to touch a stack of that name it did not deploy,
and removes only volumes carrying its label. Each scenario counts what the client saw; any failed request
fails the run. Prints one table line per scenario, then removes the stack.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path(__file__).resolve().parent / "images"
STATE = Path(os.environ.get("ALTUS4_STACK_STATE", "/var/lib/altus4-stack"))
STACK = "altus4-test"  # never the README's `altus4`: a real deployment on this swarm is left alone
OWNER = "make-test-stack"  # ALTUS4_OWNER: the label on the stack's networks and volumes that says they are ours
HTTP_PORT, HTTPS_PORT = 18080, 18443  # host-mode ports of the edge (ALTUS4_HTTP_PORT / ALTUS4_HTTPS_PORT)
README = ROOT / "README.md"
EDGE = f"https://127.0.0.1:{HTTPS_PORT}"
BASE_IMAGE = "altus4-stand-in/debian:bookworm"
STAND_INS = {
    "python": "python:3.11-slim",
    "mariadb": "mariadb:10.11",
    "redis": "redis:7.2-alpine",
    "nginx": "nginx:1.27-alpine",
    "prometheus": "prom/prometheus:v2.53.0",
}
API_IMAGE, API_IMAGE_NEXT = "altus4/altus4:1.0.0", "altus4/altus4:1.0.1"
DEMO_DB = f"{STACK}-demo-db"  # the tenant database `scripts/stack.sh demo` starts beside the stack


class StackError(RuntimeError):
    """Something the run needs could not be done: the message says what."""


def sh(*args: str, timeout: float = 600, check: bool = True, env: dict | None = None, stdin: str | None = None) -> str:
    result = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env={**os.environ, **(env or {})},
        cwd=ROOT,  # the stack file's configs are named relative to it
    )
    if check and result.returncode != 0:
        raise StackError(
            f"{' '.join(args[:4])} … failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}"
        )
    return result.stdout.strip()


def docker(*args: str, **kwargs) -> str:
    return sh("docker", *args, **kwargs)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def until(what: str, check, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --- the engine ------------------------------------------------------------------------------------------


def ensure_engine() -> None:
    """Debian's docker.io and debootstrap installed; a daemon answering (ours, started here, if none does);
    a one-node swarm advertising loopback (the README's `docker swarm init` then has nothing to do)."""
    if not shutil.which("dockerd") or not shutil.which("debootstrap"):
        log("installing docker.io and debootstrap from Debian")
        sh("apt-get", "update", "-qq", timeout=300)
        sh(
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "docker.io",
            "debootstrap",
            timeout=900,
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        log(f"starting dockerd (data root {STATE / 'docker'})")
        STATE.mkdir(parents=True, exist_ok=True)
        with open(STATE / "dockerd.log", "ab") as out:
            subprocess.Popen(
                ["dockerd", "--data-root", str(STATE / "docker"), "--pidfile", str(STATE / "dockerd.pid")],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        until("dockerd", lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0, 60)
    if docker("info", "--format", "{{.Swarm.LocalNodeState}}") != "active":
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")


def build_images() -> None:
    """A Debian base (debootstrap, once) and the stand-ins under the official names (the README's commands
    build the API image)."""
    if not docker("images", "-q", BASE_IMAGE):
        log("debootstrap: a Debian bookworm base image")
        rootfs = STATE / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        sh("debootstrap", "--variant=minbase", "bookworm", str(rootfs), "http://deb.debian.org/debian", timeout=900)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
        shutil.rmtree(rootfs)
    with tempfile.TemporaryDirectory() as tmp:
        for name, tag in STAND_INS.items():
            context = Path(tmp) / name
            shutil.copytree(IMAGES / name, context)
            shutil.copy("/etc/ssl/certs/ca-certificates.crt", context)  # the machine's proxy CA, for pip
            log(f"building stand-in {tag}")
            docker("build", "-q", "-t", tag, str(context), timeout=900)


# --- the stack -------------------------------------------------------------------------------------------


def remove_stack() -> None:
    """Remove this test's stack, with its demo database, monitoring stack, secrets and the volumes it labelled;
    refuse a stack of that name that this test did not deploy."""
    networks = docker(
        "network", "ls", "--filter", f"label=com.docker.stack.namespace={STACK}", "--format", "{{.Labels}}"
    )
    services = docker("service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}")
    if (services or networks) and f"altus4.owner={OWNER}" not in networks:
        raise StackError(
            f"a stack named {STACK} runs on this swarm and is not this test's (its networks lack the label"
            f" altus4.owner={OWNER}): left alone; remove it yourself or run the test elsewhere"
        )
    sh(str(ROOT / "scripts" / "stack.sh"), "rm", STACK, check=False)
    for namespace in (STACK, f"{STACK}-monitoring"):
        until(
            f"{namespace}'s containers to go",
            lambda n=namespace: not docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={n}"),
            120,
        )
    until("the demo database to go", lambda: not docker("ps", "-aq", "--filter", f"name={DEMO_DB}"), 120)
    until(
        "the stack's networks to go",
        lambda: not docker("network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}"),
        60,
    )
    for namespace in (STACK, f"{STACK}-monitoring"):
        for volume in docker(
            "volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={namespace}",
            "--filter", f"label=altus4.owner={OWNER}",
        ).split():  # fmt: skip
            docker("volume", "rm", "-f", volume, check=False)
    for secret in docker("secret", "ls", "-q", "--filter", f"label=altus4.stack={STACK}").split():
        docker("secret", "rm", secret, check=False)


def service_states() -> dict[str, str]:
    rows = docker(
        "service", "ls", "--filter", f"label=com.docker.stack.namespace={STACK}", "--format", "{{.Name}} {{.Replicas}}"
    )
    return dict(line.split(" ", 1) for line in rows.splitlines())


def healthy() -> bool:
    """Every service at its replica count (the one-shot migrate: its task completed)."""
    states = service_states()
    if not states:
        return False
    for name, replicas in states.items():
        running, wanted = replicas.split()[0].split("/")
        if name == f"{STACK}_migrate":
            if "Complete" not in docker("service", "ps", name, "--format", "{{.CurrentState}}"):
                return False
        elif running != wanted:
            return False
    return True


def readme_commands(block: str, replacements: dict[str, str] | None = None) -> str:
    """The README's shell block between `<!-- block -->` markers, with the test's own stack name and ports put
    in place of the README's (each must be found: a README that changed says so here)."""
    text = README.read_text().split(f"<!-- {block} -->")[1].split(f"<!-- /{block} -->")[0]
    script = text.split("```bash\n")[1].split("```")[0]
    for old, new in (replacements or {}).items():
        if old not in script:
            raise StackError(f"the README's {block} no longer says {old!r}: update tests/stack/run_stack.py")
        script = script.replace(old, new)
    return script


def stack_env() -> dict[str, str]:
    """What the README's commands run with here: the stack's name and ports, and the label saying it is ours."""
    return {
        "STACK": STACK,
        "ALTUS4_OWNER": OWNER,
        "ALTUS4_HTTP_PORT": str(HTTP_PORT),
        "ALTUS4_HTTPS_PORT": str(HTTPS_PORT),
        "ALLOWED_DATABASE_HOSTS": DEMO_DB,
    }


def bash(script: str, timeout: float = 900) -> str:
    return sh("bash", "-euo", "pipefail", "-c", script, timeout=timeout, env=stack_env())


def follow_the_readme() -> tuple[str, str]:
    """The README's walkthrough, command by command: (the demo account's password, its API key)."""
    log("the README's walkthrough: Docker, the image, labels, secrets, certificate, deploy, demo, a search")
    script = readme_commands(
        "swarm-walkthrough",
        {
            "export STACK=altus4 ALTUS4_HTTP_PORT=80 ALTUS4_HTTPS_PORT=443": f"export STACK={STACK}"
            f" ALTUS4_HTTP_PORT={HTTP_PORT} ALTUS4_HTTPS_PORT={HTTPS_PORT}",
        },
    )
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script + '\necho "WALKTHROUGH_KEY=$KEY"\n'],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **stack_env()},
        cwd=ROOT,
    )
    out = run.stdout.strip()
    if run.returncode != 0 or "demo user: demo@example.com / " not in out or "WALKTHROUGH_KEY=" not in out:
        raise StackError(f"the walkthrough failed ({run.returncode}):\n{out[-3000:]}\n{run.stderr[-3000:]}")
    key = out.rsplit("WALKTHROUGH_KEY=", 1)[1].strip()
    password = out.split("demo user: demo@example.com / ", 1)[1].split()[0]
    found = json.loads(out.rsplit("WALKTHROUGH_KEY=", 1)[0].strip().splitlines()[-1])
    if not (found.get("success") and found["data"]["results"]):
        raise StackError(f"the walkthrough's search through the edge found nothing: {found}")
    log(f"walkthrough done: the demo search through the edge found {found['data']['totalCount']} rows")
    return password, key


def api_containers(service: str = "api") -> list[str]:
    return docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_{service}").split()


def container_of(service: str) -> str:
    ids = api_containers(service)
    if not ids:
        raise StackError(f"no running container of {STACK}_{service}")
    return ids[0]


def searches_served(container: str) -> int:
    """Searches this API task answered, from its own /metrics (each task keeps its own)."""
    script = (
        "import urllib.request;t=urllib.request.urlopen('http://127.0.0.1:3000/metrics',timeout=3).read().decode();"
        "print(sum(float(l.rsplit(' ',1)[1]) for l in t.splitlines()"
        " if l.startswith('altus4_request_duration_seconds_count') and '/api/v1/search' in l))"
    )
    out = docker("exec", container, "python", "-c", script, check=False, timeout=30)
    try:
        return int(float(out.splitlines()[-1]))
    except (ValueError, IndexError):
        return 0


# --- a tenant, through the edge --------------------------------------------------------------------------


@dataclass
class Tenant:
    session: requests.Session
    key: str
    database_id: str


def sign_in(password: str, certificate: Path) -> Tenant:
    """The walkthrough's demo account, signed in through the edge, with a key for the load: its account raised
    to enterprise by the operator's command (a free key's 1,000 searches an hour would not last the run)."""
    s = requests.Session()
    s.trust_env = False  # else REQUESTS_CA_BUNDLE overrides the session's own verify
    s.verify = str(certificate)
    r = s.post(f"{EDGE}/api/v1/auth/login", json={"email": "demo@example.com", "password": password})
    if r.status_code != 200:
        raise StackError(f"sign in through the edge: {r.status_code} {r.text[:300]}")
    s.headers["Authorization"] = "Bearer " + r.json()["data"]["token"]
    docker("exec", container_of("api"), "altus4", "user:tier", "demo@example.com", "enterprise", timeout=60)
    r = s.post(
        f"{EDGE}/api/v1/keys",
        json={"name": "stack", "environment": "live", "permissions": ["search"], "rateLimitTier": "enterprise"},
    )
    if r.status_code != 201:
        raise StackError(f"create an API key: {r.status_code} {r.text[:300]}")
    databases = s.get(f"{EDGE}/api/v1/databases").json()["data"]
    return Tenant(s, r.json()["data"]["secretKey"], databases[0]["id"])


# --- load ------------------------------------------------------------------------------------------------


class Background:
    """Threads (`_targets`) that run while the `with` block does; `_stop` tells them to end."""

    _stop: threading.Event
    _threads: list[threading.Thread]

    def _targets(self) -> list:
        raise NotImplementedError

    def __enter__(self):
        self._threads = [threading.Thread(target=t, daemon=True) for t in self._targets()]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(40)


@dataclass
class Load(Background):
    """`clients` threads searching through the edge at about `rate` requests/s in all, half of them repeats
    (cache hits) and half new queries; every outcome counted."""

    tenant: Tenant
    certificate: Path
    clients: int = 4
    rate: float = 24.0
    outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, n: int) -> None:
        s = requests.Session()
        s.trust_env = False
        s.verify = str(self.certificate)
        s.headers["Authorization"] = f"Bearer {self.tenant.key}"
        words = ["wireless", "kettle", "espresso", "boots", "bicycle", "lamp"]
        i = 0
        while not self._stop.is_set():
            i += 1
            query = words[i % len(words)] if i % 2 else f"{words[i % len(words)]} {n} {i}"
            started = time.monotonic()
            try:
                r = s.post(f"{EDGE}/api/v1/search", json={"query": query, "limit": 5}, timeout=20)
                ok = r.status_code == 200 and r.json().get("success") is True
                outcome = "ok" if ok else str(r.status_code)
                detail = "" if ok else f"{r.status_code} {r.text[:200]}"
            except requests.RequestException as exc:
                outcome, detail = type(exc).__name__, str(exc)[:200]
            with self._lock:
                self.outcomes[outcome] += 1
                if detail:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {detail}")
            self._stop.wait(max(0.0, self.clients / self.rate - (time.monotonic() - started)))

    def _targets(self) -> list:
        return [functools.partial(self._run, n) for n in range(self.clients)]

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        return self.sent - self.outcomes["ok"]


# --- scenarios -------------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    sent: int
    failed: int
    note: str = ""
    failures: list[str] = field(default_factory=list)
    searched: int = 0  # searches answered 200 (each one recorded in the search history)


def scenario(name: str, tenant: Tenant, certificate: Path, action, settle: float = 5.0) -> Result:
    log(f"scenario: {name}")
    with Load(tenant, certificate) as load:
        time.sleep(settle)
        note = action() or ""
        time.sleep(settle)
    log(f"  {load.sent} sent, {load.failed} failed {dict(load.outcomes)} {note}")
    return Result(name, load.sent, load.failed, note, load.failures[:10])


def day2(command: str) -> str:
    """The README's day-2 line that starts with `command`, as the test's stack runs it."""
    lines = [line for line in readme_commands("swarm-day2").splitlines() if line.startswith(command)]
    if len(lines) != 1:
        raise StackError(f"the README's swarm-day2 block has {len(lines)} lines starting {command!r}")
    return lines[0].split("  #")[0].strip()


def serving(containers: set[str]) -> bool:
    return all(searches_served(c) > 0 for c in containers)


def scale_up() -> str:
    before = set(api_containers())
    started = time.monotonic()
    bash(day2("docker service scale"), timeout=300)  # scale to 6
    until("6 API tasks", lambda: len(api_containers()) >= 6, 120)
    new = set(api_containers()) - before
    until("every new API task to serve searches through the edge", lambda: serving(new), 120, every=0.5)
    return f"new tasks served after {time.monotonic() - started:.1f} s"


def scale_down() -> str:
    docker("service", "scale", f"{STACK}_api=2", timeout=300)
    return f"{len(api_containers())} API tasks left"


def api_images() -> set[str]:
    return {docker("inspect", "--format", "{{.Config.Image}}", c) for c in api_containers()}


def rolling_update() -> str:
    started = time.monotonic()
    bash(day2("docker service update --image"), timeout=600)
    if api_images() != {API_IMAGE_NEXT}:
        raise StackError(f"after the update the API tasks run {api_images()}")
    return f"updated in {time.monotonic() - started:.1f} s"


def rollback() -> str:
    started = time.monotonic()
    bash(day2("docker service rollback"), timeout=600)
    until("the rollback to finish", lambda: api_images() == {API_IMAGE} and healthy(), 300, every=2)
    return f"back on {API_IMAGE} in {time.monotonic() - started:.1f} s"


def redeploy_after_a_change() -> str:
    """An operator's change, deployed with the README's command: a line added to the replica's MariaDB
    settings (a new config: the replica restarts on it) and a tenant host allowed (the API rolls to it)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        for name in ("scripts", "nginx", "config", "certs"):
            shutil.copytree(ROOT / name, copy / name)
        shutil.copy(ROOT / "swarm-stack.yml", copy)
        replica = copy / "config" / "mysql" / "replica.cnf"
        replica.write_text(replica.read_text() + "max-connect-errors             = 1000001\n")
        script = day2("scripts/stack.sh deploy").replace("scripts/stack.sh", f"{copy}/scripts/stack.sh")
        bash(f"export ALLOWED_DATABASE_HOSTS={DEMO_DB},db.example.internal\n{script}", timeout=600)
    value = docker(
        "exec", container_of("mysql-replica"), "sh", "-c",
        'mariadb -uroot -p"$(cat /run/secrets/altus4_db_root_password)" -Nse "SELECT @@max_connect_errors"',
    )  # fmt: skip
    env = docker("service", "inspect", f"{STACK}_api", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}")
    if value != "1000001" or "db.example.internal" not in env:
        raise StackError(f"the change did not land: max_connect_errors {value!r}, API environment {env}")
    old = [
        c for c in docker("config", "ls", "--format", "{{.Name}}").split() if c.startswith(f"{STACK}_mysql_replica_")
    ]
    return (
        f"replica and API on the new settings in {time.monotonic() - started:.1f} s; replica configs left: {len(old)}"
    )


def prometheus_targets() -> list[dict]:
    prometheus = container_of_stack(f"{STACK}-monitoring", "prometheus")
    raw = docker("exec", prometheus, "wget", "-qO-", "http://127.0.0.1:9090/api/v1/targets?state=active")
    return [t for t in json.loads(raw)["data"]["activeTargets"] if t["labels"]["job"] == "altus4-api"]


def monitoring() -> str:
    """The README's monitoring command (Grafana left at 0 replicas: no Grafana image can be built here);
    Prometheus must see every API task up, before and after a scale."""
    started = time.monotonic()
    sh(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        day2("scripts/stack.sh monitoring"),
        env={**stack_env(), "GRAFANA_REPLICAS": "0"},
    )
    notes = []
    for replicas in (len(api_containers()), 4):
        docker("service", "scale", f"{STACK}_api={replicas}", timeout=300)

        def all_up(n=replicas) -> bool:
            targets = prometheus_targets()
            return len(targets) == n and all(t["health"] == "up" for t in targets)

        until(f"Prometheus to scrape all {replicas} API tasks", all_up, 120, every=2)
        notes.append(f"{replicas} of {replicas} up after {time.monotonic() - started:.0f} s")
    return "Prometheus sees every API task: " + ", ".join(notes)


def container_of_stack(namespace: str, service: str) -> str:
    ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={namespace}_{service}").split()
    if not ids:
        raise StackError(f"no running container of {namespace}_{service}")
    return ids[0]


def redis_master() -> str:
    """The Redis master's address as the stack's Sentinels report it."""
    sentinel = container_of("sentinel")
    return " ".join(
        docker(
            "exec", sentinel, "redis-cli", "-p", "26379", "SENTINEL", "get-master-addr-by-name", "altus4-master"
        ).split()
    )


def kill_redis_primary() -> str:
    """Kill the Redis master's task; Sentinel must promote the replica."""
    before = redis_master()
    started = time.monotonic()
    note = kill("redis-primary")
    after = until("Sentinel to promote another Redis", lambda: (m := redis_master()) != before and m, 90)
    return f"{note}; Sentinel moved the master {before} -> {after} in {time.monotonic() - started:.1f} s"


def kill(service: str) -> str:
    """SIGKILL one task's container; back when the swarm's replacement runs and every service is healthy (an API
    task: when the replacement has served searches through the edge)."""
    victim = container_of(service)
    before = set(api_containers(service))
    started = time.monotonic()
    docker("kill", "-s", "KILL", victim)

    def replacement() -> set[str]:
        return set(api_containers(service)) - before

    new = until(f"the swarm to start a replacement for {service}", replacement, 120, every=0.5)
    if service == "api":
        until("the replacement to serve searches through the edge", lambda: serving(new), 120, every=0.5)
        return f"the replacement served searches {time.monotonic() - started:.1f} s after the kill"
    until("every service healthy again", healthy, 180, every=2)
    return f"{service} back after {time.monotonic() - started:.1f} s"


# --- the Galera variant -----------------------------------------------------------------------------------


REFUSED = "refused (503, Retry-After)"  # the documented answer while the cluster has no Primary component


@dataclass
class Writes(Background):
    """Writes through the edge beside a Load: keys created (half of them revoked at once) and registrations; every
    answer counted, and what was acknowledged kept to look for on every node afterwards."""

    tenant: Tenant
    certificate: Path
    outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _session(self, token: str | None) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.verify = str(self.certificate)
        if token:
            s.headers["Authorization"] = token
        return s

    def _count(self, kind: str, r: requests.Response | None, error: str = "") -> bool:
        if r is not None and r.status_code in (200, 201):
            self.outcomes["ok"] += 1
            return True
        if r is not None and r.status_code == 503 and r.headers.get("Retry-After"):
            self.outcomes[REFUSED] += 1
            return False
        self.outcomes[kind + " " + (str(r.status_code) if r is not None else error)] += 1
        self.failures.append(f"{time.strftime('%H:%M:%S')} {kind} {r.status_code if r is not None else error}")
        return False

    def _call(self, s: requests.Session, kind: str, method: str, path: str, body=None) -> requests.Response | None:
        try:
            r = s.request(method, f"{EDGE}{path}", json=body, timeout=30)
        except requests.RequestException as exc:
            self._count(kind, None, type(exc).__name__)
            return None
        return r if self._count(kind, r) else None

    def _keys(self) -> None:
        s = self._session(self.tenant.session.headers["Authorization"])
        i = 0
        while not self._stop.is_set():
            i += 1
            made = self._call(s, "key", "POST", "/api/v1/keys", {"name": f"galera {i}", "environment": "test"})
            if made is not None and i % 2 == 0:
                self._call(s, "revoke", "DELETE", f"/api/v1/keys/{made.json()['data']['apiKey']['id']}")
            self._stop.wait(0.3)

    def _register(self) -> None:
        s = self._session(None)
        while not self._stop.is_set():
            email = f"galera-{time.monotonic_ns()}@example.com"
            body = {"email": email, "password": "longenough1", "name": "Galera"}
            if self._call(s, "register", "POST", "/api/v1/auth/register", body) is not None:
                self.registered.append(email)
            self._stop.wait(7)  # under AUTH_RATE_LIMIT's 10 a minute and 100 an hour for one address

    def _targets(self) -> list:
        return [self._keys, self._register]


def galera_sql(node: str, sql: str) -> str:
    return docker(
        "exec", container_of(node), "sh", "-c",
        f'MYSQL_PWD="$(cat /run/secrets/altus4_db_root_password)" mariadb -uroot -h127.0.0.1 -Nse "{sql}"',
        timeout=60,
    )  # fmt: skip


def cluster_size(node: str) -> int:
    try:
        return int(
            galera_sql(
                node,
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
                " WHERE VARIABLE_NAME = 'wsrep_cluster_size'",
            )
        )
    except (StackError, ValueError):
        return 0


def deploy_galera() -> tuple[str, str]:
    """The README's Galera commands: label the node for the three Galera services, deploy with
    ALTUS4_METADATA=galera (the API rolls to DB_HOST=galera-1,galera-2,galera-3, migrate runs on the cluster),
    then the demo account again (the cluster is a new metadata database)."""
    started = time.monotonic()
    output = bash(readme_commands("swarm-galera", {"STACK=altus4": f"STACK={STACK}"}), timeout=900)
    until(
        "three Galera nodes in one cluster",
        lambda: all(cluster_size(f"galera-{n}") == 3 for n in (1, 2, 3)),
        300,
        every=3,
    )
    password = output.split("demo user: demo@example.com / ", 1)[1].split()[0]
    return password, f"Galera cluster of 3 serving the stack {time.monotonic() - started:.1f} s after the deploy"


def galera_scenario(name: str, tenant: Tenant, certificate: Path, action) -> Result:
    """A Load of searches and Writes through the edge while `action` kills Galera nodes. A failed search or a
    write answered anything but success or 503 with Retry-After fails the scenario; every acknowledged
    registration must then be on every node."""
    log(f"scenario: {name}")
    with Load(tenant, certificate) as load, Writes(tenant, certificate) as writes:
        time.sleep(5)
        note = action(writes)
        time.sleep(10)
    emails = ", ".join(f"'{e}'" for e in writes.registered) or "NULL"
    on_nodes = [
        int(galera_sql(f"galera-{n}", f"SELECT COUNT(*) FROM altus4.users WHERE email IN ({emails})"))
        for n in (1, 2, 3)
    ]
    lost = [len(writes.registered) - n for n in on_nodes]
    sent = load.sent + sum(writes.outcomes.values())
    failed = load.failed + len(writes.failures) + sum(lost)
    note += (
        f"; searches {dict(load.outcomes)}, writes {dict(writes.outcomes)}; {len(writes.registered)} registrations"
        f" acknowledged, missing per node {lost}"
    )
    log(f"  {sent} sent, {failed} failed: {note}")
    return Result(name, sent, failed, note, (load.failures + writes.failures)[:10], load.outcomes["ok"])


def history_complete(tenant: Tenant, scenarios: list[Result]) -> Result:
    """Every search answered during the Galera kills is in the account's search history exactly once (the
    account is new in the cluster): analytics go through Redis in write-behind batches, and a batch a dying
    node interrupted must be neither lost nor applied twice."""
    answered = sum(r.searched for r in scenarios)

    def recorded() -> int:
        r = tenant.session.get(f"{EDGE}/api/v1/analytics/search-history?limit=1", timeout=30)
        return int(r.json()["data"]["total"])

    deadline = time.monotonic() + 60  # the write-behind flush's interval, with room
    while (got := recorded()) != answered and time.monotonic() < deadline:
        time.sleep(2)
    note = f"{got} searches in the history, {answered} answered 200 through both kills"
    log(f"  {note}")
    return Result("Galera: the search history is exact", answered, abs(got - answered), note)


def kill_the_writing_galera_node(writes: Writes) -> str:
    before = writes.outcomes[REFUSED]
    note = kill("galera-1")  # DB_HOST's first: the node taking the writes
    until("galera-1 back in the cluster", lambda: cluster_size("galera-1") == 3, 180, every=2)
    if writes.outcomes[REFUSED] != before:
        raise StackError(f"{writes.outcomes[REFUSED] - before} writes refused while one node was gone")
    return note


def kill_two_galera_nodes(writes: Writes) -> str:
    """Two of three at once: the survivor leaves the Primary component, writes are refused (503, Retry-After)
    and searches go on; the swarm restarts both and the cluster forms again by itself."""
    victims = [container_of("galera-1"), container_of("galera-2")]
    started = time.monotonic()
    docker("kill", "-s", "KILL", *victims)
    until("three nodes again", lambda: all(cluster_size(f"galera-{n}") == 3 for n in (1, 2, 3)), 300, every=2)
    took = time.monotonic() - started
    return f"cluster of 3 again {took:.1f} s after two nodes were killed (no manual step)"


def main() -> int:
    started = time.monotonic()
    results: list[Result] = []
    ensure_engine()
    build_images()
    remove_stack()
    certificate = ROOT / "certs" / "altus4.crt"  # the walkthrough's (scripts/stack.sh cert)
    try:
        password, key = follow_the_readme()
        results.append(Result("README walkthrough: deploy, demo, search", 1, 0, "the demo data found through the edge"))
        who = until("sign-in through the edge", lambda: _try(sign_in, password, certificate), 120, every=3)

        def run(name: str, action, settle: float = 5.0) -> None:
            results.append(scenario(name, who, certificate, action, settle))

        run("scale api 3 -> 6 (no edge reload)", scale_up)
        run("scale api 6 -> 2", scale_down)
        bash(day2("docker build"), timeout=900)  # the README's new version (a new tag)
        run("rolling update to a new image", rolling_update)
        run("roll back to the previous image", rollback)
        run("SIGKILL one api container", lambda: kill("api"))
        run("kill the redis primary", kill_redis_primary, 10)
        run("kill the mariadb replica", lambda: kill("mysql-replica"), 10)
        run("redeploy after a config change", redeploy_after_a_change)
        run("monitoring stack scrapes every task", monitoring)
        password, note = deploy_galera()
        results.append(Result("Galera variant deployed (README)", 1, 0, note))
        who = until("sign-in through the edge (Galera)", lambda: _try(sign_in, password, certificate), 120, every=3)
        kills = [
            galera_scenario("Galera: SIGKILL the writing node", who, certificate, kill_the_writing_galera_node),
            galera_scenario("Galera: SIGKILL two of three nodes", who, certificate, kill_two_galera_nodes),
        ]
        results += [*kills, history_complete(who, kills)]
    finally:
        if os.environ.get("ALTUS4_STACK_KEEP") != "1":
            remove_stack()
    print(f"\n{'scenario':42} {'sent':>6} {'failed':>8}  note")
    for r in results:
        print(f"{r.name:42} {r.sent:>6} {str(r.failed) + ' failed':>8}  {r.note}")
    print(f"\nmake test-stack: {time.monotonic() - started:.0f} s")
    bad = [r for r in results if r.failed]
    for r in bad:
        print(f"FAILED {r.name}: " + "; ".join(r.failures), file=sys.stderr)
    return 1 if bad else 0


def _try(fn, *args):
    try:
        return fn(*args)
    except (StackError, requests.RequestException) as exc:
        log(f"  not yet: {exc}")
        return None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StackError as exc:
        print(f"make test-stack failed: {exc}", file=sys.stderr)
        sys.exit(1)
