"""Reading batch files: each bad row named by line, field and rule; a bad file refused whole."""

from __future__ import annotations

import io
import json

import pytest

from worker.errors import BatchFileInvalid, BatchFormatUnknown
from worker.values import chain
from worker.values.batch_file import Reject, Row, format_of, read_rows
from worker.values.batch_steps import STEP_PROMPTS
from worker.values.chain import MAX_STEPS

URL = "https://images.example.com/a.jpg"


def rows(text: str | bytes, fmt: str = "csv") -> list[Row | Reject]:
    data = text.encode() if isinstance(text, str) else text
    return list(read_rows(io.BytesIO(data), fmt))  # type: ignore[arg-type]


def rejects(items: list[Row | Reject]) -> list[tuple[int, str, str]]:
    return [(r.line, r.field, r.rule) for r in items if isinstance(r, Reject)]


def test_csv_rows_become_requests_with_typed_optional_columns() -> None:
    [row] = rows(
        "external_id,image_url,prompt,num_images,guidance_scale,enhance_prompt,aspect_ratio\n"
        f"SKU-1,{URL},Put it on marble,2,3.5,true,\n"
    )
    assert isinstance(row, Row) and row.line == 2
    assert row.options.external_id == "SKU-1"
    assert row.input.num_images == 2 and row.input.guidance_scale == 3.5
    assert row.input.enhance_prompt is True
    assert row.input.aspect_ratio is None  # an empty cell is "not given"


def test_csv_bad_rows_are_reported_by_line_field_and_rule() -> None:
    items = rows(
        "external_id,image_url,prompt,num_images,aspect_ratio\n"
        f"A,{URL},ok,1,\n"
        f"B,{URL},ok,9,\n"  # line 3: num_images above 4
        f"C,ftp://x/y.jpg,ok,1,\n"  # line 4: scheme
        f"D,{URL},,1,\n"  # line 5: prompt missing
        f"E,{URL},ok,1,5:4\n"  # line 6: not an aspect ratio
        f",{URL},ok,1,\n"  # line 7: no external id
        f"A,{URL},ok,1,\n"  # line 8: A again
        f"F,{URL},ok\n"  # line 9: too few cells
    )
    assert rejects(items) == [
        (3, "num_images", "less_than_equal"),
        (4, "image_url", "value_error"),
        (5, "prompt", "missing"),
        (6, "aspect_ratio", "literal_error"),
        (7, "external_id", "missing"),
        (8, "external_id", "duplicate"),
        (9, "row", "column_count"),
    ]
    assert [r.options.external_id for r in items if isinstance(r, Row)] == ["A"]
    named = {r.line: r.external_id for r in items if isinstance(r, Reject)}
    assert named[3] == "B" and named[8] == "A" and named[7] is None


def test_a_row_may_name_its_own_providers() -> None:
    items = rows(
        "external_id,image_url,prompt,providers\n"
        f"A,{URL},ok,runware fal\n"
        f"B,{URL},ok,fal fal\n"
        f"C,{URL},ok,acme\n"
    )
    first = items[0]
    assert isinstance(first, Row) and first.options.providers == ["runware", "fal"]
    assert rejects(items) == [(3, "providers", "value_error"), (4, "providers.0", "literal_error")]


def test_csv_line_numbers_follow_quoted_newlines_blank_lines_and_a_bom() -> None:
    items = rows(
        "\ufeffexternal_id,image_url,prompt\n"
        f'A,{URL},"two\nlines"\n'  # lines 2-3
        "\n"  # line 4: blank, skipped
        f"B,{URL},\n"  # line 5: no prompt
    )
    first, second = items
    assert isinstance(first, Row) and first.line == 2 and first.input.prompt == "two\nlines"
    assert isinstance(second, Reject) and (second.line, second.field) == (5, "prompt")


@pytest.mark.parametrize(
    ("header", "rule"),
    [
        ("external_id,image_url,prompt,colour", "unknown_column"),
        ("external_id,image_url,prompt,prompt", "duplicate_column"),
        ("external_id,image_url", "missing_column"),
    ],
)
def test_a_bad_csv_header_refuses_the_whole_file(header: str, rule: str) -> None:
    with pytest.raises(BatchFileInvalid) as caught:
        rows(f"{header}\nA,{URL},ok,x\n")
    assert caught.value.code == "batch_file_invalid"
    assert caught.value.details["fields"][0]["rule"] == rule


