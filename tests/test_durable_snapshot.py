"""Snapshots: every kind of run state survives its JSON form, and bad input names its field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from durable_flows import Blob, Cart, Item, Note, Opaque
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import (
    BaseSerializer,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    JsonSerializer,
    PickleSerializer,
    StartEvent,
    StopEvent,
)
from actorflow.durable import (
    FORMAT,
    VERSION,
    Collected,
    CollectState,
    ContextSerdeError,
    EventRef,
    InFlight,
    RoutedEvent,
    Snapshot,
    StateSnapshot,
    StepCounters,
    StepState,
    Taken,
    Timing,
    Wait,
    snapshot_from_dict,
    snapshot_to_dict,
)

STEPS = ("fan_out", "work", "gather")
EVENT_TYPES: tuple[type[Event], ...] = (Item, Note, HumanResponseEvent, StopEvent)

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
names = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=6)

events: st.SearchStrategy[Event] = st.one_of(
    st.builds(Item, n=st.integers(), tags=st.lists(st.text(max_size=4), max_size=3)),
    st.builds(
        Note, text=st.text(max_size=8), extra=st.dictionaries(st.text(max_size=4), json_values, max_size=2)
    ),
    st.builds(StopEvent, result=json_values),
    st.dictionaries(names.map(lambda s: "k" + s), json_values, max_size=3).map(lambda kw: StartEvent(**kw)),
    st.builds(InputRequiredEvent, prefix=st.text(max_size=8)),
    st.builds(HumanResponseEvent, response=st.text(max_size=8)),
)
ids = st.integers(min_value=1, max_value=10**9)
refs = st.builds(EventRef, ids, events)
event_types = st.sampled_from(EVENT_TYPES)


@st.composite
def waits(draw: st.DrawFn) -> Wait:
    return Wait(
        waiter_id=draw(names),
        event_type=draw(event_types),
        requirements=draw(st.dictionaries(names, json_values, max_size=2)),
        timeout=draw(st.none() | st.floats(min_value=0, max_value=1e6)),
        waited_s=draw(st.floats(min_value=0, max_value=1e6)),
        waiter_event=draw(st.none() | events),
    )


in_flights = st.builds(
    InFlight,
    worker=st.integers(min_value=0, max_value=8),
    event_id=ids,
    event=events,
    attempt=st.integers(min_value=1, max_value=5),
    interrupted=st.integers(min_value=0, max_value=4),
    sent=st.lists(ids, max_size=3).map(tuple),
    taken=st.lists(st.builds(Taken, names, ids, events), max_size=2).map(tuple),
    collected=st.lists(
        st.builds(
            Collected,
            st.lists(event_types, min_size=1, max_size=3).map(tuple),
            st.none() | st.lists(refs, max_size=3).map(tuple),
        ),
        max_size=2,
    ).map(tuple),
    waiting=st.none() | waits(),
)

states = st.one_of(
    st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(lambda v: StateSnapshot(values=v)),
    st.builds(
        Cart,
        items=st.lists(st.text(max_size=4), max_size=3),
        total=st.floats(allow_nan=False, allow_infinity=False),
        owner=st.none() | names,
    ).map(StateSnapshot.typed),
)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    steps = tuple(
        StepState(
            name=name,
            queued=tuple(draw(st.lists(refs, max_size=3))),
            in_flight=tuple(draw(st.lists(in_flights, max_size=2))),
            counters=draw(st.builds(StepCounters, *(st.integers(min_value=0, max_value=10**6),) * 4)),
        )
        for name in draw(st.lists(st.sampled_from(STEPS), unique=True))
    )
    return Snapshot(
        run_id=draw(names),
        workflow=draw(names),
        is_running=draw(st.booleans()),
        state=draw(states),
        router=tuple(
            draw(
                st.lists(
                    st.builds(
                        RoutedEvent,
                        ids,
                        events,
                        st.none() | ids,
                        st.none() | st.sampled_from(STEPS),
                        st.none() | st.sampled_from(STEPS),
                    ),
                    max_size=3,
                )
            )
        ),
        steps=steps,
        collect=tuple(
            draw(
                st.lists(
                    st.builds(
                        CollectState,
                        st.sampled_from(STEPS),
                        st.lists(event_types, min_size=1, max_size=3).map(tuple),
                        st.lists(refs, max_size=3).map(tuple),
                        st.none() | names,
                    ),
                    max_size=2,
                )
            )
        ),
        pending_input=tuple(draw(st.lists(refs, max_size=2))),
        next_event_id=draw(ids),
        audit_seq=draw(st.integers(min_value=0, max_value=10**6)),
        timing=draw(
            st.builds(
                Timing,
                st.none() | st.floats(min_value=0, max_value=1e6),
                st.floats(min_value=0, max_value=1e6),
                st.integers(min_value=1, max_value=100),
            )
        ),
    )


def through_json(snapshot: Snapshot, serializer: BaseSerializer | None = None) -> Snapshot:
    data = json.loads(json.dumps(snapshot_to_dict(snapshot, serializer), allow_nan=False))
    return snapshot_from_dict(data, serializer, steps=STEPS)


@settings(max_examples=60, deadline=None)
@given(snapshots())
def test_every_kind_of_run_state_survives_json(snapshot: Snapshot) -> None:
    """Store, typed state, queues, router, in-flight journals, waits, buffers, input and counters come back equal."""
    assert through_json(snapshot) == snapshot


@settings(max_examples=20, deadline=None)
@given(snapshots())
def test_the_pickle_serializer_reads_what_it_wrote(snapshot: Snapshot) -> None:
    """With the PickleSerializer too, every snapshot comes back equal."""
    assert through_json(snapshot, PickleSerializer()) == snapshot


def test_the_pickle_serializer_carries_what_json_cannot() -> None:
    """Store values and event fields that only pickle can hold survive with the PickleSerializer."""
    snapshot = Snapshot(
        run_id="r",
        workflow="W",
        state=StateSnapshot(values={"seen": {1, 2}, "obj": Opaque(3)}),
        steps=(StepState("work", queued=(EventRef(4, Blob(payload=Opaque(4))),)),),
    )
    back = through_json(snapshot, PickleSerializer())
    assert back == snapshot
    assert back.state.values is not None and back.state.values["seen"] == {1, 2}


def test_the_json_form_is_documented_json() -> None:
    """The JSON form has the documented top-level fields, the peer's state form, and events as strings."""
    snapshot = Snapshot(
        run_id="order-42",
        workflow="Orders",
        is_running=True,
        state=StateSnapshot(values={"count": 2}),
        steps=(
            StepState(
                "work",
                queued=(EventRef(3, Item(n=3)),),
                in_flight=(
                    InFlight(
                        worker=0,
                        event_id=2,
                        event=Item(n=2),
                        sent=(5,),
                        waiting=Wait("w1", HumanResponseEvent, {"user": "ada"}, timeout=30.0, waited_s=1.5),
                    ),
                ),
                counters=StepCounters(processed=1),
            ),
        ),
        next_event_id=6,
        timing=Timing(timeout=60.0, elapsed_s=2.0),
    )
    data = snapshot_to_dict(snapshot)
    assert list(data) == [
        "format",
        "version",
        "run_id",
        "workflow",
        "is_running",
        "state",
        "router",
        "steps",
        "collect",
        "pending_input",
        "next_event_id",
        "audit_seq",
        "timing",
    ]
    assert data["format"] == FORMAT and data["version"] == VERSION == 1
    assert data["state"] == {
        "store_type": "in_memory",
        "state_type": "DictState",
        "state_module": "actorflow",
        "state_data": {"_data": {"count": "2"}},
    }
    work = data["steps"]["work"]
    assert work["queued"] == [{"event_id": 3, "event": JsonSerializer().serialize(Item(n=3))}]
    wait = work["in_flight"][0]["waiting"]
    assert wait["event_type"] == "actorflow.HumanResponseEvent"
    assert json.loads(wait["requirements"]) == {"user": "ada"}
    assert data["timing"] == {"timeout": 60.0, "elapsed_s": 2.0, "sessions": 1}
    json.dumps(data, allow_nan=False)


