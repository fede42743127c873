"""The filter language of `POST /api/v1/search` (Meilisearch's, over SQL columns): text in, a tree out.

    category = "audio" AND price 10 TO 200 AND NOT (brand IN ["acme", 'zen'] OR stock IS NULL)
    products.price < 100 OR articles.author != 'ana'

Comparisons `= != > >= < <=`, ranges `col a TO b` (inclusive), `[NOT] IN [..]`, `IS [NOT] NULL`, joined by
`AND`, `OR`, `NOT` and parentheses; values are quoted strings (double or single, backslash escapes),
numbers and `true`/`false`. A column is `name` (every searched table that has it) or `table.name` (that
table only); backticks quote names that are not plain words. Keywords are case-insensitive.

Nothing here knows SQL: `altus4.search.conditions` turns a tree into a WHERE clause for one table, with
every value a parameter. Malformed text raises `FilterSyntaxError` with the position of the problem, as a
malformed boolean query does. Limits: MAX_LENGTH characters, MAX_CONDITIONS conditions, MAX_DEPTH levels.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from dataclasses import dataclass, field

MAX_LENGTH = 2000
MAX_CONDITIONS = 50
MAX_DEPTH = 10
MAX_IN_VALUES = 100
OPERATORS = ("=", "!=", ">", ">=", "<", "<=")
_KEYWORDS = {"AND", "OR", "NOT", "TO", "IN", "IS", "NULL", "TRUE", "FALSE"}
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[^\W\d][\w$]*", re.UNICODE)


class FilterSyntaxError(ValueError):
    def __init__(self, message: str, position: int):
        super().__init__(f"{message} (at character {position + 1})")
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Column:
    """A column reference: `name`, or `table.name` (`table` set)."""

    name: str
    table: str | None = None
    position: int = field(default=0, compare=False)

    def __str__(self) -> str:
        bare = _quote(self.name)
        return f"{_quote(self.table)}.{bare}" if self.table else bare


@dataclass(frozen=True)
class Value:
    value: str | int | float | bool  # numbers keep their text's precision in `text`
    text: str  # as written (numbers), or the string itself
    position: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        if isinstance(self.value, str):
            return json.dumps(self.value, ensure_ascii=False)
        return self.text


# the tree: conditions, each possibly negated (`negated`: the complement), joined by AllOf/AnyOf
@dataclass(frozen=True)
class Compare:
    column: Column
    op: str  # one of OPERATORS
    value: Value
    negated: bool = False


@dataclass(frozen=True)
class Between:
    column: Column
    low: Value
    high: Value
    negated: bool = False


@dataclass(frozen=True)
class InList:
    column: Column
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    column: Column
    negated: bool = False


Condition = Compare | Between | InList | IsNull


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Node, ...]


Node = Condition | AllOf | AnyOf


def filter_text(value: object) -> object:
    """Meilisearch's array form as filter text: the outer list's items must all hold, an inner list's any one
    (`["a = 1", ["b = 2", "c = 3"]]` is `(a = 1) AND ((b = 2) OR (c = 3))`); anything else as it is."""
    if not isinstance(value, list):
        return value
    parts = []
    for item in value:
        if isinstance(item, list):
            if not item or not all(isinstance(x, str) for x in item):
                raise ValueError("an inner filter list holds strings")
            parts.append("(" + " OR ".join(f"({x})" for x in item) + ")")
        elif isinstance(item, str):
            parts.append(f"({item})")
        else:
            raise ValueError("a filter list holds strings and lists of strings")
    text = " AND ".join(parts)
    if len(text) > MAX_LENGTH:
        raise ValueError(f"a filter may be at most {MAX_LENGTH} characters in all")
    return text


def conditions(node: Node) -> list[Condition]:
    """The tree's conditions, left to right."""
    if isinstance(node, AllOf | AnyOf):
        return [c for part in node.parts for c in conditions(part)]
    return [node]


def columns(node: Node) -> list[Column]:
    return [c.column for c in conditions(node)]


