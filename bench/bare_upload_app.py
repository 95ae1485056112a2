"""The ceiling of a verifying upload server on uvicorn: an ASGI app that only checks an upload's sha256.

``PUT /<sha256>`` streams the body into sha256 on a thread of its own (as the hub does, so that receiving and
hashing overlap) and answers 200 if the digest matches, 400 otherwise. No disk, no database, no auth: whatever a
real hub does on top of this costs more. ``bench/hub_transfer.py`` runs it under uvicorn with the hub's defaults
(uvloop, httptools, tuned malloc) to show how close the hub's upload comes to what any such server can reach here.

    python -m uvicorn bare_upload_app:app --app-dir bench --port PORT
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from openckpt.hub.server import tune_malloc

Message = MutableMapping[str, Any]
BATCH = 4 << 20
DEPTH = 4

tune_malloc()


async def _digest(receive: Callable[[], Awaitable[Message]]) -> str:
    """sha256 of the request body, hashed on a thread in batches of ``BATCH`` bytes while more arrives."""
    h = hashlib.sha256()
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(DEPTH)
    batches: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()

    def hash_batches() -> None:
        while (batch := batches.get()) is not None:
            for chunk in batch:
                h.update(chunk)
            loop.call_soon_threadsafe(slots.release)

    worker = threading.Thread(target=hash_batches)
    worker.start()
    batch: list[bytes] = []
    batched = 0
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
        if chunk := message.get("body", b""):
            batch.append(chunk)
            batched += len(chunk)
        if batched >= BATCH or not more:
            await slots.acquire()
            batches.put(batch)
            batch, batched = [], 0
    batches.put(None)
    await loop.run_in_executor(None, worker.join)
    return h.hexdigest()


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    status = 200 if await _digest(receive) == scope["path"].strip("/") else 400
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
