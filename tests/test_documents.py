"""PDF documents in messages (``FilePart``): each kind that reads them gets them in its own
shape (Anthropic's document block, OpenAI's and Azure's file part, Gemini's inlineData); a
target that cannot (Ollama, or a model a route file says ``documents: false`` of) is skipped
before any I/O, as for images. Every body is checked by the kind's validating loopback server
(tests/test_cross_provider.py's Upstreams)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from router import Router
from router.config.validate import validate_dict
from router.errors import InvalidRequestError
from router.policy.tokens import estimate_prompt_tokens, pdf_pages, upper_bound_prompt_tokens
from router.types import ChatRequest, FilePart, Message, TextPart
from tests.test_cross_provider import KINDS, Upstreams, text_reply


def pdf(pages: int) -> bytes:
    """A small, well-formed PDF of ``pages`` empty pages."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode()]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


DATA = base64.b64encode(pdf(2)).decode()
URL = f"data:application/pdf;base64,{DATA}"
ASK = [{"role": "user", "content": [
    {"type": "text", "text": "Summarise the report."},
    {"type": "file", "file": {"file_data": URL, "filename": "report.pdf"}}]}]


@pytest.fixture
async def up() -> AsyncIterator[Upstreams]:
    async with Upstreams() as upstreams:
        yield upstreams


async def body_for(up: Upstreams, kind: str, messages: Any = ASK) -> dict[str, Any]:
    up.enqueue(kind, text_reply(kind, "Two blank pages."))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(KINDS[kind].target, messages)
    assert r.text == "Two blank pages." and up.refusals() == {}
    body: dict[str, Any] = up.bodies(kind)[-1]
    return body


@pytest.mark.parametrize("kind", ["openai", "azure-openai"])
async def test_openai_gets_a_file_part(up: Upstreams, kind: str) -> None:
    part = (await body_for(up, kind))["messages"][0]["content"][1]
    assert part == {"type": "file", "file": {"filename": "report.pdf", "file_data": URL}}


async def test_anthropic_gets_a_document_block(up: Upstreams) -> None:
    block = (await body_for(up, "anthropic"))["messages"][0]["content"][1]
    assert block == {"type": "document", "title": "report.pdf", "source": {
        "type": "base64", "media_type": "application/pdf", "data": DATA}}


async def test_gemini_gets_inline_data(up: Upstreams) -> None:
    part = (await body_for(up, "google"))["contents"][0]["parts"][1]
    assert part == {"inlineData": {"mimeType": "application/pdf", "data": DATA}}


async def test_ollama_is_skipped_before_any_io_and_the_next_kind_answers(up: Upstreams) -> None:
    up.enqueue("openai", text_reply("openai", "Read it."))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(f"{KINDS['ollama'].target},{KINDS['openai'].target}", ASK)
    assert r.text == "Read it." and up.bodies("ollama") == []
    skipped = r.attempts[0]
    assert (skipped.outcome, skipped.reason) == ("skipped", "capability")
    assert "documents" in (skipped.detail or "")


async def test_a_route_file_can_say_a_model_reads_none(up: Upstreams) -> None:
    doc = up.route_file()
    doc["providers"]["openai"]["models"] = {"gpt-4o-mini": {"documents": False}}
    up.enqueue("anthropic", text_reply("anthropic", "Read it."))
    async with Router.from_dict(doc) as router:
        r = await router.chat(f"{KINDS['openai'].target},{KINDS['anthropic'].target}", ASK)
    assert r.target == KINDS["anthropic"].target and up.bodies("openai") == []


def test_requires_documents_is_checked_against_the_chain() -> None:
    doc = {"version": 1, "providers": {"local": {"kind": "ollama"}},
           "models": {"reader": {"chain": ["local:llama3.2"], "requires": ["documents"]}}}
    codes = [d.code for d in validate_dict(doc, env={}).diagnostics]
    assert "E051" in codes


async def test_our_file_part_and_a_cache_breakpoint(up: Upstreams) -> None:
    messages = [Message("user", [TextPart("Summarise."), FilePart(URL, "q3.pdf",
                                                                  cache_control={"type":
                                                                                 "ephemeral"})])]
    block = (await body_for(up, "anthropic", messages))["messages"][0]["content"][1]
    assert block["title"] == "q3.pdf" and block["cache_control"] == {"type": "ephemeral"}


