"""Every configured secret (API keys and every ``headers:`` value) is redacted from error
messages, reprs, attempt details, log events and CLI lines, and redaction hides whole values
only: a short key never blanks letters out of other text, so ``errors:`` rules keep matching.

The upstream is a loopback aiohttp server that echoes the credentials it received (the
``Authorization`` token, ``x-api-key`` and the custom headers) back in a 401 JSON body, a
non-JSON 500 body and a stream error event.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web

from router import Router
from router.errors import AuthError, ErrorClass, LlmError, RouteFailed, StreamInterruptedError
from router.obs import log
from router.obs.redact import Redactor
from router.providers import registry
from router.providers.base import Capabilities, Provider, ProviderConfig, Timeouts
from router.secret import Secret
from router.types import ChatChunk, ChatRequest, ChatResponse
from tests.engine_helpers import Events
from tests.servers.anthropic import block_delta, block_start, message_start, text_block
from tests.test_cli import cli_env, run_cli_async

# Not sk- / AIza- / Bearer-shaped where it reaches the echo: only the registry can hide these.
OA_KEY = "oa_REDACT-9c41e8b3f27d"
AN_KEY = "an_REDACT-3e7b1f9a0c52"
HEADER_SECRET = "hdr_REDACT-8d2a6c4e1f90"  # a headers: credential
SHORT_SECRET = "Q7z"  # a short headers: value: hidden as a whole token only
SECRETS = (OA_KEY, AN_KEY, HEADER_SECRET, SHORT_SECRET)
ENV = {"RT_OA_KEY": OA_KEY, "RT_AN_KEY": AN_KEY, "RT_HDR": HEADER_SECRET, "RT_TEAM": SHORT_SECRET}
ECHOED = ("authorization", "x-api-key", "x-custom-secret", "x-team-token")
MODES = ("auth", "html", "stream")
PROMPT = [{"role": "user", "content": "hi"}]
# OpenAI's 401 without a key: no secret in it, and it must reach the user as written.
NO_KEY = ("You didn't provide an API key. You need to provide your API key in an Authorization "
          "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
          "field (with blank username) if you're accessing the API from your browser and are "
          "prompted for a username and password. You can obtain an API key from "
          "https://platform.openai.com/account/api-keys.")


def assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, (secret, text)


# -- the rules: a Redactor of its own (the process registry is left alone) ------------------


def test_long_secret_is_hidden_inside_a_longer_token() -> None:
    assert Redactor(["abcd-1234"])("GET /v1?key=abcd-1234&alt=sse xabcd-1234y") == \
        "GET /v1?key=***&alt=sse x***y"


def test_short_secret_is_hidden_as_a_whole_token() -> None:
    assert Redactor(["Q7z"])("token 'Q7z' rejected: Q7z.") == "token '***' rejected: ***."


def test_short_secret_inside_a_longer_token_is_left_alone() -> None:
    text = "Q7zz xQ7z Q7z-1 Q7z_2 9Q7z"
    assert Redactor(["Q7z"])(text) == text


def test_one_letter_secret_does_not_alter_other_text() -> None:
    text = "This model's maximum context length is 8192 tokens; the prompt has 9000 (x-api-key)."
    assert Redactor(["a", "x", "8"])(text) == text


def test_longest_secret_is_hidden_whole() -> None:
    assert Redactor(["abcdefgh", "abcdefgh-and-more"])("k=abcdefgh-and-more") == "k=***"


def test_secret_with_regex_metacharacters_is_matched_literally() -> None:
    redactor = Redactor(["a+b(c)*d.e"])
    assert redactor("x a+b(c)*d.e y aab(c)d.e") == "x *** y aab(c)d.e"


def test_bearer_credential_is_hidden_without_its_scheme_too() -> None:
    assert Redactor(["Bearer tok-12345678"])("got tok-12345678") == "got ***"


def test_a_value_added_twice_is_forgotten_after_two_discards() -> None:
    redactor = Redactor(["sec-12345678"])
    redactor.add(["sec-12345678"])  # a second Router with the same key
    redactor.discard(["sec-12345678"])
    assert redactor("sec-12345678") == "***"
    redactor.discard(["sec-12345678"])
    assert redactor("sec-12345678") == "sec-12345678"


# -- the echoing upstream ---------------------------------------------------------------------


def echo(request: web.Request) -> str:
    """The credentials received, as an upstream quotes them (the bearer token alone)."""
    values = (request.headers.get(name, "").removeprefix("Bearer ") for name in ECHOED)
    return " ".join(v for v in values if v)


def sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def error_body(anthropic: bool, kind: str, message: str) -> dict[str, Any]:
    """The vendor's error shape (docs.anthropic.com/en/api/errors; OpenAI's error object)."""
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def stream_then_fail(request: web.Request, anthropic: bool) -> web.StreamResponse:
    """One text chunk, then an error event that echoes the credentials."""
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    if anthropic:
        await resp.write(sse("message_start", message_start()))
        await resp.write(sse("content_block_start", block_start(0, text_block(""))))
        await resp.write(sse("content_block_delta",
                             block_delta(0, {"type": "text_delta", "text": "par"})))
    else:
        await resp.write(sse(None, {
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "par"},
                                                 "logprobs": None, "finish_reason": None}]}))
    body = error_body(anthropic, "api_error" if anthropic else "server_error",
                      f"key {echo(request)} was revoked mid-stream")
    await resp.write(sse("error" if anthropic else None, body))
    await resp.write_eof()
    return resp


async def handle(request: web.Request) -> web.StreamResponse:
    mode = request.match_info["mode"]
    anthropic = request.path.endswith("/messages")
    await request.read()
    if mode == "auth":
        kind = "authentication_error" if anthropic else "invalid_request_error"
        return web.json_response(error_body(
            anthropic, kind, f"Incorrect API key provided: {echo(request)}."), status=401)
    if mode == "html":
        return web.Response(status=500, content_type="text/html",
                            text=f"<html><body>502 Bad Gateway: upstream refused "
                                 f"{echo(request)}</body></html>")
    if mode == "cutkey":  # non-JSON events whose key straddles the 200-character excerpt
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(4):  # one more than the events that are skipped (issue 11)
            await resp.write(f'data: {{"x": "{"y" * 185}{echo(request)}\n\n'.encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
    if mode == "nokey":
        return web.json_response(error_body(False, "invalid_request_error", NO_KEY), status=401)
    if mode == "warming":  # a 400 that only a user errors: rule classifies
        return web.json_response(error_body(
            False, "invalid_request_error", "The model is warming up, try again later"),
            status=400)
    return await stream_then_fail(request, anthropic)


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_post("/{mode}/v1/chat/completions", handle)
    app.router.add_post("/{mode}/v1/messages", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    yield port
    await runner.cleanup()


def routes(port: int) -> dict[str, Any]:
    """Each kind (openai: Authorization; anthropic: x-api-key) in each mode, keys and header
    credentials from ``${VAR}``; ``chat`` tries every non-stream provider in turn."""
    headers = {"X-Custom-Secret": "${RT_HDR}", "X-Team-Token": "${RT_TEAM}"}
    providers: dict[str, Any] = {}
    for mode in MODES:
        providers[f"oa_{mode}"] = {"kind": "openai", "api_key": "${RT_OA_KEY}",
                                   "base_url": f"http://127.0.0.1:{port}/{mode}/v1",
                                   "headers": headers}
        providers[f"an_{mode}"] = {"kind": "anthropic", "api_key": "${RT_AN_KEY}",
                                   "base_url": f"http://127.0.0.1:{port}/{mode}",
                                   "headers": headers}
    return {
        "version": 1,
        "defaults": {"retry": {"attempts": 1}, "timeout": {"connect": "2s", "total": "10s"}},
        "providers": providers,
        "models": {
            "chat": ["oa_auth:gpt-4o-mini", "an_auth:claude-haiku-4-5",
                     "oa_html:gpt-4o-mini", "an_html:claude-haiku-4-5"],
            "oa_stream": ["oa_stream:gpt-4o-mini"],
            "an_stream": ["an_stream:claude-haiku-4-5"],
        },
    }


@dataclass
class Run:
    """What one failing run left behind."""

    router: Router
    failed: RouteFailed
    interrupted: list[StreamInterruptedError]


async def failing_run(port: int) -> Run:
    async with Router.from_dict(routes(port), env=ENV) as router:
        with pytest.raises(RouteFailed) as info:
            await router.chat("chat", PROMPT)
        interrupted = []
        for model in ("oa_stream", "an_stream"):
            with pytest.raises(StreamInterruptedError) as s_info:
                async for _ in router.stream(model, PROMPT):
                    pass
            interrupted.append(s_info.value)
    return Run(router, info.value, interrupted)


@pytest.fixture
async def run(upstream: int) -> Run:
    return await failing_run(upstream)


# -- the library --------------------------------------------------------------------------------


def test_echoed_credentials_are_hidden_in_the_401_message(run: Run) -> None:
    first = run.failed.attempts[0].detail or ""
    # the whole echo was quoted, every value masked, the text around it intact
    assert first.startswith("Incorrect API key provided: *** *** ***."), first
    assert_clean(first)


def test_echoed_x_api_key_is_hidden_in_the_anthropic_401_message(run: Run) -> None:
    second = run.failed.attempts[1].detail or ""
    assert second.startswith("Incorrect API key provided: *** *** ***."), second
    assert_clean(second)


def test_echoed_credentials_are_hidden_in_a_quoted_non_json_body(run: Run) -> None:
    details = [a.detail or "" for a in run.failed.attempts[2:]]
    assert all("502 Bad Gateway: upstream refused *** *** ***" in d for d in details), details
    assert_clean(*details)


def test_secrets_never_in_route_failed_text(run: Run) -> None:
    last = run.failed.last_error
    assert last is not None
    assert "502 Bad Gateway: upstream refused *** *** ***" in str(run.failed)
    assert_clean(str(run.failed), repr(run.failed), str(last), repr(last),
                 str(last.provider_message), *(str(a.as_dict()) for a in run.failed.attempts),
                 *(repr(a) for a in run.failed.attempts))


def test_secrets_never_in_a_stream_error_event(run: Run) -> None:
    for err in run.interrupted:
        assert "was revoked mid-stream" in str(err)
        assert err.attempts
        assert_clean(str(err), repr(err), *(str(a.as_dict()) for a in err.attempts))


async def test_secrets_never_in_log_events(upstream: int, events: Events) -> None:
    await failing_run(upstream)
    failed = [e for e in events if e["event"] == "attempt_failed"]
    assert len(failed) >= 6
    assert any("Incorrect API key provided" in str(e.get("detail")) for e in failed)
    assert_clean(*(repr(e) + json.dumps(e, default=str) for e in events))


def test_secrets_never_in_reprs(run: Run) -> None:
    plan = run.router.plan
    cfg = ProviderConfig(name="a", kind="openai", api_key=Secret(OA_KEY),
                         headers={"X-Custom-Secret": HEADER_SECRET})
    assert_clean(repr(run.router), str(run.router), repr(plan), repr(cfg), str(cfg),
                 *(repr(p) for p in plan.providers.values()))


async def test_a_missing_key_is_named_never_valued_in_records_errors_and_logs(
        upstream: int, events: Events) -> None:
    doc = routes(upstream)
    doc["providers"]["oa_nokey"] = {**doc["providers"]["oa_auth"], "api_key": "${RT_UNSET_KEY}"}
    doc["models"]["keyless"] = ["oa_nokey:gpt-4o-mini", "oa_auth:gpt-4o-mini"]
    doc["models"]["only_keyless"] = ["oa_nokey:gpt-4o-mini"]
    async with Router.from_dict(doc, env=ENV) as router:
        failures = []
        for model in ("keyless", "only_keyless"):
            with pytest.raises(RouteFailed) as info:
                await router.chat(model, PROMPT)
            failures.append(info.value)
    skip = failures[0].attempts[0]
    assert (skip.reason, skip.detail) == ("missing_key", "provider 'oa_nokey' needs "
                                          "RT_UNSET_KEY, which is not set in the environment")
    assert failures[1].error_class is ErrorClass.NO_ROUTE
    assert all("RT_UNSET_KEY" in str(f) for f in failures)
    skipped = [e for e in events if e["event"] == "target_skipped"]
    assert [e["reason"] for e in skipped] == ["missing_key", "missing_key"]
    assert_clean(*(str(f) + repr(f) + repr(f.last_error) for f in failures),
                 *(str(a.as_dict()) + repr(a) for f in failures for a in f.attempts),
                 *(repr(e) + json.dumps(e, default=str) for e in events))


# -- short keys and errors: rules -----------------------------------------------------------------


@pytest.fixture
def one_letter_key() -> Iterator[str]:
    """The key ``a``, unregistered afterwards so later tests' messages are not affected."""
    yield "a"
    log.remove_secrets(["a"])


