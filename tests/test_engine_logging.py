"""The engine's events: one per attempt and per skip with the AttemptRecord's fields, one
route_done / route_failed per call, nothing when the ``router`` logger is off, and never a key
or prompt text, in the captured events, the rendered JSON lines, errors or reprs."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from router import Router
from router.errors import LlmError, RouteFailed, StreamInterruptedError
from router.obs import log
from router.plan.routes import ProviderSpec
from router.providers.base import ProviderConfig
from tests.engine_helpers import MSG, Events, Factory, chat_path, collect, route_file, target
from tests.servers.openai import (
    OpenAIServer,
    Reply,
    chunk,
    completion,
    error_reply,
    json_reply,
    text_events,
    usage,
)

RECORD_FIELDS = {"request_id", "alias", "target", "attempt", "outcome"}


def named(events: Events, name: str) -> Events:
    return [e for e in events if e["event"] == name]


# -- one event per attempt and skip ---------------------------------------------------------------


async def test_an_ok_attempt_logs_attempt_ok_with_the_record_fields_and_tokens(
        router_for: Factory, openai_server: OpenAIServer, events: Events) -> None:
    openai_server.enqueue(json_reply(completion("x", usage_=usage(11, 4))), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    r = await router.chat("r", MSG, request_id="rid-7")
    [ev] = named(events, "attempt_ok")
    assert ev.keys() >= RECORD_FIELDS
    assert (ev["request_id"], ev["alias"], ev["target"], ev["attempt"], ev["outcome"]) == (
        "rid-7", "r", "a:m", 1, "ok")
    assert (ev["input_tokens"], ev["output_tokens"]) == (11, 4)
    assert ev["latency_ms"] == r.attempts[0].latency_ms
    assert ev["log_level"] == "info"


async def test_each_failed_attempt_logs_attempt_failed_with_class_and_status(
        router_for: Factory, openai_server: OpenAIServer, events: Events) -> None:
    openai_server.enqueue(error_reply("server_error"), error_reply("server_error"),
                          path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]})
    await router.chat("r", MSG)
    failed = named(events, "attempt_failed")
    assert [(e["target"], e["attempt"], e["outcome"], e["error_class"], e["status"])
            for e in failed] == [("a:m", 1, "error", "server", 500),
                                 ("a:m", 2, "error", "server", 500)]
    assert all("latency_ms" in e for e in failed)
    assert [e["target"] for e in named(events, "attempt_ok")] == ["b:m"]


async def test_a_retry_logs_retry_scheduled_with_retry_in_ms(
        router_for: Factory, openai_server: OpenAIServer, events: Events) -> None:
    openai_server.enqueue(error_reply("rate_limit_exceeded", headers={"retry-after-ms": "20"}),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    await router.chat("r", MSG, request_id="rid-r")
    [ev] = named(events, "retry_scheduled")
    assert (ev["request_id"], ev["alias"], ev["target"]) == ("rid-r", "r", "a:m")
    assert ev["retry_in_ms"] == pytest.approx(20.0)
    assert ev["retry_after_used"] is True
    order = [e["event"] for e in events]
    assert order.index("attempt_failed") < order.index("retry_scheduled") < order.index(
        "attempt_ok")


async def test_a_skip_logs_target_skipped_with_its_reason(
        router_for: Factory, openai_server: OpenAIServer, events: Events) -> None:
    openai_server.enqueue(error_reply("context_length_exceeded"), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("small"), target("big")]}, providers={
        "small": {"models": {"m": {"context_window": 1000}}}})
    await router.chat("r", MSG)
    [ev] = named(events, "target_skipped")
    assert ev.keys() >= RECORD_FIELDS
    assert (ev["target"], ev["outcome"], ev["reason"], ev["attempt"]) == (
        "small:m", "skipped", "context_window", 2)


async def test_events_match_the_returned_attempt_records(
        router_for: Factory, openai_server: OpenAIServer, events: Events) -> None:
    openai_server.enqueue(error_reply("invalid_api_key"), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]})
    r = await router.chat("r", MSG)
    per_attempt = [e for e in events
                   if e["event"] in ("attempt_ok", "attempt_failed", "target_skipped")]
    assert len(per_attempt) == len(r.attempts)
    for ev, rec in zip(per_attempt, r.attempts, strict=True):
        record = rec.as_dict()
        assert {k: ev[k] for k in record} == record


# -- one route event per call ---------------------------------------------------------------------


async def test_a_successful_call_logs_one_route_done(
        router_for: Factory, openai_server: OpenAIServer, events: Events) -> None:
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1})
    await router.chat("r", MSG, request_id="rid-d")
    [ev] = named(events, "route_done")
    assert (ev["request_id"], ev["alias"], ev["target"], ev["attempts"]) == (
        "rid-d", "r", "b:m", 2)
    assert named(events, "route_failed") == []
    assert events[-1]["event"] == "route_done"


async def test_a_failed_call_logs_one_route_failed(
        router_for: Factory, openai_server: OpenAIServer, events: Events) -> None:
    openai_server.enqueue(error_reply("invalid_request"), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]})
    with pytest.raises(RouteFailed):
        await router.chat("r", MSG, request_id="rid-f")
    [ev] = named(events, "route_failed")
    assert (ev["request_id"], ev["alias"], ev["error_class"], ev["attempts"]) == (
        "rid-f", "r", "invalid_request", 1)
    assert named(events, "route_done") == []


async def test_a_finished_stream_logs_one_route_done(
        router_for: Factory, openai_server: OpenAIServer, events: Events) -> None:
    openai_server.enqueue(Reply(events=text_events(["a", "b"])), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    await collect(router.stream("r", MSG))
    assert len(named(events, "route_done")) == 1
    [ok] = named(events, "attempt_ok")
    assert "ttft_ms" in ok and ok["output_tokens"] == 5


async def test_an_interrupted_stream_logs_one_attempt_failed_and_one_route_failed(
        router_for: Factory, openai_server: OpenAIServer, events: Events) -> None:
    openai_server.enqueue(Reply(events=text_events(["a", "b", "c"]), reset_after=3),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    with pytest.raises(StreamInterruptedError):
        await collect(router.stream("r", MSG, request_id="rid-s", recover="off"))
    [failed] = named(events, "attempt_failed")
    assert failed["target"] == "a:m" and failed["error_class"] == "network"
    [ev] = named(events, "route_failed")
    assert (ev["request_id"], ev["alias"], ev["error_class"]) == (
        "rid-s", "r", "stream_interrupted")
    assert named(events, "route_done") == []


async def test_a_logger_at_warning_sees_route_failed_and_not_the_attempts(
        router_for: Factory, openai_server: OpenAIServer,
        router_logger: logging.Logger) -> None:
    router_logger.setLevel(logging.WARNING)
    openai_server.enqueue(error_reply("invalid_request"), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    with capture_logs() as captured, pytest.raises(RouteFailed):
        await router.chat("r", MSG, request_id="rid-w")
    assert [(e["event"], e["log_level"]) for e in captured] == [("route_failed", "warning")]


async def test_an_interrupted_stream_logs_route_failed_at_warning(
        router_for: Factory, openai_server: OpenAIServer,
        router_logger: logging.Logger) -> None:
    router_logger.setLevel(logging.WARNING)
    openai_server.enqueue(Reply(events=text_events(["a", "b", "c"]), reset_after=3),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    with capture_logs() as captured, pytest.raises(StreamInterruptedError):
        await collect(router.stream("r", MSG))
    assert [(e["event"], e["log_level"]) for e in captured] == [("route_failed", "warning")]


async def test_nothing_is_logged_when_the_router_logger_is_not_enabled(
        router_for: Factory, openai_server: OpenAIServer,
        router_logger: logging.Logger) -> None:
    router_logger.setLevel(logging.WARNING)
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    with capture_logs() as captured:
        await router.chat("r", MSG)
    assert captured == []


# -- secrets and prompts --------------------------------------------------------------------------

SECRET = "gsk_LEAKCHECK-2f9a7c41e8b3"  # not sk- shaped: the pattern redactor cannot catch it
PROMPT = "my-very-private-prompt-text-4417"


def echo_key_401(key: str) -> Reply:
    body = {"error": {"message": f"Incorrect API key provided: {key}. You can find your API "
                      "key at https://platform.openai.com/account/api-keys.",
                      "type": "invalid_request_error", "param": None,
                      "code": "invalid_api_key"}}
    return Reply(status=401, json=body)


def echo_key_500(key: str) -> Reply:
    return Reply(status=500, json={"error": {"message": f"upstream said: bad header "
                                             f"'Authorization: Bearer {key}'",
                                             "type": "server_error", "param": None,
                                             "code": None}})


def echo_key_mid_stream(key: str) -> Reply:
    return Reply(events=[chunk({"content": "par"}),
                         {"error": {"message": f"key {key} was revoked mid-stream",
                                    "type": "server_error", "param": None, "code": None}}],
                 done=False)


def echo_key_in_stream_text(key: str) -> Reply:
    return Reply(status=429, headers={"retry-after-ms": "1", "x-echo": key},
                 json={"error": {"message": f"Rate limit for {key}", "type": "requests",
                                 "param": None, "code": "rate_limit_exceeded"}})


async def failing_run(server: OpenAIServer, key: str) -> list[BaseException]:
    """A run that fails every way we know, each error echoing ``key``; returns the errors."""
    models = {"r": [target("a"), target("b")], "s": [target("c")]}
    data = route_file(server.port, models, names=["a", "b", "c"])
    for p in data["providers"].values():
        p["api_key"] = key
    server.enqueue(echo_key_401(key), path=chat_path("a"))
    server.enqueue(echo_key_in_stream_text(key), echo_key_500(key), path=chat_path("b"))
    server.enqueue(echo_key_mid_stream(key), path=chat_path("c"))
    errors: list[BaseException] = []
    async with Router.from_dict(data) as router:
        with pytest.raises(RouteFailed) as info:
            await router.chat("r", [{"role": "user", "content": PROMPT}])
        errors.append(info.value)
        with pytest.raises(StreamInterruptedError) as sinfo:
            await collect(router.stream("s", [{"role": "user", "content": PROMPT}]))
        errors.append(sinfo.value)
        errors.append(router)  # type: ignore[arg-type]
    return errors


def rendered(events: Events) -> str:
    return "\n".join(repr(e) + json.dumps(e, default=str) for e in events)


async def test_api_key_never_in_logs(openai_server: OpenAIServer, events: Events) -> None:
    await failing_run(openai_server, SECRET)
    assert {"attempt_failed", "route_failed"} <= {e["event"] for e in events}
    text = rendered(events)
    assert "Incorrect API key provided" in text  # the echoing errors were logged...
    assert SECRET not in text  # ...without the key


@pytest.mark.usefixtures("router_logger")
async def test_api_key_never_in_the_rendered_json_lines(openai_server: OpenAIServer) -> None:
    out = io.StringIO()
    log.configure_output("json", stream=out)
    await failing_run(openai_server, SECRET)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {"attempt_failed", "route_failed"} <= {line["event"] for line in lines}
    assert SECRET not in out.getvalue()


async def test_sk_shaped_api_key_never_in_logs(openai_server: OpenAIServer,
                                               events: Events) -> None:
    key = "sk-proj-LEAKCHECK0123456789abcdef"
    await failing_run(openai_server, key)
    assert key not in rendered(events)


async def test_api_key_never_in_errors_records_or_reprs(openai_server: OpenAIServer) -> None:
    errors = await failing_run(openai_server, SECRET)
    route_failed, interrupted, router = errors
    assert isinstance(route_failed, RouteFailed) and isinstance(interrupted, LlmError)
    texts = [str(route_failed), repr(route_failed), str(interrupted), repr(interrupted),
             repr(route_failed.last_error), str(route_failed.last_error), str(router),
             repr(router)]
    texts += [repr(a) for a in route_failed.attempts]
    texts += [str(a.as_dict()) for a in route_failed.attempts]
    cfg = ProviderConfig(name="a", kind="openai-compatible", base_url="http://127.0.0.1:1/v1",
                         api_key=SecretStr(SECRET),
                         headers={"X-Key": SECRET})
    texts += [repr(cfg), str(cfg)]
    spec = router.plan.providers["a"]  # type: ignore[attr-defined]
    assert isinstance(spec, ProviderSpec)
    texts += [repr(spec), repr(router.plan)]  # type: ignore[attr-defined]
    assert "Incorrect API key provided" in str(route_failed) + repr(route_failed.attempts)
    for t in texts:
        assert SECRET not in t, t


async def test_prompt_text_never_in_logs(openai_server: OpenAIServer, events: Events) -> None:
    await failing_run(openai_server, SECRET)
    assert PROMPT not in rendered(events)


def test_a_failed_call_prints_nothing_in_an_application_without_logging_config() -> None:
    import subprocess
    import sys

    code = ("import asyncio\n"
            "from router import Router\n"
            "doc = {'version': 1, 'providers': {'f': {'kind': 'fake', 'script': ['auth']}},\n"
            "       'models': {'r': ['f:m']}}\n"
            "async def main():\n"
            "    async with Router.from_dict(doc) as r:\n"
            "        try:\n"
            "            await r.chat('r', [{'role': 'user', 'content': 'hi'}])\n"
            "        except Exception as e:\n"
            "            assert type(e).__name__ == 'RouteFailed', e\n"
            "asyncio.run(main())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


async def test_call_events_off_leaves_out_route_done_only(
        openai_server: OpenAIServer, events: Events) -> None:
    """``Router(call_events=False)`` (router serve's, which logs each request itself): the
    attempt events and route_failed stay; route_done goes."""
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    router = Router.from_dict(route_file(openai_server.port,
                                         {"r": [target("a"), target("b")],
                                          "only": [target("a")]},
                                         names=["a", "b"], retry={"attempts": 1}),
                              call_events=False)
    try:
        await router.chat("r", MSG, request_id="rid-q")
        openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
        with pytest.raises(RouteFailed):
            await router.chat("only", MSG, request_id="rid-f")
    finally:
        await router.aclose()
    assert [e["event"] for e in events] == ["attempt_failed", "attempt_ok", "attempt_failed",
                                            "route_failed"]
