"""How the API shows what the services return: camelCase fields, ISO-8601 times, nothing secret.

The services hand back rows and domain objects; every JSON shape a client sees is built here (or in the
view that owns it), so a field can be renamed for the wire without touching a service.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from altus4.db.schema import DatabaseSchema
from altus4.search.plan import fulltext_ddl
from altus4.services.api_keys import KeyUsage
from altus4.services.connections import parse_replicas
from altus4.services.reports import Range
from altus4.times import iso


def user(row: dict[str, Any], connected: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "tier": row["tier"],  # the account's rate-limit tier: its keys' tiers are at most this
        "connectedDatabases": connected or [],
        "createdAt": iso(row["created_at"]),
        "lastActive": iso(row["last_active"] or row["created_at"]),  # registering is the first activity
    }


def api_key(row: dict[str, Any]) -> dict[str, Any]:
    """A key as its owner sees it: the display prefix, never the secret or its digest."""
    return {
        "id": row["id"],
        "name": row["name"],
        "keyPrefix": row["key_prefix"],
        "environment": row["environment"],
        "permissions": row["permissions"].split(","),
        "rateLimitTier": row["rate_limit_tier"],
        "expiresAt": iso(row["expires_at"]),
        "lastUsed": iso(row["last_used"]),
        "lastUsedIp": row["last_used_ip"],
        "usageCount": int(row["usage_count"]),
        "isActive": bool(row["is_active"]),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def key_usage(usage: KeyUsage) -> dict[str, Any]:
    status = usage.rate_limit
    return {
        "apiKeyId": usage.key_id,
        "requestCount": sum(n for _, n in usage.daily),
        "totalRequestCount": usage.total,
        "lastUsed": iso(usage.last_used),
        "days": usage.days,
        "daily": [{"date": day.isoformat(), "requests": n} for day, n in usage.daily],
        "rateLimitStatus": {
            "tier": usage.tier,
            "limit": status.limit,
            "remaining": status.remaining,
            "resetTime": datetime.fromtimestamp(status.reset_at, UTC).isoformat().replace("+00:00", "Z"),
        },
    }


def account_usage(rows: list[dict[str, Any]], span: Range) -> dict[str, Any]:
    """API requests per day and per key over a range (the official SDK's `getUsageStats`)."""
    daily: dict[str, int] = {}
    keys: dict[str, dict[str, Any]] = {}
    for r in rows:
        n = int(r["request_count"])
        day = r["day"].isoformat()
        daily[day] = daily.get(day, 0) + n
        keys.setdefault(r["id"], {"apiKeyId": r["id"], "name": r["name"], "requests": 0})["requests"] += n
    return {
        "period": span.period,
        "startDate": span.start.date().isoformat(),
        "endDate": (span.end - timedelta(days=1)).date().isoformat(),
        "totalRequests": sum(daily.values()),
        "daily": [{"date": day, "requests": n} for day, n in daily.items()],
        "keys": sorted(keys.values(), key=lambda k: (-k["requests"], k["name"])),
    }


def connection(row: dict[str, Any]) -> dict[str, Any]:
    """A connected database as its owner sees it: everything but the password."""
    return {
        "id": row["id"],
        "name": row["name"],
        "host": row["host"],
        "port": row["port"],
        "database": row["database_name"],
        "username": row["username"],
        "ssl": bool(row["ssl_enabled"]),
        "readReplicas": [f"{h}:{p}" for h, p in parse_replicas(row["read_replicas"])],
        "isActive": bool(row["is_active"]),
        "connectionStatus": row["connection_status"],
        "lastError": row["last_error"],
        "lastTested": iso(row["last_tested"]),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def schema_tables(found: DatabaseSchema) -> list[dict[str, Any]]:
    return [
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
                {
                    "name": ix.name,
                    "columns": list(ix.columns),
                    "type": "FULLTEXT",
                    # MariaDB reports none for FULLTEXT: the table's estimated rows then (one entry per row)
                    "cardinality": ix.cardinality if ix.cardinality is not None else table.row_estimate,
                }
                for ix in table.fulltext_indexes
            ],
            # what would make an unindexed table searchable (its first three text columns)
            "suggestedIndex": (
                fulltext_ddl(table.name, table.text_columns[:3])
                if table.text_columns and not table.fulltext_indexes
                else None
            ),
        }
        for table in found.tables.values()
    ]
