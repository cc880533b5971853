"""``router chat`` run for real against a loopback server of each provider kind.

The server lives in the test's event loop, so the CLI runs as an asyncio subprocess: the loop
keeps serving while the command waits for its answer.
"""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import anthropic, azure, google, ollama, openai
from tests.test_cli import cli_env, run_cli_async

PROMPT = "Tell the CLI test something"
PIECES = ["Streamed ", "through ", "the CLI."]
TEXT = "".join(PIECES)
KEY = "sk-cli-chat-7d1e4b9a20c6"  # the API key the CLI is given; it must never be printed


@dataclass(frozen=True)
class Kind:
    """How to serve, configure and script one provider kind."""

    kind: str
    server: Callable[[], Any]
    key_env: str | None
    models: tuple[str, str]  # the route tries the first, then falls back to the second
    settings: str  # extra provider settings in YAML flow style
    streamed: Callable[[Sequence[str]], Any]
    whole: Callable[[str], Any]
    failure: Callable[[], Any]  # an HTTP 500 in the vendor's own shape

    def enqueue(self, server: Any, model: str, *replies: Any) -> None:
        if self.kind == "azure-openai":  # one queue per deployment (= model name here)
            server.enqueue(*replies, deployment=model)
        else:
            server.enqueue(*replies)


KINDS = [
    Kind("openai", openai.OpenAIServer, "OPENAI_API_KEY", ("gpt-4o-mini", "gpt-4o"), "",
         lambda p: openai.stream_reply(openai.text_events(p)),
         lambda t: openai.json_reply(openai.completion(t)),
         lambda: openai.error_reply("server_error")),
    Kind("anthropic", anthropic.AnthropicServer, "ANTHROPIC_API_KEY",
         ("claude-haiku-4-5", "claude-sonnet-4-5"), "",
         lambda p: anthropic.stream_reply(anthropic.text_events(p)),
         lambda t: anthropic.json_reply(anthropic.message([anthropic.text_block(t)])),
         lambda: anthropic.error_reply("api_error")),
    Kind("google", google.GoogleServer, "GEMINI_API_KEY",
         ("gemini-2.5-flash", "gemini-2.5-pro"), "",
         lambda p: google.stream_reply(google.text_events(p)),
         lambda t: google.json_reply(google.response(t)),
         lambda: google.error_reply("internal")),
    Kind("ollama", ollama.OllamaServer, None, ("llama3.2", "qwen2.5"), "",
         lambda p: ollama.stream_reply(ollama.text_lines(p)),
         lambda t: ollama.json_reply(ollama.chat_response(t)),
         lambda: ollama.error_reply("runner_crashed")),
    Kind("azure-openai", azure.AzureServer, "AZURE_OPENAI_API_KEY", ("gpt-4o-mini", "gpt-4o"),
         ', api_version: "2024-10-21"',
         lambda p: azure.stream_reply(azure.azure_text_events(list(p))),
         lambda t: azure.json_reply(azure.azure_completion(t)),
         lambda: azure.azure_error_reply("server_error")),
]
KEYED = [k for k in KINDS if k.key_env is not None]


@pytest.fixture
def anthropic_kind() -> Kind:
    return next(k for k in KINDS if k.kind == "anthropic")


def route_file(tmp_path: Path, kind: Kind, base_url: str) -> Path:
    """``main`` is the first model alone; ``fallback`` tries the first, then the second."""
    key = f', api_key: "${{{kind.key_env}}}"' if kind.key_env else ""
    first, second = (f"p:{m}" for m in kind.models)
    path = tmp_path / "routes.yaml"
    path.write_text(f"""\
version: 1
defaults:
  retry: {{attempts: 1}}
  timeout: {{connect: 2s, total: 10s}}
providers:
  p: {{kind: {kind.kind}, base_url: "{base_url}"{key}{kind.settings}}}
models:
  main: [{first}]
  fallback: [{first}, {second}]
""", encoding="utf-8")
    return path


def kind_env(kind: Kind) -> dict[str, str]:
    return cli_env(**({kind.key_env: KEY} if kind.key_env else {}))


