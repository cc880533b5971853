"""The proxy's own endpoints: the models it serves, liveness, readiness, and the dry-run
decision for a chat body (``/v1/router/explain``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from router.errors import LlmError
from router.server.context import (
    ACCESS_KEY,
    ID_HEADER,
    REQUEST_ID,
    begin_call,
    proxy_of,
    request_body,
    router_of,
)
from router.server.errors import ApiError, invalid
from router.server.openai_api import parse_chat

#: How long /readyz waits for the state store.
_STORE_PROBE_TIMEOUT = 2.0
_STARTED = int(time.time())


def _model_entry(alias: str) -> dict[str, Any]:
    # One object both SDKs read: OpenAI's Model (id, object, created, owned_by) and
    # Anthropic's ModelInfo (id, type, display_name, created_at).
    return {"id": alias, "object": "model", "created": _STARTED, "owned_by": "router",
            "type": "model", "display_name": alias,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_STARTED))}


async def models(request: web.Request) -> web.Response:
    """The route file's aliases as a model list (OpenAI's and Anthropic's list shapes)."""
    aliases = sorted(router_of(request).plan.routes)
    key = request.get(ACCESS_KEY)
    if key is not None:  # a key limited to some aliases sees those only
        aliases = [a for a in aliases if key.allows(a)]
    return web.json_response({"object": "list", "data": [_model_entry(a) for a in aliases],
                              "has_more": False, "first_id": aliases[0] if aliases else None,
                              "last_id": aliases[-1] if aliases else None},
                             headers={ID_HEADER: request[REQUEST_ID]})


async def model(request: web.Request) -> web.Response:
    """One alias, or 404."""
    name = request.match_info["model"]
    if name not in begin_call(request, name).plan.routes:
        raise ApiError(404, f"the model {name!r} is not an alias of this proxy",
                       "model_not_found", param="model")
    return web.json_response(_model_entry(name), headers={ID_HEADER: request[REQUEST_ID]})


async def healthz(request: web.Request) -> web.Response:
    """The process is up (it answers)."""
    return web.json_response({"status": "up"}, headers={ID_HEADER: request[REQUEST_ID]})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the plan is loaded, the state store answers, and the proxy is not draining;
    503 with the problems otherwise. ``reload_errors`` has the diagnostics of a route file
    or key file that failed to reload (the previous one still serves, so still ready)."""
    proxy = proxy_of(request)
    plan = proxy.router.plan
    problems: list[str] = []
    if proxy.draining:
        problems.append("draining: the proxy is shutting down")
    store: dict[str, Any] = {"kind": plan.state.kind, "ok": True}
    try:
        async with asyncio.timeout(_STORE_PROBE_TIMEOUT):
            await proxy.store.usage("readyz")
    except (LlmError, OSError, TimeoutError) as e:
        store["ok"] = False
        detail = e.message if isinstance(e, LlmError) else (
            f"no answer within {_STORE_PROBE_TIMEOUT:g}s" if isinstance(e, TimeoutError)
            else type(e).__name__)
        problems.append(f"state store ({plan.state.kind}) unreachable: {detail}")
    body = {"status": "not_ready" if problems else "ready",
            "plan": {"file": plan.file, "aliases": len(plan.routes),
                     "generation": proxy.generation.number},
            "store": store, "problems": problems,
            # A failed reload leaves the previous plan (or keys) serving: ready, but said.
            "reload_errors": proxy.reload_errors}
    return web.json_response(body, status=503 if problems else 200,
                             headers={ID_HEADER: request[REQUEST_ID]})


async def explain(request: web.Request) -> web.Response:
    """The dry-run decision for a chat completions body: what would be tried, skipped and
    why, and which target would answer. A ``simulate`` field maps targets to outcomes."""
    body = await request_body(request)
    simulate = body.pop("simulate", None)
    if simulate is not None and not isinstance(simulate, dict):
        raise invalid("simulate", "simulate must map targets to outcomes")
    call = parse_chat(body)
    router = begin_call(request, call.model)
    params = {**call.params, "stream": call.stream}
    report = router.dry_run(call.model, call.messages, simulate=simulate, **params)
    return web.json_response(report.as_dict(), headers={ID_HEADER: request[REQUEST_ID]})


__all__ = ["explain", "healthz", "model", "models", "readyz"]
