"""A new term's document frequency, worked out from the scores MySQL gave a search's matches.

InnoDB scores a natural-language (or plain boolean) match as the sum over the query's words of tf x idf^2,
idf = log10(n / df), n being the table's row statistic; MySQL 8 and MariaDB share that code. The tokenizer
mirrors InnoDB's, so each matched row's term frequencies are known, and a least-squares fit of the scores
gives every term's idf^2: the share of rows holding it, 10^-idf, exactly and at no extra query. That share
times n is the frequency; n is pinned by any term both worked out and counted (`bm25.StatsStore`).

Where the scores are not such a sum (boolean weights, phrases, prefixes, groups) or do not tell two terms apart,
a term's frequency is estimated as the share of these rows that hold it times the number of matches.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from altus4.search.bm25 import GroupStats, Tokenizer, document

Group = tuple[tuple[str, ...], Tokenizer, GroupStats]


def fit_shares(groups: list[Group], rows: list[dict[str, Any]], scores: list[float]) -> dict[tuple[int, str], float]:
    """{(group index, term): share of rows holding it} for every term of `groups` that occurs in `rows`, when
    `scores` (MySQL's, summed over the groups' MATCHes as the search's SQL does) are exactly such sums; {}
    when they are not."""
    columns = [(g, term) for g, (_, _, stats) in enumerate(groups) for term in stats.df]
    if not rows or not columns:
        return {}
    tf = np.zeros((len(rows), len(columns)))
    start = 0
    for group, tokenizer, stats in groups:
        terms = list(stats.df)
        for i, row in enumerate(rows):
            tf[i, start : start + len(terms)] = tokenizer.profile(document(row, group), terms)[1]
        start += len(terms)
    y = np.asarray(scores, dtype=float)
    used = tf.any(axis=0)
    if not used.any() or y.max(initial=0.0) <= 0:
        return {}
    weights, _, rank, _ = np.linalg.lstsq(tf[:, used], y, rcond=None)
    tolerance = 1e-3 * y.max()  # InnoDB's ranks are 32-bit floats
    if rank < used.sum() or np.abs(tf[:, used] @ weights - y).max() > tolerance or (weights < -tolerance).any():
        return {}
    found = [columns[i] for i in np.flatnonzero(used)]
    # a weight of ~0 is a term in (nearly) every row: InnoDB takes its idf as ~0, its share as 1
    return {c: 10 ** -math.sqrt(max(w, 0.0)) for c, w in zip(found, weights, strict=True)}


def share_of_matches(
    rows: list[dict[str, Any]], group: tuple[str, ...], tokenizer: Tokenizer, term: str, matches: int
) -> int:
    """The fallback estimate: the share of `rows` (the top of the matches) holding `term`, times the matches;
    exact for a one-term query and for a term every match must hold."""
    holding = sum(1 for r in rows if tokenizer.profile(document(r, group), [term])[1][0])
    return max(1, round(matches * holding / len(rows))) if rows else 1