async def run_chat(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``router chat ARGS`` as a subprocess, while this loop goes on serving; its output never
    holds a traceback or the key."""
    result = await run_cli_async("chat", *args, env=env)
    assert KEY not in result.stdout + result.stderr
    return result


@pytest.fixture(params=KINDS, ids=[k.kind for k in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    chosen: Kind = request.param
    return chosen


@pytest.fixture
async def server(kind: Kind) -> AsyncIterator[Any]:
    async with kind.server() as srv:
        yield srv


@pytest.fixture
def routes(tmp_path: Path, kind: Kind, server: Any) -> Path:
    return route_file(tmp_path, kind, server.base_url)


async def test_chat_streams_the_answer_to_stdout(kind: Kind, server: Any, routes: Path
                                                 ) -> None:
    kind.enqueue(server, kind.models[0], kind.streamed(PIECES))
    r = await run_chat(str(routes), PROMPT, "--model", "main", env=kind_env(kind))
    assert (r.returncode, r.stdout) == (0, TEXT + "\n")
    [summary] = r.stderr.splitlines()  # after the answer, on stderr
    assert re.fullmatch(rf"router: answered by p:{re.escape(kind.models[0])} \(1 attempt\), "
                        r"tokens \d+ in / \d+ out, (<?\$[\d.]+|cost unknown)", summary), summary
    [request] = server.requests
    assert PROMPT.encode() in request.body


async def test_chat_no_stream_prints_the_whole_answer(kind: Kind, server: Any, routes: Path
                                                      ) -> None:
    kind.enqueue(server, kind.models[0], kind.whole(TEXT))
    r = await run_chat(str(routes), PROMPT, "--model", "main", "--no-stream", "-q",
                       env=kind_env(kind))
    assert (r.returncode, r.stdout, r.stderr) == (0, TEXT + "\n", "")
    assert server.request_count == 1


async def test_chat_verbose_shows_both_attempts_of_a_fallback_after_500(
        kind: Kind, server: Any, routes: Path) -> None:
    first, second = kind.models
    kind.enqueue(server, first, kind.failure())
    kind.enqueue(server, second, kind.streamed(PIECES))
    r = await run_chat(str(routes), PROMPT, "--model", "fallback", "-v", env=kind_env(kind))
    assert r.returncode == 0
    assert r.stdout == TEXT + "\n"
    attempts = r.stderr[r.stderr.index("attempts:\n"):].splitlines()[1:]
    assert attempts[0].startswith(f"  #1 p:{first}: server HTTP 500 after ")
    assert attempts[1].startswith(f"  #2 p:{second}: ok in ")
    assert attempts[2].startswith(f"router: answered by p:{second} (2 attempts, 1 failed), ")
    assert len(attempts) == 3  # the two attempts, then the summary


async def test_chat_route_failing_everywhere_exits_1_with_one_line(
        kind: Kind, server: Any, routes: Path) -> None:
    first, second = kind.models
    kind.enqueue(server, first, kind.failure())
    kind.enqueue(server, second, kind.failure())
    r = await run_chat(str(routes), PROMPT, "--model", "fallback", env=kind_env(kind))
    assert r.returncode == 1
    assert r.stdout == ""
    [line] = r.stderr.splitlines()
    assert re.match(r"router: 'fallback' failed after 2 attempt\(s\) \(exhausted\): server",
                    line), line
    assert server.request_count == 2


@pytest.mark.parametrize("keyed", KEYED, ids=[k.kind for k in KEYED])
async def test_chat_without_the_key_variable_exits_1_naming_it(keyed: Kind, tmp_path: Path
                                                               ) -> None:
    routes = route_file(tmp_path, keyed, "http://127.0.0.1:9")  # never called
    r = await run_chat(str(routes), PROMPT, "--model", "main", env=cli_env())
    assert r.returncode == 1
    assert r.stdout == ""
    # The target is skipped for its missing key (issue 10): one line that names the variable.
    [line] = r.stderr.splitlines()
    assert line.startswith("router: ")
    assert keyed.key_env in line


async def test_chat_interrupted_stream_ends_the_partial_line_and_exits_1(
        openai_server: openai.OpenAIServer, tmp_path: Path) -> None:
    [kind] = [k for k in KINDS if k.kind == "openai"]
    routes = route_file(tmp_path, kind, openai_server.base_url)
    openai_server.enqueue(openai.stream_reply(openai.text_events(PIECES), reset_after=3))
    r = await run_chat(str(routes), PROMPT, "--model", "main", env=kind_env(kind))
    assert r.returncode == 1
    assert r.stdout == "Streamed through \n"  # the two pieces that arrived, then a newline
    [line] = r.stderr.splitlines()
    assert line.startswith("router: stream_interrupted [p:gpt-4o-mini]: the stream from "
                           "p:gpt-4o-mini failed after 17 characters")


# -- --attach: images and PDFs --------------------------------------------------------------------

PNG_BYTES = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJ"
    "RU5ErkJggg==")
PDF_BYTES = (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n"
             b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n"
             b"<< /Type /Page /Parent 2 0 R >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")


async def test_chat_attaches_an_image_and_a_pdf(anthropic_kind: Kind, tmp_path: Path) -> None:
    """An image and a PDF, told apart by their bytes (not their names), reach the provider
    inline in its own shapes."""
    (tmp_path / "shot.dat").write_bytes(PNG_BYTES)
    (tmp_path / "memo.pdf").write_bytes(PDF_BYTES)
    async with anthropic_kind.server() as server:
        routes = route_file(tmp_path, anthropic_kind, server.base_url)
        anthropic_kind.enqueue(server, anthropic_kind.models[0], anthropic_kind.whole("Seen."))
        r = await run_chat(str(routes), "--attach", str(tmp_path / "shot.dat"), PROMPT,
                           "--attach", str(tmp_path / "memo.pdf"), "-m", "main", "--no-stream",
                           env=kind_env(anthropic_kind))
        body = server.requests[-1].json
    assert (r.returncode, r.stdout) == (0, "Seen.\n"), r.stderr
    text, image, document = body["messages"][0]["content"]
    assert text == {"type": "text", "text": PROMPT}
    assert image["source"]["media_type"] == "image/png"
    assert base64.b64decode(image["source"]["data"]) == PNG_BYTES
    assert document["title"] == "memo.pdf"
    assert base64.b64decode(document["source"]["data"]) == PDF_BYTES


@pytest.mark.parametrize(("content", "message"), [
    (None, "No such file"), (b"just,some,csv\n", "not an image (png, jpeg, gif, webp) or a PDF")])
async def test_chat_refuses_an_attachment_it_cannot_send(tmp_path: Path, content: bytes | None,
                                                         message: str) -> None:
    path = tmp_path / "thing.csv"
    if content is not None:
        path.write_bytes(content)
    routes = tmp_path / "routes.yaml"
    routes.write_text("version: 1\nproviders:\n  f: {kind: fake}\nmodels:\n  m: [f:x]\n")
    r = await run_chat(str(routes), "hi", "-m", "m", "--attach", str(path), env=cli_env())
    assert r.returncode == 2 and r.stdout == ""
    assert message in r.stderr and "Traceback" not in r.stderr
