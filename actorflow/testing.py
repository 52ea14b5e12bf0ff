"""Helpers for testing code that runs workflows.

``leftover_tasks()`` answers the question every structured-concurrency test should ask after
a run ends, whatever way it ended: is anything of it still running?
"""

from __future__ import annotations

import trio

__all__ = ["leftover_tasks"]

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
