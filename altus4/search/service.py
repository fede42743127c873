"""Federated search: plan per database, run in parallel within a time budget, merge, page, cache.

Pagination is exact: every table returns its top `offset + limit` rows in a
deterministic order, scores are normalised per table (see `results.normalise`),
and the page is cut from the merged list, so page 2 continues page 1.
"""

from __future__ import annotations

import _thread
import functools
import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql

from altus4.ai.ann import NodeIndexes
from altus4.ai.provider import AIUnavailable
from altus4.ai.service import AIService
from altus4.config import Settings
from altus4.db import targets
from altus4.db.schema import DatabaseSchema
from altus4.db.target_pools import TargetPools
from altus4.errors import ApiError, ServiceUnavailable, UpstreamFailed, ValidationFailed
from altus4.metrics import Metrics
from altus4.redis_store import RedisStore
from altus4.search import bm25, ordering, page_cache, structured
from altus4.search import facets as faceting
from altus4.search import filters as f
from altus4.search import plan as planner
from altus4.search.boolean import QuerySyntaxError, natural_terms, parse_boolean
from altus4.search.frequencies import fit_shares, share_of_matches
from altus4.search.results import Hit, normalise, render, row_key, term_pattern
from altus4.search.semantic import fuse, fuse_convex, row_text
from altus4.services.connections import ConnectionService

AI_CATEGORIES_BUDGET = 2.0
EXPANSION_BUDGET = 1.0
MAX_WINDOW = 1000  # offset + limit: deeper pages cost every table that many rows
MAX_PARALLEL = 16  # statements one search runs at once (`run_parallel`)
AI_REASONS = {
    "not_configured": "AI is off on this server (no OPENAI_API_KEY); natural-language results returned",
    "rate_limited": "the AI budget is used up for now; natural-language results returned",
    "circuit_open": "the AI provider failed repeatedly and is paused; natural-language results returned",
    "timeout": "the AI provider did not answer within the search budget; natural-language results returned",
    "budget_exhausted": "no time was left in the search budget for AI; natural-language results returned",
    "upstream_error": "the AI provider returned an error; natural-language results returned",
    "invalid_response": "the AI provider's answer was unusable; natural-language results returned",
}


@dataclass(frozen=True)
class SearchParams:
    query: str
    mode: str = "natural"
    databases: tuple[str, ...] | None = None
    tables: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None
    limit: int = 20
    offset: int = 0
    ranking: str = "bm25"  # or "mysql": MySQL's own order
    filter: str | None = None  # `altus4.search.filters`
    facets: tuple[str, ...] | None = None
    max_values_per_facet: int = 10
    sort: tuple[str, ...] | None = None  # "column:asc|desc", `altus4.search.ordering`
    scope: structured.Scope | None = None  # a tenant token's rules

    def structure(self) -> structured.Structure:
        """The filter, sort, facets and browse, parsed (once per distinct request: cached).
        :raise ValidationFailed: a malformed one; sort in semantic mode."""
        if self.sort and self.mode == "semantic":
            raise ValidationFailed(
                "sort orders the matches by columns; semantic mode ranks by meaning: use natural or boolean mode",
                code="INVALID_SORT",
                details=[{"field": "sort", "code": "semantic", "message": "not with searchMode semantic"}],
            )
        return structured.structure(self.filter, self.sort, self.facets, self.query, self.scope)


log = logging.getLogger("altus4.search")


@dataclass(frozen=True)
class CompiledQuery:
    mode: str  # the MySQL mode that runs: natural or boolean
    text: str  # the AGAINST parameter
    terms: tuple[str, ...]  # positive terms, for highlighting and LIKE
    excluded: tuple[str, ...]


BROWSE = CompiledQuery("browse", "", (), ())  # an empty query with a filter or sort: every row, no MATCH


@functools.lru_cache(maxsize=4096)  # asked twice per search (its Redis keys first), and popular queries repeat
def compile_query(query: str, mode: str) -> CompiledQuery:
    """:raise QuerySyntaxError: a malformed boolean query, pointing at the problem.
    :raise ValidationFailed: a natural-language query without a searchable word."""
    if not query.strip():
        return BROWSE
    if mode == "boolean":
        parsed = parse_boolean(query)
        return CompiledQuery("boolean", parsed.mysql, parsed.positive_terms, parsed.negative_terms)
    terms = natural_terms(query)
    if not terms:
        raise ValidationFailed(
            "The query has no searchable words",
            code="INVALID_QUERY",
            details=[{"field": "query", "code": "no_searchable_words", "message": "no searchable words"}],
        )
    return CompiledQuery("natural", query, terms, ())


