"""Resources: step parameters the runtime builds (Annotated[T, Resource(factory)]), as in LlamaIndex."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pytest
import trio
from pydantic import BaseModel

from actorflow import (
    Context,
    Event,
    Resource,
    ResourceConfig,
    ResourceCycleError,
    ResourceManager,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowDefinitionError,
    step,
)


class Counter:
    """Counts how often it was used."""

    def __init__(self) -> None:
        self.uses = 0


built: list[str] = []


def make_counter() -> Counter:
    built.append("counter")
    return Counter()


async def make_label(counter: Annotated[Counter, Resource(make_counter)]) -> str:
    built.append("label")
    return f"label-{id(counter)}"


class Next(Event):
    pass


class Shared(Workflow):
    @step
    async def first(self, ev: StartEvent, counter: Annotated[Counter, Resource(make_counter)]) -> Next:
        counter.uses += 1
        return Next()

    @step
    def second(
        self,
        ctx: Context,
        ev: Next,
        counter: Annotated[Counter, Resource(make_counter)],
        label: Annotated[str, Resource(make_label)],
        fresh: Annotated[Counter, Resource(make_counter, cache=False)],
    ) -> StopEvent:
        counter.uses += 1
        return StopEvent(result=(counter.uses, label == f"label-{id(counter)}", fresh is counter))


async def test_cached_resources_are_built_once_per_workflow_instance() -> None:
    """A cached resource is shared by the steps and runs of one instance; cache=False builds anew."""
    built.clear()
    wf = Shared()
    assert await wf.run() == (2, True, False)
    assert await wf.run() == (4, True, False)
    assert built.count("counter") == 3  # the cached one, and one per run for cache=False
    assert built.count("label") == 1  # async factory taking a resource itself
    built.clear()
    assert await Shared().run() == (2, True, False)  # another instance: its own cache
    assert built.count("counter") == 2


async def test_a_resource_manager_can_be_shared_between_instances() -> None:
    """Workflow(resource_manager=...) makes instances share cached resources."""
    built.clear()
    manager = ResourceManager()
    await Shared(resource_manager=manager).run()
    assert await Shared(resource_manager=manager).run() == (4, True, False)
    assert set(manager.get_all()) == {"make_counter", "make_label"}


async def test_two_workers_asking_at_once_build_a_cached_resource_once() -> None:
    """Concurrent invocations wait for the one building the resource."""
    made: list[int] = []

    async def slow() -> int:
        made.append(1)
        await trio.sleep(0.01)
        return len(made)

    class Fan(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Next | None:
            for _ in range(3):
                ctx.send_event(Next())
            return None

        @step(num_workers=3)
        async def use(
            self, ctx: Context, ev: Next, value: Annotated[int, Resource(slow)]
        ) -> StopEvent | None:
            got = ctx.collect_events(ev, [Next, Next, Next])
            return None if got is None else StopEvent(result=value)

    assert await Fan().run() == 1
    assert made == [1]


class FileData(BaseModel):
    file: str
    mode: str = "r"


async def test_resource_config_reads_a_model_from_a_json_file(tmp_path: Path) -> None:
    """ResourceConfig(file, path_selector=) validates the selected part with the annotated model."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"io": {"data": {"file": "a.txt"}}}))

    class Reads(Workflow):
        @step
        async def only(
            self,
            ev: StartEvent,
            data: Annotated[FileData, ResourceConfig(str(config), path_selector="io.data")],
        ) -> StopEvent:
            return StopEvent(result=data)

    assert await Reads().run() == FileData(file="a.txt")
    config.write_text(json.dumps({"io": 3}))
    with pytest.raises(ValueError, match="Expected dictionary for configuration from .* at path io"):
        await Reads().run()


def test_a_resource_configs_file_is_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config_file is the resolved absolute path (checked to exist) and name the path as given."""
    (tmp_path / "c.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    config = ResourceConfig("c.json", path_selector="a.b")
    assert config.config_file == str((tmp_path / "c.json").resolve())
    assert config.name == "c.json.a.b"
    with pytest.raises(FileNotFoundError, match="No such file: missing.json"):
        ResourceConfig("missing.json").config_file  # noqa: B018


def test_a_resource_config_needs_a_model_type() -> None:
    """Annotated[str, ResourceConfig(...)] is refused when the class is defined."""
    with pytest.raises(
        WorkflowDefinitionError,
        match=r"parameter 'data' reads a ResourceConfig, which needs a pydantic model",
    ):

        class Bad(Workflow):
            @step
            async def only(self, ev: StartEvent, data: Annotated[str, ResourceConfig("c.json")]) -> StopEvent:
                return StopEvent()

    with pytest.raises(ValueError, match="Only JSON files"):
        ResourceConfig("c.yaml")


def needs_b(b: Annotated[int, Resource(lambda: 0)]) -> int:
    return b


def cyc_a(b: Annotated[int, Resource(cyc_b)]) -> int:  # a string hint: resolved when checked
    return b


def cyc_b(a: Annotated[int, Resource(cyc_a)]) -> int:
    return a


def cyc_c(d: Annotated[int, Resource(cyc_b)]) -> int:
    return d


def test_a_dependency_cycle_is_refused_when_the_class_is_defined() -> None:
    """Factories that need each other are a definition error showing the cycle."""
    with pytest.raises(
        WorkflowDefinitionError,
        match=r"resources depend on each other in a cycle \(cyc_b -> cyc_a -> cyc_b\)",
    ):

        class Loops(Workflow):
            @step
            async def only(self, ev: StartEvent, x: Annotated[int, Resource(cyc_c)]) -> StopEvent:
                return StopEvent()


async def test_a_cycle_found_while_building_is_a_resource_cycle_error() -> None:
    """The manager names the cycle when it meets one (a factory whose hints resolved late)."""

    def loop_a(b: Annotated[int, Resource(lambda: 0)]) -> int:
        return b

    again = Resource(loop_a)
    loop_a.__annotations__["b"] = Annotated[int, again]
    with pytest.raises(
        ResourceCycleError, match="Circular resource dependency detected: .*loop_a -> .*loop_a"
    ):
        await ResourceManager().get(again)


async def test_a_resource_can_be_called_on_its_own() -> None:
    """Resource(factory).call() builds the value with a fresh manager."""
    assert await Resource(needs_b).call() == 0
    assert Resource(needs_b).cache is True
    assert "needs_b" in Resource(needs_b).name
