"""The SSE and NDJSON decoders, fed bytes directly (no sockets)."""

from __future__ import annotations

import itertools
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import ServerError
from router.providers.sse import NDJSONDecoder, ServerSentEvent, SSEDecoder


def feed_all(decoder: SSEDecoder, pieces: list[bytes]) -> list[ServerSentEvent]:
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.flush()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def test_event_dispatched_at_blank_line() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: hello\n") == []
    assert d.feed(b"\n") == [ServerSentEvent(data="hello")]


def test_multiline_data_joined_with_newline() -> None:
    events = SSEDecoder().feed(b"data: a\ndata: b\ndata:\n\n")
    assert events == [ServerSentEvent(data="a\nb\n")]


def test_event_id_and_retry_fields() -> None:
    events = SSEDecoder().feed(b"event: delta\nid: 7\nretry: 1500\ndata: x\n\n")
    assert events == [ServerSentEvent(event="delta", data="x", id="7", retry=1500)]


def test_last_event_id_persists_but_event_and_retry_reset() -> None:
    events = SSEDecoder().feed(b"event: a\nid: 1\nretry: 5\ndata: x\n\ndata: y\n\n")
    assert events[1] == ServerSentEvent(data="y", id="1")


def test_comments_and_unknown_fields_ignored() -> None:
    events = SSEDecoder().feed(b": keep-alive\nfoo: bar\ndata: x\n\n: ping\n\n")
    assert events == [ServerSentEvent(data="x")]


def test_bad_retry_ignored() -> None:
    assert SSEDecoder().feed(b"retry: soon\ndata: x\n\n") == [ServerSentEvent(data="x")]


def test_id_with_nul_ignored() -> None:
    assert SSEDecoder().feed(b"id: a\x00b\ndata: x\n\n") == [ServerSentEvent(data="x")]


def test_field_without_colon_and_no_space_after_colon() -> None:
    events = SSEDecoder().feed(b"data\n\ndata:x\n\ndata:  two\n\n")
    assert [e.data for e in events] == ["", "x", " two"]


def test_blank_line_without_data_dispatches_nothing() -> None:
    assert SSEDecoder().feed(b"event: ping\n\n\n\n") == []


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_is_accepted(eol: bytes) -> None:
    raw = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert [e.data for e in SSEDecoder().feed(raw)] == ["a\nb", "c"]


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\r") == []
    assert d.feed(b"\n\r") == [ServerSentEvent(data="a")]
    assert d.feed(b"\ndata: b\r\n\r\n") == [ServerSentEvent(data="b")]


def test_multibyte_utf8_split_inside_a_character() -> None:
    raw = "data: héllo ✓ 日本\n\n".encode()
    events = feed_all(SSEDecoder(), [bytes([b]) for b in raw])
    assert events == [ServerSentEvent(data="héllo ✓ 日本")]


def test_leading_bom_is_stripped() -> None:
    events = feed_all(SSEDecoder(), [b"\xef\xbb", b"\xbfdata: x\n\n"])
    assert events == [ServerSentEvent(data="x")]


def test_flush_dispatches_an_unterminated_final_event() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: [DONE]") == []
    assert d.flush() == [ServerSentEvent(data="[DONE]")]


def test_json_helper_parses_data() -> None:
    assert ServerSentEvent(data='{"a": 1}').json() == {"a": 1}


def test_long_line_fed_byte_by_byte_is_linear() -> None:
    # A quadratic decoder would re-scan the growing line on every byte (~10^10 steps here).
    payload = b"data: " + b"x" * 200_000 + b"\n\n"
    d = SSEDecoder()
    start = time.perf_counter()
    events: list[ServerSentEvent] = []
    for i in range(len(payload)):
        events += d.feed(payload[i:i + 1])
    assert len(events) == 1 and len(events[0].data) == 200_000
    assert time.perf_counter() - start < 5.0


_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x00"),
    max_size=20,
)
_event = st.fixed_dictionaries(
    {"data": st.lists(_text, min_size=1, max_size=3)},
    optional={"event": _text.filter(bool), "id": _text, "comment": _text},
)


def _encode(events: list[dict[str, object]], eol: bytes) -> bytes:
    out = b""
    for e in events:
        if "comment" in e:
            out += b":" + str(e["comment"]).encode() + eol
        if "event" in e:
            out += b"event: " + str(e["event"]).encode() + eol
        if "id" in e:
            out += b"id: " + str(e["id"]).encode() + eol
        for line in e["data"]:  # type: ignore[attr-defined]
            out += b"data: " + str(line).encode() + eol
        out += eol
    return out


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(_event, min_size=1, max_size=6),
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_any_split_yields_the_same_events(events: list[dict[str, object]], eol: bytes,
                                          cuts: list[int]) -> None:
    raw = _encode(events, eol)
    whole = feed_all(SSEDecoder(), [raw])
    assert feed_all(SSEDecoder(), split_at(raw, cuts)) == whole
    assert [e.data for e in whole] == ["\n".join(e["data"]) for e in events]  # type: ignore[arg-type]


# -- NDJSON -----------------------------------------------------------------------------------


def test_ndjson_objects_per_line_blank_lines_skipped() -> None:
    d = NDJSONDecoder()
    assert d.feed(b'{"a":1}\n\n{"b"') == [{"a": 1}]
    assert d.feed(b':2}\r\n  \n[3]') == [{"b": 2}]
    assert d.flush() == [[3]]


def test_ndjson_bad_line_raises_clear_value_error() -> None:
    d = NDJSONDecoder()
    d.feed(b'{"ok":true}\n')
    with pytest.raises(ValueError, match=r"NDJSON line 2 is not valid JSON.*\{oops"):
        d.feed(b"{oops\n")


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8),
                                    max_size=3), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
)
def test_ndjson_any_split_yields_the_same_values(values: list[dict[str, object]],
                                                 cuts: list[int]) -> None:
    raw = "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in values).encode()
    d = NDJSONDecoder()
    out: list[object] = []
    for piece in split_at(raw, cuts):
        out += d.feed(piece)
    assert out + d.flush() == values


# -- size caps: a decoder never holds much more than its cap of one event or line -------------


def test_sse_event_over_the_cap_is_a_server_error() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(ServerError, match="larger than 100 bytes"):
        decoder.feed(b"data: " + b"x" * 200 + b"\n\n")


def test_sse_unterminated_line_over_the_cap_fails_before_it_ends() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    decoder.feed(b"data: " + b"x" * 50)
    with pytest.raises(ServerError, match="larger than 100 bytes"):
        decoder.feed(b"x" * 60)  # no line end yet: the buffer alone is over the cap


def test_sse_many_data_lines_count_towards_one_event() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(ServerError, match="larger than 100 bytes"):
        decoder.feed(b"data: aaaaaaaaaaaaaaaaaaaa\n" * 6)  # 6 lines of 26 bytes, no blank line


def test_sse_events_under_the_cap_each_pass_however_many() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    events = decoder.feed(b"data: " + b"x" * 80 + b"\n\n")
    events += decoder.feed((b"data: " + b"y" * 80 + b"\n\n") * 20)
    assert len(events) == 21


def test_ndjson_line_over_the_cap_is_a_server_error() -> None:
    decoder = NDJSONDecoder(max_line_bytes=100)
    with pytest.raises(ServerError, match="larger than 100 bytes"):
        decoder.feed(b'{"a": "' + b"x" * 50)
        decoder.feed(b"x" * 60)
