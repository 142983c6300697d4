"""What every provider adapter shares: reading answers, ``Retry-After``, transport faults.

The stable error codes the adapters classify into are in :mod:`worker.faults`.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from worker.faults import PROVIDER_TIMEOUT, PROVIDER_UNREACHABLE, ErrorKind, Fault
from worker.values.canonical import EditInput

_DELAY_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
#: Longest provider detail kept in a message: providers echo inputs (a data URI can be
#: megabytes) and error pages can be long.
MAX_DETAIL_CHARS = 500


def shorten(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text``, cut to ``limit`` characters with ``...`` when it is longer."""
    return text if len(text) <= limit else text[:limit] + "..."


def transport_fault(exc: httpx.HTTPError, provider: str = "fal") -> Fault:
    """The :class:`Fault` for a call that got no HTTP answer from ``provider``."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return Fault(
            ErrorKind.RETRYABLE, PROVIDER_TIMEOUT, f"{provider} did not answer in time ({reason})"
        )
    return Fault(
        ErrorKind.RETRYABLE, PROVIDER_UNREACHABLE, f"could not reach {provider} ({reason})"
    )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date.

    :param value: the header's value, or ``None`` when absent.
    :param now: Unix time an HTTP date is measured from (the current time by default).
    :returns: a non-negative number of seconds, or ``None`` when absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


#: The canonical fields fal and Runflow both take, under the same names, for Kontext.
KONTEXT_FIELDS = (
    "prompt",
    "image_url",
    "aspect_ratio",
    "num_images",
    "guidance_scale",
    "seed",
    "output_format",
    "safety_tolerance",
    "enhance_prompt",
)


def kontext_arguments(edit: EditInput) -> dict[str, object]:
    """The Kontext input fal and Runflow take for one canonical edit.

    Fields left unset are omitted so the provider's own defaults apply; ``safety_tolerance``
    is a string (``"1"`` to ``"6"``) on both.
    """
    fields = edit.provider_fields()
    arguments = {name: fields[name] for name in KONTEXT_FIELDS if name in fields}
    if "safety_tolerance" in arguments:
        arguments["safety_tolerance"] = str(arguments["safety_tolerance"])
    return arguments


def decode_body(body: object) -> Any:
    """A response body as JSON when it is JSON, else as stripped text (or as given).

    An HTML page (a proxy's "502 Bad Gateway") is summarised by its title or text, so a
    job's error message says what the page said instead of carrying its markup.
    """
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", errors="replace")
    if not isinstance(body, str):
        return body
    try:
        return json.loads(body)
    except ValueError:
        text = body.strip()
        return summarise_html(text) if _HTML.match(text) else text


_HTML = re.compile(r"\s*(<!doctype html|<html|<head|<body)", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def summarise_html(page: str) -> str:
    """``an HTML error page: <its title, or its text>``, in one short line."""
    title = _TITLE.search(page)
    text = title.group(1) if title else _TAG.sub(" ", page)
    return "an HTML error page: " + shorten(" ".join(html.unescape(text).split()) or "empty", 120)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` (lower case), looked up case-insensitively."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def json_object(content: bytes) -> dict[str, Any] | None:
    """The JSON object in ``content``, or ``None`` when it is not one."""
    try:
        value = json.loads(content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def flag_at(flags: object, index: int) -> bool | None:
    """Image ``index``'s entry of a ``has_nsfw_concepts`` list; None when there is none.

    fal blacks out an image its safety checker flags and says so here, one boolean per
    image; Runflow's Kontext output is read the same way where it carries the list.
    """
    flag = flags[index] if isinstance(flags, list) and index < len(flags) else None
    return flag if isinstance(flag, bool) else None
