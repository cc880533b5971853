"""What ``router chat`` was asked: its route file and prompt, from positionals in any order,
standard input and the environment.

A positional that names an existing file, or ends in ``.yaml``/``.yml`` (and holds no space), is
the route file, never the prompt. Without one, router.cli.source finds the routes
(``$ROUTER_CONFIG``, then ``./routes.yaml``, then the environment, as ``Router()`` does).
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

_YAML_SUFFIXES = (".yaml", ".yml")


class UsageError(Exception):
    """A command line that cannot be understood (exit 2)."""


def looks_like_file(word: str) -> bool:
    """Whether a positional is a route file rather than a prompt."""
    if word == "-" or "\n" in word:
        return False
    if word.lower().endswith(_YAML_SUFFIXES) and not any(c.isspace() for c in word):
        return True
    try:
        return Path(word).is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with NUL
        return False


def split_words(words: Sequence[str]) -> tuple[str | None, str | None]:
    """(FILE, PROMPT) from chat's positionals, whatever their order; either may be None."""
    files = [w for w in words if looks_like_file(w)]
    prompts = [w for w in words if not looks_like_file(w)]
    if len(files) > 1:
        raise UsageError(f"two route files given ({files[0]}, {files[1]}): pass one FILE "
                         "and one PROMPT")
    if len(prompts) > 1:
        raise UsageError(f"more than one prompt given ({len(prompts)} words): quote the "
                         'prompt, e.g. router chat -m MODEL "a prompt with spaces"')
    return (files[0] if files else None), (prompts[0] if prompts else None)


def read_prompt(prompt: str | None, stdin: TextIO | None = None) -> str:
    """The prompt: the argument, or standard input for ``-`` or when no prompt was given and
    standard input is not a terminal."""
    stdin = sys.stdin if stdin is None else stdin
    if prompt is not None and prompt != "-":
        return prompt
    if prompt is None and (stdin is None or stdin.isatty()):
        raise UsageError('no prompt: give one (router chat -m MODEL "hello"), or pipe it in '
                         "(echo hello | router chat -m MODEL)")
    if stdin is None:
        raise UsageError("the prompt '-' reads standard input, which is closed")
    text = stdin.read().rstrip()
    if not text:
        raise UsageError("the prompt read from standard input is empty")
    return text


#: What an attachment is, by its first bytes (its name may say anything).
_MAGIC = ((b"%PDF-", "application/pdf"), (b"\x89PNG\r\n\x1a\n", "image/png"),
          (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))
_MAX_ATTACHMENT = 32 * 1024 * 1024  # the largest request body the providers take


def _media_type(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((media for magic, media in _MAGIC if head.startswith(magic)), None)


def read_attachment(path: str) -> dict[str, Any]:
    """``--attach PATH`` as a content part: an image as an ``image_url`` part, a PDF as a
    ``file`` part, each inline (a base64 ``data:`` URL); anything else is a usage error."""
    try:
        file = Path(path)
        size = file.stat().st_size
        if size > _MAX_ATTACHMENT:
            raise UsageError(f"--attach {path}: {size} bytes is more than the providers take "
                             f"({_MAX_ATTACHMENT // 2**20} MB)")
        data = file.read_bytes()
    except OSError as e:
        raise UsageError(f"--attach {path}: {e.strerror or e}") from None
    media = _media_type(data[:16])
    if media is None:
        raise UsageError(f"--attach {path}: not an image (png, jpeg, gif, webp) or a PDF")
    url = f"data:{media};base64,{base64.b64encode(data).decode('ascii')}"
    if media == "application/pdf":
        return {"type": "file", "file": {"file_data": url, "filename": file.name}}
    return {"type": "image_url", "image_url": {"url": url}}


def parse_tags(items: Sequence[str] | None) -> dict[str, str]:
    """``--tag KEY=VALUE`` options as a dict (a malformed one is a usage error)."""
    tags: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag takes KEY=VALUE, got {item!r}")
        tags[key] = value
    return tags


__all__ = ["UsageError", "looks_like_file", "parse_tags", "read_attachment", "read_prompt",
           "split_words"]
