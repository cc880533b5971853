"""The provider protocol, its configuration, and ``HttpProvider``: the one template every HTTP
kind fills in. The HTTP exchange itself lives in ``router.providers.http`` (the only module
that imports aiohttp); status classification, Retry-After and error bodies in
``router.providers._status``; the facts of each built-in kind in ``router.providers.kinds``.

A kind built on ``HttpProvider`` only converts: it builds the request (``request``), turns a
reply into a ChatResponse (``parse_reply``), folds stream values into chunks
(``stream_parser``) and maps error bodies (``map_error``). The template owns the rest, once:
the key check, posting, status handling, JSON decoding, stream framing (SSE or NDJSON), the
terminator check, and the one place where a reply of the wrong shape becomes a ServerError.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import urlsplit

from router.errors import AuthError, ConfigError, LlmError, NetworkError, ServerError
from router.obs import log
from router.providers._json import loads_json
from router.providers._status import (
    ErrorBody,
    classify_status,
    make_status_error,
    parse_retry_after,
    parse_should_retry,
    redact_secrets,
)
from router.providers.http import HttpPool, HttpResponse, dumps_json
from router.providers.kinds import CAPABILITY_FIELDS, KINDS, model_capabilities
from router.providers.sse import Malformed, ServerSentEvent
from router.secret import Secret
from router.specs import Capabilities, Timeouts
from router.types import ChatChunk, ChatRequest, ChatResponse, frozen_builder

__all__ = ["Capabilities", "ErrorBody", "HttpCall", "HttpPool", "HttpProvider", "HttpResponse",
           "Provider", "ProviderConfig", "StreamParser", "Timeouts", "classify_status",
           "dumps_json", "make_status_error", "parse_retry_after", "parse_should_retry",
           "redact_secrets", "reply_text"]

_END = object()  # a stream's sentinel arrived: stop reading

#: Stream events that are not JSON skipped per stream (a proxy's stray line, one corrupted
#: event); one more fails the stream.
MAX_MALFORMED_EVENTS = 3

#: What a kind's parser raises when valid JSON has the wrong shape (``data["choices"][0]`` on
#: a dict, ``.get`` on a str...): caught in one place, in ``HttpProvider``, as a ServerError.
SHAPE_ERRORS = (KeyError, TypeError, AttributeError, ValueError, IndexError)


@dataclass(frozen=True)
class ProviderConfig:
    """One configured provider. ``options`` holds kind-specific settings (organization, ...);
    ``max_connections`` caps the connections open to its host (None: the pool's default).

    The repr shows header names only and never the key (``Secret`` masks it).
    """

    name: str
    kind: str
    base_url: str | None = None
    api_key: Secret | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    max_connections: int | None = None

    def __repr__(self) -> str:
        key = "None" if self.api_key is None else "Secret('**********')"
        return (
            f"ProviderConfig(name={self.name!r}, kind={self.kind!r}, base_url={self.base_url!r}, "
            f"api_key={key}, headers=<{', '.join(sorted(self.headers))}>, "
            f"options={sorted(self.options)!r}, max_connections={self.max_connections!r})"
        )

    __str__ = __repr__


def reply_text(value: Any) -> str:
    """Message content as text: a string, nothing (""), or a list of text parts
    (``[{"type": "text", "text": ...}]``, which some compatible servers send) joined. Anything
    else is the wrong shape (ValueError, which the template turns into a ServerError)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in value):
        return "".join(p["text"] for p in value)
    raise ValueError(f"content is {type(value).__name__}, not text")


# --------------------------------------------------------------------------------------------
# The provider protocol


