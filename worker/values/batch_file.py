"""Reading a batch file, CSV or JSONL, one row at a time: each row is a request or a reject.

A row carries ``external_id``, the canonical request (``image_url``, ``prompt`` and any
optional parameter) and, optionally, its own ``model``, ``priority``, ``providers``,
``callback_url``, ``quality_on_failure`` and ``routing``. In CSV these are columns (an
empty cell means "not given"; ``providers`` is a space-separated list); in JSONL, keys.

A row may also be a multi-turn edit chain (:mod:`worker.values.chain`): its request is step
1, and each later step edits an output of the step before. In JSONL the later steps are the
``steps`` key, a list of objects each read as a :class:`~worker.values.chain.StepIn` (its
``prompt``, which output of the step before it edits, ``use_output``, any parameter that
changes, its own ``providers``); ``null`` or ``[]`` means none. In CSV they are the columns
``prompt_2``, ``prompt_3``, ... up to ``prompt_{MAX_STEPS}``, each the prompt of that step
(every other parameter carries over from step 1); an empty cell means no such step, and the
filled ones must be consecutive: ``prompt_3`` without ``prompt_2`` is a ``step_gap``. Any other
``prompt_*`` column is unknown.

A problem with one row rejects that row, with its line, field and rule: a bad field of a step
is named by its place, as in ``steps.1.num_images`` (``prompt_3`` in CSV), with pydantic's
error type as the rule; a chain of more than ``MAX_STEPS`` steps is ``too_long`` (field
``steps``), and a step editing an output the step before does not make is
``output_not_made`` (field ``steps.{i}.use_output``). A problem with the file itself (not
UTF-8, a CSV header naming an unknown column) raises :class:`BatchFileInvalid`: no row of
such a file can be trusted.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.errors import BatchFileInvalid, BatchFormatUnknown
from worker.values import chain
from worker.values.batch_steps import STEP_PROMPTS, csv_steps, first_problem, jsonl_steps
from worker.values.canonical import EditInput, ModelName, ProviderOrder
from worker.values.chain import StepIn
from worker.values.quality_policy import OnFailure
from worker.values.routing import Routing
from worker.values.storable import StorableText

BatchFormat = Literal["csv", "jsonl"]

#: What a row may name besides the canonical request.
ROW_OPTIONS = (
    "external_id",
    "model",
    "priority",
    "providers",
    "callback_url",
    "quality_on_failure",
    "routing",
)
#: Every column a CSV row may have (a JSONL row has the same keys, ``steps`` in place of
#: the ``prompt_{n}`` ones).
COLUMNS = frozenset((*ROW_OPTIONS, *EditInput.model_fields, *STEP_PROMPTS))
REQUIRED_COLUMNS = ("external_id", "image_url", "prompt")


class RowOptions(BaseModel):
    """The per-row fields that are not part of the canonical request."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    external_id: StorableText = Field(min_length=1, max_length=256)
    model: ModelName | None = None
    priority: int | None = Field(default=None, ge=-100, le=100)
    #: This row's provider order (a CSV cell lists them separated by spaces).
    providers: ProviderOrder | None = None
    callback_url: StorableText | None = Field(
        default=None, max_length=2048, pattern=r"^https?://\S+$"
    )
    #: What a failed quality check does to this row's job (the batch's policy otherwise).
    quality_on_failure: OnFailure | None = None
    #: How this row's providers share it (the batch's routing otherwise).
    routing: Routing | None = None

    @field_validator("providers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return value.split() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Row:
    """A row that passed every check."""

    line: int
    options: RowOptions
    #: Step 1 of the row's chain (its only step when ``steps`` is empty).
    input: EditInput
    #: The chain's later steps, as the row wrote them: ``steps[0]`` is step 2.
    steps: tuple[StepIn, ...] = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """A row that broke a rule: where, which field, which rule, and in words."""

    line: int
    external_id: str | None
    field: str
    rule: str
    message: str


def read_rows(source: IO[bytes], fmt: BatchFormat) -> Iterator[Row | Reject]:
    """Every non-blank row of ``source``, in order, checked; a repeated external id is a reject."""
    raw = _csv_rows(source) if fmt == "csv" else _jsonl_rows(source)
    seen: set[str] = set()
    for line, values in raw:
        if isinstance(values, Reject):
            yield values
            continue
        checked = check_row(line, values, fmt)
        if isinstance(checked, Row):
            external_id = checked.options.external_id
            if external_id in seen:
                checked = Reject(
                    line, external_id, "external_id", "duplicate",
                    f"external_id {external_id!r} appears on an earlier line of this file",
                )  # fmt: skip
            seen.add(external_id)
        yield checked


def check_row(line: int, values: dict[str, Any], fmt: BatchFormat = "jsonl") -> Row | Reject:
    """One row's values as a :class:`Row`, or the first rule it breaks.

    ``values`` are a JSONL row's keys, or (``fmt="csv"``) a CSV row's non-empty cells. Step 1
    is checked before the later steps, and each step's own fields before the chain's rules.
    """
    external_id = values.get("external_id")
    named = str(external_id) if isinstance(external_id, str | int) else None
    later_keys = STEP_PROMPTS if fmt == "csv" else ("steps",)
    options = {k: v for k, v in values.items() if k in ROW_OPTIONS}
    request = {k: v for k, v in values.items() if k not in ROW_OPTIONS and k not in later_keys}
    try:
        row = Row(line, RowOptions.model_validate(options), EditInput.model_validate(request))
    except ValidationError as exc:
        found = first_problem(exc, lambda loc: ".".join(str(p) for p in loc) or "row")
        return Reject(line, named, found.field, found.rule, found.message)
    if fmt == "csv":
        steps = csv_steps(row.input, values)
    else:
        steps = jsonl_steps(row.input, values.get("steps"))
    if isinstance(steps, chain.Problem):
        return Reject(line, named, steps.field, steps.rule, steps.message)
    return Row(line, row.options, row.input, steps)


def _csv_rows(source: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | Reject]]:
    reader = csv.reader(_utf8_lines(source), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = _header(header)
        last = reader.line_num
        for cells in reader:
            # A quoted cell may span lines: the row starts on the line after the last one.
            line, last = last + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(columns):
                yield line, Reject(
                    line, None, "row", "column_count",
                    f"has {len(cells)} cells; the header names {len(columns)} columns",
                )  # fmt: skip
                continue
            yield line, {k: v for k, v in zip(columns, cells, strict=True) if v != ""}
    except csv.Error as exc:
        raise BatchFileInvalid(f"line {reader.line_num}: {exc}") from exc


def _utf8_lines(source: IO[bytes]) -> Iterator[str]:
    """Each line of ``source`` as text, a byte-order mark dropped; a line that is not UTF-8
    refuses the file, naming that line (UTF-8 never puts a newline byte inside a character,
    so each line decodes on its own)."""
    for number, raw in enumerate(source, start=1):
        try:
            yield (raw.removeprefix(codecs.BOM_UTF8) if number == 1 else raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BatchFileInvalid(f"line {number} is not UTF-8: {exc.reason}") from exc


def _header(header: list[str]) -> list[str]:
    columns = [c.strip() for c in header]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        named = sorted(COLUMNS.difference(STEP_PROMPTS))
        raise BatchFileInvalid(
            f"unknown column {unknown[0]!r}; columns are {', '.join(named)}, and "
            f"{STEP_PROMPTS[0]} to {STEP_PROMPTS[-1]} (the prompts of a chain's later steps)",
            fields=[{"field": "header", "rule": "unknown_column", "message": unknown[0]}],
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise BatchFileInvalid(
            f"column {repeated[0]!r} appears twice in the header",
            fields=[{"field": "header", "rule": "duplicate_column", "message": repeated[0]}],
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise BatchFileInvalid(
            f"the header has no {missing[0]!r} column; every row needs "
            f"{', '.join(REQUIRED_COLUMNS)}",
            fields=[{"field": "header", "rule": "missing_column", "message": missing[0]}],
        )
    return columns


def _jsonl_rows(source: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | Reject]]:
    decode = codecs.getincrementaldecoder("utf-8")("strict")
    for line, raw in enumerate(source, start=1):
        try:
            text = decode.decode(raw.removeprefix(codecs.BOM_UTF8) if line == 1 else raw)
        except UnicodeDecodeError as exc:
            raise BatchFileInvalid(f"line {line} is not UTF-8: {exc.reason}") from exc
        if not text.strip():
            continue
        try:
            values = json.loads(text)
        except ValueError as exc:
            yield line, Reject(line, None, "row", "json_invalid", f"not JSON: {exc}")
            continue
        if not isinstance(values, dict):
            yield line, Reject(line, None, "row", "json_object", "each line must be a JSON object")
            continue
        yield line, values


#: What a batch file may be sent or named as, and how it is then read.
MEDIA_TYPES: dict[str, BatchFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/jsonlines": "jsonl",
    "application/x-jsonlines": "jsonl",
}
SUFFIXES: dict[str, BatchFormat] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def format_of(media_type: str | None = None, filename: str | None = None) -> BatchFormat:
    """The format of a batch file, from its media type or else its name."""
    if media_type:
        found = MEDIA_TYPES.get(media_type.split(";")[0].strip().lower())
    else:
        found = SUFFIXES.get(PurePath(filename or "").suffix.lower())
    if found is None:
        raise BatchFormatUnknown(
            f"cannot read {media_type or filename!r} as a batch file: send it as text/csv or "
            "application/x-ndjson (JSONL), or name it .csv or .jsonl"
        )
    return found
