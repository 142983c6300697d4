"""What a new job is checked against before it is queued: which providers can run it (and
each step of its chain), and where its callback and source URLs may point.

The job API and batch ingest both check their jobs here, so a row of a batch is refused
for the same reasons, with the same codes, as the same job sent on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.errors import ChainInvalid, ImageUrlRefused, NoProviderCanRun
from worker.providers.base import Provider, Unsupported
from worker.usecases.callbacks import CallbackTargets
from worker.usecases.job_request import SourceUrls
from worker.values import chain
from worker.values.canonical import EditInput
from worker.values.chain import StepIn
from worker.values.routing import DEFAULT_ROUTING, Routing, ordered


class Intake:
    """The checks of a new job, against this deployment's providers and address rules."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        default_providers: Sequence[str],
        callback_targets: CallbackTargets | None = None,
        sources: SourceUrls | None = None,
    ) -> None:
        self._providers = providers
        self._default_providers = tuple(default_providers)
        #: Checks a job's ``callback_url``; None accepts any (tests that send no callbacks).
        self._callback_targets = callback_targets
        #: Checks a job's source ``image_url``; None accepts any (tests of other rules).
        self._sources = sources

    def plan_steps(
        self,
        model: str,
        first: EditInput,
        providers: Sequence[str],
        steps: Sequence[StepIn],
        routing: Routing = DEFAULT_ROUTING,
    ) -> list[dict[str, Any]]:
        """A chain's later steps as the job row keeps them, each routed on its own.

        Raises :class:`ChainInvalid` for a step that edits an output not made (or a chain
        too long), :class:`NoProviderCanRun` for a step none of its providers can run.
        """
        planned = chain.plan(first, steps)
        found = chain.problems(first, planned)
        if found:
            raise ChainInvalid(
                f"{found[0].field}: {found[0].message}",
                fields=[{"field": p.field, "rule": p.rule, "message": p.message} for p in found],
            )
        kept: list[dict[str, Any]] = []
        asked = tuple(providers)
        for i, step in enumerate(planned):
            asked = step.providers or asked
            eligible, _ = self.route(model, step.edit, asked, routing, field=f"steps.{i}")
            kept.append(chain.stored(step, eligible))
        return kept

    def route(
        self,
        model: str,
        edit: EditInput,
        providers: Sequence[str],
        routing: Routing = DEFAULT_ROUTING,
        field: str = "input",
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        """The providers that can run an edit, in the order ``routing`` prefers them, and
        why the others cannot.

        ``providers`` is the producer's list (empty: the default order); ``field`` names the
        edit in errors (``input``, or ``steps.0`` for a chain's second step). Raises
        :class:`NoProviderCanRun` when none can.
        """
        eligible: list[str] = []
        excluded: dict[str, str] = {}
        problems: list[dict[str, str]] = []
        for name in providers or self._default_providers:
            provider = self._providers.get(name)
            if provider is None:
                refused = [Unsupported("providers", f"{name} is not configured")]
            else:
                refused = provider.unsupported(model, edit)
            if not refused:
                eligible.append(name)
                continue
            excluded[name] = "; ".join(f"{u.field}: {u.reason}" for u in refused)
            problems += [
                {
                    "field": u.field if u.field in {"model", "providers"} else f"{field}.{u.field}",
                    "rule": "unsupported_by_provider",
                    "message": f"{name}: {u.reason}",
                }
                for u in refused
            ]
        if not eligible:
            first = problems[0]
            raise NoProviderCanRun(f"{first['field']}: {first['message']}", fields=problems)
        return ordered(routing, eligible, model), excluded

    def check_callback_url(self, url: str | None) -> None:
        """Raise unless callbacks to ``url`` can be signed and sent (batches check theirs too).

        :class:`CallbacksNotConfigured` when this server has no callback secret,
        :class:`CallbackUrlRefused` when the URL points at a non-public address.
        """
        if self._callback_targets is not None:
            self._callback_targets.check(url)

    def check_source(self, url: str, field: str = "input.image_url") -> None:
        """Raise :class:`ImageUrlRefused` when ``url`` points at a non-public address.

        The worker would refuse to fetch it anyway (as would every provider that cannot
        reach it); refusing it here costs the producer nothing and names the field.
        """
        refusal = self._sources.refusal(url) if self._sources else None
        if refusal is not None:
            raise ImageUrlRefused(
                f"{field}: {refusal}",
                fields=[{"field": field, "rule": ImageUrlRefused.code, "message": refusal}],
            )
