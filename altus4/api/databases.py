"""/api/v1/databases: the user's connected MySQL databases."""

from flask import Blueprint, g

from altus4.api import schemas
from altus4.api.auth import user_required
from altus4.api.envelope import ok
from altus4.api.validation import body, query
from altus4.container import services
from altus4.db.targets import TargetError
from altus4.errors import UpstreamFailed
from altus4.services.connections import public_connection

bp = Blueprint("databases", __name__, url_prefix="/api/v1/databases")


@bp.get("")
@user_required
def list_databases():
    return ok([public_connection(r) for r in services().connections.list(g.user["id"])])


@bp.post("")
@user_required
def create_database():
    data = body(schemas.CreateConnectionBody)
    return ok(public_connection(services().connections.create(g.user["id"], data.model_dump())), 201)


@bp.get("/status")
@user_required
def database_statuses():
    return ok(services().connections.statuses(g.user["id"]))


@bp.get("/<uuid:conn_id>")
@user_required
def get_database(conn_id):
    return ok(public_connection(services().connections.get(g.user["id"], str(conn_id))))


@bp.put("/<uuid:conn_id>")
@user_required
def update_database(conn_id):
    data = body(schemas.UpdateConnectionBody)
    return ok(public_connection(services().connections.update(g.user["id"], str(conn_id), data.changes())))


@bp.delete("/<uuid:conn_id>")
@user_required
def delete_database(conn_id):
    services().connections.delete(g.user["id"], str(conn_id))
    return ok({"success": True})


@bp.post("/<uuid:conn_id>/test")
@user_required
def test_database(conn_id):
    return ok(services().connections.test(g.user["id"], str(conn_id)))


@bp.get("/<uuid:conn_id>/schema")
@user_required
def database_schema(conn_id):
    params = query(schemas.SchemaQuery)
    try:
        found = services().connections.schema(g.user["id"], str(conn_id), refresh=params.refresh)
    except TargetError as exc:
        raise UpstreamFailed(str(exc), code="DATABASE_UNREACHABLE") from None
    return ok(
        [
            {
                "database": found.database,
                "table": table.name,
                "engine": table.engine,
                "estimatedRows": table.row_estimate,
                "primaryKey": list(table.primary_key),
                "columns": [
                    {
                        "name": name,
                        "type": kind,
                        "isFullTextIndexed": table.is_fulltext_indexed(name),
                        "isSearchable": name in table.text_columns,
                    }
                    for name, kind in table.columns.items()
                ],
                "fullTextIndexes": [
                    {"name": ix.name, "columns": list(ix.columns), "type": "FULLTEXT", "cardinality": ix.cardinality}
                    for ix in table.fulltext_indexes
                ],
            }
            for table in found.tables.values()
        ]
    )
