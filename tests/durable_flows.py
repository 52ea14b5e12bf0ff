"""Events, states and workflows the durable-run tests share (importable by qualified name)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from actorflow import Event


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
