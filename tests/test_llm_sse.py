"""The server-sent events decoder behind actorflow.llm's streaming, and the stream reader on top of it."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorflow.llm._sse import EventStreamTooLarge, ServerSentEvent, SSEDecoder
from actorflow.llm._stream import StreamReader


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


# --- Bounds ----------------------------------------------------------------------------------


def test_a_line_past_the_bound_raises_as_soon_as_it_crosses_it() -> None:
    """A line without an end raises EventStreamTooLarge at the chunk that crosses max_line_bytes, not at the end."""
    decoder = SSEDecoder(max_line_bytes=10_000)
    fed = 0
    with pytest.raises(EventStreamTooLarge, match="longer than max_line_bytes=10000"):
        for _ in range(1000):
            decoder.feed(b"x" * 1024)
            fed += 1

    assert fed == 9  # the tenth KiB crossed the bound: the rest was never buffered


def test_a_whole_line_past_the_bound_in_one_chunk_raises() -> None:
    """A complete line longer than the bound raises too, whether it came in one chunk or several."""
    with pytest.raises(EventStreamTooLarge):
        SSEDecoder(max_line_bytes=100).feed(b"data: " + b"x" * 200 + b"\n\n")
    decoder = SSEDecoder(max_line_bytes=100)
    decoder.feed(b"data: " + b"x" * 60)
    with pytest.raises(EventStreamTooLarge):
        decoder.feed(b"x" * 60 + b"\n")


def test_an_event_past_the_bound_raises() -> None:
    """Data lines that together exceed max_event_bytes raise, though each line is within max_line_bytes."""
    decoder = SSEDecoder(max_line_bytes=1000, max_event_bytes=5000)
    with pytest.raises(EventStreamTooLarge, match="larger than max_event_bytes=5000"):
        decoder.feed(b"".join(b"data: " + b"y" * 900 + b"\n" for _ in range(10)))


def test_the_event_bound_is_per_event() -> None:
    """Many events, each within max_event_bytes, pass: the count starts again at each event."""
    stream = b"".join(b"data: " + b"z" * 900 + b"\n\n" for _ in range(50))

    events = SSEDecoder(max_line_bytes=1000, max_event_bytes=1000).feed(stream)

    assert len(events) == 50


@pytest.mark.parametrize("bad", [0, -1, 1.5, None, True])
def test_bounds_must_be_positive_ints(bad: Any) -> None:
    """A bound that is not a positive int is refused when the decoder is made."""
    with pytest.raises(ValueError, match="must be a positive int"):
        SSEDecoder(max_line_bytes=bad)


# --- Cost: linear in the stream's size (ratios within this process, not wall-clock targets) ---


def _best_time(work: Callable[[], object], repeats: int = 5) -> float:
    """The least CPU time of this thread that ``work`` took: time other processes ran is not counted."""
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        work()
        best = min(best, time.thread_time() - start)
    return best


def test_a_long_line_costs_time_in_proportion_to_its_length() -> None:
    """Feeding an 8 MiB line in 64 KiB chunks costs about 8x a 1 MiB one (re-scanning the buffer: about 64x).

    The feeds are timed, not the line's end: that joins and decodes the line once, and its
    cost on this machine is mostly the kernel handing out fresh pages for a large string,
    which varies too much to compare.
    """

    def parse(size: int) -> Callable[[], object]:
        chunks = [b"data: "] + [b"x" * 65536] * (size // 65536)

        def run() -> object:
            decoder = SSEDecoder(max_line_bytes=size + 100, max_event_bytes=size + 100)
            for chunk in chunks:
                decoder.feed(chunk)
            return decoder

        return run

    small, large = parse(1 << 20), parse(8 << 20)
    small(), large()  # warm up
    ratio = _best_time(large) / _best_time(small)

    assert ratio < 24, f"8x the bytes took {ratio:.1f}x the time"
    decoder = small()
    assert isinstance(decoder, SSEDecoder)
    [event] = decoder.feed(b"\n\n")
    assert len(event.data) == 1 << 20


def _chat_stream(deltas: int, piece: str) -> list[bytes]:
    event = (
        b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}).encode() + b"\n\n"
    )
    stream = event * deltas + b"data: [DONE]\n\n"
    return [stream[i : i + 4096] for i in range(0, len(stream), 4096)]


def test_a_delta_costs_the_same_at_the_end_of_a_long_stream() -> None:
    """The time per delta for 4,000 deltas is within 2x of that for 500 (copying the text so far: about 4x)."""
    piece = "w" * 200

    def read(deltas: int) -> Callable[[], object]:
        chunks = _chat_stream(deltas, piece)

        def run() -> object:
            reader = StreamReader("chat")
            count = sum(len(reader.feed(chunk)) for chunk in chunks)
            assert count == deltas and reader.done
            return reader

        return run

    short, long = read(500), read(4000)
    short()  # warm up
    per_delta_ratio = (_best_time(long, 3) / 4000) / (_best_time(short, 3) / 500)

    assert per_delta_ratio < 2, (
        f"a delta of the long stream cost {per_delta_ratio:.1f}x one of the short stream"
    )


def test_the_deltas_of_a_stream_still_give_the_text_so_far() -> None:
    """Each delta's text is the stream's text up to it, and the last one's is the whole text."""
    reader = StreamReader("chat")
    deltas = [d for chunk in _chat_stream(50, "ab") for d in reader.feed(chunk)]

    assert [len(d.text) for d in deltas] == [2 * (i + 1) for i in range(50)]
    assert deltas[-1].text == reader.text == "ab" * 50
    assert deltas[3].model_dump()["text"] == "ab" * 4  # a dump carries it too
