"""A raw WebSocket client for the tests that need what aiohttp's client will not do:
stop reading, send a frame by hand (masked with a zero key: the payload goes as is)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct


def client_frame(payload: bytes, *, opcode: int = 0x1, compressed: bool = False,
                 announced: int | None = None) -> bytes:  # fmt: skip
    """A masked client frame; ``announced`` overrides the length in its header."""
    first = 0x80 | opcode | (0x40 if compressed else 0)
    n = len(payload) if announced is None else announced
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


async def upgrade(
    port: int,
    *,
    headers: dict[str, str] | None = None,
    deflate: bool = False,
    rcvbuf: int | None = None,
    read_limit: int = 2**16,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a socket (with ``SO_RCVBUF`` set before connecting if given) and upgrade
    it; (reader, writer, response head). ``read_limit``: the reader stops taking
    bytes from the socket past twice this."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=read_limit)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /api/v1/live/ws HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise AssertionError(head)
    return reader, writer, head
