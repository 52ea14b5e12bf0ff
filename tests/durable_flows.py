"""Events, states and workflows the durable-run tests share (importable by qualified name)."""

from __future__ import annotations

from typing import Any

import trio
from pydantic import BaseModel, Field

from actorflow import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)


class Item(Event):
    """A unit of work."""

    n: int
    tags: list[str] = Field(default_factory=list)


class Note(Event):
    """Free text with a JSON payload."""

    text: str
    extra: dict[str, Any] = Field(default_factory=dict)


class Blob(Event):
    """Carries anything (what JSON cannot hold needs the PickleSerializer)."""

    payload: Any = None


class Cart(BaseModel):
    """A typed run state."""

    items: list[str] = Field(default_factory=list)
    total: float = 0.0
    owner: str | None = None


class Opaque:
    """Not JSON: only pickle can carry it."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Opaque({self.value})"


class Resumable(Workflow):
    """Its second step blocks until it runs again after a resume (the first process's end)."""

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Item:
        await ctx.store.set("began", ev.get("by", "?"))
        return Item(n=1)

    @step
    async def finish(self, ctx: Context, ev: Item) -> StopEvent:
        if not ctx.resumed:
            await trio.sleep_forever()
        return StopEvent(result={"began": await ctx.store.get("began"), "attempt": ctx.attempt})


class Approval(Workflow):
    """Asks a human on the stream and waits for the answer inside the step."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("order", ev.order)
        ctx.write_event_to_stream(InputRequiredEvent(prefix=f"ship {ev.order}?"))
        answer = await ctx.wait_for_event(HumanResponseEvent)
        return StopEvent(result=f"{ev.order}: {answer.response}")
