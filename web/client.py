"""A Python client of the edge for analysts, device makers and tools: async, and sync.

    async with Client("http://127.0.0.1:8080", token) as lc:
        session_id = await lc.start_session(sport="ride")
        await lc.post_samples(session_id, [{"t": time.time(), "heart_rate": 141}])
        async for event in lc.follow(session_channel(session_id)):
            ...
        job = await lc.replay(session_id=session_id, what_if={"alerts": {...}})
        report = await lc.replay_result(job["id"])

``SyncClient`` offers the same calls (but ``follow``) for scripts and notebooks.

Writes are safe to retry: every session start and sample batch carries an
``Idempotency-Key`` (the edge answers a repeat with the first answer, see docs/web.md),
so a batch whose answer was lost is sent again with the same key and stored once.
Connection errors, 429 and 503 are retried with backoff (honouring ``Retry-After``) up
to ``retries`` times, and a 409 for a key whose first try is still in progress; any
other 4xx is :class:`ClientError` with the problem's detail. Not guaranteed: an edge
killed after it appended a batch but before it stored the answer holds the key for a
minute (409s); a retry after that stores the batch again (at least once).
``follow`` resumes after a dropped socket from the last cursor it saw (nothing missed,
nothing twice; an alert once by id), as ``livecoach watch`` does through it.

Hand-written over aiohttp (already the edge's dependency) rather than generated from
the OpenAPI document: the parts that matter (idempotent retries, resume positions) are
the protocol's, which a generator does not know.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

import aiohttp

from pipeline.errors import LivecoachError
from web.protocol import format_cursor, parse_cursor

API = "/api/v1/live"
#: Most samples one request may carry (the edge's limit).
MAX_BATCH = 3600
#: Statuses after which a request is sent again (same Idempotency-Key).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
FINISHED = ("done", "failed", "cancelled")


class ClientError(LivecoachError):
    """The edge refused a request: ``status`` and its problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        detail = problem.get("detail") or problem.get("title") or "refused"
        super().__init__(f"{status}: {detail}")


class Position:
    """Where a follower of one channel is: one offset per partition of ``live``, and the
    alert ids seen (a worker that crashed publishes an alert again)."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.offsets: dict[int, int] = {}
        self.alert_ids: set[str] = set()

    def merge(self, cursor: Any) -> None:
        """A cursor the edge gave (the subscribe ``ack``, ``resumed``): a list of "p:o"."""
        for text in cursor if isinstance(cursor, list) else [cursor]:
            if isinstance(text, str):
                self._see(text)

    def _see(self, text: str) -> bool:
        try:
            p, o = parse_cursor(text)
        except ValueError:
            return True
        last = self.offsets.get(p)
        if last is not None and o <= last:
            return False
        self.offsets[p] = o
        return True

    def fresh(self, event: dict[str, Any]) -> bool:
        """Move the position past ``event``; False if it was already seen."""
        kind = event.get("type")
        if (kind == "ack" and event.get("op") == "subscribe") or kind == "resumed":
            self.merge(event.get("cursor"))
        offset = event.get("offset")
        channels = event.get("channels") or [event.get("channel")]
        if isinstance(offset, str) and self.channel in channels and not self._see(offset):
            return False
        alert = event.get("alert")
        if kind == "alert" and isinstance(alert, dict) and isinstance(alert.get("id"), str):
            if alert["id"] in self.alert_ids:
                return False
            self.alert_ids.add(alert["id"])
        return True

    def first_frame(self) -> dict[str, Any]:
        """Subscribe the first time; resume from every partition's offset after."""
        if not self.offsets:
            return {"type": "subscribe", "channel": self.channel}
        cursors = [format_cursor(p, o) for p, o in sorted(self.offsets.items())]
        return {"type": "resume", "cursors": {self.channel: cursors}}


class Refused(LivecoachError):
    """The edge closed the socket for good (4401 unauthenticated, 4403 forbidden)."""


