"""Semantic re-ranking: FULLTEXT finds the candidates, embeddings re-order them.

Two fusions of the lexical and the vector order, chosen by SEMANTIC_FUSION:
- `rrf`, reciprocal rank fusion: score = w_lex / (k + lexical_rank) + w_vec / (k + vector_rank). It needs no
  calibration between MySQL's scores and cosine similarities, and keeps a strong lexical match near the top
  even when its embedding is unremarkable;
- `convex`: alpha x the lexical score + (1 - alpha) x the cosine, each scaled to [0, 1] over the candidates
  (min-max). It keeps how far apart candidates are, which ranks throw away (bench/relevance.py --sweep).
"""

from __future__ import annotations

from dataclasses import replace

from altus4.search.results import Hit

MAX_TEXT = 2000  # characters of a row that are embedded


def row_text(row: dict, columns: tuple[str, ...]) -> str:
    """The searched columns of a row, the text the FULLTEXT index saw (the same for search and indexing)."""
    parts = [str(row.get(c) or "") for c in columns]
    return " ".join(p for p in parts if p)[:MAX_TEXT] or " "


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))  # both are unit vectors


def fuse(
    hits: list[Hit],
    lexical_count: int,
    query: list[float],
    vectors: list[list[float]],
    k: int,
    lexical_weight: float,
    vector_weight: float,
) -> list[Hit]:
    """`hits`: the first `lexical_count` in lexical order, then vector-only candidates; their unit vectors and
    the query's. Returns hits in fused order with scores in [0, 1]; a list a hit is absent from adds nothing."""
    similarity = [cosine(query, v) for v in vectors]
    vector_rank = {i: rank for rank, i in enumerate(sorted(range(len(hits)), key=lambda i: -similarity[i]), 1)}
    best = (lexical_weight + vector_weight) / (k + 1)
    fused = []
    for i, hit in enumerate(hits):
        score = vector_weight / (k + vector_rank[i])
        if i < lexical_count:
            score += lexical_weight / (k + i + 1)
        fused.append(replace(hit, score=score / best if best else 0.0, position=i))
    return sorted(fused, key=Hit.sort_key)


def fuse_convex(
    hits: list[Hit], lexical_count: int, query: list[float], vectors: list[list[float]], alpha: float
) -> list[Hit]:
    """`hits` as in `fuse`, ordered by alpha x their lexical score (BM25 scaled to [0, 1]; 0 for vector-only
    candidates) + (1 - alpha) x their cosine scaled to [0, 1] over the candidates."""
    similarity = [cosine(query, v) for v in vectors]
    low, high = min(similarity, default=0.0), max(similarity, default=0.0)
    spread = (high - low) or 1.0
    fused = []
    for i, hit in enumerate(hits):
        lexical = hit.score if i < lexical_count else 0.0
        score = alpha * lexical + (1 - alpha) * (similarity[i] - low) / spread
        fused.append(replace(hit, score=score, position=i))
    return sorted(fused, key=lambda h: (-h.score, h.position))
