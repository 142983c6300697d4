"""Outputs: where they go in the bucket, and copying them there from a provider.

Provider result URLs expire (minutes to an hour), so every output is read as soon as the
provider finishes: downloaded, or, when the provider uploaded it itself (Runware's
``uploadEndpoint``), read back from the bucket. Finalize checks the bytes (the quality
gate) and then stores them: under ``outputs/{job}/{index}`` when they count (a chain's
later steps under ``outputs/{job}/steps/{step}/{index}``), and under
``outputs/{job}/rejected/{attempt}/{index}`` when a check failed, so ops can look at what
was refused and a retry's output never overwrites it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.fetch import Fetcher, FetchError
from worker.providers.base import Completed
from worker.storage.base import Storage
from worker.values import images
from worker.values.canonical import EditInput
from worker.values.records import OutputRecord


def output_key(job_id: uuid.UUID, step: int, index: int, extension: str) -> str:
    """Where output ``index`` of step ``step`` of a job is stored in the bucket.

    A one-step job's outputs are ``outputs/{job}/{index}``; a chain's later steps keep
    theirs under ``outputs/{job}/steps/{step}/``.
    """
    if step == 1:
        return f"outputs/{job_id}/{index}.{extension}"
    return f"outputs/{job_id}/steps/{step}/{index}.{extension}"


def rejected_key(job_id: uuid.UUID, attempt: int, index: int, extension: str) -> str:
    """Where output ``index`` of attempt ``attempt`` is kept when it failed a quality check."""
    return f"outputs/{job_id}/rejected/{attempt}/{index}.{extension}"


def upload_key(job_id: uuid.UUID, step: int, edit: EditInput) -> str:
    """The key a provider that uploads directly writes a step's single output to."""
    return output_key(job_id, step, 0, images.extension_for(f"image/{edit.output_format}"))


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
                "flagged": o.flagged,
            }
            for o in outcome.outputs
        ],
        "cost_usd": None if outcome.cost_usd is None else str(outcome.cost_usd),
    }


@dataclass(frozen=True, slots=True)
class Fetched:
    """One output's bytes, read from the provider or from where it uploaded them."""

    index: int
    data: bytes
    #: The provider's moderation flag for it (None: the provider says nothing).
    flagged: bool | None
    #: The key the provider uploaded it to; None when it was downloaded.
    uploaded_key: str | None


class OutputCopier:
    """Reads a finished attempt's outputs, and stores each one where its verdict says."""

    def __init__(self, storage: Storage, fetcher: Fetcher) -> None:
        self._storage = storage
        self._fetcher = fetcher

    def fetch_all(self, result: Mapping[str, Any]) -> list[Fetched]:
        """Every output's bytes. Raises FetchError or StorageError."""
        return [self._fetch(i, spec) for i, spec in enumerate(result["outputs"])]

    def store(
        self,
        job_id: uuid.UUID,
        step: int,
        fetched: Fetched,
        quality: dict[str, Any] | None = None,
    ) -> OutputRecord:
        """Store an output of step ``step`` as the job's own (it is there already if the
        provider put it).

        Raises NotAnImage when the bytes are not an image editq can describe.
        """
        info = images.inspect(fetched.data)
        key = fetched.uploaded_key or output_key(job_id, step, fetched.index, info.extension)
        if fetched.uploaded_key is None:
            self._storage.put(key, fetched.data, info.content_type)
        digest = hashlib.sha256(fetched.data).hexdigest()
        return OutputRecord(
            fetched.index,
            key,
            info.content_type,
            info.width,
            info.height,
            len(fetched.data),
            digest,
            quality,
            step,
        )

    def keep_rejected(self, job_id: uuid.UUID, attempt: int, fetched: Fetched) -> str:
        """Keep an output that failed a check where ops can look at it; returns its key."""
        try:
            info: images.ImageInfo | None = images.inspect(fetched.data)
        except images.NotAnImage:
            info = None
        extension = info.extension if info else "bin"
        content_type = info.content_type if info else "application/octet-stream"
        key = rejected_key(job_id, attempt, fetched.index, extension)
        self._storage.put(key, fetched.data, content_type)
        return key

    def _fetch(self, index: int, spec: Mapping[str, Any]) -> Fetched:
        flagged = spec.get("flagged")
        flag = flagged if isinstance(flagged, bool) else None
        if spec.get("stored"):
            key = str(spec["key"])
            if self._storage.head(key) is None:
                message = f"the provider reported {key} uploaded, but it is not in the bucket"
                raise FetchError(message, permanent=True)
            return Fetched(index, self._storage.get(key), flag, key)
        return Fetched(index, self._fetcher.fetch(str(spec["url"])), flag, None)
