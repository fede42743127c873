"""Request parsing with pydantic: every failure becomes a 400 with field-level details."""

from __future__ import annotations

import re
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from altus4.errors import ValidationFailed

M = TypeVar("M", bound=BaseModel)
_BRACKETS = re.compile(r"\[\d*\]$")


def _details(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "code": err["type"], "message": err["msg"]}
        for err in exc.errors(include_url=False)
    ]


def body(model: type[M]) -> M:
    """The JSON body as `model`; a missing or non-JSON body counts as `{}` only when nothing was sent."""
    if request.content_length is None and len(request.data) >= (request.max_content_length or float("inf")):
        # a chunked body has no Content-Length to refuse up front: werkzeug stops reading at the limit
        raise RequestEntityTooLarge()
    if request.content_length or request.data:
        payload = request.get_json(silent=True)
        if payload is None:
            raise ValidationFailed(
                "Request body must be valid JSON",
                details=[{"field": "body", "code": "json_invalid", "message": "invalid JSON"}],
            )
    else:
        payload = {}
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "Request body must be a JSON object",
            details=[{"field": "body", "code": "dict_type", "message": "expected an object"}],
        )
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ValidationFailed(details=_details(exc)) from None


def query(model: type[M]) -> M:
    """Query-string parameters as `model`: repeated keys, comma lists and the bracket form of axios/qs
    (`tables[]=x`, `tables[0]=x`) all become lists where the model wants one."""
    sent: dict[str, list[str]] = {}
    for name in request.args:
        sent.setdefault(_BRACKETS.sub("", name), []).extend(request.args.getlist(name))
    data: dict[str, object] = {}
    for key, values in sent.items():
        annotation = model.model_fields.get(key)
        if annotation is not None and "list" in str(annotation.annotation):
            data[key] = [v for item in values for v in item.split(",") if v]
        else:
            data[key] = values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(details=_details(exc)) from None