async def test_a_document_a_tool_returned_follows_openai_tool_results(up: Upstreams) -> None:
    history = [{"role": "user", "content": "Read the attachment."},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "fetch", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": [
                   {"type": "text", "text": "fetched"},
                   {"type": "file", "file": {"file_data": URL}}]}]
    up.enqueue("openai", text_reply("openai", "Two blank pages."))
    async with Router.from_dict(up.route_file()) as router:
        await router.chat(KINDS["openai"].target, history, tools=[{
            "type": "function", "function": {"name": "fetch", "parameters": {"type": "object"}}}])
    assert up.refusals() == {}
    last = up.bodies("openai")[-1]["messages"][-1]
    assert last["role"] == "user"
    assert last["content"][1] == {"type": "file", "file": {"filename": "document.pdf",
                                                           "file_data": URL}}


BAD = [
    ({"type": "file", "file": {"file_id": "file-abc123"}}, "messages[0].content[0].file.file_id"),
    ({"type": "file", "file": {"file_data": "data:text/csv;base64,YSxiCg=="}},
     "messages[0].content[0].file.file_data"),
    ({"type": "file", "file": "report.pdf"}, "messages[0].content[0].file"),
    ({"type": "file", "file": {"file_data": "data:application/pdf;base64,"}},
     "messages[0].content[0].file.file_data"),
]


@pytest.mark.parametrize(("part", "param"), BAD, ids=["file_id", "not_pdf", "no_object", "empty"])
async def test_a_file_no_provider_can_read_is_invalid_before_any_io(up: Upstreams, part: Any,
                                                                    param: str) -> None:
    async with Router.from_dict(up.route_file()) as router:
        with pytest.raises(InvalidRequestError) as caught:
            await router.chat(KINDS["anthropic"].target, [{"role": "user", "content": [part]}])
    assert caught.value.param == param and up.bodies("anthropic") == []


def test_pages_are_counted_for_estimates_and_budget_bounds() -> None:
    assert pdf_pages(FilePart(URL)) == 2
    assert pdf_pages(FilePart(f"data:application/pdf;base64,{base64.b64encode(pdf(7)).decode()}"
                              )) == 7
    assert pdf_pages(FilePart("data:application/pdf;base64,not*base64")) == 1
    plain = ChatRequest([Message("user", "Summarise.")])
    with_pdf = ChatRequest([Message("user", [TextPart("Summarise."), FilePart(URL)])])
    assert estimate_prompt_tokens(with_pdf) - estimate_prompt_tokens(plain) == 2 * 2_500
    assert upper_bound_prompt_tokens(with_pdf) - upper_bound_prompt_tokens(plain) == 2 * 5_000


PDF_URL = "https://example.test/reports/q3.pdf"
BY_URL = [{"role": "user", "content": [
    {"type": "text", "text": "Summarise the report."},
    {"type": "file", "file": {"file_data": PDF_URL}}]}]


async def test_a_pdf_by_url_goes_to_the_kinds_that_fetch_it(up: Upstreams) -> None:
    block = (await body_for(up, "anthropic", BY_URL))["messages"][0]["content"][1]
    assert block == {"type": "document", "source": {"type": "url", "url": PDF_URL}}
    part = (await body_for(up, "google", BY_URL))["contents"][0]["parts"][1]
    assert part == {"fileData": {"fileUri": PDF_URL, "mimeType": "application/pdf"}}


async def test_openai_is_skipped_for_a_pdf_by_url(up: Upstreams) -> None:
    """Chat Completions takes a file inline only: OpenAI and Azure are skipped before any I/O
    and the route goes on to a kind that fetches it."""
    up.enqueue("anthropic", text_reply("anthropic", "Read it."))
    async with Router.from_dict(up.route_file()) as router:
        r = await router.chat(f"{KINDS['openai'].target},{KINDS['azure-openai'].target},"
                              f"{KINDS['anthropic'].target}", BY_URL)
    assert r.target == KINDS["anthropic"].target
    assert [(a.outcome, a.reason) for a in r.attempts[:2]] == [("skipped", "capability")] * 2
    assert "only inline" in (r.attempts[0].detail or "")
    assert up.bodies("openai") == up.bodies("azure-openai") == []
    assert pdf_pages(FilePart(PDF_URL)) == 10  # unread: a fixed guess for estimates
