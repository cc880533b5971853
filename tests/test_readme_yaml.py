"""The README's route-file examples are real route files (issue 10: its first block was a
sketch that no YAML parser reads). Every ```yaml block parses with the route-file loader; a
block with version: is a complete file and validates, a block without is a part of one and
validates once version: 1 is put before it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from router.config.load import load_text
from router.config.validate import validate_text

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"^```yaml\n(.*?)^```$", README.read_text(encoding="utf-8"),
                    re.MULTILINE | re.DOTALL)
ENV = {name: "sk-test" for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                                     "GROQ_API_KEY", "AZURE_OPENAI_API_KEY")}


def test_the_readme_has_route_file_blocks() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_yaml_block_parses(block: str) -> None:
    doc, diags = load_text(block, "README.md", env=ENV)
    assert doc is not None and not diags, [d.format_text() for d in diags]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_yaml_block_validates_with_no_problem(block: str) -> None:
    text = block if re.search(r"^version:", block, re.MULTILINE) else "version: 1\n" + block
    result = validate_text(text, "README.md", env=ENV)
    assert result.diagnostics == [], [d.format_text() for d in result.diagnostics]
