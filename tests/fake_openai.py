"""A local OpenAI-compatible server for the AI tests: /v1/embeddings and /v1/chat/completions over real
HTTP, so the product's real `openai` client is exercised, including the failure modes we switch on.

Embeddings are deterministic bags of words hashed into 64 dimensions (with a few synonyms folded
together), so texts that share words are close; that is all the tests need from a "model".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time

from flask import Flask, Response, request
from werkzeug.serving import make_server

DIMENSIONS = 64
SYNONYMS = {"automobile": "car", "quick": "fast", "speedy": "fast"}


def embed(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        word = SYNONYMS.get(word, word)
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class FakeOpenAI:
    def __init__(self):
        self.mode = "ok"  # ok | slow | 429 | 500 | malformed | bad_shape
        self.delay = 0.0
        self.calls: list[str] = []  # endpoint per request
        self.inputs: list[list[str]] = []
        self.chat_reply: object = None  # the JSON (or raw text) the chat model answers with
        self.app = self._build()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)

    def _failure(self) -> Response | None:
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.mode == "429":
            return Response(
                json.dumps({"error": {"message": "rate limited", "type": "rate_limit"}}),
                429,
                {"Retry-After": "7", "Content-Type": "application/json"},
            )
        if self.mode == "500":
            return Response(
                json.dumps({"error": {"message": "boom", "type": "server_error"}}),
                500,
                {"Content-Type": "application/json"},
            )
        if self.mode == "malformed":
            return Response("{this is not json", 200, {"Content-Type": "application/json"})
        return None

    def _build(self) -> Flask:
        app = Flask("fake-openai")

        @app.post("/v1/embeddings")
        def embeddings():
            self.calls.append("embeddings")
            failure = self._failure()
            if failure is not None:
                return failure
            body = request.get_json()
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            self.inputs.append(texts)
            if self.mode == "bad_shape":
                return {"object": "list", "data": [{"index": 0, "embedding": "nope"}], "model": body["model"]}
            tokens = sum(len(t.split()) for t in texts)
            return {
                "object": "list",
                "model": body["model"],
                "data": [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(texts)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }

        @app.post("/v1/chat/completions")
        def chat():
            self.calls.append("chat")
            failure = self._failure()
            if failure is not None:
                return failure
            body = request.get_json()
            question = body["messages"][-1]["content"]
            if isinstance(self.chat_reply, str):
                content = self.chat_reply
            elif self.chat_reply is not None:
                content = json.dumps(self.chat_reply)
            else:
                content = json.dumps({"terms": sorted(set(re.findall(r"\w+", question.lower())))[:5]})
            return {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }

        return app
