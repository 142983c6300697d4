"""The canonical edit request: what producers send, whatever provider runs it.

Validated once at the edge (API, CLI, batch rows); adapters translate it into each
provider's own fields.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from worker.values.storable import StorableText

AspectRatio = Literal["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]
ModelName = Literal["flux-kontext-pro", "flux-kontext-max"]
ProviderName = Literal["fal", "runware", "runflow"]

#: Longest prompt accepted; providers reject far shorter ones, this only bounds storage.
MAX_PROMPT_CHARS = 10_000
#: Longest image reference (a data URI of a few MB at most).
MAX_IMAGE_URL_CHARS = 20_000_000


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _distinct(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("must not name a provider twice")
    return value


#: An edit instruction: not blank, and bounded.
Prompt = Annotated[
    StorableText, Field(min_length=1, max_length=MAX_PROMPT_CHARS), AfterValidator(_not_blank)
]
#: Providers in the order they are tried, each named once.
ProviderOrder = Annotated[
    list[ProviderName], Field(min_length=1, max_length=3), AfterValidator(_distinct)
]


class EditInput(BaseModel):
    """One FLUX.1 Kontext edit: a source image and an instruction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: Prompt
    image_url: StorableText = Field(min_length=1, max_length=MAX_IMAGE_URL_CHARS)
    aspect_ratio: AspectRatio | None = None
    num_images: int = Field(default=1, ge=1, le=4)
    guidance_scale: float | None = Field(default=None, ge=1, le=20)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    output_format: Literal["jpeg", "png"] = "jpeg"
    safety_tolerance: int | None = Field(default=None, ge=1, le=6)
    enhance_prompt: bool | None = None

    @field_validator("image_url")
    @classmethod
    def _image_url_scheme(cls, value: str) -> str:
        lowered = value[:16].lower()
        if lowered.startswith(("http://", "https://")):
            return value
        if lowered.startswith("data:image/"):
            if ";base64," not in value[:200]:
                raise ValueError("a data URI must be base64-encoded (data:image/...;base64,...)")
            return value
        raise ValueError("must be an http(s) URL or a data:image/...;base64 URI")

    def provider_fields(self) -> dict[str, object]:
        """The fields that were set, for adapters to translate (defaults left to providers)."""
        return self.model_dump(exclude_none=True)
