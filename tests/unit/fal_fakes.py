"""Wire-level stand-ins for fal.ai in unit tests: its queue API and its webhook signer.

Every body here has the shape fal really sends (its queue and error documentation), so
the adapter is tested against fal's wire format, not against our own types.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from worker.providers.fal.signature import JwksCache

BASE_URL = "https://queue.fal.run"
JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
#: Where fal's own status/result/cancel URLs point: the app, without the /kontext subpath.
REQUEST_URL = f"{BASE_URL}/fal-ai/flux-pro/requests/{REQUEST_ID}"
STATUS_URL = f"{REQUEST_URL}/status"
CANCEL_URL = f"{REQUEST_URL}/cancel"

RESULT: dict[str, Any] = {
    "images": [
        {
            "url": "https://v3.fal.media/files/rabbit/x5WkHfHhBC8tZtYtXZzjB.jpeg",
            "content_type": "image/jpeg",
            "file_name": "x5WkHfHhBC8tZtYtXZzjB.jpeg",
            "file_size": 183_512,
            "width": 1024,
            "height": 768,
        },
        {
            "url": "https://v3.fal.media/files/koala/Qm2a8PnIYvBn3w1mGk0cT.jpeg",
            "content_type": "image/jpeg",
            "file_name": "Qm2a8PnIYvBn3w1mGk0cT.jpeg",
            "file_size": 176_004,
            "width": 1024,
            "height": 768,
        },
    ],
    "timings": {"inference": 3.48},
    "seed": 1_837_415_002,
    "has_nsfw_concepts": [False, False],
    "prompt": "replace the background with a sunlit beach",
}

MODERATED = {
    "detail": [
        {
            "loc": ["body", "prompt"],
            "msg": "The content could not be processed because it contained material"
            " flagged by a content checker.",
            "type": "content_policy_violation",
            "url": "https://docs.fal.ai/errors#content_policy_violation",
        }
    ]
}
IMAGE_UNREADABLE = {
    "detail": [
        {
            "loc": ["body", "image_url"],
            "msg": "Failed to load the image. Please ensure the image file is not corrupted.",
            "type": "image_load_error",
            "url": "https://docs.fal.ai/errors#image_load_error",
            "input": "https://shop.example.com/p/123.jpg",
        }
    ]
}
GUIDANCE_TOO_HIGH = {
    "detail": [
        {
            "loc": ["body", "guidance_scale"],
            "msg": "Input should be less than or equal to 20",
            "type": "less_than_equal",
            "ctx": {"le": 20},
            "input": 25,
        }
    ]
}
RUNNER_DOWN = {"detail": "Runner scheduling failure", "error_type": "runner_scheduling_failure"}


def queue_status(state: str, **extra: Any) -> dict[str, Any]:
    """A status body as fal's queue answers it."""
    return {
        "status": state,
        "request_id": REQUEST_ID,
        "response_url": REQUEST_URL,
        "status_url": STATUS_URL,
        "cancel_url": CANCEL_URL,
        "logs": None,
        "metrics": {},
        **extra,
    }


Answer = tuple[int, dict[str, Any]] | httpx.HTTPError | Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeFalQueue:
    """fal's queue API: answers submits itself; other answers are set per test.

    Any URL without an answer gets fal's 404, so a URL the adapter built itself (with
    the ``/kontext`` subpath) fails the way it fails against fal.
    """

    requests: list[httpx.Request] = field(default_factory=list)
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)

    def answer(self, method: str, url: str, status: int, body: Any, **headers: str) -> None:
        """Answer ``method url`` with ``status`` and a JSON ``body`` (and headers)."""
        self.answers[(method, url)] = (status, {"json": body, "headers": headers})

    def fail(self, method: str, url: str, error: httpx.HTTPError) -> None:
        """Make ``method url`` fail without an HTTP answer."""
        self.answers[(method, url)] = error

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url.copy_with(query=None))
        answer = self.answers.get((request.method, url))
        if isinstance(answer, httpx.HTTPError):
            raise answer
        if callable(answer):
            return answer(request)
        if answer is not None:
            status, kwargs = answer
            return httpx.Response(status, **kwargs)
        if request.method == "POST" and request.url.path.startswith("/fal-ai/flux-pro/kontext"):
            return httpx.Response(200, json={**queue_status("IN_QUEUE"), "queue_position": 0})
        return httpx.Response(404, json={"detail": "Not Found"})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))

    def last_json(self) -> Any:
        return json.loads(self.requests[-1].content)


def public_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    """A JWKS entry for ``key`` as fal publishes one (x in unpadded base64url)."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": hashlib.sha256(raw).hexdigest()[:16]}


@dataclass
class FalSigner:
    """fal's webhook side: signing keys, the JWKS that publishes them, and signed headers."""

    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    published: list[Ed25519PrivateKey] = field(default_factory=list)
    fetches: int = 0
    jwks_down: bool = False

    def __post_init__(self) -> None:
        if not self.published:
            self.published.append(self.key)

    def jwks_handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.jwks_down:
            return httpx.Response(503, text="upstream connect error")
        return httpx.Response(200, json={"keys": [public_jwk(k) for k in self.published]})

    def jwks(self, clock: Callable[[], float], **options: float) -> JwksCache:
        client = httpx.Client(transport=httpx.MockTransport(self.jwks_handler))
        return JwksCache(client, JWKS_URL, clock=clock, **options)

    def headers(
        self,
        body: bytes,
        timestamp: int,
        *,
        key: Ed25519PrivateKey | None = None,
        request_id: str = REQUEST_ID,
        user_id: str = "github|41872",
    ) -> dict[str, str]:
        """The four X-Fal-Webhook-* headers fal sends with ``body``."""
        digest = hashlib.sha256(body).hexdigest()
        message = f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()
        signature = (key or self.key).sign(message)
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": user_id,
            "X-Fal-Webhook-Timestamp": str(timestamp),
            "X-Fal-Webhook-Signature": signature.hex(),
        }


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
