"""JSON from outside (parcels, memory values): parsed so that what is accepted can be stored,
shown and parsed again anywhere, or refused with one line.

Python's json module accepts what other parts cannot handle: `1e999` becomes inf and prints as
the non-standard `Infinity`; an integer of 5,000 digits raises ValueError; nesting a thousand
deep raises RecursionError, and nine hundred deep passes here only to fail later, elsewhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

MAX_DEPTH = 64
MAX_INT_DIGITS = 100


class JsonRefused(ValueError):
    """Valid JSON that is not accepted; the message is one line for whoever sent it."""


def _constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not valid JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"the number {text[:20]} is out of range (no infinity in JSON)")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonRefused(f"an integer of {len(text)} digits: at most {MAX_INT_DIGITS}")
    return int(text)


def depth(value: Any) -> int:
    """How deep objects and arrays nest (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        stack.extend((child, level + 1) for child in children)
    return deepest


def check(value: Any) -> Any:
    """Refuses data nested deeper than MAX_DEPTH (it could not be stored and read back)."""
    if depth(value) > MAX_DEPTH:
        raise JsonRefused(f"nested more than {MAX_DEPTH} levels deep")
    return value


def loads(text: str) -> Any:
    """json.loads, refusing what could not be stored and shown again (JsonRefused), and
    raising json.JSONDecodeError for what is not JSON."""
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise JsonRefused(f"nested more than {MAX_DEPTH} levels deep") from None
    return check(value)
