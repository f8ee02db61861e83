"""The gate (``serve/limits.py``) as an ASGI middleware around a stand-in app that reads the whole body:
refusals from the headers alone, before a body byte is read; the admin limit only with the token; the
upload count; the body deadline; a chunked body cut off at the limit."""
import asyncio
import json

import pytest

from detret.serve.limits import Gate, GateLimits

TOKEN = "t0ken"
LIMITS = GateLimits(search_bytes=1000, admin_bytes=100_000, max_uploads=2, body_timeout_s=0.3)


class BodyReader:
    """The app behind the gate: reads the body to its end, answers 200 with its length."""

    def __init__(self, hold: asyncio.Event = None):
        self.calls, self.hold = 0, hold

    async def __call__(self, scope, receive, send):
        self.calls += 1
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        if self.hold is not None and scope["method"] == "POST":
            await self.hold.wait()
        body = json.dumps({"size": size}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def _scope(method, path, headers):
    return {"type": "http", "method": method, "path": path,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}


async def _call(app, method, path, headers, chunks=(b"",), delay_s=0.0):
    """(status, json body, body chunks the app asked for)."""
    sent, asked = [], []
    queue = list(chunks)

    async def receive():
        asked.append(1)
        if delay_s:
            await asyncio.sleep(delay_s)
        body = queue.pop(0) if queue else b""
        return {"type": "http.request", "body": body, "more_body": bool(queue)}

    async def send(message):
        sent.append(message)

    await app(_scope(method, path, headers), receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), len(asked)


@pytest.mark.parametrize("token, auth, status", [(TOKEN, None, 401), (TOKEN, "Bearer wrong", 401),
                                                 (TOKEN, TOKEN, 401), (None, f"Bearer {TOKEN}", 403)])
def test_a_change_without_the_token_is_refused_before_a_body_byte_is_read(token, auth, status):
    inner = BodyReader()
    gate = Gate(inner, limits=LIMITS, token=token)
    headers = {"content-length": str(64 * 2**20), **({"authorization": auth} if auth else {})}
    for method, path in (("POST", "/api/catalogue"), ("DELETE", "/api/catalogue/products/a%2Fb"),
                         ("PUT", "/api/catalogue/x")):
        got, body, asked = asyncio.run(_call(gate, method, path, headers))
        assert (got, asked, inner.calls) == (status, 0, 0)   # no receive(), the app never ran
        assert "authorization" in body["error"] or "disabled" in body["error"]


def test_the_admin_limit_is_only_for_authorised_changes():
    inner = BodyReader()
    gate = Gate(inner, limits=LIMITS, token=TOKEN)
    between = {"content-length": "50000"}   # over the search limit, under the admin one
    assert asyncio.run(_call(gate, "POST", "/api/search", between))[0] == 413
    assert asyncio.run(_call(gate, "POST", "/api/catalogue", {**between, "authorization": "Bearer no"}))[0] == 401
    status, body, _ = asyncio.run(_call(gate, "POST", "/api/catalogue", {**between, "authorization": f"Bearer {TOKEN}"},
                                        chunks=[b"x" * 50000]))
    assert (status, body) == (200, {"size": 50000})
    over = {"content-length": "100001", "authorization": f"Bearer {TOKEN}"}
    assert asyncio.run(_call(gate, "POST", "/api/catalogue", over))[0] == 413
    assert asyncio.run(_call(gate, "GET", "/api/catalogue", {}))[0] == 200   # reading needs no token


def test_a_chunked_body_over_the_limit_is_a_413_not_the_apps_400():
    class FormParser(BodyReader):  # as FastAPI does: an error while reading the body becomes its own 400
        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            except Exception:  # noqa: BLE001
                await send({"type": "http.response.start", "status": 400, "headers": []})
                await send({"type": "http.response.body", "body": b'{"error": "parse"}'})

    gate = Gate(FormParser(), limits=LIMITS, token=TOKEN)
    status, body, asked = asyncio.run(_call(gate, "POST", "/api/search", {"transfer-encoding": "chunked"},
                                            chunks=[b"x" * 600, b"x" * 600, b"x" * 600]))
    assert status == 413 and "limit of 1,000 bytes" in body["error"] and asked == 2


def test_a_body_that_does_not_arrive_in_time_is_a_408():
    gate = Gate(BodyReader(), limits=LIMITS, token=TOKEN)
    status, body, _ = asyncio.run(_call(gate, "POST", "/api/search", {"content-length": "10"},
                                        chunks=[b"x"] * 10, delay_s=0.1))  # 10 chunks, 0.1 s each: past 0.3 s
    assert status == 408 and "0.3 s" in body["error"]


def test_uploads_at_once_are_bounded():
    async def scenario():
        hold = asyncio.Event()
        gate = Gate(BodyReader(hold), limits=LIMITS, token=TOKEN)
        headers = {"content-length": "3"}
        held = [asyncio.ensure_future(_call(gate, "POST", "/api/search", headers, chunks=[b"abc"]))
                for _ in range(LIMITS.max_uploads)]
        while gate.uploads < LIMITS.max_uploads:
            await asyncio.sleep(0.001)
        refused = await _call(gate, "POST", "/api/search", headers, chunks=[b"abc"])
        no_body = await _call(gate, "GET", "/healthz", {})   # requests without a body are not counted
        hold.set()
        return refused, no_body, await asyncio.gather(*held), gate.uploads

    refused, no_body, held, left = asyncio.run(scenario())
    assert refused[0] == 503 and "too many uploads" in refused[1]["error"]
    assert no_body[0] == 200 and [h[0] for h in held] == [200, 200] and left == 0


def test_a_content_length_that_is_not_a_number_is_a_400_and_one_too_long_a_413():
    gate = Gate(BodyReader(), limits=LIMITS, token=TOKEN)
    assert asyncio.run(_call(gate, "POST", "/api/search", {"content-length": "12a"}))[0] == 400
    assert asyncio.run(_call(gate, "POST", "/api/search", {"content-length": "9" * 5000}))[0] == 413
