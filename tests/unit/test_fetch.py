"""Output downloads: only http(s), only public addresses (unless allowed), bounded in size."""

from __future__ import annotations

import base64

import httpx
import pytest

from worker.fetch import Fetcher, FetchError

PUBLIC = {"cdn.example.com": ["93.184.216.34"], "internal.example.com": ["10.0.0.5"]}


def resolver(host: str) -> list[str]:
    return PUBLIC.get(host, ["127.0.0.1"])


def fetcher(handler, *, allow_private: bool = False, max_bytes: int = 1000) -> Fetcher:  # type: ignore[no-untyped-def]
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return Fetcher(http, max_bytes=max_bytes, allow_private=allow_private, resolver=resolver)


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"image-bytes")


def test_a_public_url_is_fetched() -> None:
    assert fetcher(ok).fetch("https://cdn.example.com/out.png") == b"image-bytes"


@pytest.mark.parametrize(
    "url",
    ["http://internal.example.com/x", "http://localhost:8000/x", "http://169.254.169.254/latest"],
)
def test_private_and_loopback_addresses_are_refused(url: str) -> None:
    with pytest.raises(FetchError, match="non-public address") as caught:
        fetcher(ok).fetch(url)
    assert caught.value.permanent


def test_private_addresses_are_allowed_when_configured() -> None:
    assert fetcher(ok, allow_private=True).fetch("http://localhost:8000/x") == b"image-bytes"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://cdn.example.com/x", "ftp://x/y"])
def test_only_http_schemes(url: str) -> None:
    with pytest.raises(FetchError, match="only http"):
        fetcher(ok, allow_private=True).fetch(url)


def test_large_bodies_are_cut_off() -> None:
    big = fetcher(lambda r: httpx.Response(200, content=b"x" * 5000), max_bytes=1000)
    with pytest.raises(FetchError, match="larger than 1000") as caught:
        big.fetch("https://cdn.example.com/big")
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("status", "permanent"), [(404, True), (410, True), (403, True), (502, False)]
)
def test_error_answers_say_whether_trying_again_helps(status: int, permanent: bool) -> None:
    with pytest.raises(FetchError) as caught:
        fetcher(lambda r: httpx.Response(status)).fetch("https://cdn.example.com/x")
    assert caught.value.permanent is permanent


def test_a_transport_error_is_transient() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(FetchError) as caught:
        fetcher(broken).fetch("https://cdn.example.com/x")
    assert not caught.value.permanent


def test_data_uris_are_decoded_within_the_limit() -> None:
    uri = "data:image/png;base64," + base64.b64encode(b"png-bytes").decode()
    assert fetcher(ok).fetch(uri) == b"png-bytes"
    with pytest.raises(FetchError):
        fetcher(ok).fetch("data:image/png;base64,***")