async def test_errors_rule_with_match_still_matches_with_a_one_letter_key(
        upstream: int, one_letter_key: str) -> None:
    data = {
        "version": 1,
        "defaults": {"retry": {"attempts": 1}},
        "providers": {"loc": {"kind": "openai-compatible", "api_key": one_letter_key,
                              "base_url": f"http://127.0.0.1:{upstream}/warming/v1"}},
        "models": {"m": ["loc:llama"]},
        "errors": [{"provider": "loc", "status": 400, "match": "model is warming up",
                    "class": "overloaded"}],
    }
    async with Router.from_dict(data) as router:
        with pytest.raises(LlmError) as info:
            await router.chat("m", PROMPT)
    assert info.value.error_class is ErrorClass.OVERLOADED
    assert "The model is warming up, try again later" in str(info.value)


async def test_text_shaped_like_a_credential_but_not_configured_is_left_alone(
        upstream: int) -> None:
    data = {"version": 1, "defaults": {"retry": {"attempts": 1}},
            "providers": {"o": {"kind": "openai", "api_key": "${RT_OA_KEY}",
                                "base_url": f"http://127.0.0.1:{upstream}/nokey/v1"}},
            "models": {"m": ["o:gpt-4o-mini"]}}
    async with Router.from_dict(data, env=ENV) as router:
        with pytest.raises(LlmError) as info:
            await router.chat("m", PROMPT)
    assert info.value.error_class is ErrorClass.AUTH
    assert NO_KEY in str(info.value)