def test_a_file_that_is_not_utf8_is_refused_whole() -> None:
    with pytest.raises(BatchFileInvalid, match="not UTF-8"):
        rows(b"external_id,image_url,prompt\nA," + URL.encode() + b",caf\xe9\n")
    with pytest.raises(BatchFileInvalid, match="line 2 is not UTF-8"):
        rows(b'{"external_id": "A"}\n{"prompt": "caf\xe9"}\n', "jsonl")


def test_a_csv_line_that_is_not_utf8_is_named_by_its_own_number() -> None:
    good = f"SKU-{{}},{URL},a beach\n"
    body = b"external_id,image_url,prompt\n" + "".join(good.format(i) for i in range(3000)).encode()
    body += b"SKU-late," + URL.encode() + b",caf\xe9\n"
    with pytest.raises(BatchFileInvalid, match="line 3002 is not UTF-8"):
        rows(body)


def test_jsonl_rows_and_their_rejects() -> None:
    good = {"external_id": "A", "image_url": URL, "prompt": "ok", "seed": 7, "model": None}
    items = rows(
        json.dumps(good)
        + "\n\n"  # line 2 blank
        + "{not json\n"  # line 3
        + "[1, 2]\n"  # line 4
        + json.dumps({**good, "external_id": "B", "colour": "red"})  # line 5: unknown key
        + "\n"
        + json.dumps({**good, "external_id": "C", "priority": 500})  # line 6
        + "\n",
        "jsonl",
    )
    assert isinstance(items[0], Row) and items[0].input.seed == 7
    assert rejects(items) == [
        (3, "row", "json_invalid"),
        (4, "row", "json_object"),
        (5, "colour", "extra_forbidden"),
        (6, "priority", "less_than_equal"),
    ]


def test_the_format_comes_from_the_media_type_or_the_file_name() -> None:
    assert format_of("text/csv; charset=utf-8") == "csv"
    assert format_of("application/x-ndjson") == "jsonl"
    assert format_of(filename="catalog.JSONL") == "jsonl"
    with pytest.raises(BatchFormatUnknown):
        format_of("application/json")
    with pytest.raises(BatchFormatUnknown):
        format_of(filename="catalog.xlsx")


def test_a_row_without_steps_is_a_one_step_chain() -> None:
    [csv_row] = rows(f"external_id,image_url,prompt,prompt_2\nA,{URL},ok,\n")
    jsonl: list[dict[str, object]] = [{"external_id": "B", "image_url": URL, "prompt": "ok"}]
    jsonl.append({**jsonl[0], "external_id": "C", "steps": None})
    jsonl.append({**jsonl[0], "external_id": "D", "steps": []})
    jsonl_rows = rows("".join(json.dumps(v) + "\n" for v in jsonl), "jsonl")
    for row in (csv_row, *jsonl_rows):
        assert isinstance(row, Row) and row.steps == ()


def test_a_jsonl_row_may_carry_later_steps() -> None:
    first = {"external_id": "A", "image_url": URL, "prompt": "remove the background"}
    steps = [
        {"prompt": "put it on a beach", "num_images": 2},
        {"prompt": "warm colour grade", "output_format": "png", "use_output": 1},
    ]
    [row] = rows(json.dumps({**first, "steps": steps}) + "\n", "jsonl")
    assert isinstance(row, Row) and row.input.prompt == "remove the background"
    assert [s.prompt for s in row.steps] == ["put it on a beach", "warm colour grade"]
    assert row.steps[0].num_images == 2
    assert row.steps[1].output_format == "png" and row.steps[1].use_output == 1


def test_csv_prompt_columns_give_the_later_steps() -> None:
    [row, short] = rows(
        "external_id,image_url,prompt,num_images,prompt_2,prompt_3\n"
        f"A,{URL},remove the background,2,put it on a beach,warm colour grade\n"
        f"B,{URL},remove the background,1,put it on a beach,\n"
    )
    assert isinstance(row, Row) and row.input.num_images == 2
    assert [s.prompt for s in row.steps] == ["put it on a beach", "warm colour grade"]
    assert all(s.changes() == {} and s.use_output == 0 for s in row.steps)
    assert isinstance(short, Row) and [s.prompt for s in short.steps] == ["put it on a beach"]


