"""``GET /docs``: the OpenAPI page (Swagger UI) with its assets served by detret, never from a CDN.

The JavaScript and CSS are fastapi-offline's copy of swagger-ui-dist (a package that ships exactly
these files), mounted at ``/static-docs``. The page's one inline script (Swagger UI's start-up) is
allowed by its hash in the Content-Security-Policy of ``/docs`` (``headers.py``), nothing else inline.
"""
from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from typing import List

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/static-docs"


def docs_html(app: FastAPI) -> str:
    return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} · API",
                               swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS_PATH}/favicon.png").body.decode()


def inline_script_hashes(html: str) -> List[str]:
    """CSP hashes (``sha256-<base64>``) of the page's inline scripts."""
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    return ["sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in scripts]


def add_docs_routes(app: FastAPI) -> str:
    """Mount the assets and add ``/docs``; the page's HTML (for its script hashes)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=str(resources.files("fastapi_offline") / "static")),
              name="static-docs")
    html = docs_html(app)

    @app.get(DOCS_PATH, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(html)

    return html
