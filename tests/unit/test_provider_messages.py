"""What a user reads in error.message speaks of the product, not of markup or our notes."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from worker.faults import Fault
from worker.providers.fal.errors import classify_fal_error
from worker.providers.runflow.errors import classify_runflow_error
from worker.providers.runware.adapter import RunwareProvider
from worker.providers.runware.errors import classify_runware_error
from worker.values.canonical import EditInput

Classifier = Callable[..., Fault]

NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize(
    "classify", [classify_fal_error, classify_runware_error, classify_runflow_error]
)
def test_a_proxys_html_error_page_is_summarised_not_pasted(classify: Classifier) -> None:
    fault = classify(502, {}, NGINX_502)
    assert "an HTML error page: 502 Bad Gateway" in fault.message
    assert "<" not in fault.message and "nginx" not in fault.message


def test_a_fal_validation_error_keeps_fals_own_error_types() -> None:
    body = {
        "detail": [
            {"loc": ["body", "image_url"], "msg": "Image too small", "type": "image_too_small"}
        ]
    }
    fault = classify_fal_error(422, {}, json.dumps(body).encode())
    assert "image_too_small" in fault.message


def test_a_fal_request_error_keeps_its_error_type_at_any_status() -> None:
    body = {"detail": "Request exceeded its queue length", "error_type": "queue_full"}
    fault = classify_fal_error(400, {}, json.dumps(body).encode())
    assert "[queue_full]" in fault.message


def test_runware_says_it_does_not_offer_kontext_max() -> None:
    provider = RunwareProvider(httpx.Client(), webhook_secret=None, image_size=lambda _: (1, 1))
    edit = EditInput(prompt="p", image_url="https://example.com/a.jpg")
    (refused,) = provider.unsupported("flux-kontext-max", edit)
    assert refused.reason == "Runware does not offer FLUX.1 Kontext [max]; send it to fal"
    assert "protocol notes" not in refused.reason
