"""The request size limit, enforced before a body is parsed (an ASGI middleware).

A request announcing a larger ``Content-Length`` is answered 413 at once; one sent in chunks is
counted as it arrives and cut off at the limit. Catalogue changes (``/api/catalogue``) have their
own, larger limit; every other route has the search's.
"""
from __future__ import annotations

import json


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app, *, search_bytes: int, admin_bytes: int) -> None:
        self.app, self.search_bytes, self.admin_bytes = app, search_bytes, admin_bytes

    def _limit(self, path: str) -> int:
        return self.admin_bytes if path.startswith("/api/catalogue") else self.search_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self._limit(scope.get("path", ""))
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _refuse(send, limit)
        received, started = 0, False

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await _refuse(send, limit)


async def _refuse(send, limit: int) -> None:
    body = json.dumps({"error": f"request body larger than the limit of {limit:,} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
