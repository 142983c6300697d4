"""Producer keys and settings parsing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.api.auth import KeyRing
from worker.config import Settings


def test_keys_are_accepted_only_as_bearer_tokens() -> None:
    ring = KeyRing(["alpha", "beta"])
    assert ring.accepts("Bearer alpha") and ring.accepts("bearer beta")
    for header in (None, "", "Bearer", "Bearer gamma", "Basic alpha", "alpha"):
        assert not ring.accepts(header)


def test_no_configured_keys_accept_nothing() -> None:
    assert not KeyRing([]).accepts("Bearer anything")


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITQ_API_KEYS", "k1, k2,,")
    monkeypatch.setenv("EDITQ_PROVIDERS", "fal")
    settings = Settings(_env_file=None)
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert "k1" not in repr(settings)


def test_an_unknown_provider_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITQ_PROVIDERS", "fal,replicate")
    with pytest.raises(ValidationError, match="unknown provider"):
        Settings(_env_file=None)


def test_private_urls_are_allowed_only_in_development_or_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EDITQ_ENV", raising=False)
    monkeypatch.delenv("EDITQ_ALLOW_PRIVATE_URLS", raising=False)
    assert not Settings(_env_file=None).private_urls_allowed
    monkeypatch.setenv("EDITQ_ENV", "development")
    assert Settings(_env_file=None).private_urls_allowed
    monkeypatch.setenv("EDITQ_ENV", "production")
    monkeypatch.setenv("EDITQ_ALLOW_PRIVATE_URLS", "1")
    assert Settings(_env_file=None).private_urls_allowed
