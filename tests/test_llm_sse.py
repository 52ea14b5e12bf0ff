"""The server-sent events decoder behind actorflow.llm's streaming."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from actorflow.llm._sse import ServerSentEvent, SSEDecoder


def _decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return events + decoder.flush()


def test_each_blank_line_dispatches_one_event() -> None:
    """data lines accumulate until a blank line, which dispatches them as one event."""
    assert _decode(b"data: one\n\ndata: two\n\n") == [ServerSentEvent("one"), ServerSentEvent("two")]


def test_multiple_data_lines_join_with_newlines() -> None:
    """Several data lines of one event join with newlines, and one leading space is dropped."""
    assert _decode(b"data: a\ndata:b\ndata:  c\n\n") == [ServerSentEvent("a\nb\n c")]


def test_comments_ids_and_unknown_fields_are_ignored() -> None:
    """Comment lines (keep-alives), id, retry and unknown fields produce no events and no data."""
    assert _decode(b": ping\n\nid: 7\nretry: 10\nfoo: bar\ndata: x\n\n") == [ServerSentEvent("x")]


def test_the_event_field_names_the_event() -> None:
    """An event: line sets the event's type, which resets to 'message' for the next event."""
    assert _decode(b"event: error\ndata: {}\n\ndata: ok\n\n") == [
        ServerSentEvent("{}", event="error"),
        ServerSentEvent("ok"),
    ]


def test_cr_lf_and_crlf_all_end_lines() -> None:
    """CR, LF and CRLF all end a line, as the event-stream format says."""
    assert _decode(b"data: a\r\rdata: b\r\n\r\ndata: c\n\n") == [ServerSentEvent(s) for s in "abc"]


def test_unicode_line_separators_stay_inside_the_data() -> None:
    """U+2028, U+2029 and U+0085 are data, not line breaks (unlike str.splitlines)."""
    text = "a\u2028b\u2029c\x85d"

    assert _decode(f"data: {text}\n\n".encode()) == [ServerSentEvent(text)]


def test_a_leading_byte_order_mark_is_dropped() -> None:
    """A UTF-8 BOM at the start of the stream is not part of the first field name."""
    assert _decode("\ufeffdata: x\n\n".encode()) == [ServerSentEvent("x")]


def test_flush_dispatches_an_unterminated_last_event() -> None:
    """An event the stream ends without a blank line is still dispatched by flush()."""
    assert _decode(b"data: [DONE]") == [ServerSentEvent("[DONE]")]
    assert _decode(b"data: [DONE]\r") == [ServerSentEvent("[DONE]")]


_line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)))


@given(
    events=st.lists(st.lists(_line_text, min_size=1, max_size=3), max_size=5),
    newline=st.sampled_from([b"\n", b"\r", b"\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_any_chunking_gives_the_same_events(events: list[list[str]], newline: bytes, cuts: list[int]) -> None:
    """However the bytes are split into chunks (mid-line, mid-CRLF, mid-UTF-8), the events are the same."""
    stream = b"".join(
        b"".join(b"data:" + line.encode() + newline for line in lines) + newline for lines in events
    )
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]

    expected = [ServerSentEvent("\n".join(line.removeprefix(" ") for line in lines)) for lines in events]
    assert _decode(*chunks) == expected