def render(node: Node, top: bool = True) -> str:
    """The tree as canonical filter text (cache keys, messages): parsing it gives the same tree."""
    if isinstance(node, AllOf | AnyOf):
        joiner = " AND " if isinstance(node, AllOf) else " OR "
        text = joiner.join(render(part, False) for part in node.parts)
        return text if top else f"({text})"
    prefix = "NOT " if node.negated else ""
    if isinstance(node, Compare):
        body = f"{node.column} {node.op} {node.value}"
    elif isinstance(node, Between):
        body = f"{node.column} {node.low} TO {node.high}"
    elif isinstance(node, InList):
        body = f"{node.column} IN [{', '.join(str(v) for v in node.values)}]"
    else:
        body = f"{node.column} IS NULL"
    return f"{prefix}{body}" if top or not node.negated else f"({prefix}{body})"


def negate(node: Node) -> Node:
    """The complement, pushed down to the conditions (De Morgan): every row is in a filter or its negation."""
    if isinstance(node, AllOf):
        return AnyOf(tuple(negate(p) for p in node.parts))
    if isinstance(node, AnyOf):
        return AllOf(tuple(negate(p) for p in node.parts))
    return dataclasses.replace(node, negated=not node.negated)


def both(*nodes: Node | None) -> Node | None:
    """Every given filter must hold (a tenant token's rule and the request's own, say): joined as trees,
    never as text, so no parenthesis in one can reach into the other."""
    present = [n for n in nodes if n is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else AllOf(tuple(present))


@functools.lru_cache(maxsize=2048)
def parse(text: str) -> Node | None:
    """The filter's tree (None for a blank filter). :raise FilterSyntaxError: malformed or over a limit."""
    if len(text) > MAX_LENGTH:
        raise FilterSyntaxError(f"a filter may be at most {MAX_LENGTH} characters", MAX_LENGTH)
    tokens = _tokenize(text)
    if not tokens:
        return None
    parser = _Parser(tokens, len(text))
    node = parser.expression(0)
    if (extra := parser.peek()) is not None:
        raise FilterSyntaxError(f"unexpected {extra.text!r}: expected AND, OR or the end", parser.here())
    if len(conditions(node)) > MAX_CONDITIONS:
        raise FilterSyntaxError(f"a filter may have at most {MAX_CONDITIONS} conditions", 0)
    return node


@dataclass(frozen=True)
class _Token:
    kind: str  # WORD QUOTED STRING NUMBER OP LPAREN RPAREN LBRACKET RBRACKET COMMA DOT, or a keyword
    text: str
    position: int


def _quote(name: str) -> str:
    return name if _WORD.fullmatch(name) and name.upper() not in _KEYWORDS else "`" + name.replace("`", "``") + "`"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    singles = {"(": "LPAREN", ")": "RPAREN", "[": "LBRACKET", "]": "RBRACKET", ",": "COMMA", ".": "DOT"}
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "\"'":
            value, end = _string(text, i)
            tokens.append(_Token("STRING", value, i))
            i = end
        elif ch == "`":
            end = i + 1
            name = []
            while True:
                close = text.find("`", end)
                if close == -1:
                    raise FilterSyntaxError("unclosed ` around a column name", i)
                name.append(text[end:close])
                if text.startswith("``", close):
                    name.append("`")
                    end = close + 2
                    continue
                break
            if not "".join(name):
                raise FilterSyntaxError("empty column name", i)
            tokens.append(_Token("QUOTED", "".join(name), i))
            i = close + 1
        elif text.startswith(("!=", ">=", "<="), i):
            tokens.append(_Token("OP", text[i : i + 2], i))
            i += 2
        elif ch in "=<>":
            tokens.append(_Token("OP", ch, i))
            i += 1
        elif ch in singles and not (ch == "." and i + 1 < len(text) and text[i + 1].isdigit()):
            tokens.append(_Token(singles[ch], ch, i))
            i += 1
        elif (number := _NUMBER.match(text, i)) and not (ch == "-" and tokens and tokens[-1].kind == "DOT"):
            tokens.append(_Token("NUMBER", number.group(0), i))
            i = number.end()
        elif word := _WORD.match(text, i):
            upper = word.group(0).upper()
            tokens.append(_Token(upper if upper in _KEYWORDS else "WORD", word.group(0), i))
            i = word.end()
        else:
            raise FilterSyntaxError(f"unexpected character {ch!r}", i)
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise FilterSyntaxError("unclosed string: a quote is never closed", start)


class _Parser:
    def __init__(self, tokens: list[_Token], length: int):
        self.tokens = tokens
        self.i = 0
        self.length = length

    def peek(self, ahead: int = 0) -> _Token | None:
        return self.tokens[self.i + ahead] if self.i + ahead < len(self.tokens) else None

    def here(self) -> int:
        token = self.peek()
        return token.position if token else self.length

    def take(self, kind: str, what: str) -> _Token:
        token = self.peek()
        if token is None or token.kind != kind:
            found = f"{token.text!r}" if token else "the end"
            raise FilterSyntaxError(f"expected {what}, found {found}", self.here())
        self.i += 1
        return token

    def accept(self, kind: str) -> _Token | None:
        token = self.peek()
        if token is not None and token.kind == kind:
            self.i += 1
            return token
        return None

    def expression(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise FilterSyntaxError(f"a filter may nest at most {MAX_DEPTH} levels", self.here())
        parts = [self.conjunction(depth)]
        while self.accept("OR"):
            parts.append(self.conjunction(depth))
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def conjunction(self, depth: int) -> Node:
        parts = [self.negation(depth)]
        while self.accept("AND"):
            parts.append(self.negation(depth))
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def negation(self, depth: int) -> Node:
        if self.accept("NOT"):
            if depth + 1 > MAX_DEPTH:
                raise FilterSyntaxError(f"a filter may nest at most {MAX_DEPTH} levels", self.here())
            return negate(self.negation(depth + 1))
        if self.accept("LPAREN"):
            node = self.expression(depth + 1)
            self.take("RPAREN", "')'")
            return node
        return self.condition()

    def column(self) -> Column:
        token = self.peek()
        if token is None or token.kind not in ("WORD", "QUOTED"):
            found = f"{token.text!r}" if token else "the end"
            raise FilterSyntaxError(f"expected a column name, found {found}", self.here())
        self.i += 1
        if self.accept("DOT"):
            name = self.peek()
            if name is None or name.kind not in ("WORD", "QUOTED"):
                raise FilterSyntaxError("expected a column name after the table's '.'", self.here())
            self.i += 1
            return Column(name.text, token.text, token.position)
        return Column(token.text, None, token.position)

    def value(self) -> Value:
        token = self.peek()
        if token is None:
            raise FilterSyntaxError("expected a value, found the end", self.length)
        self.i += 1
        if token.kind == "STRING":
            return Value(token.text, token.text, token.position)
        if token.kind == "NUMBER":
            number: int | float = int(token.text) if re.fullmatch(r"-?\d+", token.text) else float(token.text)
            return Value(number, token.text, token.position)
        if token.kind in ("TRUE", "FALSE"):
            return Value(token.kind == "TRUE", token.text.lower(), token.position)
        if token.kind == "WORD":  # Meilisearch takes bare words as strings: `genre = horror`
            return Value(token.text, token.text, token.position)
        raise FilterSyntaxError(f"expected a value, found {token.text!r}", token.position)

    def condition(self) -> Condition:
        column = self.column()
        token = self.peek()
        if token is None:
            raise FilterSyntaxError("expected an operator after the column", self.length)
        if token.kind == "OP":
            self.i += 1
            return Compare(column, token.text, self.value())
        if token.kind == "IS":
            self.i += 1
            negated = bool(self.accept("NOT"))
            self.take("NULL", "NULL")
            return IsNull(column, negated)
        if token.kind in ("IN", "NOT"):
            negated = bool(self.accept("NOT"))
            self.take("IN", "IN")
            return InList(column, self.values(), negated)
        if token.kind in ("STRING", "NUMBER", "WORD", "TRUE", "FALSE"):
            low = self.value()
            self.take("TO", "TO (a range is `column low TO high`)")
            return Between(column, low, self.value())
        raise FilterSyntaxError(
            f"expected an operator (= != > >= < <=, TO, IN, IS NULL) after {column}, found {token.text!r}",
            token.position,
        )

    def values(self) -> tuple[Value, ...]:
        start = self.here()
        self.take("LBRACKET", '\'[\' (IN takes a list: IN ["a", "b"])')
        found = [self.value()]
        while self.accept("COMMA"):
            found.append(self.value())
        self.take("RBRACKET", "']'")
        if len(found) > MAX_IN_VALUES:
            raise FilterSyntaxError(f"IN takes at most {MAX_IN_VALUES} values", start)
        return tuple(found)
