"""Boolean query parser: user syntax in, valid MySQL `IN BOOLEAN MODE` syntax out.

Accepts MySQL's own operators (`+required -excluded ~lower <less >more "exact phrase" prefix* (groups)`)
and the documented keyword syntax (`AND`, `OR`, `NOT`, parentheses, quotes, `*`), mixed freely:

    mysql AND (fast OR quick) NOT slow   ->  +mysql +(fast quick) -slow
    +mysql -slow "exact phrase" optim*   ->  +mysql -slow "exact phrase" optim*

Nothing the user typed reaches MySQL except word characters: every operator in
the output is one this module emitted. Malformed input raises `QuerySyntaxError`
with the character position of the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = re.compile(r"\w+(?:['-]\w+)*", re.UNICODE)
_KEYWORDS = {"AND", "OR", "NOT"}
_MODIFIERS = "+-~<>"


class QuerySyntaxError(ValueError):
    def __init__(self, message: str, position: int):
        super().__init__(f"{message} (at character {position + 1})")
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Token:
    kind: str  # WORD PHRASE LPAREN RPAREN MOD AND OR NOT
    value: str
    position: int
    prefix: bool = False  # WORD followed by *


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == '"':
            end = text.find('"', i + 1)
            if end == -1:
                raise QuerySyntaxError("unbalanced quote: this phrase is never closed", i)
            words = _WORD.findall(text[i + 1 : end])
            if not words:
                raise QuerySyntaxError("empty phrase", i)
            tokens.append(Token("PHRASE", " ".join(w.replace("-", " ") for w in words), i))
            i = end + 1
        elif ch == "(":
            tokens.append(Token("LPAREN", ch, i))
            i += 1
        elif ch == ")":
            tokens.append(Token("RPAREN", ch, i))
            i += 1
        elif ch in _MODIFIERS:
            tokens.append(Token("MOD", ch, i))
            i += 1
        elif ch == "*":
            raise QuerySyntaxError("'*' must directly follow a word, as in optim*", i)
        else:
            match = _WORD.match(text, i)
            if not match:
                i += 1  # punctuation MySQL has no use for (@ , . ; etc.) separates words
                continue
            word = match.group(0)
            end = match.end()
            prefix = end < len(text) and text[end] == "*"
            if word in _KEYWORDS and not prefix:
                tokens.append(Token(word, word, i))
            elif "-" in word:
                if prefix:
                    raise QuerySyntaxError("'*' cannot follow a hyphenated word", end)
                tokens.append(Token("PHRASE", word.replace("-", " "), i))  # e-mail -> "e mail"
            else:
                tokens.append(Token("WORD", word, i, prefix))
            i = end + (1 if prefix else 0)
    return tokens


@dataclass
class Term:
    text: str
    prefix: bool = False
    phrase: bool = False


@dataclass
class Seq:
    """Items with MySQL modifiers ('' optional, '+' required, '-' excluded, '~', '<', '>')."""

    items: list[tuple[str, Node]] = field(default_factory=list)


@dataclass
class Or:
    alternatives: list[Node]


Node = Term | Seq | Or


class _Parser:
    def __init__(self, tokens: list[Token], text: str):
        self.tokens = tokens
        self.i = 0
        self.end = len(text)

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Node:
        node = self.parse_or()
        token = self.peek()
        if token is not None:
            raise QuerySyntaxError("unbalanced parenthesis: ')' without a matching '('", token.position)
        return node

    def parse_or(self) -> Node:
        first = self.peek()
        alternatives = [self.parse_and()]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            following = self.peek()
            if following is None or following.kind in ("OR", "AND", "RPAREN"):
                raise QuerySyntaxError("OR needs a term on both sides", token.position)
            alternatives.append(self.parse_and())
        if first is not None and first.kind == "OR":
            raise QuerySyntaxError("OR needs a term on both sides", first.position)
        if len(alternatives) > 1 and not all(_has_positive(a) for a in alternatives):
            raise QuerySyntaxError(
                "every OR alternative needs a term to search for (MySQL cannot express OR NOT)",
                first.position if first is not None else 0,
            )
        return alternatives[0] if len(alternatives) == 1 else Or(alternatives)

    def parse_and(self) -> Node:
        items: list[list] = []  # [modifier, node]
        joined_by_and: list[bool] = []
        pending_and = False
        while (token := self.peek()) is not None and token.kind not in ("OR", "RPAREN"):
            if token.kind == "AND":
                if not items or pending_and:
                    raise QuerySyntaxError("AND needs a term on both sides", token.position)
                self.take()
                pending_and = True
                continue
            modifier, node = self.parse_unary()
            joined_by_and.append(pending_and)
            items.append([modifier, node])
            pending_and = False
        if pending_and:
            raise QuerySyntaxError("AND needs a term on both sides", self.tokens[self.i - 1].position)
        if not items:
            position = token.position if token is not None else self.end
            raise QuerySyntaxError("expected a search term", position)
        # `a AND b`: both sides become required unless they carry their own modifier
        for index, joined in enumerate(joined_by_and):
            if joined:
                for side in (index - 1, index):
                    if items[side][0] == "":
                        items[side][0] = "+"
        if len(items) == 1 and items[0][0] == "":
            return items[0][1]
        return Seq([(m, n) for m, n in items])

    def parse_unary(self) -> tuple[str, Node]:
        token = self.take()
        if token.kind == "NOT":
            nxt = self.peek()
            if nxt is None or nxt.kind in ("AND", "OR", "RPAREN", "NOT", "MOD"):
                raise QuerySyntaxError("NOT needs a term after it", token.position)
            return "-", self.parse_atom(self.take())
        if token.kind == "MOD":
            nxt = self.peek()
            if nxt is None or nxt.kind not in ("WORD", "PHRASE", "LPAREN"):
                raise QuerySyntaxError(f"'{token.value}' needs a term directly after it", token.position)
            return token.value, self.parse_atom(self.take())
        return "", self.parse_atom(token)

    def parse_atom(self, token: Token) -> Node:
        if token.kind == "WORD":
            return Term(token.value, prefix=token.prefix)
        if token.kind == "PHRASE":
            return Term(token.value, phrase=True)
        if token.kind == "LPAREN":
            if (nxt := self.peek()) is not None and nxt.kind == "RPAREN":
                raise QuerySyntaxError("empty parentheses", token.position)
            if nxt is None:
                raise QuerySyntaxError("unbalanced parenthesis: '(' is never closed", token.position)
            node = self.parse_or()
            closing = self.peek()
            if closing is None or closing.kind != "RPAREN":
                raise QuerySyntaxError("unbalanced parenthesis: '(' is never closed", token.position)
            self.take()
            return node
        if token.kind == "RPAREN":
            raise QuerySyntaxError("unbalanced parenthesis: ')' without a matching '('", token.position)
        raise QuerySyntaxError(f"'{token.value}' needs a term on both sides", token.position)


def _emit(node: Node, nested: bool) -> str:
    if isinstance(node, Term):
        if node.phrase:
            return f'"{node.text}"'
        return node.text + ("*" if node.prefix else "")
    if isinstance(node, Or):
        parts = [_emit_alternative(a) for a in node.alternatives]
        return f"({' '.join(parts)})" if nested else " ".join(parts)
    parts = [modifier + _emit(child, nested=True) for modifier, child in node.items]
    return f"({' '.join(parts)})" if nested else " ".join(parts)


def _emit_alternative(node: Node) -> str:
    return _emit(node, nested=True) if isinstance(node, Seq) else _emit(node, nested=False)


def _has_positive(node: Node) -> bool:
    if isinstance(node, Term):
        return True
    if isinstance(node, Or):
        return any(_has_positive(a) for a in node.alternatives)
    return any(m != "-" and _has_positive(child) for m, child in node.items)


@dataclass(frozen=True)
class ParsedQuery:
    mysql: str  # what goes into AGAINST(%s IN BOOLEAN MODE), as a parameter
    positive_terms: tuple[str, ...]  # for highlighting and matched-column detection
    negative_terms: tuple[str, ...]


def _terms(node: Node, negated: bool, out: tuple[list[str], list[str]]) -> None:
    if isinstance(node, Term):
        out[1 if negated else 0].append(node.text + ("*" if node.prefix else ""))
    elif isinstance(node, Or):
        for alternative in node.alternatives:
            _terms(alternative, negated, out)
    else:
        for modifier, child in node.items:
            _terms(child, negated or modifier == "-", out)


def parse_boolean(text: str) -> ParsedQuery:
    """:raise QuerySyntaxError: malformed input, with the position of the problem."""
    tokens = tokenize(text)
    if not tokens:
        raise QuerySyntaxError("the query has no searchable words", 0)
    node = _Parser(tokens, text).parse()
    if not _has_positive(node):
        raise QuerySyntaxError("the query only excludes terms; add at least one term to search for", 0)
    positive: list[str] = []
    negative: list[str] = []
    _terms(node, False, (positive, negative))
    return ParsedQuery(_emit(node, nested=False), tuple(dict.fromkeys(positive)), tuple(dict.fromkeys(negative)))


def natural_terms(text: str) -> tuple[str, ...]:
    """Words of a natural-language query, for highlighting and matched-column detection."""
    return tuple(dict.fromkeys(w for w in _WORD.findall(text) for w in w.split("-") if w))