def test_csv_step_prompts_must_be_consecutive() -> None:
    items = rows(
        "external_id,image_url,prompt,prompt_2,prompt_3,prompt_4\n"
        f"A,{URL},ok,,warm colour grade,\n"  # line 2: step 3 without step 2
        f"B,{URL},ok,beach,,sunset\n"  # line 3: step 4 without step 3
        f"C,{URL},ok,   ,,\n"  # line 4: a blank prompt of step 2
    )
    assert rejects(items) == [
        (2, "prompt_3", "step_gap"),
        (3, "prompt_4", "step_gap"),
        (4, "prompt_2", "value_error"),
    ]
    gap = items[0]
    assert isinstance(gap, Reject) and gap.external_id == "A"
    assert "step 2 has no prompt" in gap.message


@pytest.mark.parametrize("column", ["prompt_1", "prompt_11", "prompt_x", "steps"])
def test_csv_columns_beyond_the_step_prompts_are_unknown(column: str) -> None:
    with pytest.raises(BatchFileInvalid) as caught:
        rows(f"external_id,image_url,prompt,{column}\nA,{URL},ok,x\n")
    assert caught.value.details["fields"][0] == {
        "field": "header",
        "rule": "unknown_column",
        "message": column,
    }


def test_a_bad_step_is_rejected_by_its_place_in_the_chain() -> None:
    first = {"external_id": "A", "image_url": URL, "prompt": "ok"}
    bad = [
        [{"prompt": "beach"}, {"prompt": "sunset", "num_images": 9}],
        [{"prompt": "beach", "image_url": URL}],
        [{"num_images": 2}],
        ["beach"],
        {"prompt": "beach"},
    ]
    items = rows(
        "".join(
            json.dumps({**first, "external_id": f"R{i}", "steps": s}) + "\n"
            for i, s in enumerate(bad)
        ),
        "jsonl",
    )
    assert rejects(items) == [
        (1, "steps.1.num_images", "less_than_equal"),
        (2, "steps.0.image_url", "extra_forbidden"),
        (3, "steps.0.prompt", "missing"),
        (4, "steps.0", "model_type"),
        (5, "steps", "list_type"),
    ]
    assert [r.external_id for r in items if isinstance(r, Reject)] == [f"R{i}" for i in range(5)]


def test_a_null_puts_a_parameter_back_to_its_default_rather_than_carrying_it_over() -> None:
    line = {
        "external_id": "A", "image_url": URL, "prompt": "ok", "num_images": 2,
        "steps": [{"prompt": "beach", "num_images": None, "aspect_ratio": None}],
    }  # fmt: skip
    (row,) = rows(json.dumps(line) + "\n", "jsonl")
    assert isinstance(row, Row)
    (planned,) = chain.plan(row.input, row.steps)
    assert planned.edit.num_images == 1 and planned.edit.aspect_ratio is None


def test_a_step_may_only_edit_an_output_the_step_before_made() -> None:
    first = {"external_id": "A", "image_url": URL, "prompt": "ok", "num_images": 2}
    # num_images carries over: step 2 makes two outputs too, unless it says otherwise.
    fine = [{"prompt": "beach", "use_output": 1}, {"prompt": "sunset", "use_output": 1}]
    beyond = [
        {"prompt": "beach", "use_output": 1, "num_images": 1},
        {"prompt": "sunset", "use_output": 1},
    ]
    items = rows(
        json.dumps({**first, "steps": fine})
        + "\n"
        + json.dumps({**first, "external_id": "B", "steps": beyond})
        + "\n",
        "jsonl",
    )
    assert isinstance(items[0], Row) and [s.use_output for s in items[0].steps] == [1, 1]
    assert rejects(items) == [(2, "steps.1.use_output", "output_not_made")]
    reject = items[1]
    assert isinstance(reject, Reject) and "makes 1 output" in reject.message


def test_a_chain_has_at_most_max_steps_steps() -> None:
    first = {"external_id": "A", "image_url": URL, "prompt": "ok"}
    longest = [{"prompt": f"step {n}"} for n in range(2, MAX_STEPS + 1)]
    items = rows(
        json.dumps({**first, "steps": longest})
        + "\n"
        + json.dumps({**first, "external_id": "B", "steps": [*longest, {"prompt": "more"}]})
        + "\n",
        "jsonl",
    )
    assert isinstance(items[0], Row) and len(items[0].steps) == MAX_STEPS - 1
    assert rejects(items) == [(2, "steps", "too_long")]
    header = ",".join(["external_id", "image_url", "prompt", *STEP_PROMPTS])
    cells = ",".join(["C", URL, "ok", *(f"step {n}" for n in range(2, MAX_STEPS + 1))])
    [csv_row] = rows(f"{header}\n{cells}\n")
    assert isinstance(csv_row, Row) and len(csv_row.steps) == MAX_STEPS - 1
