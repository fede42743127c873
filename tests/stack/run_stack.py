"""`make test-stack`: the shipped swarm-stack.yml deployed unchanged on a one-node swarm, used through its
TLS edge, and put through scaling, a rolling update and killed tasks under a steady search load.

Everything runs on this machine: its own dockerd (data root /var/lib/altus4-stack) when none answers, the
API image from the project's Dockerfile, and stand-ins for the third-party images built from Debian's
packages (tests/stack/images: no container registry is reachable here). Each scenario counts what the
client saw; any failed request fails the run. Prints one table line per scenario, then removes the stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers
from servers import make_certificate  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path(__file__).resolve().parent / "images"
STATE = Path(os.environ.get("ALTUS4_STACK_STATE", "/var/lib/altus4-stack"))
STACK = "altus4"
HTTP_PORT, HTTPS_PORT = 18080, 18443  # host-mode ports of the edge (ALTUS4_HTTP_PORT / ALTUS4_HTTPS_PORT)
EDGE = f"https://127.0.0.1:{HTTPS_PORT}"
BASE_IMAGE = "altus4-stand-in/debian:bookworm"
STAND_INS = {
    "python": "python:3.11-slim",
    "mariadb": "mariadb:10.11",
    "redis": "redis:7.2-alpine",
    "nginx": "nginx:1.27-alpine",
}
API_IMAGE, API_IMAGE_NEXT = "altus4/altus4:1.0.0", "altus4/altus4:1.0.1"
DEMO_DB = "altus4-demo-db"  # a tenant's database, on the stack's attachable backend network
SECRETS = (
    "altus4_jwt_secret",
    "altus4_encryption_key",
    "altus4_db_password",
    "altus4_redis_password",
    "altus4_repl_password",
)


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
    a one-node swarm with the placement labels the stack's header asks for."""
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
    node = docker("node", "ls", "--format", "{{.ID}}").split()[0]
    docker(
        "node", "update", "--label-add", "altus4.mysql-primary=true", "--label-add", "altus4.mysql-replica=true", node
    )


def build_images() -> None:
    """A Debian base (debootstrap, once), the stand-ins under the official names, the API image twice (the
    second tag for the rolling update)."""
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
    log(f"building {API_IMAGE} from the project's Dockerfile")
    docker("build", "-q", "-t", API_IMAGE, str(ROOT), timeout=900)
    docker("build", "-q", "--label", "altus4.rollout=next", "-t", API_IMAGE_NEXT, str(ROOT), timeout=900)


# --- the stack -------------------------------------------------------------------------------------------


def remove_stack() -> None:
    docker("service", "rm", DEMO_DB, check=False)
    docker("stack", "rm", STACK, check=False)
    until(
        "the stack's containers to go",
        lambda: not docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={STACK}"),
        120,
    )
    until(
        "the stack's network to go",
        lambda: STACK + "_backend" not in docker("network", "ls", "--format", "{{.Name}}"),
        60,
    )
    for volume in docker("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}").split():
        docker("volume", "rm", "-f", volume, check=False)


def create_secrets(work: Path) -> None:
    """As the stack file's header tells a user to."""
    for name in SECRETS:
        docker("secret", "rm", name, check=False)
        docker("secret", "create", name, "-", stdin=uuid.uuid4().hex + uuid.uuid4().hex)
    crt, key, _ = make_certificate(work)  # for localhost and 127.0.0.1
    docker("config", "rm", "altus4_tls_crt", check=False)
    docker("secret", "rm", "altus4_tls_key", check=False)
    docker("config", "create", "altus4_tls_crt", str(crt))
    docker("secret", "create", "altus4_tls_key", str(key))


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


def deploy(work: Path) -> None:
    create_secrets(work)
    log("docker stack deploy -c swarm-stack.yml altus4")
    docker(
        "stack",
        "deploy",
        "-c",
        "swarm-stack.yml",
        STACK,
        timeout=300,
        env={
            "ALLOWED_DATABASE_HOSTS": DEMO_DB,
            "ALTUS4_HTTP_PORT": str(HTTP_PORT),
            "ALTUS4_HTTPS_PORT": str(HTTPS_PORT),
        },
    )
    until("every service of the stack to be healthy", healthy, 300, every=3)


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


def start_demo_database() -> str:
    """A tenant's MariaDB (the stand-in image) on the stack's backend network, with a FULLTEXT table."""
    password = uuid.uuid4().hex
    docker(
        "service",
        "create",
        "--detach",
        "--name",
        DEMO_DB,
        "--network",
        f"{STACK}_backend",
        "--endpoint-mode",
        "dnsrr",
        "-e",
        f"MARIADB_ROOT_PASSWORD={password}",
        "-e",
        "MARIADB_DATABASE=shop",
        "-e",
        "MARIADB_USER=shop",
        "-e",
        f"MARIADB_PASSWORD={password}",
        STAND_INS["mariadb"],
    )
    container = until(f"{DEMO_DB} to run", lambda: docker("ps", "-q", "--filter", f"name={DEMO_DB}"), 120)
    words = ["wireless", "headphones", "kettle", "espresso", "walking", "boots", "mountain", "bicycle", "desk", "lamp"]
    rows = ",".join(
        f"('{words[i % 10]} {words[(i * 3) % 10]} {i}', 'a {words[(i * 7) % 10]} for the {words[(i + 1) % 10]} fan')"
        for i in range(300)
    )
    sql = (
        "CREATE TABLE products (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(200), description TEXT,"
        " FULLTEXT KEY ft (name, description)) ENGINE=InnoDB;"
        f"INSERT INTO products (name, description) VALUES {rows};"
    )
    until(
        f"{DEMO_DB} to accept the schema",
        lambda: subprocess.run(
            ["docker", "exec", "-i", container.split()[0], "mariadb", "-ushop", f"-p{password}", "shop"],
            input=sql,
            capture_output=True,
            text=True,
        ).returncode
        == 0,
        120,
        every=2,
    )
    return password


