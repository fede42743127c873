"""The `altus4` command: migrations, users and admins, the demo set-up, `index` (embed a table ahead of
time) and `loadtest` (drive a running service).

Commands build the same services the API runs on, without a web app (see `_services`). They are also
registered on the Flask CLI (`flask --app app migrate`), so either works.
"""

from __future__ import annotations

import json
import secrets
import sys
import time

import click
import pymysql
from flask import Flask

from altus4.config import ConfigError, Settings
from altus4.db.migrate import MigrationError, Migrator


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


def _migrator() -> Migrator:
    return Migrator(_settings())


def _run(action):
    try:
        return action()
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(help="Altus 4 administration.")
def main() -> None:
    from dotenv import load_dotenv

    load_dotenv(override=False)


@main.command("migrate", help="Apply pending migrations (creates the database if it does not exist).")
def migrate() -> None:
    done = _run(_migrator().migrate)
    click.echo("\n".join(f"migrated {name}" for name in done) or "nothing to migrate")


@main.command("migrate:status", help="List migrations and whether each is applied.")
def migrate_status() -> None:
    for m in _run(_migrator().status):
        mark = f"applied (batch {m['batch']}, {m['appliedAt']})" if m["applied"] else "pending"
        click.echo(f"{m['version']}_{m['name']}: {mark}")


@main.command("migrate:rollback", help="Undo the last batch, or --steps N migrations.")
@click.option("--steps", type=click.IntRange(min=1), default=None)
def migrate_rollback(steps: int | None) -> None:
    undone = _run(lambda: _migrator().rollback(steps))
    click.echo("\n".join(f"rolled back {name}" for name in undone) or "nothing to roll back")


