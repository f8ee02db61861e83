"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for a request's headers.

uvicorn times out an idle keep-alive connection, but not a client that sends its request line and
headers a byte at a time ("slowloris"): each such connection is held for ever. Here a connection that
is between requests (none received yet, or the last one answered) at two checks ``header_timeout_s``
apart, with no request answered in between, is closed: headers get at most twice the deadline. The
body has its own deadline (``limits.Gate``). Behind a reverse proxy, the proxy's timeouts do this too
(README, "Serving safely").
"""
from __future__ import annotations

from uvicorn.protocols.http.h11_impl import H11Protocol


class DeadlineH11Protocol(H11Protocol):
    header_timeout_s = 10.0

    def connection_made(self, transport) -> None:  # noqa: D401 -- asyncio.Protocol's interface
        super().connection_made(transport)
        self._answered = 0
        self._schedule(self._answered)

    def on_response_complete(self) -> None:
        self._answered += 1
        super().on_response_complete()

    def _schedule(self, answered: int) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._check, answered)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _check(self, answered_before: int) -> None:
        if self.transport.is_closing():
            return
        if self._between_requests() and self._answered == answered_before:
            self.transport.close()  # no request (or no complete headers) within the deadline
            return
        self._schedule(self._answered)

    def connection_lost(self, exc) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)


def protocol_with_header_timeout(seconds: float) -> type:
    """The protocol class for ``uvicorn.run(http=...)`` with this headers deadline."""
    return type("DetretH11Protocol", (DeadlineH11Protocol,), {"header_timeout_s": float(seconds)})
