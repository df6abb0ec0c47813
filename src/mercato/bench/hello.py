"""The bare uvicorn "hello" endpoint the gateway's browse rate is compared with: a raw ASGI
callable (no framework), one worker, uvicorn configured as ``mercato up`` configures it.

Run as ``python -m mercato.bench.hello PORT``."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Message = MutableMapping[str, Any]
BODY = b'{"hello":"world"}'


async def hello(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"17")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def main(port: int) -> None:
    uvicorn.run(hello, host="127.0.0.1", port=port, log_config=None, access_log=False)


if __name__ == "__main__":
    main(int(sys.argv[1]))
