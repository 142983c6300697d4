"""Reading a job's source image ourselves, for the one case that needs its size.

Runware wants an output width and height; when a producer leaves the aspect ratio out
("follow the input"), the adapter asks this for the source's size and picks the nearest
size Runware offers. The fetch goes through the same guard as output downloads.
"""

from __future__ import annotations

from collections.abc import Callable

from worker.faults import SOURCE_IMAGE_UNREACHABLE, SOURCE_IMAGE_UNREADABLE, ErrorKind, Fault
from worker.fetch import Fetcher, FetchError
from worker.providers.base import ProviderCallError
from worker.values import images


def source_size(fetcher: Fetcher) -> Callable[[str], tuple[int, int]]:
    """A function giving an image URL's (width, height); raises ProviderCallError."""

    def size(url: str) -> tuple[int, int]:
        try:
            info = images.inspect(fetcher.fetch(url))
        except FetchError as exc:
            if exc.permanent:
                raise ProviderCallError(
                    Fault(ErrorKind.TERMINAL, SOURCE_IMAGE_UNREADABLE, str(exc))
                ) from exc
            raise ProviderCallError(
                Fault(ErrorKind.RETRYABLE, SOURCE_IMAGE_UNREACHABLE, str(exc))
            ) from exc
        except images.NotAnImage as exc:
            message = f"the source image cannot be read: {exc}"
            raise ProviderCallError(
                Fault(ErrorKind.TERMINAL, SOURCE_IMAGE_UNREADABLE, message)
            ) from exc
        return info.width, info.height

    return size
