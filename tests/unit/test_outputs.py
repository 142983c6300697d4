"""Copying a finished attempt's outputs into the bucket, on the in-memory store."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image

from worker.fetch import Fetcher, FetchError
from worker.pipeline.outputs import OutputCopier, output_key
from worker.storage.memory import MemoryStorage
from worker.values.images import NotAnImage
from worker.values.records import OutputRecord

JOB = uuid.UUID("00000000-0000-4000-8000-000000000001")


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def copier(files: dict[str, bytes], storage: MemoryStorage) -> OutputCopier:
    """A copier whose downloads are answered from ``files`` (any other URL is gone)."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = files.get(str(request.url))
        return httpx.Response(200, content=body) if body is not None else httpx.Response(404)

    http = httpx.Client(transport=httpx.MockTransport(answer))
    return OutputCopier(storage, Fetcher(http, max_bytes=1 << 20, allow_private=True))


def copy_all(copier: OutputCopier, result: dict[str, Any]) -> list[OutputRecord]:
    """What finalize does with outputs that passed the gate: read them all, store each."""
    return [copier.store(JOB, 1, fetched) for fetched in copier.fetch_all(result)]


def test_each_output_is_stored_under_its_key_and_described() -> None:
    storage = MemoryStorage()
    first, second = png(64, 48), png(32, 32)
    files = {"https://cdn.example/a": first, "https://cdn.example/b": second}
    result = {"outputs": [{"url": "https://cdn.example/a"}, {"url": "https://cdn.example/b"}]}

    stored = copy_all(copier(files, storage), result)

    assert [o.key for o in stored] == [output_key(JOB, 1, 0, "png"), output_key(JOB, 1, 1, "png")]
    assert storage.get(stored[0].key) == first and storage.get(stored[1].key) == second
    assert (stored[0].width, stored[0].height, stored[0].bytes) == (64, 48, len(first))
    assert stored[0].sha256 == hashlib.sha256(first).hexdigest()
    assert stored[0].content_type == "image/png"


def test_an_output_the_provider_uploaded_is_read_from_the_bucket_not_downloaded() -> None:
    storage = MemoryStorage()
    image = png(16, 16)
    key = output_key(JOB, 1, 0, "png")
    storage.put(key, image, "image/png")
    result = {"outputs": [{"url": "https://cdn.example/never", "stored": True, "key": key}]}

    stored = copy_all(copier({}, storage), result)

    assert stored[0].key == key and stored[0].sha256 == hashlib.sha256(image).hexdigest()


def test_an_upload_the_provider_reported_but_did_not_make_is_a_permanent_failure() -> None:
    result = {"outputs": [{"url": "https://x/y", "stored": True, "key": "outputs/missing.png"}]}
    with pytest.raises(FetchError) as raised:
        copy_all(copier({}, MemoryStorage()), result)
    assert raised.value.permanent


def test_an_expired_output_is_a_permanent_failure_and_nothing_is_stored() -> None:
    storage = MemoryStorage()
    with pytest.raises(FetchError) as raised:
        copy_all(copier({}, storage), {"outputs": [{"url": "https://cdn.example/gone"}]})
    assert raised.value.permanent
    assert storage.head(output_key(JOB, 1, 0, "png")) is None


def test_bytes_that_are_not_an_image_are_refused() -> None:
    files = {"https://cdn.example/a": b"<html>not an image</html>"}
    with pytest.raises(NotAnImage):
        copy_all(copier(files, MemoryStorage()), {"outputs": [{"url": "https://cdn.example/a"}]})


def test_a_rejected_output_is_kept_under_its_attempt_and_the_flag_travels() -> None:
    storage = MemoryStorage()
    image = png(8, 8)
    files = {"https://cdn.example/a": image}
    result = {"outputs": [{"url": "https://cdn.example/a", "flagged": True}]}
    made = copier(files, storage)
    (fetched,) = made.fetch_all(result)
    assert fetched.flagged is True
    key = made.keep_rejected(JOB, 2, fetched)
    assert key == f"outputs/{JOB}/rejected/2/0.png" and storage.get(key) == image
    assert storage.head(output_key(JOB, 1, 0, "png")) is None
    junk = made.keep_rejected(JOB, 3, dataclasses.replace(fetched, data=b"<html>"))
    assert junk == f"outputs/{JOB}/rejected/3/0.bin"
