"""Token estimates made before a request is sent (skip targets whose window is too small,
dry-run figures). An estimate: ~4 characters a token for text, plus per-message overhead, a
flat figure per image and one per page of a PDF; it errs high for English prose by design."""

from __future__ import annotations

import base64
import binascii
import re

from router.types import ChatRequest, FilePart, ImagePart

_PER_MESSAGE = 4
_PER_IMAGE = 765  # OpenAI's high-detail 512px tile figure, a fair middle across providers
#: A PDF page, text and page image together: Anthropic's docs give 1,500-3,000 tokens a page;
#: its upper bound adds an image's worth (each page is also read as an image).
_PER_PAGE = 2_500
_PER_PAGE_BOUND = 5_000
_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_COUNT = re.compile(rb"/Count\s+(\d{1,6})")
_BYTES_PER_PAGE = 100_000  # when the page objects are in compressed streams
_URL_PAGES = 10  # a PDF by URL: its size is not known before the provider fetches it


def pdf_pages(part: FilePart) -> int:
    """The pages of a PDF, read off its page objects (or its page tree's /Count), else
    guessed from its size: at least 1 (10 for one given by URL, unread)."""
    if not part.is_data_url:
        return _URL_PAGES
    try:
        data = base64.b64decode(part.data)
    except (binascii.Error, ValueError):
        return 1
    counts = [int(c) for c in _COUNT.findall(data)]
    return max(len(_PAGE.findall(data)), max(counts, default=0), len(data) // _BYTES_PER_PAGE, 1)


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """An upper-leaning estimate of the prompt's tokens."""
    chars = 0
    images = pages = 0
    for m in request.messages:
        c = m.content
        if isinstance(c, str):
            chars += len(c)
        elif c:
            for p in c:
                if isinstance(p, ImagePart):
                    images += 1
                elif isinstance(p, FilePart):
                    pages += pdf_pages(p)
                else:
                    chars += len(p.text)
        if m.tool_calls:
            for tc in m.tool_calls:
                chars += len(tc.name) + len(str(tc.arguments))
    if request.tools:
        for t in request.tools:
            chars += len(t.name) + len(t.description or "") + len(str(t.parameters))
    return (chars // 4 + 1 + _PER_MESSAGE * len(request.messages) + _PER_IMAGE * images
            + _PER_PAGE * pages)


def upper_bound_prompt_tokens(request: ChatRequest) -> int:
    """A bound the real count does not exceed, for budget holds: byte-level BPE tokenizers
    (OpenAI's o200k/cl100k, Anthropic's, and SentencePiece with byte fallback as Gemini uses)
    never make more tokens than the text has UTF-8 bytes. Typical text has 2-5x fewer."""
    size = 0
    images = pages = 0
    for m in request.messages:
        c = m.content
        if isinstance(c, str):
            size += len(c.encode("utf-8"))
        elif c:
            for p in c:
                if isinstance(p, ImagePart):
                    images += 1
                elif isinstance(p, FilePart):
                    pages += pdf_pages(p)
                else:
                    size += len(p.text.encode("utf-8"))
        if m.tool_calls:
            for tc in m.tool_calls:
                size += len(tc.name) + len(str(tc.arguments).encode("utf-8"))
    if request.tools:
        for t in request.tools:
            size += len(t.name) + len((t.description or "").encode("utf-8"))
            size += len(str(t.parameters).encode("utf-8"))
    # images: OpenAI high detail tops out near 1,500 tokens, Anthropic near 1,600 (images are
    # scaled to ~1.15 MP), Gemini 258 per 768px tile (~4,100 for a 3072px square); 5,000 bounds
    # each without knowing the image's size.
    return (size + _PER_MESSAGE * 2 * len(request.messages) + 5000 * images
            + _PER_PAGE_BOUND * pages + 16)