def test_a_typed_state_restores_as_its_model() -> None:
    """A typed state comes back as an instance of its pydantic model, in the peer's form."""
    snapshot = Snapshot(run_id="r", workflow="W", state=StateSnapshot.typed(Cart(items=["pen"], total=2.5)))
    data = snapshot_to_dict(snapshot)
    assert data["state"]["state_type"] == "Cart" and data["state"]["state_module"] == "durable_flows"
    back = snapshot_from_dict(data)
    assert type(back.state.model) is Cart and back.state.model == Cart(items=["pen"], total=2.5)
    with pytest.raises(ValueError, match="either values"):
        StateSnapshot(values={"a": 1}, model=Cart())


def test_a_store_value_json_cannot_hold_names_its_key() -> None:
    """ContextSerdeError names the store key and where in the value the offending object sits."""
    snapshot = Snapshot(run_id="r", workflow="W", state=StateSnapshot(values={"docs": [1, Opaque(2)]}))
    with pytest.raises(
        ContextSerdeError,
        match=r"the run's store key 'docs': the value at \[1\] is a Opaque, which JsonSerializer cannot serialise",
    ):
        snapshot_to_dict(snapshot)


def test_an_event_field_json_cannot_hold_names_the_event_and_field() -> None:
    """ContextSerdeError names the event's id, where it is, its type and the field."""
    snapshot = Snapshot(
        run_id="r",
        workflow="W",
        steps=(StepState("work", queued=(EventRef(7, Blob(payload={"k": Opaque(1)})),)),),
    )
    with pytest.raises(
        ContextSerdeError,
        match=r"event #7 queued at step 'work' \(Blob\): field payload\['k'\] holds a Opaque, which JsonSerializer",
    ):
        snapshot_to_dict(snapshot)
    in_flight = Snapshot(
        run_id="r",
        workflow="W",
        steps=(StepState("work", in_flight=(InFlight(0, 3, Blob(payload=Opaque(1))),)),),
    )
    with pytest.raises(
        ContextSerdeError, match=r"event #3, input of the invocation of step 'work' on event #3"
    ):
        snapshot_to_dict(in_flight)


