"""A bare aiohttp pass-through for bench/proxy_overhead.py: aiohttp's server and client alone.

    python bench/_forwarder.py UPSTREAM_PORT

It listens on 127.0.0.1, port 0, prints ``PORT <n>`` on stdout and serves until its stdin
closes. ``POST /v1/chat/completions``: read the JSON body, set ``model`` to the upstream's,
post it to the upstream with one keep-alive ``aiohttp.ClientSession``, answer its JSON. No
router, no logging, no metrics; uvloop's loop when installed, as ``router serve`` runs.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any

from _child import until_stdin_closes
from aiohttp import ClientSession, TCPConnector, web


async def serve(upstream_port: int) -> None:
    url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    async with ClientSession(connector=TCPConnector(limit=0)) as session:

        async def forward(request: web.Request) -> web.Response:
            body: dict[str, Any] = await request.json()
            body["model"] = "gpt-4o-mini"
            async with session.post(url, json=body,
                                    headers={"Authorization": request.headers.get(
                                        "Authorization", "")}) as r:
                return web.json_response(await r.json(), status=r.status)

        app = web.Application()
        app.router.add_post("/v1/chat/completions", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        try:
            await until_stdin_closes(runner.addresses[0][1])
        finally:
            await runner.cleanup()


def main() -> None:
    try:
        factory = importlib.import_module("uvloop").new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
