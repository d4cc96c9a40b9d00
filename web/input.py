"""Request bodies and Socket.IO payloads checked before anything is written.

Three things the JSON parsers let through or choke on: a body bigger than
MAX_CONTENT_LENGTH (refused by Werkzeug with 413 before it is read), nesting
so deep that the parser recurses out (a RecursionError, once a 500), and lone
surrogate escapes (`"\\ud800"`) that decode fine but that PostgreSQL and UTF-8
cannot store. Each becomes InvalidInput (400 / an `error` event).
"""

from __future__ import annotations

import json
import re

from flask import request
from werkzeug.exceptions import UnsupportedMediaType

from agent.turn import InvalidInput

MAX_DEPTH = 32  # no request or payload of ours nests deeper than a few levels
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_payload(value, field: str = "payload") -> None:
    """InvalidInput if `value` (decoded JSON) nests deeper than MAX_DEPTH or holds a
    string (key or value) with a lone surrogate. Iterative: no recursion to exhaust."""
    stack = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise InvalidInput(path, f"'{path}' is not valid Unicode text (a lone surrogate)")
            continue
        if not isinstance(item, (dict, list, tuple)):
            continue
        if depth >= MAX_DEPTH:
            raise InvalidInput(path, f"'{path}' is nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(item, dict):
            for key, child in item.items():
                name = key if depth == 0 and field in ("body", "payload") else f"{path}.{key}"
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise InvalidInput(path, f"a key in '{path}' is not valid Unicode text")
                stack.append((child, str(name), depth + 1))
        else:
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))


def loads_checked(raw: bytes | str, field: str = "body"):
    """`json.loads` that answers InvalidInput, never RecursionError or a surrogate string."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidInput(field, f"the {field} is nested too deeply") from None
    except (ValueError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidInput(field, f"the {field} is not valid JSON") from None
    check_payload(value, field)
    return value


def parse_json_body() -> dict:
    """The request's JSON object body, checked; 415 / 413 / 400 otherwise."""
    if not request.is_json:
        raise UnsupportedMediaType("send a JSON object with Content-Type: application/json")
    data = loads_checked(request.get_data(cache=True), "body")  # 413 past MAX_CONTENT_LENGTH
    if not isinstance(data, dict):
        raise InvalidInput("body", "the request body must be a JSON object")
    return data
