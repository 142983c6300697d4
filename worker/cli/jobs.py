"""``editq submit`` and ``editq jobs ...``: producers and ops at the command line.

Commands talk to PostgreSQL and S3 directly through the same use cases the API calls, so
ops need no API key and no running API.
"""

from __future__ import annotations

import dataclasses
import mimetypes
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from models.state import JobState
from worker.api.schemas.job_out import job_out
from worker.api.schemas.jobs import JobCreate
from worker.cli.common import build_container, err
from worker.cli.output import (
    DEFAULT_OUTPUT_FORMAT,
    JsonOption,
    OnFailureChoice,
    OutputFormat,
    Provider,
    RoutingChoice,
    follow,
    job_document,
    output_names,
    print_job,
    print_jobs,
    print_json,
    print_moved,
    print_retry_report,
)
from worker.errors import IdempotencyConflict, InvalidTransition
from worker.values.canonical import AspectRatio, ModelName
from worker.values.records import JobFilter
from worker.wiring import Container

jobs_app = typer.Typer(help="List, inspect, download, retry and cancel jobs.", no_args_is_help=True)

#: How long an uploaded source image stays readable by providers.
SOURCE_URL_SECONDS = 24 * 3600
#: Stands in for a local file while the other options are validated, so a bad option is
#: reported before anything is uploaded.
_UPLOAD_PENDING = "https://upload.pending/"


def _bad_input(exc: ValidationError) -> typer.Exit:
    for e in exc.errors():
        field = ".".join(str(p) for p in e["loc"]) or "input"
        err.print(f"[red]invalid {field}[/red]: {e['msg']} ({e['type']})", soft_wrap=True)
    return typer.Exit(2)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "data:"))


def _source_url(container: Container, source: str) -> str:
    if _is_url(source):
        return source
    path = Path(source)
    if not path.is_file():
        err.print(f"[red]invalid source[/red]: {source} is neither a URL nor a readable file")
        raise typer.Exit(2)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    key = f"inputs/{uuid.uuid4()}{path.suffix.lower()}"
    container.storage.put(key, path.read_bytes(), content_type)
    return container.storage.presign_get(key, SOURCE_URL_SECONDS)


def submit(
    source: Annotated[str, typer.Argument(help="Source image: a local file (uploaded) or a URL.")],
    prompt: Annotated[str, typer.Argument(help="The edit instruction.")],
    model: Annotated[ModelName, typer.Option(help="The FLUX.1 Kontext model.")] = (
        "flux-kontext-pro"
    ),
    aspect_ratio: Annotated[
        AspectRatio | None, typer.Option(help="Shape of the outputs; default follows the input.")
    ] = None,
    num_images: Annotated[int, typer.Option(help="Outputs, 1 to 4.")] = 1,
    guidance_scale: Annotated[float | None, typer.Option(help="Prompt adherence, 1 to 20.")] = None,
    seed: Annotated[int | None, typer.Option(help="0 to 4294967295; repeats an edit.")] = None,
    output_format: Annotated[
        OutputFormat, typer.Option(help="Image format of the outputs.")
    ] = DEFAULT_OUTPUT_FORMAT,
    safety_tolerance: Annotated[
        int | None, typer.Option(help="1 (strictest) to 6 (most permissive).")
    ] = None,
    enhance_prompt: Annotated[
        bool | None,
        typer.Option(
            "--enhance-prompt/--no-enhance-prompt",
            help="Whether the provider may rewrite the prompt first; unset: its default.",
        ),
    ] = None,
    provider: Annotated[
        list[Provider] | None, typer.Option(help="Provider order; repeat for several.")
    ] = None,
    priority: Annotated[int, typer.Option(help="-100 to 100; higher runs first.")] = 0,
    external_id: Annotated[str | None, typer.Option(help="Your own id for this job.")] = None,
    callback_url: Annotated[
        str | None,
        typer.Option(help="Receives this job's events, signed (needs EDITQ_CALLBACK_SECRET)."),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="Kept with the job, sent in its callbacks; repeat."),
    ] = None,
    on_failure: Annotated[
        OnFailureChoice | None,
        typer.Option(help="What a failed quality check does; unset: EDITQ_QUALITY_ON_FAILURE."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="The same key and request again give back the first job, not a new one."),
    ] = None,
    routing: Annotated[
        RoutingChoice | None,
        typer.Option(help="How the providers share the job; unset: EDITQ_ROUTING."),
    ] = None,
    then: Annotated[
        list[str] | None,
        typer.Option(
            "--then",
            metavar="PROMPT",
            help="A next step: edits the output of the step before; repeat for a chain.",
        ),
    ] = None,
    step_callbacks: Annotated[
        bool,
        typer.Option("--step-callbacks", help="Also send job.step_succeeded to --callback-url."),
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the job finishes.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 600,
) -> None:
    """Submit one edit job (a chain, with --then); prints its id (and, with --wait, its
    outcome, each step as it finishes)."""
    try:
        body = JobCreate.model_validate(
            {
                "model": model,
                "input": {
                    "prompt": prompt,
                    "image_url": source if _is_url(source) else _UPLOAD_PENDING,
                    "aspect_ratio": aspect_ratio,
                    "num_images": num_images,
                    "guidance_scale": guidance_scale,
                    "seed": seed,
                    "output_format": output_format.value,
                    "safety_tolerance": safety_tolerance,
                    "enhance_prompt": enhance_prompt,
                },
                "providers": [p.value for p in provider] if provider else None,
                "external_id": external_id,
                "callback_url": callback_url,
                "priority": priority,
                "metadata": _pairs(metadata or []),
                "quality": {"on_failure": on_failure.value} if on_failure else None,
                "steps": [{"prompt": p} for p in then or []],
                "routing": routing.value if routing else None,
                "callback_events": ["job.step_succeeded"] if step_callbacks else [],
            }
        )
    except ValidationError as exc:
        raise _bad_input(exc) from exc
    container = build_container()
    request = dataclasses.replace(
        body.to_request(),
        input=body.input.model_copy(update={"image_url": _source_url(container, source)}),
    )
    try:
        job, _ = container.jobs("cli").create(request, idempotency_key)
    except IdempotencyConflict as exc:
        if _is_url(source):
            raise
        raise IdempotencyConflict(
            "this Idempotency-Key was used before with another request; a local file is "
            "uploaded anew by every submit, so to replay one pass the first job's "
            "input.image_url as the source, or use a new key",
            key=idempotency_key,
        ) from exc
    typer.echo(str(job.id))
    if wait:
        detail = follow(container, job.id, timeout)
        print_job(container, detail)
        raise typer.Exit(0 if detail.job.state is JobState.SUCCEEDED else 1)


