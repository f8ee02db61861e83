"""What a request may send, enforced before its body is parsed (an ASGI middleware, :class:`Gate`).

In this order, from the request line and headers alone:

1. a change of the catalogue (any method but GET/HEAD/OPTIONS on ``/api/catalogue*``) without the
   bearer token is answered 401 (403 when changes are disabled) before a single body byte is read,
   and the connection is closed;
2. the body limit: the admin limit (``max_admin_bytes``) for an authorised change, the search's for
   every other request; a ``Content-Length`` over it is answered 413 at once, a body sent in chunks
   is counted as it arrives and answered 413 when it passes the limit;
3. at most ``max_uploads`` requests with a body at a time; one more is answered 503 (Retry-After);
4. the body must arrive within ``body_timeout_s``, or the request is answered 408 and its
   connection closed (a client sending a byte now and then holds no socket for ever).

The route handlers check the token again (``admin.py``): this gate is what keeps unauthorised bytes
off the server, not the only check.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

ADMIN_PATH = "/api/catalogue"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class GateLimits:
    search_bytes: int
    admin_bytes: int
    max_uploads: int = 16
    body_timeout_s: float = 60.0


class _Refused(Exception):
    pass


def is_change(method: str, path: str) -> bool:
    """Whether a request would change the catalogue (so needs the token)."""
    return method not in READ_METHODS and (path == ADMIN_PATH or path.startswith(ADMIN_PATH + "/"))


def token_refusal(token: Optional[str], authorization: Optional[bytes]) -> Optional[Tuple[int, str]]:
    """(status, message) when ``authorization`` (the header's raw value) does not carry ``token``; None when it
    does. Compared in constant time."""
    if not token:
        return 403, "catalogue changes are disabled: start `detret serve` with DETRET_SERVE_TOKEN set"
    given = authorization or b""
    given = given[len(b"Bearer "):] if given.startswith(b"Bearer ") else b""
    if not hmac.compare_digest(given, token.encode("utf-8")):
        return 401, "authorization: a valid 'Bearer <token>' header is required"
    return None


class Gate:
    def __init__(self, app, *, limits: GateLimits, token: Optional[str]) -> None:
        self.app, self.limits, self.token = app, limits, token
        self.uploads = 0   # requests with a body being received or answered now (one event loop: no lock)

    def _check_headers(self, scope) -> Tuple[Optional[Tuple[int, str, Dict]], int, bool]:
        """(refusal or None, the body limit, whether the request has a body)."""
        headers = _headers(scope)
        limit = self.limits.search_bytes
        if is_change(scope["method"], scope.get("path", "")):
            refusal = token_refusal(self.token, headers.get(b"authorization"))
            if refusal is not None:
                return (*refusal, {}), 0, False
            limit = self.limits.admin_bytes
        length = headers.get(b"content-length")
        if length is not None and not length.strip().isdigit():
            return (400, "content-length: not a number", {}), limit, False
        if length is not None and (len(length.strip()) > 18 or int(length) > limit):  # 18 digits: int() stays cheap
            return (413, f"request body larger than the limit of {limit:,} bytes", {}), limit, False
        has_body = (length is not None and int(length) > 0) or b"transfer-encoding" in headers
        if has_body and self.uploads >= self.limits.max_uploads:
            return (503, "busy: too many uploads at once; retry in a moment", {"retry-after": "1"}), limit, False
        return None, limit, has_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal, limit, has_body = self._check_headers(scope)
        if refusal is not None:
            return await respond(send, *refusal)
        if not has_body:
            return await self.app(scope, receive, send)
        self.uploads += 1
        try:
            await self._guarded(scope, receive, send, limit)
        finally:
            self.uploads -= 1

    async def _guarded(self, scope, receive, send, limit: int) -> None:
        deadline = time.monotonic() + self.limits.body_timeout_s
        state = {"received": 0, "complete": False, "refusal": None, "started": False}

        async def guarded_receive():
            if state["complete"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                state["refusal"] = (408, f"the request body did not arrive within {self.limits.body_timeout_s:g} s")
                raise _Refused() from None
            state["received"] += len(message.get("body", b""))
            if state["received"] > limit:
                state["refusal"] = (413, f"request body larger than the limit of {limit:,} bytes")
                raise _Refused()
            state["complete"] = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def guarded_send(message):
            if state["refusal"] is not None:
                return  # the app's own answer to a body cut off (FastAPI says 400): ours is sent below
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except _Refused:
            pass
        if state["refusal"] is not None and not state["started"]:
            await respond(send, *state["refusal"], {})


def _headers(scope) -> Dict[bytes, bytes]:
    """The request's headers by lower-case name; of a repeated header, the first."""
    out: Dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or []:
        out.setdefault(name.lower(), value)
    return out


async def respond(send, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
    """A JSON error ``{"error": message}``, closing the connection (its body, if any, is never read)."""
    body = json.dumps({"error": message}).encode()
    extra: List[Tuple[bytes, bytes]] = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body})
