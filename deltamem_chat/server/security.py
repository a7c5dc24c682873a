"""The API key and the body limit, checked before any route runs (a pure ASGI layer, so nothing is buffered)."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deltamem_chat.server.errors import ApiError


def is_loopback(host: str) -> bool:
    """Whether binding `host` serves this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_key() -> str:
    """A key for a server started without one on a reachable address."""
    return "dm-" + secrets.token_urlsafe(32)


class Guard:
    """Refuses requests without the key (`Authorization: Bearer KEY`, compared in constant time) and bodies over
    `max_body` bytes (by their declared length, and by what actually arrives)."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body: int) -> None:
        self.app, self.max_body = app, max_body
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = self._refusal(headers)
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise self._too_large()
            return message

        await self.app(scope, counted, send)

    def _refusal(self, headers: dict[bytes, bytes]) -> ApiError | None:
        if self.key is not None:
            given = headers.get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                what = "a wrong API key" if given else "no API key"
                return ApiError(401, f"the request has {what}: send Authorization: Bearer <key>",
                                kind="authentication_error", code="invalid_api_key")
        length: Any = headers.get(b"content-length", b"0")
        if not length.isdigit():
            return ApiError(400, "the Content-Length header is not a number")
        return self._too_large() if int(length) > self.max_body else None

    def _too_large(self) -> ApiError:
        return ApiError(413, f"the request body is over this server's limit of {self.max_body:,} bytes",
                        code="request_too_large")
