"""Helpers for testing code that runs workflows.

``WorkflowTestRunner`` runs a workflow to its end and collects what it streamed, as the
runner of LlamaIndex Workflows does. ``leftover_tasks()`` answers the question every
structured-concurrency test should ask after a run ends, whatever way it ended: is anything
of it still running? ``assert_replays()`` keeps recorded trails (production runs, say) as
regression tests of a workflow.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._events import Event, StartEvent

if TYPE_CHECKING:
    from ._context import Context
    from ._workflow import Workflow
    from .audit import Redactor, ReplayReport

__all__ = ["WorkflowTestResult", "WorkflowTestRunner", "assert_replays", "leftover_tasks"]


@attrs.define
class WorkflowTestResult:
    """What one run streamed and returned."""

    collected: list[Event]
    """The streamed events in order (the StopEvent last), less the excluded types."""
    event_types: dict[type[Event], int]
    """How many of ``collected`` there are of each type."""
    result: Any
    """What the run returned."""
    ctx: Context[Any]
    """The run's context seen from outside (``ctx.store`` holds its final state)."""


class WorkflowTestRunner:
    """Runs a workflow end to end and collects the events it streams (LlamaIndex's runner)."""

    def __init__(self, workflow: Workflow) -> None:
        self._workflow = workflow

    async def run(
        self,
        start_event: StartEvent | None = None,
        ctx: Context[Any] | None = None,
        expose_internal: bool = True,
        exclude_events: Sequence[type[Event]] | None = None,
        **kwargs: Any,
    ) -> WorkflowTestResult:
        """Run the workflow (``start_event=`` or keyword arguments build its StartEvent) and
        collect its stream; ``expose_internal`` adds the runtime's StepStateChanged events,
        ``exclude_events`` leaves out events of those exact types. A failed run raises."""
        if ctx is not None:
            kwargs["ctx"] = ctx
        if start_event is not None:
            kwargs["start_event"] = start_event
        excluded = tuple(exclude_events or ())
        collected: list[Event] = []
        async with self._workflow.open_run(**kwargs) as handle:
            async for event in handle.stream_events(expose_internal=expose_internal):
                if type(event) not in excluded:
                    collected.append(event)
            result = await handle.result()
        return WorkflowTestResult(
            collected=collected,
            event_types=dict(Counter(type(e) for e in collected)),
            result=result,
            ctx=handle.ctx,
        )


#: Every task actorflow spawns is named with this prefix, so it can be found again.
TASK_PREFIX = "actorflow "


def leftover_tasks() -> list[str]:
    """Names of the actorflow tasks alive anywhere in the current trio run.

    Call it from inside trio after a run has ended: the list must be empty.
    """
    found: list[str] = []
    root = trio.lowlevel.current_root_task()
    pending = [root] if root is not None else []
    while pending:
        task = pending.pop()
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                if str(child.name).startswith(TASK_PREFIX):
                    found.append(str(child.name))
                pending.append(child)
    return sorted(found)


def assert_replays(
    path: str | os.PathLike[str],
    workflow: Workflow | type[Workflow],
    *,
    run_id: str | None = None,
    key: bytes | None = None,
    redact: Redactor | None = None,
) -> ReplayReport:
    """Replay the runs recorded in the audit file ``path`` with ``workflow``; fail unless the
    code does just what the trail says (``actorflow.audit.replay``; ``redact``: the Redactor
    the trail was written with, for what the report quotes). Returns the report.

    A trail that cannot be replayed (it fails ``verify``, has no run of this workflow) raises
    ``actorflow.audit.ReplayError``; one that replays differently, or holds a call whose answer
    it lacks, raises ``AssertionError`` with the report, which names the first divergence.
    Call it from synchronous code (a plain test function): it runs its own trio loop.
    """
    from .audit import replay

    report = replay(path, workflow, run_id=run_id, key=key, redact=redact)
    if not report.ok:
        raise AssertionError(f"{os.fspath(path)} does not replay the same:\n{report}")
    return report
