"""A TCP proxy in front of Redis that loses replies on request, to test lost replies.

Armed, it forwards the next request that contains a marker (for example the name of a
stream) to Redis, lets Redis run it, and then resets the client's connection instead
of passing the reply back: exactly what a network failure after the server's work
looks like to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from pipeline.embedded import free_port


class LossyProxy:
    """Forwards 127.0.0.1:<port> to a Redis on ``upstream_port`` from a thread of its own."""

    def __init__(self, upstream_port: int, password: str = "") -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        #: Clients authenticate through the proxy with the upstream server's password.
        self.url = f"redis://:{password}@127.0.0.1:{self.port}/0"
        #: Replies lost so far.
        self.lost = 0
        self._marker: bytes | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def start(self) -> LossyProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def lose_reply_to(self, marker: bytes) -> None:
        """Lose the reply to the next request containing ``marker`` (once)."""
        self._marker = marker

    def stop(self) -> None:
        """Close the listener and every connection, then end the thread."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._handlers.discard(task)
            writer.transport.abort()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            return
        lose = asyncio.Event()

        async def to_server() -> None:
            while data := await reader.read(1 << 16):
                up_writer.write(data)
                await up_writer.drain()
                if self._marker is not None and self._marker in data:
                    self._marker = None
                    lose.set()

        async def to_client() -> None:
            while data := await up_reader.read(1 << 16):
                if lose.is_set():
                    self.lost += 1
                    return  # Redis ran the request; its reply goes nowhere
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(to_server()), asyncio.ensure_future(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)
            up_writer.transport.abort()
