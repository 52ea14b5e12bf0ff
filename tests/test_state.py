"""Run state as in LlamaIndex: InMemoryStateStore over DictState or a typed pydantic model."""

from __future__ import annotations

import threading

import pydantic
import pytest
import trio

from actorflow import DictState, InMemoryStateStore


class Profile(pydantic.BaseModel):
    name: str = "Jane"
    age: int = 25
    tags: list[str] = []


async def test_dotted_paths_read_and_write_nested_values() -> None:
    """get/set walk dotted paths through dicts, lists and attributes, making dicts on the way."""
    store = InMemoryStateStore(DictState())
    await store.set("name", "test")
    await store.set("user.profile.name", "Ada")
    await store.set("items", [{"a": 1}])
    assert await store.get("name") == "test"
    assert await store.get("user.profile.name") == "Ada"
    assert await store.get("user") == {"profile": {"name": "Ada"}}
    assert await store.get("items.0.a") == 1


async def test_a_missing_path_is_a_value_error_unless_a_default_is_given() -> None:
    """A missing path raises LlamaIndex's ValueError naming it; default= returns the default."""
    store = InMemoryStateStore(DictState())
    assert await store.get("missing", default=None) is None
    assert await store.get("a.b", default=0) == 0
    with pytest.raises(ValueError, match="Path 'missing' not found in state"):
        await store.get("missing")
    with pytest.raises(ValueError, match="Path cannot be empty"):
        await store.set("", 1)


async def test_typed_state_starts_from_defaults_and_clears_to_them() -> None:
    """A typed state keeps its fields typed; clear() resets it to the model's defaults."""
    store = InMemoryStateStore(Profile())
    await store.set("name", "John")
    state = await store.get_state()
    state.age += 1
    await store.set_state(state)
    assert (await store.get("name"), await store.get("age")) == ("John", 26)
    await store.clear()
    assert await store.get_state() == Profile()
    with pytest.raises(ValueError, match="must be of type Profile"):
        await store.set_state(DictState())  # type: ignore[arg-type]


async def test_get_state_is_a_copy() -> None:
    """Changing what get_state() returned changes nothing until set_state()."""
    store = InMemoryStateStore(Profile())
    state = await store.get_state()
    state.name = "changed"
    assert await store.get("name") == "Jane"


async def test_edit_state_commits_on_exit_and_not_on_error() -> None:
    """edit_state edits a copy, committed when the block exits normally; an error commits nothing."""
    store = InMemoryStateStore(DictState())
    async with store.edit_state() as state:
        state["counter"] = 1
        state.other = 2
        assert await store.get("counter", default=None) is None  # reads see committed state
    assert (await store.get("counter"), await store.get("other")) == (1, 2)
    with pytest.raises(KeyError):
        async with store.edit_state() as state:
            state["counter"] = 99
            raise KeyError("boom")
    assert await store.get("counter") == 1


async def test_edit_state_serialises_writers_across_awaits() -> None:
    """Ten tasks incrementing inside edit_state with awaits in between lose no update."""
    store = InMemoryStateStore(Profile(age=0))

    async def bump() -> None:
        async with store.edit_state() as state:
            value = state.age
            await trio.sleep(0.01)
            state.age = value + 1

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(bump)
    assert await store.get("age") == 10


async def test_a_writer_inside_edit_state_is_refused() -> None:
    """Calling set() inside an edit_state block of the same task is an error, not a deadlock."""
    store = InMemoryStateStore(DictState())
    with trio.fail_after(1), pytest.raises(RuntimeError, match="inside edit_state"):
        async with store.edit_state():
            await store.set("a", 1)


async def test_state_holding_uncopyable_values_still_edits() -> None:
    """A state holding a live handle (a lock) can still be edited; the handle is shared."""
    lock = threading.Lock()
    store = InMemoryStateStore(DictState(lock=lock))
    async with store.edit_state() as state:
        state["n"] = 1
    assert await store.get("lock") is lock and await store.get("n") == 1


def test_the_store_needs_a_pydantic_state() -> None:
    """A state that is not a pydantic model is refused when the store is made."""
    with pytest.raises(TypeError, match="pydantic model"):
        InMemoryStateStore({"a": 1})  # type: ignore[type-var]


class WithHandle(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    items: list[int] = []
    lock: object = pydantic.Field(default_factory=threading.Lock)
    client: object = pydantic.Field(default_factory=object, exclude=True)
    user: dict[str, str] = {"name": "before"}


async def test_a_failed_edit_commits_nothing_though_the_state_holds_a_live_handle() -> None:
    """edit_state copies data value by value, so a lock in the state does not make it edit in place."""
    store = InMemoryStateStore(WithHandle())
    with pytest.raises(RuntimeError):
        async with store.edit_state() as state:
            state.items.append(1)
            assert (await store.get_state()).items == []  # readers see the committed state
            raise RuntimeError("abandon the edit")
    assert (await store.get_state()).items == []


async def test_live_handles_are_shared_and_data_is_copied() -> None:
    """Field(exclude=True) values and values deepcopy refuses stay the same objects through writes."""
    store = InMemoryStateStore(WithHandle())
    client, lock = store._state.client, store._state.lock
    async with store.edit_state() as state:
        state.items.append(1)
    await store.set("user.name", "after")
    now = await store.get_state()
    assert now.client is client and now.lock is lock
    assert now.items == [1] and now.user == {"name": "after"}


async def test_set_copies_only_its_path_and_leaves_earlier_snapshots_alone() -> None:
    """set() shares what is off its path, and a get_state() taken before it does not change."""
    store = InMemoryStateStore(DictState())
    docs = [{"i": i} for i in range(1000)]
    await store.set("docs", docs)
    await store.set("user", {"name": "before"})
    before = await store.get_state()
    await store.set("user.name", "after")
    await store.set("counter", 1)
    assert before["user"] == {"name": "before"} and "counter" not in before
    assert await store.get("user.name") == "after"
    assert await store.get("docs") is before["docs"]  # off the path: shared, not copied
