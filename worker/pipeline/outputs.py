"""Outputs: where they go in the bucket, and copying them there from a provider.

Provider result URLs expire (minutes to an hour), so every output is copied into our
bucket as soon as the provider finishes. A provider that uploads directly (Runware's
``uploadEndpoint``) has already written its output; it is then only checked and described.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from worker.fetch import Fetcher, FetchError
from worker.providers.base import Completed
from worker.storage.base import Storage
from worker.values import images
from worker.values.canonical import EditInput
from worker.values.records import OutputRecord


def output_key(job_id: uuid.UUID, index: int, extension: str) -> str:
    """Where output ``index`` of a job is stored in the bucket."""
    return f"outputs/{job_id}/{index}.{extension}"


def upload_key(job_id: uuid.UUID, edit: EditInput) -> str:
    """The key a provider that uploads directly writes a job's single output to."""
    return output_key(job_id, 0, images.extension_for(f"image/{edit.output_format}"))


def result_json(outcome: Completed, stored_key: str) -> dict[str, Any]:
    """What the attempt row keeps of a finished attempt: the outputs to copy, the cost."""
    return {
        "outputs": [
            {
                "url": o.url,
                "content_type": o.content_type,
                "width": o.width,
                "height": o.height,
                "stored": o.stored,
                "key": stored_key if o.stored else None,
            }
            for o in outcome.outputs
        ],
        "cost_usd": None if outcome.cost_usd is None else str(outcome.cost_usd),
    }


class OutputCopier:
    """Copies a finished attempt's outputs into the bucket and describes each one."""

    def __init__(self, storage: Storage, fetcher: Fetcher) -> None:
        self._storage = storage
        self._fetcher = fetcher

    def copy_all(self, job_id: uuid.UUID, result: Mapping[str, Any]) -> list[OutputRecord]:
        """Every output of ``result``. Raises FetchError, NotAnImage or StorageError."""
        return [self._copy(job_id, i, spec) for i, spec in enumerate(result["outputs"])]

    def _copy(self, job_id: uuid.UUID, index: int, spec: Mapping[str, Any]) -> OutputRecord:
        if spec.get("stored"):
            return self._check_uploaded(index, str(spec["key"]))
        data = self._fetcher.fetch(str(spec["url"]))
        info = images.inspect(data)
        key = output_key(job_id, index, info.extension)
        self._storage.put(key, data, info.content_type)
        return _describe(index, key, data, info)

    def _check_uploaded(self, index: int, key: str) -> OutputRecord:
        if self._storage.head(key) is None:
            message = f"the provider reported {key} uploaded, but it is not in the bucket"
            raise FetchError(message, permanent=True)
        data = self._storage.get(key)
        return _describe(index, key, data, images.inspect(data))


def _describe(index: int, key: str, data: bytes, info: images.ImageInfo) -> OutputRecord:
    digest = hashlib.sha256(data).hexdigest()
    return OutputRecord(index, key, info.content_type, info.width, info.height, len(data), digest)