def run_parallel(tasks: list, timeout: float) -> list[tuple[str, Any]]:
    """Run callables concurrently, at most MAX_PARALLEL at a time (greenlets under gunicorn's gevent worker,
    threads elsewhere).

    Returns ("ok", value), ("error", exception) or ("timeout", None) per task, in order. A task still waiting
    for its turn at the timeout never starts; one still running is left to finish on its own (daemon).
    One thread per task rather than an executor per call: under gevent that is one greenlet each, and the
    executor's queue, futures and shutdown cost ~0.2 ms a search (measured, one task).
    """
    if not tasks:
        return []
    outcomes: list[tuple[str, Any]] = [("timeout", None)] * len(tasks)
    lock, finished, turns = threading.Lock(), threading.Event(), threading.BoundedSemaphore(MAX_PARALLEL)
    state = {"left": len(tasks), "open": True}

    def run(i: int, task) -> None:
        outcome: tuple[str, Any]
        with turns:
            if not state["open"]:  # timed out before its turn
                return
            try:
                outcome = ("ok", task())
            except BaseException as exc:  # noqa: BLE001 - reported to the caller, as a future would
                outcome = ("error", exc)
        with lock:
            outcomes[i] = outcome
            state["left"] -= 1
            if not state["left"]:
                finished.set()

    for i, task in enumerate(tasks):
        _thread.start_new_thread(run, (i, task))  # not threading.Thread: its start() waits for the thread to run
    finished.wait(timeout)
    with lock:  # what finishes later changes nothing the caller holds
        state["open"] = False
        return list(outcomes)


Job = tuple[dict[str, Any], planner.TableQuery, structured.TablePlan]  # a table of a connection, and its plan


@dataclass
class TableAnswer:
    """One table's matches in MySQL's order, with BM25 scores for the top of them when asked and possible."""

    rows: list[dict[str, Any]]
    total: int
    bm25: list[float] | None = None  # None: not re-scored (MySQL ranking, LIKE, or `note` says why)
    note: str | None = None
    skipped: int = 0  # rows the statement left out before the page (`planner.build_select`'s `skip`)


@dataclass
class Merged:
    """What the tables answered, merged: hits in rank order, match counts per table, status per database."""

    order: dict[str, int]  # connection id -> its position in the request (a tie-break in the merge)
    hits: list[Hit] = field(default_factory=list)
    per_table: dict[tuple[str, str], int] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    ranking: str = "mysql"
    notes: set[str] = field(default_factory=set)
    skipped: int = 0  # hits left out before the page: the page starts at offset - skipped


