"""The pure part of ``router chat``'s command line (router.cli.chat_input): which positional is
the route file, where the prompt and the routes come from. The subprocess tests in
test_cli_chat_args.py run the same rules end to end."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from router.cli.chat_input import UsageError, looks_like_file, parse_tags, read_prompt, split_words
from router.cli.source import Source, find_source


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("word", "is_file"), [
    ("routes.yaml", True), ("conf/ROUTES.YML", True), ("missing.yaml", True),
    ("summarise routes.yaml", False), ("-", False), ("hello", False),
    ("a\nb.yaml", False), ("x" * 5000, False),
])
def test_looks_like_file(word: str, is_file: bool) -> None:
    assert looks_like_file(word) is is_file


def test_an_existing_file_of_any_name_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "routes.conf"
    f.write_text("version: 1\n", encoding="utf-8")
    assert split_words(["hi", str(f)]) == (str(f), "hi")


@pytest.mark.parametrize(("words", "expected"), [
    ([], (None, None)),
    (["hi"], (None, "hi")),
    (["r.yaml"], ("r.yaml", None)),
    (["r.yaml", "hi"], ("r.yaml", "hi")),
    (["hi", "r.yaml"], ("r.yaml", "hi")),
    (["-", "r.yml"], ("r.yml", "-")),
])
def test_split_words_in_any_order(words: list[str], expected: tuple[str | None, str | None]
                                  ) -> None:
    assert split_words(words) == expected


@pytest.mark.parametrize(("words", "message"), [
    (["a.yaml", "b.yaml"], "two route files given"),
    (["hello", "world"], "quote the prompt"),
])
def test_split_words_refuses_what_it_cannot_place(words: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        split_words(words)


def test_read_prompt_takes_the_argument_without_reading_stdin() -> None:
    assert read_prompt("hi", io.StringIO("never read")) == "hi"


def test_read_prompt_reads_stdin_for_dash_or_no_prompt_off_a_terminal() -> None:
    assert read_prompt("-", io.StringIO("from a pipe\n\n")) == "from a pipe"
    assert read_prompt(None, io.StringIO("two\nlines\n")) == "two\nlines"


def test_read_prompt_refuses_a_terminal_and_an_empty_stdin() -> None:
    with pytest.raises(UsageError, match="no prompt"):
        read_prompt(None, _Tty())
    with pytest.raises(UsageError, match="empty"):
        read_prompt("-", io.StringIO("  \n"))


def test_find_source_order(tmp_path: Path) -> None:
    assert find_source("given.yaml", {"ROUTER_CONFIG": "env.yaml"}, tmp_path) == \
        Source(Path("given.yaml"), "argument")
    (tmp_path / "routes.yaml").write_text("version: 1\n", encoding="utf-8")
    assert find_source(None, {"ROUTER_CONFIG": "env.yaml"}, tmp_path) == \
        Source(Path("env.yaml"), "ROUTER_CONFIG")
    assert find_source(None, {}, tmp_path) == Source(Path("routes.yaml"), "./routes.yaml")
    (tmp_path / "routes.yaml").unlink()
    assert find_source(None, {"ROUTER_CONFIG": ""}, tmp_path) == Source(None, "environment")


def test_parse_tags() -> None:
    assert parse_tags(["team=a", "env=", "team=b"]) == {"team": "b", "env": ""}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_tags(["=a"])
