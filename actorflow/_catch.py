"""Errors as events, as in LlamaIndex Workflows: ``@catch_error`` handlers.

A handler is a step that accepts :class:`StepFailedEvent`. When a step it covers fails for
good (its retry policy, if any, gave up), the run does not end: the handler receives a
``StepFailedEvent`` (the step, its input event, the error, the attempts made) and whatever
it returns carries on the run, a StopEvent included. ``for_steps=[...]`` names the steps a
handler covers; a handler without it covers every step no other handler names. After
``max_recoveries`` recoveries through a handler in one run, the next failure ends the run.

The handlers are checked when the workflow class is defined; at run time a failing step's
worker asks :meth:`Run.recover` (a cold path: only failures pay for it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

from . import _public
from ._exceptions import WorkflowDefinitionError
from ._step import DEFAULT_INBOX, StepSpec, _mark

__all__ = ["catch_error", "handler_table"]

_F = TypeVar("_F", bound=Callable[..., Any])


@overload
def catch_error(func: _F, /) -> _F: ...
@overload
def catch_error(*, for_steps: Sequence[str] | None = None, max_recoveries: int = 1) -> Callable[[_F], _F]: ...
def catch_error(
    func: Any = None, /, *, for_steps: Sequence[str] | None = None, max_recoveries: int = 1
) -> Any:
    """Mark a method taking ``ev: StepFailedEvent`` as the handler of steps that fail for good.

    ``for_steps`` lists the steps it covers (None: every step no other handler covers);
    ``max_recoveries`` is how many failures it may recover from in one run.
    """
    if isinstance(max_recoveries, bool) or not isinstance(max_recoveries, int) or max_recoveries < 1:
        raise WorkflowDefinitionError(
            f"@catch_error max_recoveries must be an integer >= 1, got {max_recoveries!r}"
        )
    if for_steps is not None and (
        isinstance(for_steps, str) or not all(isinstance(s, str) for s in for_steps)
    ):
        raise WorkflowDefinitionError(
            f"@catch_error for_steps must be None or a list of step name strings, got {for_steps!r}"
        )
    catch = (None if for_steps is None else tuple(for_steps), max_recoveries)
    options: dict[str, Any] = dict(
        num_workers=1,
        accept_subclasses=False,
        inbox=DEFAULT_INBOX,
        retry_policy=None,
        timeout=None,
        skip_graph_checks=(),
    )
    if func is not None:
        return _mark(func, sys._getframe(1), options, catch=catch)

    def decorate(f: _F) -> _F:
        return _mark(f, sys._getframe(1), options, catch=catch)

    return decorate


def handler_table(steps: Sequence[StepSpec], found: list[str]) -> dict[int, int]:
    """Step index -> the index of its handler; each problem with the handlers goes to ``found``."""
    names = {s.name: i for i, s in enumerate(steps)}
    handlers = [(i, s) for i, s in enumerate(steps) if s.catch is not None]
    wildcards = [s.name for _, s in handlers if s.catch[0] is None]  # type: ignore[index]
    if len(wildcards) > 1:
        found.append(
            f"Only one wildcard @catch_error handler is allowed per workflow, found "
            f"{len(wildcards)}: {', '.join(sorted(wildcards))}"
        )
    handler_names = {s.name for _, s in handlers}
    table: dict[int, int] = {}
    owner: dict[str, str] = {}
    for index, handler in handlers:
        covered = handler.catch[0]  # type: ignore[index]
        for target in covered or ():
            if target not in names:
                found.append(
                    f"@catch_error handler '{handler.name}' lists unknown step '{target}' in "
                    f"for_steps (the steps: {', '.join(names)})"
                )
            elif target in handler_names:
                found.append(
                    f"@catch_error handler '{handler.name}' cannot cover another handler step '{target}'."
                )
            elif target in owner:
                found.append(
                    f"Step '{target}' is claimed by two @catch_error handlers: '{owner[target]}' and "
                    f"'{handler.name}'."
                )
            else:
                owner[target] = handler.name
                table[names[target]] = index
    if len(wildcards) == 1:
        wildcard = names[wildcards[0]]
        for name, index in names.items():
            if name not in handler_names and index not in table:
                table[index] = wildcard
    return table


_public.publish(__name__, globals())  # last: bind the names above in actorflow
