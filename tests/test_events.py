"""Events are dict-like pydantic models; StartEvent carries run()'s keyword arguments."""

from __future__ import annotations

import pickle
from typing import Any

import pydantic
import pytest

from actorflow import (
    Event,
    StartEvent,
    StepState,
    StepStateChanged,
    StopEvent,
    WorkflowFailedEvent,
    WorkflowTimedOutEvent,
)


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


def test_undeclared_keywords_are_kept_as_data() -> None:
    """A keyword that is not a field is kept as data, beside the validated fields."""
    ev = QueryEvent(query="x", qeury="y")  # type: ignore[call-arg]
    assert ev.query == "x" and ev.qeury == "y" and ev["qeury"] == "y"
    assert ev._data == {"qeury": "y"}
    with pytest.raises(pydantic.ValidationError, match="query"):
        QueryEvent(qeury="y")  # type: ignore[call-arg]  # the declared field is still required


def test_events_read_and_write_as_mappings() -> None:
    """Data is read and written through item access, get, in, keys/values/items, len and iteration."""
    ev = Event(a=1, b="two")
    assert ev["a"] == 1 and ev.get("b") == "two" and ev.get("c", 3) == 3
    assert "a" in ev and "c" not in ev
    assert ev.keys() == {"a": 1, "b": "two"}.keys()
    assert list(ev.values()) == [1, "two"] and list(ev.items()) == [("a", 1), ("b", "two")]
    assert len(ev) == 2 and list(ev) == ["a", "b"]
    ev["c"] = 3
    ev.d = 4
    assert ev.to_dict() == {"a": 1, "b": "two", "c": 3, "d": 4}
    with pytest.raises(KeyError):
        ev["missing"]
    with pytest.raises(AttributeError):
        ev.missing  # noqa: B018


def test_an_event_without_data_is_still_true() -> None:
    """`if event:` holds for an event with no data, although len() is 0."""
    ev = QueryEvent(query="q")
    assert len(ev) == 0 and bool(ev) is True


def test_private_attributes_can_be_set_by_keyword() -> None:
    """Keywords naming private attributes set them (also through a custom __init__), not data."""

    class Private(Event):
        param: str
        _one: str = pydantic.PrivateAttr()
        _two: str = pydantic.PrivateAttr(default_factory=str)

    class Doubling(Event):
        _kept: int = pydantic.PrivateAttr()
        _doubled: int = pydantic.PrivateAttr()

        def __init__(self, _doubled: int, **params: Any) -> None:
            super().__init__(**params)
            self._doubled = _doubled * 2

    ev = Private(a=1, param="p", _one="x")
    assert (ev._data, ev._one, ev._two) == ({"a": 1}, "x", "")
    dbl = Doubling(a=1, _kept=2, _doubled=2)
    assert (dbl._data, dbl._kept, dbl._doubled) == ({"a": 1}, 2, 4)


def test_data_survives_dumps_copies_and_pickles() -> None:
    """Undeclared data is part of the event's dump, equality, copies and pickles."""
    ev = QueryEvent(query="q", extra=[1])  # type: ignore[call-arg]
    assert ev.model_dump() == {"query": "q", "temperature": 0.7, "extra": [1]}
    assert QueryEvent.model_validate(ev.model_dump()) == ev
    assert ev != QueryEvent(query="q", extra=[2])  # type: ignore[call-arg]
    assert pickle.loads(pickle.dumps(ev)) == ev and ev.model_copy() == ev


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


def test_stop_event_dumps_and_prints_as_in_llamaindex() -> None:
    """StopEvent's result is dumped only when set, str() is the result, repr shows data and result."""
    assert StopEvent(result="foo").model_dump() == {"result": "foo"}
    assert StopEvent().model_dump() == {}
    assert str(StopEvent(result=[1])) == "[1]"
    assert repr(StopEvent(foo="foo", result=42)) == "StopEvent(foo='foo', result=42)"
    stop = MyStopEvent(answer="a", sources=[])
    assert stop.model_dump() == {"answer": "a", "sources": []}
    assert repr(stop) == "MyStopEvent(answer='a', sources=[])"
    assert StopEvent(result="42") == StopEvent(result="42") != StopEvent(result="43")
    assert pickle.loads(pickle.dumps(StopEvent(result=3))).result == 3


def test_stop_event_subclass_may_compute_its_result() -> None:
    """A StopEvent subclass overriding _get_result() decides what result is."""

    class Sum(StopEvent):
        a: int
        b: int

        def _get_result(self) -> Any:
            return self.a + self.b

    assert Sum(a=1, b=2).result == 3


def test_runtime_events_have_llamaindex_fields() -> None:
    """The events the runtime publishes have LlamaIndex's names, fields and bases."""
    timed_out = WorkflowTimedOutEvent(timeout=1.5, active_steps=["slow"])
    assert isinstance(timed_out, StopEvent) and timed_out.active_steps == ["slow"]
    failed = WorkflowFailedEvent(step_name="s", exception=ValueError("x"))
    assert failed.attempts is None and str(failed.exception) == "x"
    changed = StepStateChanged(name="s", step_state=StepState.RUNNING, worker_id="0", input_event_name="E")
    assert changed.output_event_name is None and changed.step_state.value == "running"
    with pytest.raises(pydantic.ValidationError, match="timeout"):
        WorkflowTimedOutEvent(active_steps=[])  # type: ignore[call-arg]


def test_events_may_carry_arbitrary_objects() -> None:
    """Fields may hold objects pydantic does not know, such as retrieved nodes."""

    class Node:
        text = "hello"

    class RetrieveEvent(Event):
        query: str
        nodes: list[Node]

    ev = RetrieveEvent(query="q", nodes=[Node()])
    assert ev.nodes[0].text == "hello"
