"""/api/v1/databases: the user's connected MySQL databases."""

from flask import Blueprint, g

from altus4.api import presenters as present
from altus4.api import schemas
from altus4.api.auth import connection_tests_limited, user_required
from altus4.api.envelope import ok
from altus4.api.validation import body, query
from altus4.container import services

bp = Blueprint("databases", __name__, url_prefix="/api/v1/databases")


@bp.get("")
@user_required
def list_databases():
    return ok([present.connection(r) for r in services().connections.owned_by(g.user["id"])])


@bp.post("")
@user_required
@connection_tests_limited
def create_database():
    data = body(schemas.CreateConnectionBody)
    return ok(present.connection(services().connections.create(g.user["id"], data.model_dump())), 201)


@bp.get("/status")
@user_required
def database_statuses():
    return ok(services().connections.statuses(g.user["id"]))


@bp.get("/<uuid:conn_id>")
@user_required
def get_database(conn_id):
    return ok(present.connection(services().connections.get(g.user["id"], str(conn_id))))


@bp.put("/<uuid:conn_id>")
@user_required
@connection_tests_limited
def update_database(conn_id):
    data = body(schemas.UpdateConnectionBody)
    return ok(present.connection(services().connections.update(g.user["id"], str(conn_id), data.changes())))


@bp.delete("/<uuid:conn_id>")
@user_required
def delete_database(conn_id):
    services().connections.delete(g.user["id"], str(conn_id))
    return ok({"success": True})


@bp.post("/<uuid:conn_id>/test")
@user_required
@connection_tests_limited
def test_database(conn_id):
    return ok(services().connections.test(g.user["id"], str(conn_id)))


@bp.get("/<uuid:conn_id>/schema")
@user_required
def database_schema(conn_id):
    params = query(schemas.SchemaQuery)
    found = services().connections.schema(g.user["id"], str(conn_id), refresh=params.refresh)
    return ok(present.schema_tables(found))
