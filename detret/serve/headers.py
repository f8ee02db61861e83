"""Security headers on every answer (an ASGI middleware).

- ``Content-Security-Policy``: scripts, styles, images and requests only from the service itself
  (the page's photo preview is a ``blob:`` URL); no plugin, no frame, no base URL. ``/docs`` gets the
  same policy plus the hash of its one inline script (``docs.py``), nothing else inline;
- ``X-Content-Type-Options: nosniff``: a stored photo is never read as a script or a page;
- ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
COMMON = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def policy_with_script_hashes(hashes: List[str]) -> str:
    """The page's policy, also allowing the inline scripts of the given ``sha256-...`` hashes."""
    extra = " ".join(f"'{h}'" for h in hashes)
    return PAGE_POLICY.replace("script-src 'self'", f"script-src 'self' {extra}")


class SecurityHeaders:
    def __init__(self, app, *, policies: Optional[Dict[str, str]] = None) -> None:
        self.app = app
        self.policies = policies or {}   # path -> its own Content-Security-Policy (``/docs``)

    def _headers(self, path: str) -> List[Tuple[bytes, bytes]]:
        values = {**COMMON, "content-security-policy": self.policies.get(path, PAGE_POLICY)}
        return [(k.encode(), v.encode()) for k, v in values.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        ours = self._headers(scope.get("path", ""))
        names = {k for k, _ in ours}

        async def with_headers(message):
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + ours}
            await send(message)

        await self.app(scope, receive, with_headers)
