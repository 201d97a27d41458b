"""A lean HTTP/1.1 client for the load generator of ``livecoach bench e2e``.

The load generator shares the machine's two cores with the edge and the worker it
measures, so what it spends on itself shows up as their latency. aiohttp's client cost
about 250 us of CPU per request: a quarter of a core for 1,000 devices posting at 1 Hz.
A device here is one keep-alive connection that writes a prebuilt request (headers
encoded once, only the body changes) and parses the answer with httptools, the C parser
uvicorn uses; one request is in flight per connection, as a device waits for its 202.
"""

from __future__ import annotations

import asyncio

import httptools


class PostError(Exception):
    """The request got no HTTP answer (connection refused, reset or closed)."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.keep_alive = True
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(PostError(f"unparsable answer: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(PostError(f"connection closed: {exc!r}"))

    # httptools callbacks
    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)


class Poster:
    """POSTs JSON bodies to one path of one server over a reused connection."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        self.host = host
        self.port = port
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()
        self._protocol: _Protocol | None = None

    async def connect(self) -> _Protocol:
        """The open connection, opened first if there is none (or the server closed it)."""
        protocol = self._protocol
        if protocol is None or protocol.closed or not protocol.keep_alive:
            if protocol is not None and protocol.transport is not None:
                protocol.transport.close()
            loop = asyncio.get_running_loop()
            try:
                _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
            except OSError as exc:
                raise PostError(f"cannot connect: {exc}") from exc
            self._protocol = protocol
        return protocol

    async def post(self, body: bytes) -> int:
        """Send one request; its HTTP status once the whole answer has arrived."""
        protocol = await self.connect()
        assert protocol.transport is not None
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        protocol.waiter = waiter
        protocol.transport.write(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
        return await waiter

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