@main.command("migrate:fresh", help="Drop every Altus 4 table and migrate again (destroys data).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def migrate_fresh(yes: bool) -> None:
    if not yes:
        click.confirm("This deletes all Altus 4 data. Continue?", abort=True)
    done = _run(_migrator().fresh)
    click.echo("\n".join(f"migrated {name}" for name in done))


def _services(settings: Settings | None = None):
    """The same services the API runs on, without a web app around them (no request scope: see altus4.context)."""
    from altus4.container import Services
    from altus4.metrics import Metrics

    return Services.build(settings or _settings(), time.monotonic(), Metrics())


@main.command("user:create", help="Create a user; --admin makes it an administrator.")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--admin", is_flag=True)
def user_create(email: str, name: str, password: str, admin: bool) -> None:
    from altus4.errors import ApiError

    if len(password) < 8:
        raise click.ClickException("password must be at least 8 characters")
    svc = _services()
    try:
        user = svc.users.register(email, password, name)
        if admin:
            user = svc.users.promote(email)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        svc.close()
    click.echo(f"created {user['role']} {user['email']} ({user['id']})")


@main.command("user:promote", help="Give an existing user the admin role.")
@click.argument("email")
def user_promote(email: str) -> None:
    from altus4.errors import ApiError

    svc = _services()
    try:
        user = svc.users.promote(email)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        svc.close()
    click.echo(f"{user['email']} is now an admin")


@main.command("user:tier", help="Set an account's rate-limit tier (free, pro, enterprise); its keys are capped by it.")
@click.argument("email")
@click.argument("tier", type=click.Choice(["free", "pro", "enterprise"]))
def user_tier(email: str, tier: str) -> None:
    from altus4.errors import ApiError

    svc = _services()
    try:
        user = svc.accounts.set_tier(svc.users.by_email(email)["id"], tier)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        svc.close()
    click.echo(f"{user['email']} is now on the {user['tier']} tier")


@main.command(
    "tenant-token",
    help="Mint a tenant token offline: a search-only JWT signed with KEY, limited by its rules (no call to Altus 4).",
)
@click.option(
    "--key", "secret", envvar="ALTUS4_API_KEY", required=True, help="the API key's secret (or ALTUS4_API_KEY)"
)
@click.option("--key-id", required=True, help="the API key's id (apiKey.id when it was created)")
@click.option("--filter", "rule_filter", default=None, help="the rule's filter, e.g. 'tenant_id = 42'")
@click.option("--database", default="*", show_default=True, help="the database id the rule is for ('*': every one)")
@click.option("--tables", default=None, help="comma-separated tables the token may search")
@click.option("--expires-in", type=click.IntRange(min=1), default=None, help="seconds until it expires")
def tenant_token(
    secret: str, key_id: str, rule_filter: str | None, database: str, tables: str | None, expires_in: int | None
) -> None:
    from altus4.security import api_keys as keygen
    from altus4.security import tenant_tokens

    if not keygen.looks_like_key(secret):
        raise click.ClickException("--key must be an API key (altus4_sk_test_… or altus4_sk_live_…)")
    from altus4.search import filters

    rule: dict = {}
    if rule_filter:
        try:
            filters.parse(rule_filter)
        except filters.FilterSyntaxError as exc:
            raise click.ClickException(f"--filter: {exc}") from None
        rule["filter"] = rule_filter
    if tables:
        rule["tables"] = [t.strip() for t in tables.split(",") if t.strip()]
    expires = int(time.time()) + expires_in if expires_in else None
    click.echo(tenant_tokens.mint(secret, key_id, {database: rule}, expires))


@main.command("demo", help="Load the demo database, create the demo user and print a fresh demo API key.")
@click.option("--host", help="build it on this MySQL server (e.g. a stack's demo-db), not on the metadata server")
@click.option("--port", type=int, default=3306, show_default=True)
@click.option("--admin-user", default="root", show_default=True, help="an account there that may create databases")
@click.option("--admin-password-stdin", is_flag=True, help="read that account's password from stdin")
@click.option("--console", "console_url", help="also print a link to this console that fills in the demo key")
def demo(host: str | None, port: int, admin_user: str, admin_password_stdin: bool, console_url: str | None) -> None:
    from altus4 import demo as demo_data
    from altus4.db.host_policy import HostNotAllowed, check_host_allowed

    settings = _settings()
    server = demo_data.DemoServer.metadata(settings)
    if host:
        password = sys.stdin.read().strip() if admin_password_stdin else ""
        server = demo_data.DemoServer(host, port, admin_user, password)
    try:  # the demo is a tenant's database: the host policy must allow it (the metadata server: rarely)
        check_host_allowed(server.host, settings)
    except HostNotAllowed as exc:
        where = "on this service's metadata server" if not host else f"on {host}"
        click.echo(
            f"demo skipped: the demo database would live {where}, which tenants may not connect to here ({exc});"
            " add it to ALLOWED_DATABASE_HOSTS (a single-user set-up may set ALLOW_OWN_SERVERS=true), or set"
            " ALTUS4_DEMO=0 to skip this step",
            err=True,
        )
        sys.exit(1 if host else 0)  # asked for by name: a failure; a step of `make run`: skipped
    account = server.user or settings.db_username
    try:
        demo_data.build_demo_database(settings, server=server)
    except pymysql.MySQLError as exc:  # e.g. a least-privilege account with rights on its own database only
        reason = exc.args[1] if len(exc.args) > 1 else str(exc)
        outcome = "not built" if host else "skipped"
        click.echo(
            f"demo {outcome}: {account!r} cannot create and fill the database {demo_data.DEMO_DATABASE!r} on"
            f" {server.host} ({reason}); grant it ALL ON `{demo_data.DEMO_DATABASE}`.* or set ALTUS4_DEMO=0 to"
            " skip this step",
            err=True,
        )
        sys.exit(1 if host else 0)  # asked for by name: a failure (stack.sh demo retries until it is up)
    try:
        username, password = demo_data.demo_reader(settings, server=server)
    except pymysql.MySQLError as exc:
        username, password = account, server.password if host else settings.db_password
        click.echo(f"demo connection uses {username!r}: no read-only account could be made ({exc.args[-1]})", err=True)
    # a known password is for a machine of one's own only
    user_password = demo_data.DEMO_PASSWORD if settings.env == "development" else secrets.token_urlsafe(12)
    svc = _services(settings)
    try:
        row = svc.db.fetch_one("SELECT id FROM users WHERE email = %s", (demo_data.DEMO_EMAIL,))
        if row:
            svc.users.delete(row["id"])  # cascades: old keys and connections go with it
        user = svc.users.register(demo_data.DEMO_EMAIL, user_password, "Demo User")
        svc.connections.create(
            user["id"],
            {
                "name": "Demo store",
                "host": server.host,
                "port": server.port,
                "database": demo_data.DEMO_DATABASE,
                "username": username,
                "password": password,
                "ssl": False,
            },
        )
        _, secret = svc.keys.create(user["id"], "Demo key", "test", ["search", "analytics"], "free", None)
    finally:
        svc.close()
    click.echo(f"demo user: {demo_data.DEMO_EMAIL} / {user_password}")
    click.echo(f"demo API key: {secret}")
    if console_url:  # in the fragment: a browser sends it nowhere, and the console takes it out of the address bar
        click.echo(f"demo console: {console_url}#/search?key={secret}  (sign in as the demo user)")


@main.command(
    "index",
    help="Embed a connected table's rows ahead of time (resumable, incremental); with --follow, keep every "
    "embedded table's vectors up to date as its rows change.",
)
@click.argument("connection_id", required=False)
@click.argument("table", required=False)
@click.option("--batch", type=click.IntRange(1, 2048), default=64, show_default=True)
@click.option("--follow", is_flag=True, help="then keep following every embedded table (one leader per fleet)")
def index(connection_id: str | None, table: str | None, batch: int, follow: bool) -> None:
    from altus4.jobs.indexer import IndexFailed, index_table

    if bool(connection_id) != bool(table) or not (table or follow):
        raise click.UsageError("give CONNECTION_ID and TABLE, or --follow, or both")
    svc = _services()
    try:
        if table:
            row = svc.db.fetch_one("SELECT id, user_id FROM database_connections WHERE id = %s", (connection_id,))
            if row is None:
                raise click.ClickException(f"no connection {connection_id}")
            connection = svc.connections.get(row["user_id"], connection_id)
            total = next(
                (
                    t.row_estimate
                    for name, t in svc.connections.schema_for(connection).tables.items()
                    if name.lower() == table.lower()
                ),
                0,
            )
            try:
                with click.progressbar(length=max(total, 1), label=f"embedding {table}") as bar:
                    report = index_table(
                        svc.connections,
                        svc.ai,
                        connection,
                        table,
                        batch,
                        progress=bar.update,
                        vector_index=svc.search.vectors,
                    )
            except IndexFailed as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(
                f"{report.rows} rows: {report.embedded} embedded, {report.skipped} already indexed,"
                f" {report.deleted} deleted since"
            )
        if follow:
            _follow(svc)
    finally:
        svc.close()


def _follow(svc) -> None:
    """Follow until SIGTERM or SIGINT, serving the follower's metrics on FOLLOW_METRICS_PORT (0: none)."""
    import signal
    import threading

    from prometheus_client import start_http_server

    from altus4.jobs.follower import Follower, FollowSettings

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    s = svc.settings
    follower = Follower(svc, FollowSettings(s.follow_interval, s.follow_deletions_every, s.follow_reconcile_every))
    if s.follow_metrics_port:  # also while idle: a deployment's health check reads it
        start_http_server(s.follow_metrics_port, s.follow_metrics_host, registry=follower.metrics.registry)
    if not svc.ai.enabled:  # a deployment's indexer service without a model: idle, not a restart loop
        click.echo("no embedding endpoint (OPENAI_API_KEY is not set): following nothing", err=True)
        stop.wait()
        return
    click.echo(f"following embedded tables every {s.follow_interval:g} s (one leader per fleet)", err=True)

    def report(done: dict[str, int]) -> None:  # on a terminal, a line per pass that changed something
        if sys.stderr.isatty() and (done["embedded"] or done["deleted"]):
            click.echo(f"{time.strftime('%H:%M:%S')} {done['embedded']} embedded, {done['deleted']} deleted", err=True)

    follower.run(stop, report)


@main.command("loadtest", help="Simulate users searching a running Altus 4; print a latency summary.")
@click.argument("url")
@click.option("--key", required=True, envvar="ALTUS4_API_KEY", help="API key (or ALTUS4_API_KEY)")
@click.option("--queries", "queries_file", type=click.File(), required=True, help="one query per line")
@click.option("--users", type=click.IntRange(1, 1000), default=16, show_default=True)
@click.option("--duration", type=click.FloatRange(1, 86400), default=30, show_default=True, help="seconds")
@click.option("--think", type=click.FloatRange(0, 60), default=0.0, show_default=True, help="seconds between requests")
@click.option("--modes", default="natural", show_default=True, help="comma list: natural,boolean,semantic")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def loadtest(url, key, queries_file, users, duration, think, modes, limit, as_json) -> None:
    from altus4.loadtest import HttpClient, run_workers, search_step

    queries = [line.strip() for line in queries_file if line.strip()]
    mix = [m.strip() for m in modes.split(",") if m.strip()]
    if not queries:
        raise click.ClickException("the query file is empty")
    if not set(mix) <= {"natural", "boolean", "semantic"}:
        raise click.ClickException(f"unknown mode in {modes!r}")
    client = HttpClient(url, {"Authorization": f"Bearer {key}"})

    def progress(done: int, elapsed: float) -> None:
        if not as_json:
            click.echo(f"\r{elapsed:6.1f}s  {done} requests  {done / elapsed:8.1f} req/s", nl=False, err=True)

    try:
        summary = run_workers(users, duration, search_step(client, queries, mix, limit), think, progress)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
        return
    click.echo("", err=True)
    click.echo(f"requests {summary.requests}  ok {summary.successes}  failures {summary.failures or 'none'}")
    click.echo(f"throughput {summary.throughput_rps} req/s over {summary.duration_s}s with {users} users")
    click.echo(f"latency ms  p50 {summary.p50_ms}  p95 {summary.p95_ms}  p99 {summary.p99_ms}  max {summary.max_ms}")


def init_app(app: Flask) -> None:
    for command in main.commands.values():
        app.cli.add_command(command)


if __name__ == "__main__":
    sys.exit(main())
