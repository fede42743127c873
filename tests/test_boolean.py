"""The boolean parser: examples for each operator, errors that point at the problem, and a
property test that whatever it emits, MySQL accepts."""

import pytest
from conftest import connect_admin, fresh_fulltext_table
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from altus4.search.boolean import QuerySyntaxError, natural_terms, parse_boolean


@pytest.mark.parametrize(
    "query,mysql",
    [
        ("mysql AND (fast OR quick) NOT slow", "+mysql +(fast quick) -slow"),
        ('+mysql -slow "exact phrase" optim*', '+mysql -slow "exact phrase" optim*'),
        ("redis OR cache", "redis cache"),
        ("a AND b c", "+a +b c"),
        ("(gevent AND gunicorn) OR uwsgi", "(+gevent +gunicorn) uwsgi"),
        ("NOT legacy python", "-legacy python"),
        ("e-mail", '"e mail"'),
        ("~noise <less >more", "~noise <less >more"),
        ("+(fast OR quick) index", "+(fast quick) index"),
        ("'quoted' @3 , words;", "quoted 3 words"),
        ("and or not", "and or not"),  # keywords are upper case only; lower-case are plain words
    ],
)
def test_translations(query, mysql):
    assert parse_boolean(query).mysql == mysql


@pytest.mark.parametrize(
    "query,message,position",
    [
        ('"open phrase', "unbalanced quote", 1),
        ("(open group", "unbalanced parenthesis", 1),
        ("closed)", "unbalanced parenthesis", 7),
        ("AND mysql", "AND needs a term", 1),
        ("mysql AND", "AND needs a term", 7),
        ("mysql OR", "OR needs a term", 7),
        ("mysql OR OR redis", "OR needs a term", 7),
        ("+", "needs a term directly after it", 1),
        ("mysql -", "needs a term directly after it", 7),
        ("NOT", "NOT needs a term", 1),
        ("()", "empty parentheses", 1),
        ('""', "empty phrase", 1),
        ("-slow", "only excludes terms", 1),
        ("fast OR NOT slow", "OR alternative", 1),
        ("*", "'*' must directly follow a word", 1),
        ("   ", "no searchable words", 1),
    ],
)
def test_malformed_queries_point_at_the_problem(query, message, position):
    with pytest.raises(QuerySyntaxError) as caught:
        parse_boolean(query)
    assert message in caught.value.message
    assert caught.value.position + 1 == position


def test_terms_for_highlighting():
    parsed = parse_boolean('mysql AND "full text" NOT slow opti*')
    assert parsed.positive_terms == ("mysql", "full text", "opti*")
    assert parsed.negative_terms == ("slow",)
    assert natural_terms("Fast, e-mail search!") == ("Fast", "e", "mail", "search")


PROBE_DB = "altus4_test_boolean"


@pytest.fixture(scope="module")
def probe(settings):
    fresh_fulltext_table(
        settings,
        PROBE_DB,
        "docs",
        "CREATE TABLE docs (id INT PRIMARY KEY AUTO_INCREMENT, body TEXT, FULLTEXT (body))",
        "INSERT INTO docs (body) VALUES (%s)",
        [("mysql full text search is fast",), ("redis cache is quick",), ("slow legacy e-mail",)],
    )
    conn = connect_admin(settings, PROBE_DB)
    yield conn
    conn.close()


_word = st.sampled_from(["mysql", "redis", "fast", "quick", "slow", "e-mail", "don't", "x", "día", "数据", "a1"])
_piece = st.one_of(
    _word,
    _word.map(lambda w: w + "*"),
    st.sampled_from(["AND", "OR", "NOT", "(", ")", '"', "+", "-", "~", "<", ">", "*", "@", "'", ",", "\\", "%", "_"]),
)
_query = st.lists(_piece, min_size=1, max_size=12).flatmap(
    lambda parts: st.lists(st.sampled_from([" ", "", "  "]), min_size=len(parts), max_size=len(parts)).map(
        lambda seps: "".join(p + s for p, s in zip(parts, seps, strict=False))
    )
)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(_query, st.text(max_size=40)))
def test_whatever_the_parser_emits_mysql_accepts(probe, text):
    try:
        parsed = parse_boolean(text)
    except QuerySyntaxError:
        return
    with probe.cursor() as cur:
        cur.execute("SELECT id FROM docs WHERE MATCH (body) AGAINST (%s IN BOOLEAN MODE)", (parsed.mysql,))
        cur.fetchall()
    assert parse_boolean(parsed.mysql).mysql == parsed.mysql  # the output is a fixed point


def test_known_data_through_mysql(probe):
    def ids(query):
        with probe.cursor() as cur:
            cur.execute(
                "SELECT id FROM docs WHERE MATCH (body) AGAINST (%s IN BOOLEAN MODE) ORDER BY id",
                (parse_boolean(query).mysql,),
            )
            return [row[0] for row in cur.fetchall()]

    assert ids("mysql AND fast") == [1]
    assert ids("mysql OR redis") == [1, 2]
    assert ids("(mysql OR redis) NOT quick") == [1]
    assert ids('"full text"') == [1]
    assert ids("qui*") == [2]
    assert ids("e-mail") == [3]