class Client:
    """The edge's REST and WebSocket API. Use as ``async with Client(url, token)``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        retries: int = 5,
        backoff_s: float = 0.25,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retries = retries
        self.backoff_s = backoff_s
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> Client:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use the client as `async with Client(...)`")
        return self._session

    # --- REST -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        idempotency_key: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One API call (``path`` under /api/v1/live), retried on connection errors,
        429 and 5xx-unavailable with the same ``idempotency_key``; its JSON answer."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        url = f"{self.base_url}{API}{path}"
        for attempt in range(self.retries + 1):
            wait = self.backoff_s * 2**attempt * (0.5 + random.random())
            try:
                async with self.http.request(
                    method, url, json=body, headers=headers, params=params
                ) as resp:
                    text = await resp.text()
                    data = json.loads(text) if text else None
                    if resp.status < 400:
                        return data
                    # 409 with a key: its first try is still marked in progress (an edge
                    # that died mid-request holds it for a minute).
                    retry = resp.status in RETRY_STATUSES or (
                        resp.status == 409 and idempotency_key is not None
                    )
                    if not retry or attempt == self.retries:
                        raise ClientError(resp.status, data if isinstance(data, dict) else {})
                    after = resp.headers.get("Retry-After")
                    if after is not None and after.replace(".", "", 1).isdigit():
                        wait = max(wait, float(after))
            except aiohttp.ClientConnectionError:
                if attempt == self.retries:
                    raise
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def start_session(self, **body: Any) -> UUID:
        """Start a live session (``sport``, ``training_session_id``, ``plan``...)."""
        out = await self.request("POST", "/sessions/start", body, idempotency_key=str(uuid.uuid4()))
        return UUID(out["id"])

    async def post_samples(self, session_id: UUID | str, samples: Sequence[dict[str, Any]]) -> int:
        """Post samples in batches of at most :data:`MAX_BATCH`, each retried with its own
        Idempotency-Key until accepted; the number accepted."""
        accepted = 0
        for start in range(0, len(samples), MAX_BATCH):
            batch = list(samples[start : start + MAX_BATCH])
            out = await self.request(
                "POST",
                f"/sessions/{session_id}/update",
                {"samples": batch},
                idempotency_key=str(uuid.uuid4()),
            )
            accepted += int(out.get("accepted", len(batch)))
        return accepted

    async def stop_session(
        self, session_id: UUID | str, *, reason: str | None = None
    ) -> dict[str, Any]:
        body = {"reason": reason} if reason is not None else {}
        out: dict[str, Any] = await self.request("POST", f"/sessions/{session_id}/stop", body)
        return out

    async def session(self, session_id: UUID | str) -> dict[str, Any]:
        out: dict[str, Any] = await self.request("GET", f"/sessions/{session_id}")
        return out

    async def replay(self, **body: Any) -> dict[str, Any]:
        """Start a replay job (``session_id`` or ``user_id`` with ``from``/``to``,
        ``source``, ``what_if``...); its status document."""
        out: dict[str, Any] = await self.request("POST", "/replays", body)
        return out

    async def replay_result(
        self, job_id: str, *, poll_s: float = 0.5, timeout_s: float = 900.0
    ) -> dict[str, Any]:
        """Wait for a replay job to finish; its report (ClientError if it failed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            job = await self.request("GET", f"/replays/{job_id}")
            if job["status"] == "done":
                out: dict[str, Any] = await self.request("GET", f"/replays/{job_id}/result")
                return out
            if job["status"] in FINISHED:
                raise ClientError(200, {"detail": f"replay {job['status']}: {job.get('error')}"})
            if loop.time() > deadline:
                raise TimeoutError(f"replay {job_id} still {job['status']}")
            await asyncio.sleep(poll_s)

    # --- WebSocket --------------------------------------------------------------------

    async def follow(
        self, channel: str, *, position: Position | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every event of ``channel`` (and the edge's frames about it), resuming after a
        dropped socket from the last position seen; raises :class:`Refused` when the edge
        closes the socket for good."""
        position = position or Position(channel)
        url = self.base_url + API + "/ws"
        headers = {"Authorization": f"Bearer {self.token}"}
        delay = 0.5
        while True:
            try:
                async with self.http.ws_connect(url, headers=headers, heartbeat=20) as ws:
                    await ws.send_json(position.first_frame())
                    delay = 0.5
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        event = json.loads(msg.data)
                        if isinstance(event, dict) and position.fresh(event):
                            yield event
                    if ws.close_code in (4401, 4403):
                        raise Refused(f"refused by the edge (close code {ws.close_code})")
            except aiohttp.ClientError as exc:
                yield {"type": "connection_lost", "error": str(exc), "retry_in_s": delay}
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 15.0)


class SyncClient:
    """:class:`Client` for code without an event loop (scripts, notebooks): the same
    calls but ``follow``, each run to its end."""

    def __init__(self, base_url: str, token: str, **options: Any) -> None:
        self._runner = asyncio.Runner()
        self._client = Client(base_url, token, **options)
        self._runner.run(self._client.__aenter__())

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.close())
        self._runner.close()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name.startswith("_") or name == "follow" or not callable(method):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(method(*args, **kwargs))

        return call