async def test_a_secret_cut_by_an_excerpt_limit_leaves_no_prefix_behind(upstream: int) -> None:
    data = {"version": 1, "defaults": {"retry": {"attempts": 1}},
            "providers": {"o": {"kind": "openai", "api_key": "${RT_OA_KEY}",
                                "base_url": f"http://127.0.0.1:{upstream}/cutkey/v1"}},
            "models": {"m": ["o:gpt-4o-mini"]}}
    async with Router.from_dict(data, env=ENV) as router:
        with pytest.raises(RouteFailed) as info:
            async for _ in router.stream("m", PROMPT):
                pass
    message = str(info.value.last_error)
    assert "stream event is not JSON" in message and "yyy***" in message, message
    assert OA_KEY[:8] not in str(info.value) + message + str(info.value.attempts[-1].detail)


# -- the command line ------------------------------------------------------------------------------


def write_routes(tmp_path: Path, port: int, **extra: Any) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(json.dumps({**routes(port), **extra}), encoding="utf-8")  # JSON is YAML
    return path


async def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``router ARGS`` as a subprocess while this loop goes on serving the upstream."""
    return await run_cli_async(*args, env=cli_env(**ENV))


async def test_cli_chat_never_prints_a_secret(tmp_path: Path, upstream: int) -> None:
    r = await run_cli("chat", str(write_routes(tmp_path, upstream)), "hi", "-m", "chat",
                      "--no-stream", "-v")
    assert r.returncode == 1
    assert "Incorrect API key provided: ***" in r.stderr, r.stderr
    assert_clean(r.stdout, r.stderr)


async def test_cli_chat_stream_error_never_prints_a_secret(tmp_path: Path,
                                                           upstream: int) -> None:
    r = await run_cli("chat", str(write_routes(tmp_path, upstream)), "hi", "-m", "an_stream",
                      "-v", "--log-format", "json")
    assert r.returncode == 1
    assert "was revoked mid-stream" in r.stderr, r.stderr
    assert_clean(r.stdout, r.stderr)


async def test_cli_dry_run_never_prints_a_secret(tmp_path: Path, upstream: int) -> None:
    path = str(write_routes(tmp_path, upstream))
    for fmt in ("text", "json"):
        r = await run_cli("dry-run", path, "-m", "chat", "--format", fmt,
                          "--simulate", "oa_auth:gpt-4o-mini=auth")
        assert r.returncode == 0, r.stderr
        assert "oa_auth:gpt-4o-mini" in r.stdout
        assert_clean(r.stdout, r.stderr)


async def test_cli_validate_hides_a_short_header_secret_it_quotes(tmp_path: Path,
                                                                  upstream: int) -> None:
    data = routes(upstream)
    data["providers"]["oa_auth"]["base_url"] = "${RT_TEAM}"  # quoted back: not a URL
    path = tmp_path / "broken.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    r = await run_cli("validate", str(path))
    assert r.returncode == 1
    assert "'***' is not an http(s) URL" in r.stdout, r.stdout
    assert_clean(r.stdout, r.stderr)


class _Tokened(Provider):
    """A plugin kind with a secret setting of its own, which its errors quote back."""

    kind = "tokened"
    requires_key = False
    capabilities_default = Capabilities()
    config_schema: ClassVar[dict[str, Any] | None] = {
        "properties": {"token": {"type": "string"}, "region": {"type": "string"}},
        "required": ["token"]}

    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        raise AuthError(f"token {self.config.options['token']} refused in "
                        f"{self.config.options.get('region')}", retryable=False)

    async def stream(self, model: str, request: ChatRequest,
                     timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        raise AuthError(f"token {self.config.options['token']} refused", retryable=False)
        yield ChatChunk()  # pragma: no cover - makes this an async generator


async def test_a_plugin_kinds_secret_setting_is_redacted_like_a_key() -> None:
    token = "tok-plugin-0123456789abcdef"
    registry.register_provider_kind("tokened", _Tokened)
    try:
        doc = {"version": 1,
               "providers": {"t": {"kind": "tokened", "token": "${TOK}", "region": "eu"}},
               "models": {"x": ["t:m"]}}
        async with Router.from_dict(doc, env={"TOK": token}) as router:
            with pytest.raises(RouteFailed) as info:
                await router.chat("x", [{"role": "user", "content": "hi"}])
            shown = [str(info.value), repr(info.value), repr(router.plan),
                     *(a.detail or "" for a in info.value.attempts)]
    finally:
        registry.unregister_provider_kind("tokened")
    assert "refused in eu" in str(info.value)  # the rest of the message is intact
    assert not [s for s in shown if token in s]
