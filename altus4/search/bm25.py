"""BM25 over MySQL FULLTEXT candidates: MySQL finds and orders the matches, the top of each table's list is
re-scored with BM25 (document-length normalised, tunable), as Lucene ranks.

Documents are tokenised the way InnoDB's built-in parser indexes them (runs of word characters, lower-cased,
`innodb_ft_min_token_size`..`innodb_ft_max_token_size` long, InnoDB's default stopwords unless the server
turns them off), so a term counts here exactly when MySQL matched it. A table with another parser (`ngram`,
`mecab`) or a server stopword table is not mirrored: its search keeps MySQL's order and says so.

Statistics per (connection, schema version, table, FULLTEXT column group) live in Redis with a TTL, shared
by every worker: the row count (the exact count up to `EXACT_COUNT_LIMIT` rows, the server's estimate
above), the average document length (from the first `SAMPLE_ROWS` rows) and each term's document frequency,
counted by MySQL itself with a capped boolean-mode query the first time a term is seen (so a very common term
on a huge table costs at most `df_cap` row reads, and is then taken as that common).

A search does not wait for a new term's count: on a million rows one took 2 s at the median, up to 5 s, and
a user's first search is their first impression. The count runs in the background (one per term across the
fleet, under a Redis lock) and serves every later search; meanwhile the search works the term's frequency
out from the scores MySQL gave its matches (`estimate_frequencies`: exact where InnoDB's own tf x idf^2
sum is what ranked them). Only where the scores cannot tell (boolean weights, phrases, prefixes) does it
wait for the count, at most BM25_DF_WAIT_MS, then estimate from the share of its matches holding the term.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from altus4.redis_store import RedisStore
from altus4.search.plan import ident, quote

# InnoDB's default stopword list (INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD, the same on MySQL 8 and
# MariaDB), built in because reading that table needs the PROCESS privilege a read-only user lacks
DEFAULT_STOPWORDS = frozenset(
    "a about an are as at be by com de en for from how i in is it la of on or that the this to was what when"
    " where who will with und www".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
SAMPLE_ROWS = 1000
EXACT_COUNT_LIMIT = 100_000
LOCAL_TTL = 30.0
COUNT_LOCK_SECONDS = 60  # one count of a term at a time across the fleet
log = logging.getLogger("altus4.search")
LENGTH_CACHE_SIZE = 50_000  # documents' token counts kept per process (about 30 MB at 500 characters each)
_LENGTHS: dict[tuple[int, int, bool, str], int] = {}


@dataclass(frozen=True)
class Tokenizer:
    min_len: int = 3
    max_len: int = 84
    stopwords: frozenset[str] = DEFAULT_STOPWORDS

    def tokens(self, text: str) -> list[str]:
        return [w for w in self._words(text) if w not in self.stopwords]

    def profile(self, text: str, terms: list[str]) -> tuple[int, list[int]]:
        """The document's length in tokens and each term's frequency in it: what BM25 needs. Scoring the window
        is most of BM25's cost per search, so the length is remembered per text (the same rows come back
        query after query) and each term is counted by substring search (`_whole_words`), not by tokenising."""
        text = text.lower()
        key = (self.min_len, self.max_len, bool(self.stopwords), text)
        length = _LENGTHS.get(key)
        if length is None:
            if len(_LENGTHS) >= LENGTH_CACHE_SIZE:
                _LENGTHS.clear()
            length = _LENGTHS[key] = len(self.tokens(text))
        prefixes = [t for t in terms if t.endswith("*")]
        found = _terms_pattern(tuple(prefixes)).findall(text) if prefixes else []
        return length, [self._frequency(text, found, term) for term in terms]

    def _frequency(self, text: str, found: list[str], term: str) -> int:
        """How often an index term occurs in the (lower-cased) text as a whole word; a `pre*` term counts the
        indexed words in `found` that start with the stem."""
        low, high = self.min_len, self.max_len
        if not term.endswith("*"):
            return _whole_words(text, term) if low <= len(term) <= high and term not in self.stopwords else 0
        stem = term[:-1]
        return sum(1 for w in found if w.startswith(stem) and low <= len(w) <= high and w not in self.stopwords)

    def _words(self, text: str) -> list[str]:
        """Lower-cased runs of word characters of an indexed length (stopwords included)."""
        return _length_pattern(self.min_len, self.max_len).findall(text.lower())


@functools.cache
def _length_pattern(low: int, high: int) -> re.Pattern:
    """Whole runs of word characters `low`..`high` long: `findall` then skips the others in C."""
    return re.compile(rf"(?<!\w)\w{{{low},{high}}}(?!\w)", re.UNICODE)


def _whole_words(text: str, word: str) -> int:
    """Occurrences of `word` in `text` not inside a longer run of word characters (as `\\b` would find them),
    by substring search: a regular expression with alternatives tries every position, and this is the
    inner loop of BM25."""
    count, size, start = 0, len(word), text.find(word)
    while start >= 0:
        end = start + size
        if (start == 0 or not _is_word(text[start - 1])) and (end == len(text) or not _is_word(text[end])):
            count += 1
        start = text.find(word, end)
    return count


def _is_word(char: str) -> bool:
    """What `\\w` matches (Unicode letters and digits, and the underscore)."""
    return char.isalnum() or char == "_"


@functools.lru_cache(maxsize=1024)
def _terms_pattern(terms: tuple[str, ...]) -> re.Pattern:
    """Whole words that are one of `terms` (a `pre*` term: any word starting with the stem)."""
    alternatives = [re.escape(t[:-1]) + r"\w*" if t.endswith("*") else re.escape(t) for t in terms]
    return re.compile(rf"(?<!\w)(?:{'|'.join(alternatives) or '(?!)'})(?!\w)", re.UNICODE)


def query_terms(terms: tuple[str, ...], tokenizer: Tokenizer) -> list[str]:
    """The distinct index terms of the query's positive terms (phrases give their words; `pre*` stays a prefix)."""
    out: list[str] = []
    for term in terms:
        if term.endswith("*"):
            stem = term[:-1].lower()
            if stem and _WORD.fullmatch(stem):
                out.append(stem + "*")
            continue
        out.extend(tokenizer.tokens(term))
    return list(dict.fromkeys(out))


