"""The error vocabulary is written down once, and the documents keep up with it."""

from __future__ import annotations

from pathlib import Path

from worker import errors, faults

DOCS = Path(__file__).parents[2] / "docs" / "errors.md"


def _error_classes() -> list[type[errors.EditqError]]:
    found: list[type[errors.EditqError]] = []
    pending = [errors.EditqError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    return found


def test_every_error_class_is_drawn_in_the_tree_of_worker_errors() -> None:
    tree = errors.__doc__ or ""
    missing = [cls.__name__ for cls in _error_classes() if cls.__name__ not in tree]
    assert missing == []


def test_every_error_class_lives_in_worker_errors_and_reads_as_its_message() -> None:
    for cls in _error_classes():
        assert cls.__module__ == "worker.errors", cls
        assert cls.__doc__ and "\n" not in cls.__doc__.strip(), cls


def test_every_job_error_code_is_documented_with_its_kind() -> None:
    text = DOCS.read_text()
    missing = [code for code in faults.CATALOGUE if f"| `{code}` |" not in text]
    assert missing == []


def test_every_api_error_code_is_documented() -> None:
    text = DOCS.read_text()
    codes = {cls.code for cls in _error_classes() if cls.status < 500 and cls.code != "error"}
    codes -= {errors.WebhookRejected.code}
    codes |= {errors.WEBHOOK_SIGNATURE_INVALID, errors.WEBHOOK_MALFORMED}
    missing = sorted(code for code in codes if f"`{code}`" not in text)
    assert missing == []
