"""The two fusions of semantic mode (SEMANTIC_FUSION): what each keeps from the lexical and the vector order."""

import math

import pytest

from altus4.search.results import Hit
from altus4.search.semantic import fuse, fuse_convex


def _unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


def _hits(scores: list[float]) -> list[Hit]:
    return [
        Hit(database="d", database_order=0, table="t", position=i, raw_score=s, score=s, row={"id": i}, query=None)
        for i, s in enumerate(scores)
    ]


QUERY = _unit(1, 0)


def test_rrf_lets_a_strong_vector_match_climb_and_adds_vector_only_rows():
    # lexical order 0, 1, 2; row 2 is the query's nearest vector; row 3 only the vectors found
    hits = _hits([1.0, 0.9, 0.8, 0.0])
    vectors = [_unit(0, 1), _unit(1, 3), _unit(1, 0.01), _unit(1, 0.5)]
    fused = fuse(hits, 3, QUERY, vectors, k=1, lexical_weight=1, vector_weight=1)
    order = [h.row["id"] for h in fused]
    # k = 1: row 2 is 1/4 + 1/2, row 0 1/2 + 1/5, row 1 1/3 + 1/4, the vector-only row 3 only 1/3
    assert order == [2, 0, 1, 3]
    assert all(0 <= h.score <= 1 for h in fused)


def test_rrf_lexical_weight_keeps_the_lexical_order_ahead():
    hits = _hits([1.0, 0.9, 0.8])
    vectors = [_unit(0, 1), _unit(1, 1), _unit(1, 0)]
    fused = fuse(hits, 3, QUERY, vectors, k=60, lexical_weight=10, vector_weight=1)
    assert [h.row["id"] for h in fused] == [0, 1, 2]


@pytest.mark.parametrize("alpha, first", [(1.0, 0), (0.0, 2)])
def test_convex_alpha_moves_from_the_lexical_to_the_vector_order(alpha, first):
    hits = _hits([1.0, 0.5, 0.1])
    vectors = [_unit(0, 1), _unit(1, 1), _unit(1, 0)]
    fused = fuse_convex(hits, 3, QUERY, vectors, alpha)
    assert fused[0].row["id"] == first


def test_convex_keeps_distances_that_ranks_throw_away():
    # lexically row 0 is far ahead of row 1 (1.0 against 0.2); by vector row 1 is only a little nearer the
    # query (cosine 0.92 against 0.90). RRF sees two swapped ranks and lets row 1 win; convex keeps row 0.
    hits = _hits([1.0, 0.2, 0.1])
    vectors = [[c, math.sqrt(1 - c * c)] for c in (0.90, 0.92, 0.0)]
    convex = fuse_convex(hits, 3, QUERY, vectors, alpha=0.5)
    assert [h.row["id"] for h in convex] == [0, 1, 2]
    rrf = fuse(hits, 3, QUERY, vectors, k=1, lexical_weight=1, vector_weight=1.01)
    assert [h.row["id"] for h in rrf] == [1, 0, 2]


def test_convex_gives_vector_only_candidates_no_lexical_score():
    hits = _hits([1.0, 0.7])  # the second is a vector-only candidate: its 0.7 is not lexical
    vectors = [_unit(1, 1), _unit(1, 0)]
    fused = fuse_convex(hits, 1, QUERY, vectors, alpha=0.5)
    scores = {h.row["id"]: h.score for h in fused}
    assert scores[1] == pytest.approx(0.5)  # (1 - alpha) x the best cosine, nothing lexical
    assert scores[0] == pytest.approx(0.5)  # alpha x 1.0 + the lowest cosine (0)