class SearchService:
    def __init__(
        self,
        connections: ConnectionService,
        pools: TargetPools,
        store: RedisStore,
        settings: Settings,
        metrics: Metrics | None = None,
        ai: AIService | None = None,
        vectors: NodeIndexes | None = None,
    ):
        self.connections = connections
        self.pools = pools
        self.store = store
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.ai = ai
        self.vectors = vectors
        self.bm25 = bm25.StatsStore(
            store, settings.bm25_stats_ttl, settings.bm25_df_cap, settings.bm25_df_wait_ms / 1000
        )

    # ---- public -------------------------------------------------------------------
    def search(
        self,
        user_id: str,
        params: SearchParams,
        tier: str = "free",
        decoded: bool = True,
        prefetched: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The page of results; a cache hit's `results` stay encoded (an `orjson.Fragment`) unless `decoded`.
        `prefetched`: Redis values already read for this request (see `first_reads`)."""
        started = time.perf_counter()
        compiled = self._compile(params)
        structure = params.structure()
        ttl = self.settings.search_cache_ttl
        key = self._cache_key(user_id, compiled, params) if ttl else None
        rows, cached = self.connections.active_and_get(
            user_id, list(params.databases) if params.databases else None, key, prefetched
        )
        if structure.scope is not None:  # a tenant token: only the databases its rules reach
            reachable = structure.scope.databases([r["id"] for r in rows], list(params.databases or []) or None)
            rows = [r for r in rows if r["id"] in reachable]
        if not rows:
            raise ValidationFailed(
                "No active database connections to search; add one with POST /api/v1/databases", code="NO_DATABASES"
            )
        # an entry answers only for the connection versions it was computed from: any change is a miss
        versions = sorted([r["id"], r["schema_version"]] for r in rows)
        hit = page_cache.unpack(cached, versions, decoded) if cached else None
        if ttl:
            self.store.count_cache("search", hit is not None)
        if hit is not None:
            data = hit
            data["cached"] = True
        else:
            data = self._execute(rows, compiled, params, user_id, tier, started)
            complete = all(d["status"] == "ok" for d in data["databases"]) and not data.pop("_partial", False)
            if key is not None and complete and (params.mode != "semantic" or data["aiUsed"]):
                payload = page_cache.pack(versions, data)
                self.store.safe(lambda r: r.set(key, payload, ex=ttl), None)
            data["cached"] = False
        data["searchMode"] = params.mode
        elapsed = time.perf_counter() - started
        data["executionTime"] = round(elapsed * 1000, 2)
        self.metrics.search_duration.labels(params.mode, str(len(rows))).observe(elapsed)
        if params.mode == "semantic" and not data["aiUsed"] and "aiReasonCode" in data:  # browse: nothing to embed
            self.metrics.ai_fallbacks.labels(data["aiReasonCode"]).inc()
        return data

    def ai_categories(self, data: dict[str, Any], user_id: str, tier: str) -> list[dict[str, Any]]:
        """Topic categories for the page from the AI when it answers in time (each result then lists the topics
        it belongs to); the table counts otherwise."""
        if self.ai is None or not self.ai.enabled or not data["results"]:
            return data["categories"]
        try:
            topics = self.ai.categorise(data["results"], user_id, tier, AI_CATEGORIES_BUDGET)
        except AIUnavailable:
            return data["categories"]
        for result in data["results"]:
            result["categories"] = []
        for topic in topics:
            for i in topic.pop("members"):
                data["results"][i]["categories"].append(topic["name"])
        return topics

    def schemas(self, rows: list[dict[str, Any]]) -> tuple[dict[str, DatabaseSchema], dict[str, dict]]:
        """Schemas of the connections: the ones this process holds at once, the others (Redis, or discovery)
        fetched in parallel; failures per database."""
        found, failed = {}, {}
        missing = []
        for row in rows:
            schema = self.connections.schemas.peek(row["id"], row["schema_version"])
            if schema is None:
                missing.append(row)
            else:
                found[row["id"]] = schema
        outcomes = run_parallel(
            [lambda r=r: self.connections.schema_for(r) for r in missing], self.settings.search_timeout_ms / 1000
        )
        for row, (status, value) in zip(missing, outcomes, strict=False):
            if status == "ok":
                found[row["id"]] = value
            else:
                failed[row["id"]] = self._failure(row, status, value)
        return found, failed

    def first_reads(self, user_id: str, params: SearchParams) -> list[str]:
        """The Redis keys a search reads first (the user's connection list, the cached page), so that they
        can come in the API key's own round trip; none for a request the search will refuse."""
        try:
            compiled = self._compile(params)
        except (ApiError, QuerySyntaxError):
            return []
        ttl = self.settings.search_cache_ttl
        return [self.connections.list_key(user_id)] + ([self._cache_key(user_id, compiled, params)] if ttl else [])

    # ---- internals ------------------------------------------------------------------
    @staticmethod
    def _compile(params: SearchParams) -> CompiledQuery:
        """:raise ValidationFailed: a page beyond the window, or a query that cannot run (`compile_query`)."""
        if params.offset + params.limit > MAX_WINDOW:
            raise ValidationFailed(
                f"offset + limit may be at most {MAX_WINDOW}",
                details=[{"field": "offset", "code": "window_exceeded", "message": f"offset + limit > {MAX_WINDOW}"}],
            )
        return compile_query(params.query, "natural" if params.mode == "semantic" else params.mode)

    def _cache_key(self, user_id: str, compiled: CompiledQuery, params: SearchParams) -> str:
        """One key per user and request; the connection versions are checked against the entry itself, so the
        key is known before the connection list is read and both come back in one Redis round trip."""
        return _page_key(self.store.prefix, user_id, compiled, params)

    @staticmethod
    def _failure(row: dict[str, Any], status: str, error: BaseException | None) -> dict[str, Any]:
        if status == "timeout":
            message = "timed out"
        elif isinstance(error, targets.TargetError):
            message = str(error)
        elif isinstance(error, ApiError):
            message = error.message
        else:  # a fault of ours: the other databases still answer, and the operator sees the traceback
            message = "query failed"
            log.error("searching database %s failed", row["id"], exc_info=error)
        return {
            "id": row["id"],
            "name": row["name"],
            "status": "timeout" if status == "timeout" else "failed",
            "error": message,
            "resultCount": 0,
        }

    def _execute(
        self,
        rows: list[dict[str, Any]],
        compiled: CompiledQuery,
        params: SearchParams,
        user_id: str,
        tier: str,
        started: float,
    ) -> dict[str, Any]:
        """Plan every table, run them (and the facets' counts) in parallel, merge, re-rank in semantic mode, and
        shape the page."""
        schemas, failed = self.schemas(rows)
        planner.check_names(schemas, list(params.tables or []), list(params.columns or []))
        structure = params.structure()
        planned = structured.plan_tables(
            rows, schemas, structure, list(params.tables or []) or None, list(params.columns or []) or None
        )
        jobs = planned.jobs
        semantic = params.mode == "semantic" and not structure.browse
        expansion = self._expand(params.query, user_id, tier, started) if semantic else []
        if expansion:  # natural mode ORs its words, so the expanded text finds the union of candidates
            compiled = compile_query(f"{params.query} {' '.join(expansion)}", "natural")
        # relevance orders the page unless a sort does, or there is no query (browse)
        ranking = "sort" if structure.sort or structure.browse else params.ranking
        window = params.offset + params.limit
        # semantic mode re-ranks a generous lexical candidate set, every one re-scored by BM25 (the fusion weighs
        # their scores); otherwise BM25 re-scores a fixed window of each table's top matches (the same for every
        # page, so pages concatenate); MySQL's order needs only the page
        fetch = max(window, self.settings.semantic_candidates) if semantic else window
        if ranking == "bm25":
            fetch = max(fetch, self.settings.bm25_window)
        rescore = fetch if semantic else self.settings.bm25_window
        skip = self._skip(len(jobs), params) if ranking != "sort" else None
        counting = self._facet_tasks(jobs, compiled, params.max_values_per_facet)
        outcomes = run_parallel(
            [lambda j=j: self._run_table(j, compiled, fetch, ranking, skip, rescore) for j in jobs]
            + [t for _, t in counting],
            self.settings.search_timeout_ms / 1000,
        )
        merged = self._merge(rows, jobs, outcomes[: len(jobs)], failed, compiled, ranking, structure.sort)
        tally = self._tally(counting, outcomes[len(jobs) :], params.max_values_per_facet, merged)
        ai_used, reason = False, None
        if semantic:
            try:
                merged.hits = self._rerank(merged.hits, jobs, merged.order, params.query, user_id, tier, started)
                ai_used = True
            except AIUnavailable as exc:
                reason = exc.reason
        page = self._page(merged, jobs, compiled, params, rows)
        page["warnings"] = sorted(set(page["warnings"]) | set(planned.warnings))
        if structure.facets:
            labels = [facet.label for facet in structure.facets]
            page["facetDistribution"], page["facetStats"] = tally.distribution(labels), tally.stats()
        if tally.missing:
            page["_partial"] = True  # not cached: the next search may count them
        return {
            **page,
            "modeUsed": "semantic" if ai_used else compiled.mode,
            "rankingUsed": merged.ranking,
            **({"expandedTerms": expansion} if expansion else {}),
            "aiUsed": ai_used,
            **({} if reason is None else {"aiReasonCode": reason, "aiReason": AI_REASONS.get(reason, reason)}),
        }

    def _facet_tasks(self, jobs: list[Job], compiled: CompiledQuery, max_values: int) -> list[tuple[str, Any]]:
        """(facet label, the counting statement's task) for every facet of every table that has it."""
        tasks: list[tuple[str, Any]] = []
        single = len({(row["id"], q.table) for row, q, plan in jobs if plan.facets}) == 1
        for row, q, plan in jobs:
            if not plan.facets or plan.where.never:
                continue
            _, condition, _, condition_params = planner.predicate(
                q, compiled.mode, compiled.text, compiled.terms, compiled.excluded, plan.where
            )
            for facet, column, data_type in plan.facets:
                limit = max_values if single else faceting.GROUP_CAP
                bounds = data_type in faceting.WITH_STATS
                counts = faceting.counting(q.table, column, condition, condition_params, limit, bounds)
                tasks.append((facet.label, functools.partial(self._statement, row, counts.sql, counts.params)))
        return tasks

    def _tally(self, counting, outcomes, max_values: int, merged: Merged) -> faceting.Tally:
        """The facets' counts as answered; a facet some table could not count in time is left out, and said."""
        tally = faceting.Tally(max_values)
        for (label, _), (status, value) in zip(counting, outcomes, strict=True):
            if status != "ok":
                tally.missing.add(label)
                why = "within the search's time budget" if status == "timeout" else f"({_reason(value)})"
                merged.notes.add(f"FACET_UNAVAILABLE: facet {label!r} could not be counted {why}")
            else:
                tally.add_counts(label, value)
        for label in tally.capped - tally.missing:
            merged.notes.add(
                f"FACET_CAPPED: facet {label!r} has more than {faceting.GROUP_CAP} values in a table; its counts come"
                " from each table's most frequent ones"
            )
        return tally

    def _statement(self, row: dict[str, Any], sql: str, params: tuple) -> list[dict[str, Any]]:
        spec = self.connections.spec(row)
        try:
            with self.pools.connection(spec, row["schema_version"]) as conn, conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        except pymysql.MySQLError as exc:
            raise targets.TargetError(targets.describe_error(exc, spec)) from None

    def _skip(self, tables: int, params: SearchParams) -> tuple[int, int] | None:
        """What a page at or past the rows BM25 re-scores (MySQL's order: the first, whose score scales the
        others) does not need of the rows before it (`planner.build_select`'s `skip`): with one table, any
        of them but those scores. With several, any row up to the window's end may land on the page;
        semantic mode re-ranks every candidate."""
        if tables != 1 or params.mode == "semantic":
            return None
        after = self.settings.bm25_window if params.ranking == "bm25" else 1
        return (after, params.offset) if params.offset >= after else None

    def _merge(
        self,
        rows: list[dict[str, Any]],
        jobs: list[Job],
        outcomes: list[tuple[str, Any]],
        failed: dict[str, dict[str, Any]],
        compiled: CompiledQuery,
        ranking: str = "mysql",
        sort: tuple[ordering.SortKey, ...] = (),
    ) -> Merged:
        """Every table's rows as scored hits in one order, plus each database's status.

        BM25 ranking: every table's re-scored window first, by BM25 score across tables and databases (the
        scores share a scale), then the rows beyond the windows in MySQL's normalised order. When a table
        cannot be re-scored (LIKE, a parser not mirrored), the whole request keeps MySQL's order and says why.
        A sort (or browse): each table's rows in MySQL's order, merged by their sort values (`ordering.merge`).

        :raise UpstreamFailed: (ServiceUnavailable if all timed out) no database could be searched.
        """
        merged = Merged(order={row["id"]: i for i, row in enumerate(rows)})
        like_predicates = len(compiled.terms[: planner.MAX_LIKE_TERMS])
        answered: list[tuple[dict[str, Any], planner.TableQuery, structured.TablePlan, TableAnswer]] = []
        for (row, q, plan), (status, value) in zip(jobs, outcomes, strict=False):
            if status != "ok":
                failed.setdefault(row["id"], self._failure(row, status, value))
                continue
            answered.append((row, q, plan, value))
            merged.per_table[(row["id"], q.table)] = value.total
            merged.skipped += value.skipped
            if value.note:
                merged.notes.add(value.note)
            elif ranking == "bm25" and q.strategy == "like":
                merged.notes.add(f"{q.table!r} is searched with LIKE, which has no BM25 statistics")
        use_bm25 = ranking == "bm25" and all(a.bm25 is not None for *_, a in answered)
        if ranking == "bm25" and not use_bm25:
            merged.notes = {f"MySQL's order is used: {n}" for n in merged.notes}
        merged.ranking = "bm25" if use_bm25 else "sort" if ranking == "sort" else "mysql"
        lists: list[list[Hit]] = []
        for row, q, _, answer in answered:
            scores = normalise(answer.rows, q, like_predicates * len(q.like_columns), best=ranking == "sort")
            rescored = (answer.bm25 or []) if use_bm25 else []
            lists.append(
                [
                    Hit(
                        row["id"],
                        merged.order[row["id"]],
                        q.table,
                        position,
                        float(r[planner.SCORE] or 0),
                        rescored[position] if position < len(rescored) else score,
                        r,
                        q,
                        segment=0 if position < len(rescored) or not use_bm25 else 1,
                    )
                    for position, (r, score) in enumerate(zip(answer.rows, scores, strict=False))
                ]
            )
        self._statuses(merged, rows, failed)
        if ranking == "sort":
            merged.hits = _sorted(lists, [plan for *_, plan, _ in answered], sort)
        else:
            merged.hits = sorted((h for hits in lists for h in hits), key=Hit.sort_key)
        if use_bm25:
            _scale_bm25(merged.hits)
        return merged

    def _statuses(self, merged: Merged, rows: list[dict[str, Any]], failed: dict[str, dict[str, Any]]) -> None:
        """Each database's status, in the request's order. :raise UpstreamFailed: (ServiceUnavailable if all
        timed out) no database could be searched."""
        for row in rows:
            if row["id"] in failed:
                merged.statuses.append(failed[row["id"]])
            else:
                count = sum(n for (db, _), n in merged.per_table.items() if db == row["id"])
                merged.statuses.append(
                    {"id": row["id"], "name": row["name"], "status": "ok", "error": None, "resultCount": count}
                )
        if failed and len(failed) == len(rows):
            all_timeouts = all(f["status"] == "timeout" for f in failed.values())
            error = ServiceUnavailable if all_timeouts else UpstreamFailed
            raise error(
                "None of the requested databases could be searched",
                code="ALL_DATABASES_FAILED",
                details={"databases": merged.statuses},
            )

    def _page(
        self,
        merged: Merged,
        jobs: list[Job],
        compiled: CompiledQuery,
        params: SearchParams,
        rows: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The requested page of the merged hits, rendered, with counts, categories and index hints."""
        terms = term_pattern(compiled.terms)
        names = {row["id"]: row["name"] for row in rows}
        start = params.offset - merged.skipped
        total = sum(merged.per_table.values())
        categories: dict[str, int] = {}
        for (_, table), n in merged.per_table.items():
            categories[table] = categories.get(table, 0) + n
        return {
            "results": [render(h, terms, names[h.database]) for h in merged.hits[start : start + params.limit]],
            "totalCount": total,
            "totalCountExact": True,
            "page": params.offset // params.limit + 1,
            "limit": params.limit,
            "offset": params.offset,
            "databases": merged.statuses,
            "categories": [
                {"name": t, "count": n, "confidence": round(n / total, 4) if total else 0.0}
                for t, n in sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))
                if n
            ],
            "suggestions": [],
            "queryOptimization": [
                {
                    "type": "index",
                    "description": note,
                    "impact": "high",
                    "sqlSuggestion": planner.fulltext_ddl(q.table, q.like_columns),
                }
                for _, q, _ in jobs
                if q.strategy == "like"
                for note in q.notes
            ],
            "warnings": sorted({note for _, q, _ in jobs for note in q.notes} | merged.notes),
        }

    def _expand(self, query: str, user_id: str, tier: str, started: float) -> list[str]:
        """AI query expansion when enabled (SEMANTIC_QUERY_EXPANSION); [] when off, unavailable or late."""
        if self.ai is None or not self.ai.enabled or not self.settings.semantic_query_expansion:
            return []
        budget = min(EXPANSION_BUDGET, self.settings.search_timeout_ms / 1000 - (time.perf_counter() - started))
        try:
            return self.ai.expand(query, user_id, tier, budget)
        except AIUnavailable:
            return []

    def _rerank(
        self, hits: list[Hit], jobs: list, order: dict[str, int], query: str, user_id: str, tier: str, started: float
    ) -> list[Hit]:
        """Lexical candidates plus the nearest indexed rows, fused by rank; :raise AIUnavailable: no AI, or
        not within what is left of the search budget."""
        if self.ai is None:
            raise AIUnavailable("not_configured")

        def left() -> float:
            return self.settings.search_timeout_ms / 1000 - (time.perf_counter() - started)

        # one model call for the query and the lexical candidates (cached or stored ones cost none)
        texts = [row_text(h.row, h.query.searched_columns) for h in hits]
        query_vector, *vectors = self.ai.embed([query] + texts, user_id, tier, left())
        extra = self._vector_candidates(jobs, order, hits, query_vector)
        if extra:  # indexed rows: their vectors are stored, so this asks the model for nothing new
            vectors += self.ai.embed([row_text(h.row, h.query.searched_columns) for h in extra], user_id, tier, left())
        if not hits and not extra:
            return hits
        s = self.settings
        if s.semantic_fusion == "convex":
            return fuse_convex(hits + extra, len(hits), query_vector, vectors, s.semantic_alpha)
        return fuse(
            hits + extra,
            len(hits),
            query_vector,
            vectors,
            s.semantic_rrf_k,
            s.semantic_lexical_weight,
            s.semantic_vector_weight,
        )

    def _vector_candidates(
        self, jobs: list, order: dict[str, int], hits: list[Hit], query_vector: list[float]
    ) -> list[Hit]:
        """Rows of tables indexed by `altus4 index` that are closest to the query and FULLTEXT did not find."""
        if self.vectors is None:
            return []
        found = {(h.database, h.table, row_key(h.row, h.query.key)) for h in hits}
        model = self.settings.openai_embedding_model
        extra: list[Hit] = []
        for row, q, plan in jobs:
            keys = self.vectors.nearest(row["id"], q.table, model, query_vector, self.settings.semantic_candidates)
            # the filter holds for these too: no mode returns a row it excludes
            fetch = planner.build_fetch(q, [k for k in keys if (row["id"], q.table, k) not in found], plan.where)
            if fetch is None:
                continue
            try:
                with (
                    self.pools.connection(self.connections.spec(row), row["schema_version"]) as conn,
                    conn.cursor() as cur,
                ):
                    cur.execute(fetch.sql, fetch.params)
                    fetched = list(cur.fetchall())
            except (targets.TargetError, pymysql.MySQLError):
                continue  # the lexical candidates still stand
            extra += [
                Hit(row["id"], order[row["id"]], q.table, len(hits) + len(extra) + i, 0.0, 0.0, r, q)
                for i, r in enumerate(fetched)
            ]
        return extra

    def _run_table(
        self,
        job: Job,
        compiled: CompiledQuery,
        window: int,
        ranking: str,
        skip: tuple[int, int] | None,
        rescore: int,
    ) -> TableAnswer:
        """One table's matches (`window` of them, in MySQL's order or the sort's), the first `rescore` of them
        re-scored with BM25 when that ranks."""
        row, q, plan = job
        if plan.where.never:  # the filter holds for none of its rows (`products.price < 9` for articles)
            return TableAnswer([], 0)
        spec = self.connections.spec(row)
        select = planner.build_select(
            q, compiled.mode, compiled.text, compiled.terms, compiled.excluded, window, skip, plan.where, plan.order
        )
        try:
            with self.pools.connection(spec, row["schema_version"]) as conn, conn.cursor() as cur:
                cur.execute(select.sql, select.params)
                found = list(cur.fetchall())
                answer = TableAnswer(found, int(found[0][planner.TOTAL]) if found else 0)
                if skip is not None:  # every rank in (after, offset] that exists
                    answer.skipped = max(0, min(answer.total, skip[1]) - skip[0])
                if ranking == "bm25" and q.strategy == "fulltext":
                    try:
                        answer.bm25 = self._bm25(cur, row, q, compiled, found[:rescore])
                    except bm25.Unmirrored as exc:
                        answer.note = str(exc)
                return answer
        except pymysql.MySQLError as exc:
            raise targets.TargetError(targets.describe_error(exc, spec)) from None

    def _bm25(
        self, cur, row: dict[str, Any], q: planner.TableQuery, compiled: CompiledQuery, rows: list[dict[str, Any]]
    ) -> list[float]:
        """Each row's BM25 score, summed over the FULLTEXT groups the table is searched by (as MySQL sums its
        MATCHes); statistics come from `self.bm25`. A term seen for the first time is worked out from the scores
        MySQL gave these rows (`frequencies`); where they cannot tell, it is counted in the background on a
        connection of its own, and the search waits at most BM25_DF_WAIT_MS for that count before estimating."""
        scores = [0.0] * len(rows)
        if not rows:
            return scores
        groups = []
        for group in q.match_groups:
            key = self.bm25.key(row["id"], row["schema_version"], q.table, group)
            tokenizer, stats = self.bm25.lookup(cur, key, q.table, group, compiled.terms)
            groups.append((group, tokenizer, stats, key))
        if any(stats.estimated for _, _, stats, _ in groups):
            self._new_terms(row, q, compiled, rows, groups)
        k1, b = self.settings.bm25_k1, self.settings.bm25_b
        for group, tokenizer, stats, _ in groups:
            terms = list(stats.df)
            if not terms:
                continue
            for i, r in enumerate(rows):
                length, frequencies = tokenizer.profile(bm25.document(r, group), terms)
                scores[i] += bm25.score(length, frequencies, terms, stats, k1, b)
        return scores

    def _new_terms(
        self, row: dict[str, Any], q: planner.TableQuery, compiled: CompiledQuery, rows: list[dict], groups: list
    ) -> None:
        """The frequencies of the terms no search has seen (`GroupStats.estimated`): worked out from MySQL's
        scores and remembered, or counted in the background (waited for briefly) and estimated meanwhile. One
        term worked out is counted too until one such count pins InnoDB's row count (`bm25.StatsStore`)."""
        spec = self.connections.spec(row)

        def count(terms: list[str], group: tuple[str, ...]) -> dict[str, int]:
            conn = targets.connect(spec, self.settings, read_timeout=60)  # its own, closed after: pools stay as sized
            try:
                with conn.cursor() as other:
                    return self.bm25.count(other, q.table, group, terms)
            finally:
                conn.close()

        # MySQL's scores are plain sums of tf x idf^2 unless boolean operators weigh terms, phrases or groups
        plain = compiled.mode == "natural" or not re.search(r'[<>~"*()]', compiled.text)
        mysql_scores = [float(r[planner.SCORE] or 0) for r in rows]
        fitted = fit_shares([g[:3] for g in groups], rows, mysql_scores) if plain else {}
        matches = int(rows[0][planner.TOTAL] or 0) or len(rows)
        for g, (group, tokenizer, stats, key) in enumerate(groups):
            shares = {t: p for (h, t), p in fitted.items() if h == g and t in stats.estimated}
            if shares:
                self.bm25.remember_shares(key, shares)
                for t, p in shares.items():
                    stats.df[t] = min(stats.rows, max(1, round(p * stats.innodb_rows)))
            left = [t for t in stats.estimated if t not in shares]
            if shares and not stats.calibrated:
                left.append(min(shares, key=shares.__getitem__))  # the rarest: the cheapest to count
            if not left:
                continue
            wait = 0.0 if plain else self.bm25.df_wait
            counted = self.bm25.count_soon(key, left, functools.partial(count, group=group), wait)
            for t in stats.estimated:
                if t not in shares:
                    stats.df[t] = counted.get(t) or share_of_matches(rows, group, tokenizer, t, matches)


@functools.lru_cache(maxsize=4096)  # asked twice per search: for the API key's round trip, then by the search
def _page_key(prefix: str, user_id: str, compiled: CompiledQuery, params: SearchParams) -> str:
    """The search cache's key of a user's request (`SearchService._cache_key`): the filter normalised, and a
    tenant token's rules, in it, so two tokens with different rules never share a page."""
    parts: list[Any] = [
        sorted(params.databases) if params.databases else None,
        params.mode,
        compiled.text,
        sorted(params.tables or []),
        sorted(params.columns or []),
        params.offset,
        params.limit,
        params.ranking,
    ]
    if params.filter or params.facets or params.sort or params.scope:
        node = structured.parse_filter(params.filter)
        scope = [[db, rule.filter, rule.tables] for db, rule in params.scope.rules] if params.scope else None
        parts.append([f.render(node) if node else None, params.facets, params.max_values_per_facet, params.sort, scope])
    material = json.dumps(parts)
    return f"{prefix}search:{user_id}:{hashlib.sha256(material.encode()).hexdigest()}"


def _scale_bm25(hits: list[Hit]) -> None:
    """relevanceScore in [0, 1] and never rising down the list: BM25 scores over the request's best one (the
    windows are the same on every page, so the scale is too); rows beyond the windows below the lowest."""
    windowed = [h.score for h in hits if h.segment == 0]
    top = max(windowed, default=0.0) or 1.0
    floor = min(windowed, default=top) / top
    for h in hits:
        h.score = h.score / top if h.segment == 0 else h.score * floor


def _reason(error: BaseException | None) -> str:
    if isinstance(error, targets.TargetError | ApiError):
        return str(error)
    return "failed"


def _sorted(lists: list[list[Hit]], plans: list[structured.TablePlan], sort: tuple[ordering.SortKey, ...]) -> list[Hit]:
    """The tables' hits, each list in MySQL's order, merged by sort values (`_score`: MySQL's raw score); ties
    by raw score, then where the row comes from (deterministic, and independent of the page, so pages
    concatenate)."""

    def key(hit: Hit, plan: structured.TablePlan) -> tuple:
        parts: list[Any] = []
        for column, descending, is_score in plan.order.columns if plan.order else ():
            if is_score:
                parts.append(-hit.raw_score)
            else:
                parts.extend(ordering.merge_key((hit.row.get(column) if column else None,), (descending,)))
        return (*parts, -hit.raw_score, hit.database_order, hit.table, hit.position)

    decorated = [
        [(key(hit, plan), i, hit) for i, hit in enumerate(hits)] for hits, plan in zip(lists, plans, strict=True)
    ]
    return [hit for _, _, hit in ordering.merge(decorated, lambda item: item[0])]
