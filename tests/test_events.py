"""Events are pydantic models; StartEvent carries run()'s keyword arguments."""

from __future__ import annotations

import pydantic
import pytest

from actorflow import Event, StartEvent, StopEvent


class QueryEvent(Event):
    """Event carrying a user query."""

    query: str
    temperature: float = 0.7


class MyStartEvent(StartEvent):
    query: str
    max_results: int = 10


class MyStopEvent(StopEvent):
    answer: str
    sources: list[str]


def test_events_validate_their_fields() -> None:
    """An event's fields are validated like any pydantic model's."""
    assert QueryEvent(query="What is AI?").temperature == 0.7
    with pytest.raises(pydantic.ValidationError, match="query"):
        QueryEvent()  # type: ignore[call-arg]


def test_misspelt_event_field_is_an_error() -> None:
    """An unknown keyword on an ordinary event is rejected, not silently dropped."""
    with pytest.raises(pydantic.ValidationError, match="qeury"):
        QueryEvent(query="x", qeury="y")  # type: ignore[call-arg]


def test_start_event_reads_free_keywords() -> None:
    """StartEvent accepts any keywords and reads them as attributes."""
    ev = StartEvent(query="What is AI?", max_tokens=100)
    assert ev.query == "What is AI?"
    assert ev.max_tokens == 100


def test_start_event_get_returns_default_for_missing_keys() -> None:
    """ev.get() reads an optional keyword with a default (None when not given)."""
    ev = StartEvent(query="q")
    assert ev.get("temperature", default=0.7) == 0.7
    assert ev.get("k") is None
    assert ev.get("query") == "q"


def test_in_tells_whether_a_keyword_was_given() -> None:
    """`"k" in ev` tests for a keyword or field."""
    ev = StartEvent(query="q")
    assert "query" in ev
    assert "k" not in ev
    assert "max_results" in MyStartEvent(query="q")


def test_missing_start_keyword_names_it_and_the_available_ones() -> None:
    """Reading a keyword run() was not given raises AttributeError naming both sides."""
    ev = StartEvent(query="q", topic="t")
    with pytest.raises(AttributeError) as info:
        ev.temperature  # noqa: B018
    message = str(info.value)
    assert "'temperature'" in message
    assert "'query'" in message and "'topic'" in message
    assert info.value.name == "temperature"
    assert not hasattr(ev, "temperature")


def test_typed_start_event_declares_fields() -> None:
    """A StartEvent subclass declares typed fields with defaults."""
    ev = MyStartEvent(query="q")
    assert (ev.query, ev.max_results) == ("q", 10)
    with pytest.raises(pydantic.ValidationError, match="max_results"):
        MyStartEvent(query="q", max_results="ten")


def test_stop_event_carries_a_result() -> None:
    """StopEvent holds any result; typed subclasses declare their own fields."""
    assert StopEvent(result={"answer": 42}).result == {"answer": 42}
    assert StopEvent().result is None
    stop = MyStopEvent(answer="a", sources=["s.txt"])
    assert stop.answer == "a" and stop.sources == ["s.txt"]


def test_events_may_carry_arbitrary_objects() -> None:
    """Fields may hold objects pydantic does not know, such as retrieved nodes."""

    class Node:
        text = "hello"

    class RetrieveEvent(Event):
        query: str
        nodes: list[Node]

    ev = RetrieveEvent(query="q", nodes=[Node()])
    assert ev.nodes[0].text == "hello"
