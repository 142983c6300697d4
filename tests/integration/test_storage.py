"""One contract for both stores, so the in-memory one cannot drift from S3."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from worker.storage.base import Storage, StorageError
from worker.storage.memory import MemoryStorage
from worker.wiring import Container, build

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "s3"])
def storage(request: pytest.FixtureRequest) -> Iterator[Storage]:
    if request.param == "memory":
        yield MemoryStorage()
    else:
        container: Container = request.getfixturevalue("container")
        yield container.storage


def test_put_then_get_and_head(storage: Storage) -> None:
    info = storage.put("contract/a.png", b"\x89PNG-bytes", "image/png")
    assert (info.key, info.size, info.content_type) == ("contract/a.png", 10, "image/png")
    assert storage.get("contract/a.png") == b"\x89PNG-bytes"
    head = storage.head("contract/a.png")
    assert head is not None and (head.size, head.content_type) == (10, "image/png")


def test_overwrite_replaces(storage: Storage) -> None:
    storage.put("contract/b.jpg", b"first", "image/jpeg")
    storage.put("contract/b.jpg", b"second!", "image/jpeg")
    assert storage.get("contract/b.jpg") == b"second!"


def test_missing_objects(storage: Storage) -> None:
    assert storage.head("contract/nothing-here") is None
    with pytest.raises(StorageError):
        storage.get("contract/nothing-here")


def test_check_passes_on_a_reachable_bucket(storage: Storage) -> None:
    storage.check()


def _tamper(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    signature = query["X-Amz-Signature"]
    query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_the_s3_server_serves_presigned_urls_and_refuses_tampered_ones(
    container: Container,
) -> None:
    storage = container.storage
    storage.put("contract/signed.jpg", b"jpeg-bytes", "image/jpeg")
    url = storage.presign_get("contract/signed.jpg", 60)
    assert httpx.get(url).content == b"jpeg-bytes"
    assert httpx.get(_tamper(url)).status_code == 403

    put_url = storage.presign_put("contract/by-provider.png", "image/png", 60)
    assert (
        httpx.put(put_url, content=b"png", headers={"Content-Type": "image/png"}).status_code == 200
    )
    assert storage.get("contract/by-provider.png") == b"png"
    forged = httpx.put(_tamper(put_url), content=b"evil", headers={"Content-Type": "image/png"})
    assert forged.status_code == 403
    assert storage.get("contract/by-provider.png") == b"png"


def test_urls_handed_out_point_at_the_public_endpoint_and_work(container: Container) -> None:
    # The same server under another name stands in for a compose stack's two addresses:
    # editq reaches it as one (127.0.0.1), people and providers as the other (localhost).
    inside = container.settings.s3_endpoint_url or ""
    outside = inside.replace("127.0.0.1", "localhost")
    assert outside != inside
    settings = container.settings.model_copy(update={"s3_public_endpoint_url": outside})
    public = build(settings)
    try:
        public.storage.put("contract/public.png", b"\x89PNG-public", "image/png")
        assert public.storage.get("contract/public.png") == b"\x89PNG-public"
        url = public.storage.presign_get("contract/public.png", 60)
        assert url.startswith(outside)
        assert httpx.get(url).content == b"\x89PNG-public"
        put = public.storage.presign_put("contract/by-provider.png", "image/png", 60)
        assert put.startswith(outside)
        sent = httpx.put(put, content=b"from a provider", headers={"Content-Type": "image/png"})
        assert sent.status_code == 200
        assert public.storage.get("contract/by-provider.png") == b"from a provider"
    finally:
        public.close()
