"""Backpressure: ``ctx.asend_event`` and ``RunHandle.send_event`` wait while inboxes are full.

Emitting never blocks (a full inbox overflows into the actor's backlog), so this is the only
place anything waits for room, and it is what keeps awaited emission deadlock-free: a
producer waits only on steps *downstream* of itself (no path of the workflow graph leads from
them back to it), and never on a step whose every worker is suspended in ``wait_for_event``
(that step drains nothing until its event comes, which may be the very one the producer
would send next).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from ._exceptions import WorkflowRuntimeError

if TYPE_CHECKING:
    from ._actor import StepActor
    from ._validate import WorkflowSpec

__all__ = ["wait_for_room"]


async def wait_for_room(
    actors: Sequence[StepActor],
    spec: WorkflowSpec,
    targets: Sequence[int],
    source: int | None,
    *,
    is_over: Callable[[], bool],
    what: str,
) -> None:
    """Wait while the inbox of a step in ``targets`` is full (``source`` None: from outside).

    ``what`` names the event and run for the error raised when the run ends meanwhile.
    """
    for index in targets:
        if source is not None and not spec.may_wait(source, index):
            continue
        actor = actors[index]
        capacity = max(actor.spec.inbox, 1)
        while actor.queued >= capacity and actor.waiting < actor.spec.num_workers:
            if actor.room is None:
                actor.room = trio.lowlevel.ParkingLot()
            actor.room_waiters += 1
            try:
                await actor.room.park()
            finally:
                actor.room_waiters -= 1
            if is_over():
                raise WorkflowRuntimeError(f"cannot send {what}: the run has ended")