def good() -> dict[str, Any]:
    return snapshot_to_dict(
        Snapshot(
            run_id="r",
            workflow="W",
            steps=(StepState("work", queued=(EventRef(2, Item(n=2)),)),),
            collect=(CollectState("gather", (Item, Item)),),
        )
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other"), r"format is 'other', not 'actorflow.snapshot'"),
        (lambda d: d.update(version=2), r"version 2 is not one this actorflow reads \(it reads up to 1\)"),
        (lambda d: d.pop("run_id"), r"snapshot field run_id: missing"),
        (lambda d: d.update(next_event_id="3"), r"next_event_id: expected int, got str"),
        (
            lambda d: d["steps"]["work"]["queued"][0].pop("event_id"),
            r"steps\['work'\].queued\[0\].event_id: missing",
        ),
        (
            lambda d: d["steps"].update(nope=d["steps"]["work"]),
            r"steps\['nope'\]: the workflow has no step 'nope'",
        ),
        (
            lambda d: d["steps"]["work"]["queued"][0].update(event="{"),
            r"queued\[0\].event: cannot be deserialised",
        ),
        (
            lambda d: d["steps"]["work"]["queued"][0].update(event="[1]"),
            r"queued\[0\].event: expected an Event, got a list",
        ),
        (
            lambda d: d["collect"][0].update(expected=["durable_flows.Cart"]),
            r"durable_flows.Cart is not an Event class",
        ),
        (
            lambda d: d["collect"][0].update(step="ghost"),
            r"collect\[0\].step: the workflow has no step 'ghost'",
        ),
        (lambda d: d["state"].update(store_type="redis"), r"only in-memory state can be restored"),
        (lambda d: d.update(is_running=1), r"is_running: expected bool, got int"),
    ],
)
def test_a_bad_snapshot_names_the_field(change: Any, message: str) -> None:
    """Every malformed part of a snapshot is refused with ContextSerdeError naming its field."""
    data = good()
    change(data)
    with pytest.raises(ContextSerdeError, match=message):
        snapshot_from_dict(data, steps=STEPS)
