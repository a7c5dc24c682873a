"""Every refusal as OpenAI's error body (`{"error": {"message", "type", "param", "code"}}`): one sentence, never a
traceback, a 4xx for anything the request got wrong."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


class ApiError(Exception):
    """A request the server refuses, with the HTTP status and the sentence that says why."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def _field(location: tuple[Any, ...]) -> str:
    """`messages[0].content` from pydantic's ("body", "messages", 0, "content")."""
    text = ""
    for part in location[1:] if location and location[0] == "body" else location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validation_error(exc: RequestValidationError) -> ApiError:
    """The first problem pydantic found, as one sentence naming the field (or where the JSON breaks)."""
    problem = exc.errors()[0] if exc.errors() else {"type": "", "loc": (), "msg": "invalid request"}
    if problem["type"] == "json_invalid":
        where = problem.get("ctx", {}).get("error", "")
        return ApiError(400, f"the request body is not valid JSON ({where})".replace(" ()", ""), code="invalid_json")
    name = _field(tuple(problem.get("loc", ())))
    message = str(problem.get("msg", "invalid value")).rstrip(".")
    if problem["type"] == "missing":
        return ApiError(400, f"{name}: a required field is missing", param=name or None)
    return ApiError(400, f"{name}: {message[0].lower() + message[1:]}" if name else message, param=name or None)


def failure(exc: Exception) -> ApiError:
    """Any exception as a refusal: a refusal stays itself, anything else is the server's failure, named by its kind."""
    if isinstance(exc, ApiError):
        return exc
    return ApiError(500, f"the server failed on this request ({type(exc).__name__})", kind="server_error")


def install(app: FastAPI) -> None:
    """Route every way a request can fail to an OpenAI-style body."""

    @app.exception_handler(ApiError)
    async def _refused(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        sentence = {404: f"no such endpoint: {request.method} {request.url.path}",
                    405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return ApiError(exc.status_code, sentence).response()

    @app.exception_handler(Exception)
    async def _failed(_: Request, exc: Exception) -> JSONResponse:
        return failure(exc).response()