@dataclass
class Tenant:
    session: requests.Session
    key: str
    database_id: str


def sign_up(password: str, certificate: Path) -> Tenant:
    """Register, create an API key and connect the demo database, as a user would, through the edge."""
    s = requests.Session()
    s.trust_env = False  # else REQUESTS_CA_BUNDLE overrides the session's own verify
    s.verify = str(certificate)
    email = f"stack-{uuid.uuid4().hex[:10]}@example.com"
    r = s.post(
        f"{EDGE}/api/v1/auth/register", json={"email": email, "password": "correct horse battery", "name": "Stack"}
    )
    if r.status_code != 201:
        raise StackError(f"register through the edge: {r.status_code} {r.text[:300]}")
    s.headers["Authorization"] = "Bearer " + r.json()["data"]["token"]
    # an account's tier is the operator's: the load below needs more than a free key's 1,000 requests an hour
    docker("exec", container_of("api"), "altus4", "user:tier", email, "enterprise", timeout=60)
    r = s.post(
        f"{EDGE}/api/v1/keys",
        json={"name": "stack", "environment": "live", "permissions": ["search"], "rateLimitTier": "enterprise"},
    )
    if r.status_code != 201:
        raise StackError(f"create an API key: {r.status_code} {r.text[:300]}")
    key = r.json()["data"]["secretKey"]
    r = s.post(
        f"{EDGE}/api/v1/databases",
        json={
            "name": "shop",
            "host": DEMO_DB,
            "port": 3306,
            "database": "shop",
            "username": "shop",
            "password": password,
        },
    )
    if r.status_code != 201:
        raise StackError(f"connect the demo database: {r.status_code} {r.text[:300]}")
    return Tenant(s, key, r.json()["data"]["id"])


# --- load ------------------------------------------------------------------------------------------------


@dataclass
class Load:
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

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

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


def scenario(name: str, tenant: Tenant, certificate: Path, action, settle: float = 5.0) -> Result:
    log(f"scenario: {name}")
    with Load(tenant, certificate) as load:
        time.sleep(settle)
        note = action() or ""
        time.sleep(settle)
    log(f"  {load.sent} sent, {load.failed} failed {dict(load.outcomes)} {note}")
    return Result(name, load.sent, load.failed, note, load.failures[:10])


def scale_up() -> str:
    before = set(api_containers())
    started = time.monotonic()
    docker("service", "scale", "--detach", f"{STACK}_api=6")
    until("6 API tasks", lambda: len(api_containers()) >= 6, 120)
    new = set(api_containers()) - before

    def all_served():
        return all(searches_served(c) > 0 for c in new)

    until("every new API task to serve searches through the edge", all_served, 120, every=0.5)
    return f"new tasks served after {time.monotonic() - started:.1f} s"


def scale_down() -> str:
    docker("service", "scale", f"{STACK}_api=2", timeout=300)
    return f"{len(api_containers())} API tasks left"


def rolling_update() -> str:
    started = time.monotonic()
    docker("service", "update", "--quiet", "--image", API_IMAGE_NEXT, f"{STACK}_api", timeout=600)
    images = {docker("inspect", "--format", "{{.Config.Image}}", c) for c in api_containers()}
    if images != {API_IMAGE_NEXT}:
        raise StackError(f"after the update the API tasks run {images}")
    return f"updated in {time.monotonic() - started:.1f} s"


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


def kill(service: str, replaced_by_swarm: bool = True) -> str:
    victim = container_of(service)
    started = time.monotonic()
    docker("kill", "-s", "KILL", victim)
    if replaced_by_swarm:

        def replaced() -> bool:
            running = api_containers(service)
            return bool(running) and victim not in running

        until(f"the swarm to replace {service}", replaced, 120)
        until("every service healthy again", healthy, 180, every=2)
    return f"{service} back after {time.monotonic() - started:.1f} s"


def main() -> int:
    started = time.monotonic()
    results: list[Result] = []
    ensure_engine()
    build_images()
    remove_stack()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            deploy(work)
            password = start_demo_database()
            certificate = work / "test.crt"
            tenant = until("sign-up through the edge", lambda: _try(sign_up, password, certificate), 120, every=3)
            r = tenant.session.post(
                f"{EDGE}/api/v1/search", json={"query": "wireless"}, headers={"Authorization": f"Bearer {tenant.key}"}
            )
            body = r.json()
            if r.status_code != 200 or not body["data"]["results"]:
                raise StackError(f"a search through the edge: {r.status_code} {r.text[:300]}")
            log(f"deployed: a search through {EDGE} found {body['data']['totalCount']} rows")
            results.append(scenario("scale api 3 -> 6 (no edge reload)", tenant, certificate, scale_up))
            results.append(scenario("scale api 6 -> 2", tenant, certificate, scale_down))
            results.append(scenario("rolling update to a new image", tenant, certificate, rolling_update))
            results.append(scenario("SIGKILL one api container", tenant, certificate, lambda: kill("api")))
            results.append(scenario("kill the redis primary", tenant, certificate, kill_redis_primary, 10))
            results.append(scenario("kill the mariadb replica", tenant, certificate, lambda: kill("mysql-replica"), 10))
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