def _pairs(items: list[str]) -> dict[str, str]:
    """``--metadata`` items as a dict, or exit 2 naming the option and the bad item."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            err.print(f"[red]invalid --metadata[/red]: {escape(repr(item))} is not KEY=VALUE")
            raise typer.Exit(2)
        pairs[key] = value
    return pairs


@jobs_app.command("list")
def list_jobs(
    state: Annotated[
        list[JobState] | None, typer.Option(help="Only jobs in this state (repeatable).")
    ] = None,
    batch: Annotated[uuid.UUID | None, typer.Option(help="Only jobs of this batch.")] = None,
    provider: Annotated[Provider | None, typer.Option(help="Only jobs last on this one.")] = None,
    error_code: Annotated[str | None, typer.Option(help="Only jobs that failed so.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Recent jobs, newest first."""
    where = JobFilter(
        states=tuple(state or ()),
        batch_id=batch,
        provider=provider.value if provider else None,
        error_code=error_code,
    )
    page, _ = build_container().jobs("cli").list(where, limit)
    if as_json:
        print_json({"jobs": [job_out(j) for j in page]})
    else:
        print_jobs(page)


@jobs_app.command("show")
def show(
    job_id: Annotated[uuid.UUID, typer.Argument(help="The job's id.")],
    as_json: JsonOption = False,
) -> None:
    """One job: its request, attempts, outputs (with presigned URLs) and history."""
    container = build_container()
    detail = container.jobs("cli").get(job_id)
    if as_json:
        print_json(job_document(container, detail))
    else:
        print_job(container, detail)


@jobs_app.command("download")
def download(
    job_id: Annotated[uuid.UUID, typer.Argument(help="A succeeded job.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Directory to write into (made if missing).")
    ] = Path(),
) -> None:
    """Download a job's outputs, named by external id (else job id) like batch results."""
    container = build_container()
    detail = container.jobs("cli").get(job_id)
    job = detail.job
    if not detail.outputs:
        raise InvalidTransition(
            f"job {job.id} is {job.state}; only a succeeded job has outputs to download",
            state=job.state.value,
        )
    keys = [{"key": o.key} for o in detail.outputs]
    output.mkdir(parents=True, exist_ok=True)
    for name, key in output_names(
        {"job_id": str(job.id), "external_id": job.external_id, "outputs": keys}
    ):
        (output / name).write_bytes(container.storage.get(key))
        typer.echo(str(output / name))


@jobs_app.command("retry")
def retry(
    job_id: Annotated[
        uuid.UUID | None, typer.Argument(help="A failed or canceled job (or use filters).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why; kept in each job's history.")] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            help="failed or canceled (repeatable); default failed only: canceled jobs were "
            "stopped on purpose and come back only when named."
        ),
    ] = None,
    batch: Annotated[uuid.UUID | None, typer.Option(help="Only jobs of this batch.")] = None,
    provider: Annotated[
        Provider | None, typer.Option(help="Only jobs last on this provider.")
    ] = None,
    error_code: Annotated[str | None, typer.Option(help="Only jobs that failed so.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Only jobs created at or after.")] = None,
    until: Annotated[datetime | None, typer.Option(help="Only jobs created before.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count and show; change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Send one failed or canceled job round again, or every job matching the filters."""
    jobs = build_container().jobs("cli")
    if job_id is not None:
        print_moved(jobs.retry(job_id, reason), as_json)
        return
    if not any((state, batch, provider, error_code, since, until)):
        err.print(
            "[red]invalid filter[/red]: give a job id, or at least one of --state, --batch, "
            "--provider, --error-code, --since, --until"
        )
        raise typer.Exit(2)
    bad = sorted(set(state or ()) - {"failed", "canceled"})
    if bad:
        err.print(f"[red]invalid state[/red]: {bad[0]!r}; only failed or canceled jobs are retried")
        raise typer.Exit(2)
    if not dry_run and not reason:
        err.print("[red]invalid reason[/red]: a retry by filter needs --reason (or --dry-run)")
        raise typer.Exit(2)
    where = JobFilter(
        states=tuple(JobState(s) for s in state or ()),
        batch_id=batch,
        provider=provider.value if provider else None,
        error_code=error_code,
        since=since,
        until=until,
    )
    report = jobs.retry_matching(where, reason or "", dry_run=dry_run)
    print_retry_report(report, as_json)


@jobs_app.command("cancel")
def cancel(
    job_id: Annotated[uuid.UUID, typer.Argument(help="A job that has not finished.")],
    reason: Annotated[str | None, typer.Option(help="Why; kept in the job's history.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a job; the provider is asked to stop, best effort."""
    print_moved(build_container().jobs("cli").cancel(job_id, reason), as_json)
