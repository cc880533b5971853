"""What a request brings besides its API's fields: the JSON body (size-capped, strict UTF-8,
strict JSON) and the call options set by headers (``x-router-tag``, ``x-router-timeout``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from router.config.units import parse_duration
from router.providers._json import loads_json
from router.server.errors import ApiError, invalid

TAG_HEADER = "x-router-tag"
TIMEOUT_HEADER = "x-router-timeout"


@dataclass(frozen=True, slots=True)
class CallOptions:
    """The router call's own options, from request headers."""

    request_id: str
    tags: dict[str, str] | None = None
    timeout: float | None = None

    def kwargs(self) -> dict[str, Any]:
        """As keyword arguments of Router.chat / Router.stream."""
        return {"request_id": self.request_id, "tags": self.tags, "timeout": self.timeout}


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than this proxy accepts ({limit} bytes)",
                    "request_too_large")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


#: json.loads(text, parse_constant=...) builds this decoder anew on every call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _loads_stdlib(text: str) -> Any:
    """``json.loads(text, parse_constant=_refuse_constant)``, its BOM check included."""
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def _loads(text: str) -> Any:
    """``_loads_stdlib(text)``'s value or error, read by orjson where it reads the same."""
    return loads_json(text, _loads_stdlib)


async def read_json(request: web.Request, limit: int,
                    timeout: float | None = None) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes, 408 when it takes longer than
    ``timeout`` seconds to arrive (a client trickling it must not hold the proxy), 400 for
    anything else wrong."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    try:
        content = request.content
        if content.is_eof():  # it all came with the head: nothing to wait for, no copy
            raw = content.read_nowait()
            if len(raw) > limit:  # inflated past the limit (Content-Encoding)
                raise too_large(limit)
        else:
            async with asyncio.timeout(timeout):
                raw = await request.read()  # the app's client_max_size is the limit
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    except TimeoutError:
        raise ApiError(408, f"the request body took longer than {timeout:g}s to arrive",
                       "request_timeout") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid(None, f"the request body is not valid UTF-8 (at byte {e.start})") from None
    try:
        body = _loads(text)
    except json.JSONDecodeError as e:
        raise invalid(None, f"the request body is not valid JSON: {e.msg} "
                            f"(line {e.lineno}, column {e.colno})") from None
    except ValueError as e:  # NaN, Infinity
        raise invalid(None, f"the request body is not valid JSON: {e}") from None
    except RecursionError:
        raise invalid(None, "the request body nests too deeply") from None
    if not isinstance(body, dict):
        raise invalid(None, "the request body must be a JSON object")
    return body


def call_options(headers: Mapping[str, str], request_id: str) -> CallOptions:
    """Tags (``x-router-tag: team=search, env=prod``, repeatable) and a per-call deadline
    (``x-router-timeout: 30s``, or a number of seconds)."""
    tags: dict[str, str] = {}
    getall = getattr(headers, "getall", None)
    values = getall(TAG_HEADER, []) if getall is not None else [headers.get(TAG_HEADER, "")]
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            key, sep, val = item.partition("=")
            if not sep or not key.strip() or not val.strip():
                raise invalid(TAG_HEADER, f"{TAG_HEADER} takes KEY=VALUE pairs separated by "
                                          "commas")
            tags[key.strip()] = val.strip()
    timeout: float | None = None
    raw = headers.get(TIMEOUT_HEADER)
    if raw is not None:
        try:
            timeout = parse_duration(raw)
        except ValueError:
            raise invalid(TIMEOUT_HEADER, f"{TIMEOUT_HEADER} must be a duration such as 30s, "
                                          "500ms or a number of seconds") from None
        if timeout <= 0:
            raise invalid(TIMEOUT_HEADER, f"{TIMEOUT_HEADER} must be more than 0 seconds")
    return CallOptions(request_id, tags or None, timeout)


__all__ = ["TAG_HEADER", "TIMEOUT_HEADER", "CallOptions", "call_options", "read_json",
           "too_large"]