@dataclass
class GroupStats:
    """What BM25 needs about one FULLTEXT column group of one table."""

    rows: int
    avgdl: float
    df: dict[str, int]
    estimated: tuple[str, ...] = ()  # terms with no frequency known yet: the caller works them out or estimates
    innodb_rows: int = 0  # the row count InnoDB's own idf divides by (`frequencies`)
    calibrated: bool = False  # innodb_rows is pinned by a term both counted and worked out, not the statistic


@dataclass
class _Count:
    """A background count of some terms' document frequencies, which searches wait for briefly."""

    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, int] = field(default_factory=dict)


def score(length: int, frequencies: list[int], terms: list[str], stats: GroupStats, k1: float, b: float) -> float:
    """Okapi BM25 with Lucene's IDF, ln(1 + (N - df + 0.5) / (df + 0.5)), of a document `length` tokens long in
    which `terms` occur `frequencies` times (`Tokenizer.profile`)."""
    length_norm = k1 * (1 - b + b * length / (stats.avgdl or 1.0))
    total = 0.0
    for term, tf in zip(terms, frequencies, strict=True):
        if not tf:
            continue
        df = min(stats.df.get(term, 0), stats.rows)
        idf = math.log(1 + (stats.rows - df + 0.5) / (df + 0.5))
        total += idf * tf * (k1 + 1) / (tf + length_norm)
    return total


class Unmirrored(Exception):
    """The table's FULLTEXT index is built by something this tokenizer does not reproduce."""


