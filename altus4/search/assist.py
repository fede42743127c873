"""Around search: query suggestions and query analysis (EXPLAIN of Altus 4's own SQL).

Both are cheap and bounded: suggestions read a few rows from a few tables; the
analysis EXPLAINs the statements `plan.build_select` generates — never text the
user supplied as SQL.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pymysql

from altus4.ai.provider import AIUnavailable
from altus4.ai.service import AIService
from altus4.db import targets
from altus4.search import plan as planner
from altus4.search import structured
from altus4.search.results import json_value
from altus4.search.service import SearchService, compile_query, run_parallel
from altus4.services.analytics import AnalyticsService
from altus4.services.connections import ConnectionService

MAX_SUGGESTION_TABLES = 6
AI_SUGGEST_BUDGET = 1.0  # seconds: suggestions are typed-ahead, they cannot wait long
AI_ANALYZE_BUDGET = 5.0
SAMPLE_ROWS = 25
_WORD = re.compile(r"\w+", re.UNICODE)


class Assistant:
    def __init__(
        self,
        search: SearchService,
        connections: ConnectionService,
        analytics: AnalyticsService,
        ai: AIService | None = None,
    ):
        self.search = search
        self.connections = connections
        self.analytics = analytics
        self.ai = ai

    # ---- suggestions -------------------------------------------------------------------
    def suggestions(
        self,
        user_id: str,
        text: str,
        databases: list[str] | None,
        tables: list[str] | None,
        limit: int = 10,
        tier: str = "free",
        filter_text: str | None = None,
        scope: structured.Scope | None = None,
    ) -> dict[str, Any]:
        """Popular past queries, completions from indexed words, then (when the AI answers within a second)
        spelling corrections and related queries; the response says whether the AI took part. With a filter,
        words come only from rows it lets through; under a tenant token (`scope`), only from the rows its rules
        reach, and no past queries (they are every tenant's).
        :raise ValidationFailed: a malformed filter."""
        shape = structured.structure(filter_text, None, None, text, scope)
        popular = []
        if scope is None:
            self.analytics.flush()
            popular = self.analytics.popular_prefix(user_id, text.strip(), 5)
        top = max((int(p["n"]) for p in popular), default=1)
        out = [
            {"text": p["query_text"], "score": round(int(p["n"]) / top, 4), "type": "popular", "source": "history"}
            for p in popular
        ]
        words = _WORD.findall(text)
        partial = words[-1] if words and not text[-1:].isspace() else ""
        vocabulary: list[tuple[str, float]] = []
        seen = {s["text"].lower() for s in out}
        if len(partial) >= 2:
            head = text[: text.rfind(partial)]
            vocabulary = self._vocabulary(user_id, partial, databases, tables, shape)
            for word, score in vocabulary:
                completion = head + word
                if completion.lower() not in seen and word.lower() != partial.lower():
                    seen.add(completion.lower())
                    # the original's enum has no completion: a word of the user's data is its spelling
                    out.append({"text": completion, "score": score, "type": "spelling", "source": "completion"})
        ai_meta: dict[str, Any] = {"aiUsed": False}
        if self.ai is None or not self.ai.enabled:
            ai_meta["aiReason"] = "not_configured"
        else:
            try:
                for item in self.ai.suggest(text, [w for w, _ in vocabulary], user_id, tier, AI_SUGGEST_BUDGET):
                    if item["text"].lower() not in seen:
                        seen.add(item["text"].lower())
                        out.append({**item, "score": 0.5, "source": "ai"})
                ai_meta["aiUsed"] = True
            except AIUnavailable as exc:
                ai_meta["aiReason"] = exc.reason
        return {"suggestions": out[:limit], **ai_meta}

    def _vocabulary(
        self, user_id: str, partial: str, databases, tables, shape: structured.Structure
    ) -> list[tuple[str, float]]:
        """Words starting with `partial` in a sample of the indexed rows the filter lets through, most frequent
        first."""
        rows = self.connections.active_for(user_id, databases)
        if shape.scope is not None:
            reachable = shape.scope.databases([r["id"] for r in rows], databases)
            rows = [r for r in rows if r["id"] in reachable]
        schemas, _ = self.search.schemas(rows)
        planned = structured.plan_tables(rows, schemas, shape, tables or None, None)
        jobs = [(row, q, plan) for row, q, plan in planned.jobs if q.match_groups and not plan.where.never]
        jobs = jobs[:MAX_SUGGESTION_TABLES]
        boolean = partial + "*"

        def sample(row, q, plan):
            spec = self.connections.spec(row)
            columns = ", ".join(planner.ident(c) for c in q.match_groups[0])
            extra, params = (f" AND ({plan.where.sql})", plan.where.params) if plan.where.sql else ("", ())
            sql = (
                f"SELECT {columns} FROM {planner.ident(q.table)}"
                f" WHERE MATCH ({columns}) AGAINST (%s IN BOOLEAN MODE){extra} LIMIT %s"
            )
            with self.search.pools.connection(spec, row["schema_version"]) as conn, conn.cursor() as cur:
                cur.execute(sql, (boolean, *params, SAMPLE_ROWS))
                return list(cur.fetchall())

        counts: Counter[str] = Counter()
        prefix = partial.lower()
        for status, found in run_parallel([lambda j=j: sample(*j) for j in jobs], 2.0):
            if status != "ok":
                continue
            for record in found:
                for value in record.values():
                    for word in _WORD.findall(str(value or "")):
                        if word.lower().startswith(prefix):
                            counts[word.lower()] += 1
        top = max(counts.values(), default=1)
        return [(word, round(n / top, 4)) for word, n in counts.most_common(10)]

    # ---- analysis ------------------------------------------------------------------------
    def analyze(self, user_id: str, text: str, databases: list[str], mode: str, tier: str = "free") -> dict[str, Any]:
        compiled = compile_query(text, mode)
        rows = self.connections.active_for(user_id, databases)
        schemas, failed = self.search.schemas(rows)
        outcomes = run_parallel(
            [lambda r=r: self._analyze_database(r, schemas[r["id"]], compiled) for r in rows if r["id"] in schemas],
            10.0,
        )
        per_db, recommendations, optimization = [], [], []
        analysed = [r for r in rows if r["id"] in schemas]
        for row, (status, value) in zip(analysed, outcomes):
            if status != "ok":
                message = str(value) if isinstance(value, targets.TargetError) else "analysis failed"
                per_db.append({"id": row["id"], "name": row["name"], "status": "failed", "error": message})
                continue
            report, recs, opts = value
            per_db.append(report)
            recommendations += recs
            optimization += opts
        per_db += [
            {"id": f["id"], "name": f["name"], "status": f["status"], "error": f["error"]} for f in failed.values()
        ]
        if mode == "natural" and re.search(r'(^|\s)[+\-~<>]\w|"|\w\*', text):
            recommendations.append("The query contains boolean operators; use searchMode 'boolean' to apply them.")
            optimization.append(
                {
                    "type": "query",
                    "impact": "medium",
                    "sqlSuggestion": "",
                    "description": "Natural-language mode ignores +, -, quotes and *.",
                }
            )
        for item in optimization:
            item.setdefault("source", "rules")
        ai_meta: dict[str, Any] = {"aiUsed": False}
        if self.ai is not None and self.ai.enabled and per_db:
            summary = {
                "query": text,
                "mode": mode,
                "findings": recommendations,
                "plans": [
                    {"table": t["table"], "strategy": t["strategy"], "explain": t["explain"]}
                    for d in per_db
                    for t in d.get("tables", [])
                ][:10],
            }
            try:
                optimization += self.ai.optimisation(summary, user_id, tier, AI_ANALYZE_BUDGET)
                ai_meta["aiUsed"] = True
            except AIUnavailable as exc:
                ai_meta["aiReason"] = exc.reason
        else:
            ai_meta["aiReason"] = "not_configured"
        return {
            **ai_meta,
            "query": text,
            "searchMode": mode,
            "mysqlQuery": compiled.text,
            "recommendations": list(dict.fromkeys(recommendations)),
            "performance": {"databases": per_db},
            "optimization": list({o["description"]: o for o in optimization}.values()),
        }

    def _analyze_database(self, row: dict[str, Any], schema, compiled) -> tuple[dict, list[str], list[dict]]:
        spec = self.connections.spec(row)
        queries = planner.plan(schema, [], [])
        recs: list[str] = []
        opts: list[dict] = []
        tables = []
        try:
            with self.search.pools.connection(spec, row["schema_version"]) as conn, conn.cursor() as cur:
                cur.execute("SELECT @@innodb_ft_min_token_size AS min_token, @@innodb_ft_max_token_size AS max_token")
                limits = cur.fetchone()
                cur.execute("SELECT value FROM information_schema.INNODB_FT_DEFAULT_STOPWORD")
                stopwords = {r["value"] for r in cur.fetchall()}
                for q in queries:
                    statement = planner.build_select(
                        q, compiled.mode, compiled.text, compiled.terms, compiled.excluded, 20
                    )
                    cur.execute("EXPLAIN " + statement.sql, statement.params)
                    plan_rows = [{k: json_value(v) for k, v in r.items()} for r in cur.fetchall()]
                    uses_fulltext = any((r.get("type") or "") == "fulltext" for r in plan_rows)
                    tables.append(
                        {
                            "table": q.table,
                            "strategy": q.strategy,
                            "usesFulltextIndex": uses_fulltext,
                            "sql": statement.sql.replace("%%", "%"),  # as a person would type it
                            "explain": plan_rows,
                        }
                    )
        except pymysql.MySQLError as exc:
            raise targets.TargetError(targets.describe_error(exc, spec)) from None
        indexed = {q.table for q in queries}
        for table in schema.tables.values():
            if table.name not in indexed and table.text_columns:
                recs.append(
                    f"{row['name']}: table {table.name!r} has text columns but no FULLTEXT index,"
                    " so search skips it unless named (then it falls back to LIKE)."
                )
                opts.append(
                    {
                        "type": "index",
                        "impact": "high",
                        "description": f"Add a FULLTEXT index to {table.name} to make it searchable",
                        "sqlSuggestion": planner.fulltext_ddl(table.name, table.text_columns[:3]),
                    }
                )
        min_token = int(limits["min_token"] or 3)
        for term in compiled.terms:
            bare = term.rstrip("*")
            for word in bare.split():
                if len(word) < min_token:
                    recs.append(f"'{word}' is shorter than innodb_ft_min_token_size ({min_token}) and is ignored.")
                    opts.append(
                        {
                            "type": "query",
                            "impact": "high",
                            "sqlSuggestion": "",
                            "description": f"Drop or lengthen '{word}': the FULLTEXT index does not hold it.",
                        }
                    )
                elif word.lower() in stopwords:
                    recs.append(f"'{word}' is an InnoDB stopword and is ignored.")
                    opts.append(
                        {
                            "type": "query",
                            "impact": "medium",
                            "sqlSuggestion": "",
                            "description": f"'{word}' is a stopword; it does not narrow or rank results.",
                        }
                    )
        if not queries:
            recs.append(f"{row['name']}: no table has a FULLTEXT index; nothing is searchable by default.")
        report = {
            "id": row["id"],
            "name": row["name"],
            "status": "ok",
            "tables": tables,
            "ftMinTokenSize": min_token,
            "ftMaxTokenSize": int(limits["max_token"] or 84),
        }
        return report, recs, opts
