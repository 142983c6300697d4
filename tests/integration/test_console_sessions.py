"""The console's session cookie and its settings, over real HTTP on real PostgreSQL."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulators.server import run_in_thread
from worker.api.app import create_app
from worker.console.operators import hash_password
from worker.errors import SettingsInvalid
from worker.wiring import Container

pytestmark = pytest.mark.integration

PASSWORD = "ana-operates-the-queue"
SECRET = "a-session-key-of-more-than-thirty-two-characters"


def console(container: Container, **settings: Any) -> Container:
    """The container with ``settings`` changed, checked as the environment's would be."""
    changed = type(container.settings).model_validate(
        {**container.settings.model_dump(), **settings}
    )
    return dataclasses.replace(container, settings=changed)


@pytest.fixture
def production(container: Container) -> Iterator[httpx.Client]:
    """The API as production runs it, with one operator."""
    built = console(
        container,
        env="production",
        console_operators=f"ana:operate:{hash_password(PASSWORD)}",
        console_secret=SECRET,
    )
    with run_in_thread(create_app(built)) as server, httpx.Client(base_url=server.url) as c:
        yield c


def test_in_production_the_session_cookie_is_secure_httponly_and_same_site(
    production: httpx.Client,
) -> None:
    form = production.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    # The cookie is Secure, so this plain-HTTP client would not send it back: carry it by hand.
    cookie = form.headers["set-cookie"]
    session = cookie.split(";", 1)[0]
    answer = production.post(
        "/console/login",
        data={"csrf_token": token.group(1), "name": "ana", "password": PASSWORD},
        headers={"Cookie": session},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console"
    flags = answer.headers["set-cookie"].lower()
    assert "httponly" in flags and "secure" in flags and "samesite=lax" in flags
    assert "path=/console" in flags


def test_a_login_without_the_form_s_token_is_refused(production: httpx.Client) -> None:
    answer = production.post("/console/login", data={"name": "ana", "password": PASSWORD})
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers or "operator" not in answer.headers["set-cookie"]


def test_pages_send_a_stranger_to_the_login_form(production: httpx.Client) -> None:
    for path in ("/console", "/console/jobs", "/console/batches", "/console/callbacks"):
        answer = production.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login"


def test_without_operators_the_console_is_off_and_says_how_to_turn_it_on(
    container: Container,
) -> None:
    built = console(container, console_operators="", console_secret=SECRET)
    with run_in_thread(create_app(built)) as server:
        answer = httpx.get(f"{server.url}/console")
    assert answer.status_code == 404
    assert "EDITQ_CONSOLE_OPERATORS" in answer.text and "EDITQ_CONSOLE_SECRET" in answer.text


def test_a_short_session_key_is_a_settings_error(container: Container) -> None:
    built = console(
        container,
        console_operators=f"ana:read:{hash_password(PASSWORD)}",
        console_secret="short",
    )
    with pytest.raises(SettingsInvalid) as caught:
        create_app(built)
    assert "EDITQ_CONSOLE_SECRET" in caught.value.message
