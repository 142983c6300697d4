"""The outbound client connects only to the address it checked, whatever DNS says next."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import httpcore
import httpx
import pytest

from worker.fetch import Fetcher, FetchError, NonPublicAddress, PinnedBackend, outbound_client


class _Secret(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"internal secret")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def internal_service() -> Iterator[int]:
    """A service on loopback, the kind SSRF reaches for; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Secret)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_dns_answer_that_changes_after_the_check_reaches_nothing(internal_service: int) -> None:
    # The first answer (the check) is public; the next (the connection) is loopback, as a
    # rebinding DNS server answers. "localhost" really is loopback here, so a client that
    # resolved the name again itself would read the internal service.
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    def rebinding(host: str) -> list[str]:
        return next(answers)

    with outbound_client(timeout=5, allow_private=False, resolver=rebinding) as client:
        fetcher = Fetcher(client, max_bytes=1000, allow_private=False, resolver=rebinding)
        with pytest.raises(FetchError) as caught:
            fetcher.fetch(f"http://localhost:{internal_service}/secret")
    assert "non-public address 127.0.0.1" in str(caught.value)


def test_without_the_check_the_transport_still_refuses(internal_service: int) -> None:
    with (
        outbound_client(timeout=5, allow_private=False) as client,
        pytest.raises(httpx.ConnectError, match="non-public address"),
    ):
        client.get(f"http://localhost:{internal_service}/secret")


class _Recorder(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self.hosts: list[str] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.hosts.append(host)
        raise httpcore.ConnectError("recorded, not connected")


def test_the_connection_goes_to_the_checked_public_address() -> None:
    sockets = _Recorder()
    backend = PinnedBackend(lambda host: ["93.184.216.34", "2606:2800:220:1::248"], sockets)
    with pytest.raises(httpcore.ConnectError, match="recorded"):
        backend.connect_tcp("cdn.example.com", 443)
    assert sockets.hosts == ["93.184.216.34"]


def test_one_private_address_in_the_answer_refuses_the_host() -> None:
    backend = PinnedBackend(lambda host: ["93.184.216.34", "10.0.0.5"], _Recorder())
    with pytest.raises(NonPublicAddress, match=r"10\.0\.0\.5"):
        backend.connect_tcp("cdn.example.com", 443)