class Provider(abc.ABC):
    """What every provider kind implements: convert our types to its wire and back, and map its
    errors to ``router.errors`` classes (``target`` left None: the engine sets it).

    The class of a built-in kind takes ``key_env``, ``default_base_url``, ``requires_key`` and
    ``capabilities_default`` from ``router.providers.kinds``; a plugin declares its own.
    """

    kind: ClassVar[str]
    key_env: ClassVar[str | None] = None
    default_base_url: ClassVar[str | None] = None
    capabilities_default: ClassVar[Capabilities] = Capabilities()
    #: Whether calls need an API key (False for servers that take none, e.g. ollama).
    requires_key: ClassVar[bool] = True
    #: Whether ``chat``/``stream`` enforce ``timeouts.total`` themselves (else the engine does).
    enforces_timeouts: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = KINDS.get(cls.__dict__.get("kind", ""))
        if spec is not None and spec.provider_class == f"{cls.__module__}:{cls.__qualname__}":
            cls.key_env = spec.key_env
            cls.default_base_url = spec.default_base_url
            cls.requires_key = spec.requires_key
            cls.capabilities_default = spec.capabilities

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        self.config = config
        self.http = http
        self._secret = config.api_key.get_secret_value() if config.api_key is not None else ""
        overrides = config.options.get("capabilities") or {}
        unknown = sorted(set(overrides) - CAPABILITY_FIELDS)
        if unknown:
            known = ", ".join(sorted(CAPABILITY_FIELDS))
            raise ConfigError(f"provider {config.name!r}: bad capabilities option: "
                              f"{', '.join(unknown)} (known: {known})")
        self._cap_overrides: Mapping[str, Any] = dict(overrides)
        self._caps: dict[str, Capabilities] = {}

    def check_key(self) -> None:
        """Raise AuthError naming the key variable when a key is required and missing, before
        any request is sent."""
        if self.requires_key and not self._secret:
            where = f": set {self.key_env}" if self.key_env else ": set api_key"
            raise AuthError(f"no API key for provider {self.config.name!r}{where}",
                            retryable=False)

    @property
    def name(self) -> str:
        return self.config.name

    def capabilities(self, model: str) -> Capabilities:
        """What ``model`` can do on this provider: the same answer the plan gives
        (``kinds.model_capabilities``), with the ``capabilities`` option on top."""
        caps = self._caps.get(model)
        if caps is None:
            caps = self._caps[model] = model_capabilities(
                self.kind, model, self._cap_overrides, options=self.config.options,
                default=type(self).capabilities_default)
        return caps

    @abc.abstractmethod
    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        """One non-streamed call. ``ChatResponse.target`` is left "" for the engine to fill."""

    @abc.abstractmethod
    def stream(self, model: str, request: ChatRequest,
               timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        """An async generator of chunks; the last one has finish_reason, usage and
        final_tool_calls. It closes the upstream response in ``finally``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.config.name!r}, kind={self.kind!r})"


# --------------------------------------------------------------------------------------------
# The HTTP template


class StreamParser(Protocol):
    """Folds a stream's decoded values (one JSON value per SSE event or NDJSON line) into
    chunks. ``complete``: the protocol's terminator arrived, so the body may end now;
    ``finished``: nothing more is worth reading."""

    @property
    def complete(self) -> bool: ...

    @property
    def finished(self) -> bool: ...

    def feed(self, data: Any) -> ChatChunk | None: ...

    def final_chunks(self) -> Sequence[ChatChunk]: ...


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One request of a kind: where it goes, its body and headers, the model, a fresh stream
    parser (streams only) and whatever the kind needs again to read the reply (``context``:
    Anthropic's answer tool, ...)."""

    url: str
    body: Mapping[str, Any] | bytes
    headers: Mapping[str, str]
    model: str
    parser: StreamParser | None = None
    context: Any = None


#: ``HttpCall(...)`` at a third of the cost, for the kinds' ``request`` (the hot path).
new_http_call = frozen_builder(HttpCall)


class HttpProvider(Provider):
    """The template of every HTTP kind (see the module docstring)."""

    enforces_timeouts: ClassVar[bool] = True
    #: How a stream's body is framed.
    framing: ClassVar[Literal["sse", "ndjson"]] = "sse"
    #: An SSE ``data`` value that ends the stream (OpenAI's ``[DONE]``), if the kind has one.
    sse_sentinel: ClassVar[str | None] = None
    #: The protocol's terminator, as error messages name it.
    terminator: ClassVar[str] = "the end of the stream"

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        self._secrets = (self._secret,) if self._secret else ()
        # The base key check depends on the config alone: a key that is there stays there.
        self._key_known = type(self).check_key is Provider.check_key and (
            bool(self._secret) or not self.requires_key)
        self._plain_errors = type(self).is_error is HttpProvider.is_error
        self._stream_accept = ("text/event-stream" if self.framing == "sse"
                               else "application/x-ndjson")
        spec = KINDS.get(self.kind)
        self._foreign = spec.foreign_params if spec is not None else frozenset()

    # -- what a kind fills in -------------------------------------------------------------

    @abc.abstractmethod
    def request(self, model: str, request: ChatRequest, *, stream: bool) -> HttpCall:
        """The URL, body and headers of one call (and for a stream, a fresh parser)."""

    @abc.abstractmethod
    def parse_reply(self, data: Any, call: HttpCall) -> ChatResponse:
        """A decoded reply body to ChatResponse (may raise any of SHAPE_ERRORS)."""

    @abc.abstractmethod
    def map_error(self, status: int | None, headers: Mapping[str, str],
                  body: ErrorBody) -> LlmError:
        """The LlmError of an error body (status None: an error inside a 200 body/stream)."""

    def is_error(self, data: Any, event: str | None) -> bool:
        """Whether a decoded 200 body or stream value is an error (default: ``{"error": ...}``
        or an SSE event named ``error``)."""
        return event == "error" or (isinstance(data, dict) and bool(data.get("error")))

    def headers(self, auth: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(reply headers, stream headers): JSON in, JSON or the stream framing out, ``auth``,
        then the provider's configured headers (which win)."""
        plain = {"Content-Type": "application/json", "Accept": "application/json", **auth}
        plain.update(self.config.headers)
        stream = {**plain, "Accept": self._stream_accept}
        for name in self.config.headers:  # a configured Accept wins for streams too
            if name.lower() == "accept":
                stream[name] = self.config.headers[name]
        return plain, stream

    # -- the template ---------------------------------------------------------------------

    def _own_params(self, request: ChatRequest) -> ChatRequest:
        """``request`` without the other vendors' parameters this kind's API refuses (see
        ``KindSpec.foreign_params``); each call that had some logs ``params_left_out``."""
        extra = request.extra
        left_out = [k for k in extra if k in self._foreign]
        if not left_out:
            return request
        log.emit("params_left_out", provider=self.config.name, kind=self.kind,
                 params=left_out)
        return replace(request, extra={k: v for k, v in extra.items() if k not in left_out})

    def _wrong_shape(self, e: Exception, where: str) -> ServerError:
        detail = redact_secrets(str(e)[:4096], self._secrets)[:200]  # redact, then cut
        return ServerError(f"{self.kind} {where} has the wrong shape "
                           f"({type(e).__name__}: {detail})")

    async def _status_error(self, resp: HttpResponse, call: HttpCall) -> LlmError:
        error = self.map_error(resp.status, resp.headers, await resp.read_error_body())
        if resp.status == 404:
            # A wrong base_url answers 404 with the vendor's generic text: say what was asked.
            error.message = f"{error.message} (POST {urlsplit(call.url).path})"
        return error

    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        """One non-streamed call."""
        if not self._key_known:
            self.check_key()
        if request.extra and self._foreign:
            request = self._own_params(request)
        call = self.request(model, request, stream=False)
        async with self.http.post(call.url, call.body, headers=call.headers, timeouts=timeouts,
                                  max_connections=self.config.max_connections) as resp:
            if resp.status >= 300:
                raise await self._status_error(resp, call)
            data = await resp.json()
            if (type(data) is dict and bool(data.get("error")) if self._plain_errors
                    else self.is_error(data, None)):
                raise self.map_error(None, resp.headers, ErrorBody(text=str(data), json=data))
            try:
                response = self.parse_reply(data, call)
                if not isinstance(response.text, str):
                    raise TypeError(f"text is {type(response.text).__name__}")
            except SHAPE_ERRORS as e:
                raise self._wrong_shape(e, "reply") from e
            if response.request_id is None:
                response.request_id = resp.request_id
        return response

    async def stream(self, model: str, request: ChatRequest,
                     timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        """A streamed call: chunks as they come, then the final chunk(s). A body that ends
        before the protocol's terminator is a NetworkError (retryable); the final chunk is
        yielded as soon as the terminator arrives."""
        if not self._key_known:
            self.check_key()
        if request.extra and self._foreign:
            request = self._own_params(request)
        call = self.request(model, request, stream=True)
        parser = call.parser
        if parser is None:
            raise TypeError(f"{type(self).__name__}.request made a stream call without a parser")
        async with self.http.post(call.url, call.body, headers=call.headers, timeouts=timeouts,
                                  max_connections=self.config.max_connections) as resp:
            if resp.status >= 300:
                raise await self._status_error(resp, call)
            # One loop over the framed values (no generator of our own in between: each
            # level would cost every chunk a step). ``decode`` returns _END at the sentinel.
            decode: Callable[[Any, bool, HttpResponse], Any]
            if self.framing == "sse":
                source: AsyncGenerator[tuple[Any, bool], None] = resp.iter_sse()
                decode = self._sse_value
            else:
                source, decode = resp.iter_ndjson(), self._ndjson_value
            malformed = 0  # events that were not JSON, skipped
            async with contextlib.aclosing(source):
                async for item, last in source:
                    data = decode(item, last, resp)
                    if data is _END:
                        break
                    if type(data) is Malformed:
                        malformed = self._skip_malformed(data, malformed, model)
                        continue
                    try:
                        chunk = parser.feed(data)
                    except SHAPE_ERRORS as e:
                        raise self._wrong_shape(e, "stream event") from e
                    if chunk is not None:
                        yield chunk
                    if parser.finished:
                        break
            final = self._final_chunks(parser, malformed)
            resp.finish()  # the connection is freed now: the final chunk never waits on it
            for chunk in final:
                yield chunk

    def _final_chunks(self, parser: StreamParser, malformed: int) -> Sequence[ChatChunk]:
        """The stream's last chunk(s), the last one counting the ``malformed`` events skipped;
        a stream whose terminator never came is a NetworkError (retryable)."""
        if not parser.complete:
            raise NetworkError(f"stream ended before {self.terminator}" + (
                f" ({malformed} malformed events skipped)" if malformed else ""))
        try:
            final = parser.final_chunks()
        except SHAPE_ERRORS as e:
            raise self._wrong_shape(e, "stream") from e
        if malformed and final:
            final[-1].malformed_events = malformed
        return final

    def _skip_malformed(self, bad: Malformed, count: int, model: str) -> int:
        """Count one more stream event that is not JSON (skipped, with a warning that holds no
        payload text); past MAX_MALFORMED_EVENTS the stream is a ServerError."""
        count += 1
        if count > MAX_MALFORMED_EVENTS:
            excerpt = redact_secrets(bad.excerpt[:4096], self._secrets)[:200]  # redact, then cut
            raise ServerError(f"stream event is not JSON: {excerpt!r} ({count} such events; "
                              f"at most {MAX_MALFORMED_EVENTS} are skipped)")
        log.emit("stream_event_skipped", level=log.WARNING, provider=self.config.name,
                 kind=self.kind, model=model, reason="not JSON", malformed_events=count)
        return count

    def _sse_value(self, event: ServerSentEvent, last: bool, resp: HttpResponse) -> Any:
        """The JSON value of one event, _END at the kind's sentinel, a Malformed for an event
        that is not JSON; an error event raised."""
        sentinel = self.sse_sentinel
        if sentinel is not None and event.data.startswith(sentinel):
            return _END
        try:
            data = loads_json(event.data)  # event.json(), one call less per event
        except ValueError as e:
            if last:  # the body ended inside an event: the connection was cut
                raise NetworkError("stream ended inside an event") from e
            return Malformed(event.data[:4096])
        if (event.event == "error" or (type(data) is dict and bool(data.get("error")))
                if self._plain_errors else self.is_error(data, event.event)):
            raise self.map_error(None, resp.headers, ErrorBody(text=event.data, json=data))
        return data

    def _ndjson_value(self, data: Any, _last: bool, resp: HttpResponse) -> Any:
        """One NDJSON line's value (a Malformed passed on); an error line raised."""
        if type(data) is not Malformed and self.is_error(data, None):
            raise self.map_error(None, resp.headers,
                                 ErrorBody(text=dumps_json(data).decode(), json=data))
        return data