class StatsStore:
    """Per-group statistics: an in-process layer in front of Redis, filled from the target database."""

    def __init__(self, store: RedisStore, ttl: int, df_cap: int, df_wait: float = 0.05):
        self.df_wait = df_wait  # seconds a search waits for a new term's count before estimating it
        self.store = store
        self.ttl = ttl
        self.df_cap = df_cap
        self._local: dict[str, tuple[float, dict[str, Any]]] = {}
        self._counts: dict[tuple[str, tuple[str, ...]], _Count] = {}
        self._lock = threading.Lock()

    def key(self, connection_id: str, version: int, table: str, columns: tuple[str, ...]) -> str:
        return self.store.key(f"bm25:{connection_id}:{version}:{table}:{','.join(columns)}")

    def lookup(
        self, cur, key: str, table: str, columns: tuple[str, ...], query: tuple[str, ...]
    ) -> tuple[Tokenizer, GroupStats]:
        """How the server tokenised this group, and the statistics of the query's index terms (the keys of
        `GroupStats.df`, in query order), from one read of the entry: each term's counted frequency, or its
        share of rows worked out from MySQL's scores (`frequencies`) times InnoDB's row count; terms known
        neither way are in `GroupStats.estimated`. :raise Unmirrored: the group is not tokenised the way
        reproduced here."""
        entry = self._read(key)
        if entry is None:
            entry = self._describe(cur, table, columns)
            self._write(key, entry)
        if entry.get("unmirrored"):
            raise Unmirrored(entry["unmirrored"])
        tokenizer = Tokenizer(
            int(entry["min"]), int(entry["max"]), DEFAULT_STOPWORDS if entry["stop"] == "1" else frozenset()
        )
        terms = query_terms(query, tokenizer)
        unknown = [t for t in terms if "t:" + t not in entry and "p:" + t not in entry]
        if unknown:
            entry.update(self._stored(key, unknown))  # another worker's, since this one read the entry
        rows = int(entry["rows"])
        innodb_rows, calibrated = self._innodb_rows(entry)
        df: dict[str, int] = {}
        for t in terms:
            if "t:" + t in entry:
                df[t] = int(entry["t:" + t])
            elif "p:" + t in entry:
                df[t] = min(rows, max(1, round(float(entry["p:" + t]) * innodb_rows)))
            else:
                df[t] = 0
        estimated = tuple(t for t in terms if "t:" + t not in entry and "p:" + t not in entry)
        stats = GroupStats(rows, float(entry["avgdl"]), df, estimated, innodb_rows, calibrated)
        return tokenizer, stats

    def count_soon(
        self, key: str, terms: list[str], count: Callable[[list[str]], dict[str, int]], wait: float
    ) -> dict[str, int]:
        """The terms' counts if they are back within `wait` seconds ({} otherwise): counted in the background by
        this process unless another one holds the terms' lock (its count then reaches Redis, and later searches)."""
        job_key = (key, tuple(terms))
        with self._lock:
            job = self._counts.get(job_key)
            if job is None:
                digest = hashlib.sha1("|".join(terms).encode()).hexdigest()  # noqa: S324 - a name, not a secret
                lock = self.store.key(f"bm25count:{digest}:") + key
                taken = self.store.safe(lambda r: bool(r.set(lock, "1", nx=True, ex=COUNT_LOCK_SECONDS)), True)
                if not taken:
                    return {}
                job = self._counts[job_key] = _Count()
                threading.Thread(target=self._run_count, args=(job_key, job, count), daemon=True).start()
        if wait > 0:
            job.done.wait(wait)
        return dict(job.result) if job.done.is_set() else {}

    def remember_shares(self, key: str, shares: dict[str, float]) -> None:
        """Terms' shares of rows worked out from MySQL's scores, for every later search (`frequencies`)."""
        fields = {"p:" + t: repr(p) for t, p in shares.items()}
        self._merge_local(key, fields)
        self._put(key, fields)

    # ---- internals ------------------------------------------------------------------
    def _stored(self, key: str, terms: list[str]) -> dict[str, str]:
        """The entry's fields for these terms (counts and shares) another process has stored since this one
        read the entry (straight from Redis)."""
        names = [prefix + t for t in terms for prefix in ("t:", "p:")]
        values: list[Any] = self.store.safe(lambda r: r.hmget(key, names), [None] * len(names))
        found = {name: _text(v) for name, v in zip(names, values, strict=True) if v is not None}
        if found:
            self._merge_local(key, found)
        return found

    def _innodb_rows(self, entry: dict[str, Any]) -> tuple[int, bool]:
        """The row count InnoDB's idf divides by: implied by the terms both counted and worked out (their count
        over their share), else the table's statistic read when the group was described (which MySQL 8 may
        have cached for up to a day: `information_schema_stats_expiry`)."""
        implied = sorted(
            int(entry[name]) / float(entry["p:" + name[2:]])
            for name in entry
            if name.startswith("t:") and "p:" + name[2:] in entry and 0 < int(entry[name]) < self.df_cap
        )
        if implied:
            return round(implied[len(implied) // 2]), True
        return int(entry.get("innodb") or entry["rows"]), False

    def _run_count(self, job_key: tuple[str, tuple[str, ...]], job: _Count, count) -> None:
        key, terms = job_key
        try:
            job.result = count(list(terms))
            fields = {"t:" + t: str(n) for t, n in job.result.items()}
            self._merge_local(key, fields)
            self._put(key, fields)
        except Exception as exc:  # noqa: BLE001 - a later search counts again; this one estimated
            log.warning("counting BM25 document frequencies failed: %s", exc)
        finally:
            job.done.set()
            with self._lock:
                self._counts.pop(job_key, None)

    def _merge_local(self, key: str, fields: dict[str, str]) -> None:
        with self._lock:
            hit = self._local.get(key)
            if hit:
                self._local[key] = (hit[0], {**hit[1], **fields})

    def _read(self, key: str) -> dict[str, Any] | None:
        hit = self._local.get(key)
        if hit and hit[0] > time.monotonic():
            return dict(hit[1])
        raw = self.store.safe(lambda r: r.hgetall(key), None)
        if not raw:
            return None
        entry = {_text(k): _text(v) for k, v in raw.items()}
        if "rows" not in entry and "unmirrored" not in entry:
            return None
        self._local[key] = (time.monotonic() + LOCAL_TTL, entry)
        return dict(entry)

    def _write(self, key: str, entry: dict[str, Any]) -> None:
        """A described group's entry (its base fields), kept here and in Redis."""
        with self._lock:
            if len(self._local) > 10_000:
                self._local.clear()
            known = self._local.get(key, (0.0, {}))[1]  # with what a background count added meanwhile
            self._local[key] = (time.monotonic() + LOCAL_TTL, {**known, **entry})
        self._put(key, {k: str(v) for k, v in entry.items()})

    def _put(self, key: str, fields: dict[str, str]) -> None:
        def write(r) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.ttl, nx=True)  # the entry ages from its first fill: new terms do not renew it
            pipe.execute()

        self.store.safe(write, None)

    def _describe(self, cur, table: str, columns: tuple[str, ...]) -> dict[str, Any]:
        """The server's tokenizer settings, the row count and the average document length (or why this
        group cannot be mirrored: a parser plugin, a server stopword table)."""
        cur.execute(
            "SELECT @@innodb_ft_min_token_size AS min_len, @@innodb_ft_max_token_size AS max_len,"
            " @@innodb_ft_enable_stopword AS stopwords, @@innodb_ft_server_stopword_table AS stopword_table"
        )
        server = cur.fetchone()
        if server["stopword_table"]:
            return {"unmirrored": "the server uses its own stopword table (innodb_ft_server_stopword_table)"}
        cur.execute(f"SHOW CREATE TABLE {quote(table)}")  # no parameters: `quote`, not `ident` (see plan.ident)
        ddl = str(list(cur.fetchone().values())[-1])
        parser = re.search(r"WITH PARSER\s+`?(\w+)", ddl, re.IGNORECASE)
        if parser:
            return {"unmirrored": f"{table!r} is indexed by the {parser.group(1)} parser, which is not mirrored"}
        if not re.search(r"ENGINE=InnoDB", ddl, re.IGNORECASE):
            return {"unmirrored": f"{table!r} is not an InnoDB table (only InnoDB's tokenizer is mirrored)"}
        tokenizer = Tokenizer(
            int(server["min_len"]),
            int(server["max_len"]),
            DEFAULT_STOPWORDS if int(server["stopwords"]) else frozenset(),
        )
        cur.execute(
            "SELECT TABLE_ROWS AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (table,),
        )
        innodb_rows = estimate = int((cur.fetchone() or {}).get("n") or 0)  # what InnoDB's idf divides
        if estimate < EXACT_COUNT_LIMIT:
            cur.execute(f"SELECT COUNT(*) AS n FROM {quote(table)}")
            estimate = int(cur.fetchone()["n"])
        cur.execute(f"SELECT {', '.join(ident(c) for c in columns)} FROM {ident(table)} LIMIT %s", (SAMPLE_ROWS,))
        sample = cur.fetchall()
        lengths = [len(tokenizer.tokens(document(r, columns))) for r in sample]
        avgdl = sum(lengths) / len(lengths) if lengths else 1.0
        return {
            "rows": max(estimate, len(sample)),
            "innodb": innodb_rows or max(estimate, len(sample)),
            "avgdl": round(max(avgdl, 1.0), 4),
            "min": tokenizer.min_len,
            "max": tokenizer.max_len,
            "stop": "1" if tokenizer.stopwords else "0",
        }

    def count(self, cur, table: str, columns: tuple[str, ...], terms: list[str]) -> dict[str, int]:
        """Each term's document frequency in one round trip, each capped at `df_cap` rows."""
        match = f"MATCH ({', '.join(ident(c) for c in columns)})"
        part = (
            f"SELECT %s AS term, COUNT(*) AS n FROM (SELECT 1 FROM {ident(table)}"
            f" WHERE {match} AGAINST (%s IN BOOLEAN MODE) LIMIT %s) AS m"
        )
        params: list[Any] = []
        for term in terms:
            params += [term, term if term.endswith("*") else f'+"{term}"', self.df_cap]
        cur.execute(" UNION ALL ".join([part] * len(terms)), tuple(params))
        return {r["term"]: int(r["n"]) for r in cur.fetchall()}


def document(row: dict[str, Any], columns: tuple[str, ...]) -> str:
    """A row's text for a column group, as the index saw it (NULLs left out)."""
    parts = []
    for column in columns:
        value = row.get(column)
        if value is None:
            continue
        parts.append(value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value))
    return " ".join(parts)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
