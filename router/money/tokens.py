"""Token estimates made before a request is sent (skip targets whose window is too small,
dry-run figures). An estimate: ~4 characters a token for text, plus per-message overhead and a
flat figure per image; it errs high for English prose by design."""

from __future__ import annotations

from router.types import ChatRequest, ImagePart

_PER_MESSAGE = 4
_PER_IMAGE = 765  # OpenAI's high-detail 512px tile figure, a fair middle across providers


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """An upper-leaning estimate of the prompt's tokens."""
    chars = 0
    images = 0
    for m in request.messages:
        c = m.content
        if isinstance(c, str):
            chars += len(c)
        elif c:
            for p in c:
                if isinstance(p, ImagePart):
                    images += 1
                else:
                    chars += len(p.text)
        if m.tool_calls:
            for tc in m.tool_calls:
                chars += len(tc.name) + len(str(tc.arguments))
    if request.tools:
        for t in request.tools:
            chars += len(t.name) + len(t.description or "") + len(str(t.parameters))
    return chars // 4 + 1 + _PER_MESSAGE * len(request.messages) + _PER_IMAGE * images
