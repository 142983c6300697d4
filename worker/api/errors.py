"""One error body for every failure: ``{"error": {"code", "message", "fields"?}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from worker.errors import EditqError


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"error": {"code": code, "message": message, **extra}}


def _field(loc: tuple[Any, ...]) -> str:
    # FastAPI prefixes where the value came from ("body", "query", "header"); a body field
    # is named by its path inside the body, the others by their parameter name.
    parts = [str(p) for p in loc]
    if (parts and parts[0] == "body") or (parts and parts[0] in {"query", "header", "path"}):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_fields(errors: list[Any]) -> list[dict[str, str]]:
    """Each broken rule as ``{field, rule, message}``."""
    return [
        {"field": _field(tuple(e.get("loc", ()))), "rule": e.get("type", ""), "message": e["msg"]}
        for e in errors
    ]


def _json_position(body: bytes, position: int) -> str:
    """``line L, column C`` of character ``position`` of a request body (both from 1)."""
    before = body.decode("utf-8", errors="replace")[:position]
    line = before.count("\n") + 1
    column = position - (before.rfind("\n") + 1) + 1
    return f"line {line}, column {column}"


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid" and len(loc) == 2 and isinstance(loc[1], int):
            # FastAPI puts the offset where field names go: say where in the body it is.
            reason = (error.get("ctx") or {}).get("error", "JSON decode error")
            where = _json_position(await request.body(), loc[1])
            error.update(loc=("body",), msg=f"the body is not valid JSON at {where}: {reason}")
    fields = validation_fields(errors)
    first = fields[0] if fields else {"field": "body", "message": "invalid"}
    message = f"{first['field']}: {first['message']}"
    if len(fields) > 1:
        message += f" (and {len(fields) - 1} more)"
    return JSONResponse(error_body("validation_error", message, fields=fields), status_code=422)


async def _on_editq(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EditqError)
    return JSONResponse(
        error_body(exc.code, exc.message, **exc.details),
        status_code=exc.status,
        headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None,
    )


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
    code = codes.get(exc.status_code, "http_error")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(EditqError, _on_editq)
    app.add_exception_handler(HTTPException, _on_http)
