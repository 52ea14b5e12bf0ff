"""JsonSerializer and PickleSerializer: the peer's formats, and errors that say where."""

from __future__ import annotations

import json
from typing import Any

import pytest
from durable_flows import Blob, Cart, Item, Opaque
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from workflows.context import serializers as peer

from actorflow import Event, HumanResponseEvent, JsonSerializer, PickleSerializer, StartEvent, StopEvent
from actorflow.durable import ContextSerdeError, JsonPickleSerializer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_json_values_encode_as_the_peer_encodes_them(value: Any) -> None:
    """Plain JSON values encode byte for byte as llama-index-workflows encodes them, and come back equal."""
    ours = JsonSerializer().serialize(value)
    assert ours == peer.JsonSerializer().serialize(value)
    assert JsonSerializer().deserialize(ours) == value


def test_models_are_wrapped_with_their_qualified_name_as_the_peer_wraps_them() -> None:
    """Events and other models are written as the peer writes them and come back as their own class."""
    value = {"a": [Item(n=1, tags=["x"]), StopEvent(result={"k": 2})], "cart": Cart(items=["pen"], total=2.5)}
    ours = JsonSerializer().serialize(value)
    assert ours == peer.JsonSerializer().serialize(value)
    data = json.loads(ours)
    assert data["a"][0] == {
        "__is_pydantic": True,
        "value": {"n": 1, "tags": ["x"]},
        "qualified_name": "durable_flows.Item",
    }
    assert data["a"][1]["qualified_name"] == "actorflow.StopEvent"
    back = JsonSerializer().deserialize(ours)
    assert back == value
    assert type(back["a"][0]) is Item and type(back["cart"]) is Cart
    # and what the peer wrote, we read
    assert JsonSerializer().deserialize(peer.JsonSerializer().serialize(value)) == value


class _Labelled(BaseModel):
    """A model with a ``class_name`` field and a ``to_dict`` method: a component to the peer."""

    class_name: str = "labelled"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.class_name}


def test_components_are_told_apart_from_models_as_the_peer_tells_them() -> None:
    """A value is a component when it has class_name and to_dict, on its class or in its own
    fields or data, however often the serializer met its class before."""
    ours = JsonSerializer()
    values = [Item(n=1), Event(class_name="x"), Item(n=2), Event(), _Labelled(), Event(class_name="y")]
    for value in values * 2:  # the second time, every class is known to the serializer
        assert ours.serialize(value) == peer.JsonSerializer().serialize(value)
    kinds = [json.loads(ours.serialize(v)) for v in values]
    assert [("__is_component" in k, "__is_pydantic" in k) for k in kinds] == [
        (False, True),
        (True, False),
        (False, True),
        (False, True),
        (True, False),
        (True, False),
    ]


def test_start_events_keep_their_free_keywords() -> None:
    """A StartEvent's undeclared keyword arguments survive the round trip."""
    event = StartEvent(topic="pirates", n=3)
    back = JsonSerializer().deserialize(JsonSerializer().serialize(event))
    assert type(back) is StartEvent and back.topic == "pirates" and back.get("n") == 3


def test_an_unencodable_value_is_named_by_its_place_and_type_never_its_text() -> None:
    """The error gives the path to the offending object and its type, not its str()."""

    class Secretive:
        def __str__(self) -> str:
            return "hunter2"

        __repr__ = __str__

    with pytest.raises(ValueError, match=r"cannot serialise a Secretive at \['docs'\]\[1\] to JSON") as info:
        JsonSerializer().serialize({"docs": [1, Secretive()]})
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match=r"a Secretive at \.payload\['k'\]"):
        JsonSerializer().serialize(Blob(payload={"k": Secretive()}))
    with pytest.raises(ValueError, match=r"a set at \[0\]"):
        JsonSerializer().serialize([{1, 2}])


def test_pickle_serializer_uses_json_when_it_can_and_pickle_otherwise() -> None:
    """PickleSerializer writes readable JSON for JSON values, a pickle for the rest, and reads both."""
    s = PickleSerializer()
    assert s.serialize({"a": 1}) == '{"a": 1}'
    encoded = s.serialize(Blob(payload=Opaque(7)))
    assert not encoded.startswith("{")
    assert s.deserialize(encoded) == Blob(payload=Opaque(7))
    assert s.deserialize('{"a": 1}') == {"a": 1}
    assert peer.PickleSerializer().deserialize(encoded) == Blob(payload=Opaque(7))
    assert JsonPickleSerializer is PickleSerializer


def test_pickle_serializer_says_when_neither_json_nor_pickle_can_encode() -> None:
    """A value neither can hold (a lambda) raises ValueError naming both failures."""
    with pytest.raises(ValueError, match=r"cannot serialise a function.*pickle cannot encode it either"):
        PickleSerializer().serialize({"f": lambda: 1})


def test_allowed_types_limit_what_a_payload_can_rebuild() -> None:
    """With allowed_types, a payload naming any other class is refused, and listed classes resolve."""
    payload = JsonSerializer().serialize(Item(n=1))
    strict = JsonSerializer(allowed_types=[HumanResponseEvent])
    with pytest.raises(ValueError, match=r"durable_flows.Item is not in the serializer's allowed types"):
        strict.deserialize(payload)
    assert strict.with_types(Item).deserialize(payload) == Item(n=1)
    assert JsonSerializer(allowed_types=["durable_flows.Item"]).deserialize(payload) == Item(n=1)
    with pytest.raises(TypeError, match="concrete classes"):
        JsonSerializer(allowed_types=[list[int]])


def test_a_payload_naming_a_missing_class_says_which() -> None:
    """A qualified name that does not import is a ValueError naming the module or class."""
    bad = json.dumps({"__is_pydantic": True, "value": {}, "qualified_name": "durable_flows.Gone"})
    with pytest.raises(ValueError, match="module durable_flows has no class Gone"):
        JsonSerializer().deserialize(bad)
    bad = json.dumps({"__is_pydantic": True, "value": {}, "qualified_name": "no_such_module_x.Thing"})
    with pytest.raises(ValueError, match="cannot import module no_such_module_x"):
        JsonSerializer().deserialize(bad)


def test_context_serde_error_is_an_actorflow_error() -> None:
    """ContextSerdeError is part of actorflow's one error tree."""
    from actorflow import ActorflowError

    assert issubclass(ContextSerdeError, ActorflowError)
