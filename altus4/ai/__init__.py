"""The optional AI layer: an OpenAI-compatible provider behind a shared rate limit and a circuit breaker.

Search never depends on it: every AI step has a budget and a non-AI answer to fall back to.
"""
