"""AI providers: the real one speaks the OpenAI protocol (any compatible server); the null one is what
runs when no key is configured. Both raise `AIUnavailable` with a reason instead of returning junk."""

from __future__ import annotations

import json
import math
from typing import Any

import openai


class AIUnavailable(Exception):
    """No AI answer: `reason` is what the response and the metrics report (not_configured, rate_limited,
    circuit_open, timeout, upstream_error, invalid_response, budget_exhausted)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class NullProvider:
    name = "none"

    def embed(self, texts: list[str], timeout: float) -> tuple[list[list[float]], int]:
        raise AIUnavailable("not_configured", "OPENAI_API_KEY is not set")

    def chat_json(self, system: str, user: str, timeout: float) -> tuple[dict[str, Any], int]:
        raise AIUnavailable("not_configured", "OPENAI_API_KEY is not set")


def _normalise(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class OpenAIProvider:
    """The `openai` client with short timeouts and no retries of its own (the caller falls back instead)."""

    name = "openai"

    def __init__(self, api_key: str, base_url: str, chat_model: str, embedding_model: str):
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url or None, max_retries=0, timeout=5.0)
        self.chat_model = chat_model
        self.embedding_model = embedding_model

    def _call(self, function, **kwargs):
        try:
            return function(**kwargs)
        except openai.APITimeoutError as exc:
            raise AIUnavailable("timeout", str(exc)) from None
        except openai.RateLimitError as exc:
            retry = exc.response.headers.get("retry-after", "") if exc.response is not None else ""
            raise AIUnavailable("rate_limited", f"provider said 429 (Retry-After {retry or '?'})") from None
        except openai.APIStatusError as exc:
            raise AIUnavailable("upstream_error", f"HTTP {exc.status_code}") from None
        except openai.APIConnectionError as exc:
            raise AIUnavailable("upstream_error", f"connection failed: {exc}") from None
        except openai.OpenAIError as exc:  # malformed bodies the client could not parse, and the like
            raise AIUnavailable("invalid_response", type(exc).__name__) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise AIUnavailable("invalid_response", type(exc).__name__) from None

    def embed(self, texts: list[str], timeout: float) -> tuple[list[list[float]], int]:
        """Unit vectors in input order, and the tokens spent."""
        response = self._call(self.client.embeddings.create, model=self.embedding_model, input=texts, timeout=timeout)
        try:
            items = sorted(response.data, key=lambda d: d.index)
            vectors = [[float(x) for x in item.embedding] for item in items]
        except (AttributeError, TypeError, ValueError) as exc:
            raise AIUnavailable("invalid_response", f"embeddings: {exc}") from None
        if len(vectors) != len(texts) or not vectors or any(len(v) != len(vectors[0]) or not v for v in vectors):
            raise AIUnavailable("invalid_response", "embeddings: wrong count or shape")
        tokens = getattr(getattr(response, "usage", None), "total_tokens", 0) or 0
        return [_normalise(v) for v in vectors], int(tokens)

    def chat_json(self, system: str, user: str, timeout: float) -> tuple[dict[str, Any], int]:
        """A JSON object from the chat model; anything else is `invalid_response`."""
        response = self._call(
            self.client.chat.completions.create,
            model=self.chat_model,
            timeout=timeout,
            temperature=0,
            response_format={"type": "json_object"},
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        )
        try:
            content = response.choices[0].message.content or ""
            parsed = json.loads(content)
        except (AttributeError, IndexError, TypeError, ValueError):
            raise AIUnavailable("invalid_response", "chat answer is not JSON") from None
        if not isinstance(parsed, dict):
            raise AIUnavailable("invalid_response", "chat answer is not a JSON object")
        tokens = getattr(getattr(response, "usage", None), "total_tokens", 0) or 0
        return parsed, int(tokens)
