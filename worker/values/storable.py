"""Values PostgreSQL would refuse, refused at the edge instead: a 422 naming the field, not a 500.

PostgreSQL ``text`` and ``jsonb`` cannot hold the NUL character, and ``jsonb`` cannot hold a lone
UTF-16 surrogate or a non-finite number. Free-form JSON is also bounded in depth, so that the
job can be serialized back in the API's answer.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

#: Deepest nesting accepted in free-form JSON (``metadata``); producers' tags need a few levels.
MAX_JSON_DEPTH = 32


def storable_text(value: str) -> str:
    """``value``, unless it holds a NUL character (``nul_character``)."""
    if "\x00" in value:
        raise PydanticCustomError(
            "nul_character", "must not contain the NUL character (\\u0000); remove it"
        )
    return value


#: A string PostgreSQL can store as text.
StorableText = Annotated[str, AfterValidator(storable_text)]


def storable_json(value: Any) -> Any:
    """``value``, unless ``jsonb`` cannot hold it or it nests too deep (``json_unstorable``)."""
    # An explicit stack, not recursion: the input's depth is what is being checked.
    pending: list[tuple[Any, str, int]] = [(value, "", 0)]
    while pending:
        item, path, depth = pending.pop()
        problem = _problem(item, path, depth)
        if problem:
            raise PydanticCustomError("json_unstorable", "{problem}", {"problem": problem})
        if isinstance(item, dict):
            pending += [(v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in item.items()]
        elif isinstance(item, list):
            pending += [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item)]
    return value


def _problem(item: Any, path: str, depth: int) -> str | None:
    # Keys are checked with the object that holds them, so a reported path is always printable.
    where = f" at {path if len(path) <= 100 else path[:100] + '...'}" if path else ""
    if depth > MAX_JSON_DEPTH:
        return f"nested deeper than {MAX_JSON_DEPTH} levels{where}"
    if isinstance(item, float) and not math.isfinite(item):
        return f"{item} is not a JSON number{where}; use a finite number or a string"
    texts = list(item) if isinstance(item, dict) else [item] if isinstance(item, str) else []
    for text in texts:
        if "\x00" in text:
            return f"the NUL character (\\u0000) cannot be stored{where}; remove it"
        if not _is_unicode(text):
            return f"a lone UTF-16 surrogate cannot be stored{where}; send valid Unicode"
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
