"""The edge's WebSocket response: an inbound message limit that rises after auth.

aiohttp's ``max_msg_size`` is fixed when the socket is upgraded, and it bounds both a
frame's size on the wire (checked on the frame header, before any payload is buffered)
and the size a permessage-deflate message may inflate to (zlib stops at the limit).
One limit for a socket's whole life meant that an unauthenticated socket could send
what an authenticated device may (a batch of samples): 40 such sockets grew an edge
by 625 MB. :class:`EdgeWebSocket` starts every socket at a small pre-authentication
limit and raises it with :meth:`EdgeWebSocket.raise_limit` once the socket has
authenticated, keeping the same parser (so the deflate window carries over).

Why a subclass of aiohttp's own parser: its compiled parser keeps the limit in a C
field that Python cannot change, so :class:`_AdjustableReader` extends aiohttp's
pure-Python parser (the same code, and the same data queue class it is written for)
and :meth:`EdgeWebSocket._post_start` installs it the way aiohttp 3.14 installs its
own. Client frames are few and small (rate-limited), so the pure-Python parser costs
little: 2.0 us per 120-byte metrics frame against 0.45 us for the compiled one (best
of 5 x 10,000 frames on the shared 2-core dev machine), 2 ms a second at 1,000 devices
posting at 1 Hz. ``tests/web/test_ws_memory.py`` fails if this ever stops bounding
memory, and ``test_frame_limit_is_small_until_authenticated`` if the limit stops
rising: both would catch an aiohttp release that changes ``_post_start``.

Inflating: the handshake asks the client for ``client_no_context_takeover`` (RFC 7692
lets a server ask though the client did not offer it), so every client message
inflates on its own and the parser drops its zlib state after each one: 2,000 sockets
inflating at once held 2,000 inflate windows (32 KB each, plus 7 KB of state) for
their whole lives. What the edge sends keeps its context (that is where compression
pays); what a client sends is small.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web
from aiohttp._websocket.reader_py import WebSocketDataQueue, WebSocketReader
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.web_request import BaseRequest


class _AdjustableReader(WebSocketReader):
    """aiohttp's WebSocket parser with a message limit that can change between
    messages (a frame already being read keeps the limit it started with)."""

    def _handle_frame(self, fin: bool, opcode: int, payload: Any, compressed: int) -> None:
        try:
            super()._handle_frame(fin, opcode, payload, compressed)
        finally:
            if fin:
                # client_no_context_takeover: each message inflates on its own, so the
                # 40 KB inflate state lives for one message, not for the socket.
                self._decompressobj = None

    def set_limit(self, max_msg_size: int) -> None:
        self._max_msg_size = max_msg_size
        self._max_fragments = max(1024, max_msg_size // 256)


class EdgeWebSocket(web.WebSocketResponse):
    """A ``WebSocketResponse`` whose inbound limit starts at ``max_msg_size`` (the
    pre-authentication limit) and may be raised by :meth:`raise_limit`."""

    _adjustable: _AdjustableReader | None = None

    def _handshake(self, request: BaseRequest) -> Any:
        headers, protocol, compress, notakeover = super()._handshake(request)
        extensions = headers.get(hdrs.SEC_WEBSOCKET_EXTENSIONS)
        if extensions and "client_no_context_takeover" not in extensions:
            # RFC 7692 7.1.1.2: a server may ask it though the client did not offer it.
            headers[hdrs.SEC_WEBSOCKET_EXTENSIONS] = extensions + "; client_no_context_takeover"
        return headers, protocol, compress, notakeover

    def _post_start(self, request: BaseRequest, protocol: str | None, writer: Any) -> None:
        # aiohttp 3.14's _post_start, with the adjustable parser and its queue class.
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        loop = self._loop
        assert loop is not None
        queue = WebSocketDataQueue(request._protocol, DEFAULT_CHUNK_SIZE, loop=loop)
        self._reader = queue
        parser = _AdjustableReader(
            queue, self._max_msg_size, compress=bool(self._compress), decode_text=True
        )
        self._adjustable = parser
        self._parser = parser
        cb = None if self._heartbeat is None else self._on_data_received
        request.protocol.set_parser(parser, data_received_cb=cb)
        request.protocol.keep_alive(False)

    @property
    def inbound_limit(self) -> int:
        """Bytes a client message must stay under (on the wire and inflated)."""
        return self._max_msg_size

    def raise_limit(self, max_msg_size: int) -> None:
        """Accept messages up to ``max_msg_size`` bytes from now on (after auth)."""
        self._max_msg_size = max_msg_size
        if self._adjustable is not None:
            self._adjustable.set_limit(max_msg_size)
