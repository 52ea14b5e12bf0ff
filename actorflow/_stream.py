"""A run's event stream as LlamaIndex reads it: ``handle.stream_events(expose_internal=...)``.

The run writes to one memory channel: what steps write with ``ctx.write_event_to_stream``,
then, when it ends, its StopEvent (or ``WorkflowTimedOutEvent`` / ``WorkflowCancelledEvent``
/ ``WorkflowFailedEvent``). :class:`EventStream` reads it, leaving out the runtime's own
events (``InternalDispatchEvent``) unless they were asked for, and ends after the StopEvent.

The runtime's own events cost only the runs that ask for them: ``expose_internal=True``
makes the run an observed one (:class:`InternalEvents` is an :class:`Observer`), which is
decided before it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ._events import Event, InternalDispatchEvent, StepState, StepStateChanged, StopEvent
from ._observe import Observer, StepFailed, StepFinished, StepStarted

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["EventStream", "InternalEvents"]


class EventStream:
    """The events of one run, in order, ending with the event that ended the run.

    Iterate it with ``async for``, or take one event with ``await stream.receive()``.
    """

    __slots__ = ("_consumed", "_internal", "_receive")

    def __init__(self, receive: trio.MemoryReceiveChannel[Event], internal: bool, consumed: Any) -> None:
        self._receive = receive
        self._internal = internal
        self._consumed = consumed
        """Called once the StopEvent has been read: the handle remembers the stream is spent."""

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> Event:
        """The next event; ``trio.EndOfChannel`` once the run's StopEvent has been read."""
        while True:
            try:
                event = await self._receive.receive()
            except trio.ClosedResourceError:
                raise trio.EndOfChannel from None
            if not self._internal and isinstance(event, InternalDispatchEvent):
                continue
            if isinstance(event, StopEvent):
                self._consumed()
            return event

    async def aclose(self) -> None:
        """Stop reading: the run drops what it writes to the stream from now on."""
        await self._receive.aclose()


class InternalEvents(Observer):
    """Writes ``StepStateChanged`` events to the run's stream as step invocations start and end."""

    def __init__(self, run: Run) -> None:
        self._publish = run.publish

    def step_started(self, record: StepStarted) -> None:
        if record.attempt == 1:
            self._publish(
                StepStateChanged(
                    name=record.step,
                    step_state=StepState.RUNNING,
                    worker_id=str(record.worker),
                    input_event_name=type(record.event).__name__,
                )
            )

    def step_finished(self, record: StepFinished) -> None:
        self._publish(
            StepStateChanged(
                name=record.step,
                step_state=StepState.NOT_RUNNING,
                worker_id=str(record.worker),
                input_event_name=type(record.event).__name__,
                output_event_name=type(record.emitted[-1]).__name__ if record.emitted else None,
            )
        )

    def step_failed(self, record: StepFailed) -> None:
        if not record.retrying:
            self._publish(
                StepStateChanged(
                    name=record.step,
                    step_state=StepState.NOT_RUNNING,
                    worker_id=str(record.worker),
                    input_event_name=type(record.event).__name__,
                )
            )
