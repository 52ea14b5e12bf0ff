"""``replay()``: run a recorded run again against today's code and name where it now differs.

The recorded StartEvent starts a run of the workflow given; every LLM call a step makes is
answered from the trail (``actorflow.llm``'s answer seam: no network), events that came from
outside are sent in when the run has got as far as the trail says it had when they came, and
what each invocation emitted, the calls it made, how it ended and how the run ended are
compared with the trail by *causal identity*: which invocation (step, input event, attempt)
produced what, never event ids or the order concurrent workers ran in.

Time is the replay's own (:class:`_ReplayClock`): a replayed LLM call takes the latency the
trail recorded, and whenever every task of the run waits for time to pass (those calls, a
step's ``trio.sleep``, a retry's delay, a timeout) the clock jumps to the next deadline, so
concurrent branches finish in the recorded order, timeouts fire where they fired, and a
replay of hours of calls takes milliseconds. While a worker thread runs (a sync step,
``trio.to_thread``) the clock runs in real time, as trio's ``MockClock`` cannot (it would jump
while the thread works). A replay that can go no further (every step waits for what nothing
will send) is stopped and says so; nothing in it waits for real time except threads.

The replay runs on a copy of the workflow object with no audit tracing and no observers of
its own (it must not write to the trail it checks, nor export spans of a run that did not
happen); the process-wide observers (``actorflow.add_observer``) still see it.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import inspect
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio
import trio.testing

from .. import _exceptions
from .._events import Event, StartEvent, StopEvent
from .._exceptions import ReplayError, WorkflowRuntimeError
from .._observe import (
    EventEmitted,
    EventTaken,
    LLMCalled,
    Observer,
    RunEnded,
    RunStarted,
    StepCancelled,
    StepFailed,
    StepFinished,
    StepStarted,
)
from .._tracing import payload_of, value_of
from ._canon import canonical
from ._load import load_runs
from ._redact import _ERROR_RECORDS, LLM_CALL, REDACTED, Redactor
from ._trail import OutsideAction, RecEvent, RecInvocation, Trail, comparable, normal, same
from ._verify import verify

if TYPE_CHECKING:
    from .._handle import RunHandle
    from .._workflow import Workflow

__all__ = ["Divergence", "ReplayReport", "RunReplay", "Unanswerable", "replay"]

#: How far (virtual seconds) a replay may go past the recorded run's duration before it is
#: given up: a replay whose every step waits on time it does not need jumps there at once.
_SLACK = 24 * 3600.0
#: How much of a prompt, a payload or an answer a divergence quotes.
_QUOTE = 160


# -- the report --------------------------------------------------------------------------------


@attrs.frozen
class Divergence:
    """The first place (or one of the places) where the code now does not do what the trail says."""

    run_id: str
    """The recorded run."""
    seq: int | None
    """The trail's record where they part: what the trail says happened there."""
    kind: str
    """What differs: ``event`` (an emitted event's type or payload), ``missing_event``,
    ``extra_event``, ``routing`` (a step ran, or did not run, on an event), ``outcome`` (an
    invocation finished or failed differently), ``llm_prompt``, ``llm_model``, ``llm_extra``,
    ``llm_missing``, ``taken`` (which waiting step took an event), ``outside`` (an event from
    outside found nobody to take it), ``start_event``, ``stalled``, ``run_outcome``."""
    step: str | None
    """The step whose invocation differs (the emitter, for an event)."""
    event_id: int | None
    """That invocation's input event, by its id in the trail."""
    event_type: str | None
    """The input event's type."""
    event_payload: Any
    """The input event's payload, as the trail holds it."""
    expected: str
    """What the trail says."""
    got: str
    """What the code did now."""
    consequence: bool = False
    """Whether this may only follow from the replay having ended or stopped early (reported
    after every divergence that cannot)."""

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "at the end"
        if self.step is not None and self.event_id is not None:
            where += (
                f", step {self.step!r} on {self.event_type} #{self.event_id} {_quote(self.event_payload)}"
            )
        elif self.step is not None:
            where += f", step {self.step!r}"
        return f"{where}: the trail: {self.expected}; the code now: {self.got}"


@attrs.frozen
class Unanswerable:
    """An LLM call of the trail whose answer the trail does not hold, so replay cannot give it."""

    run_id: str
    seq: int
    """The call's ``llm.called`` record."""
    step: str
    event_id: int
    """The input event of the invocation that made it."""
    call: int
    """Which call of that invocation (1, 2, ...)."""
    reason: str
    """Why (``its answer was redacted (response)``, ...)."""

    def __str__(self) -> str:
        return f"seq {self.seq}: LLM call {self.call} of step {self.step!r} on event #{self.event_id}: {self.reason}"


@attrs.frozen
class RunReplay:
    """How one recorded run replayed."""

    run_id: str
    workflow: str
    outcome: str | None
    """How the replay ended: ``finished``, ``failed``, ``timed_out``, ``cancelled`` (also
    when the replay stopped it), None if it never started."""
    divergences: tuple[Divergence, ...]
    """Every difference found, the first first (see :attr:`divergence`)."""
    unanswerable: tuple[Unanswerable, ...]
    """The trail's LLM calls without an answer to give (redacted, or not recorded)."""
    stopped_at: Unanswerable | None
    """The call the replay stopped at because it could not answer it."""
    notes: tuple[str, ...]
    """What the reader should know (inputs replayed with redacted fields, live calls...)."""
    events: int
    """Events of the trail matched by the replay."""
    invocations: int
    """Step invocations the replay ran."""
    llm_calls: int
    """LLM calls answered from the trail."""

    @property
    def divergence(self) -> Divergence | None:
        """The first divergence (the earliest record of the trail the code departs from)."""
        return self.divergences[0] if self.divergences else None

    @property
    def status(self) -> str:
        """``same``, ``diverged``, or ``incomplete`` (stopped at a call it cannot answer)."""
        real = [d for d in self.divergences if not d.consequence]
        if real:
            return "diverged"
        if self.stopped_at is not None:
            return "incomplete"
        return "diverged" if self.divergences else "same"

    @property
    def ok(self) -> bool:
        """Whether the code did everything the trail says, and nothing else."""
        return self.status == "same"

    def lines(self) -> list[str]:
        """The report of this run, as printed by ``actorflow audit replay``."""
        head = f"run {self.run_id} ({self.workflow})"
        stats = (
            f"{self.events} events, {self.invocations} step invocations, "
            f"{self.llm_calls} LLM call{'' if self.llm_calls == 1 else 's'} answered from the trail"
        )
        out: list[str]
        if self.status == "same":
            out = [f"SAME {head}: {stats}"]
        elif self.status == "incomplete":
            assert self.stopped_at is not None
            out = [f"INCOMPLETE {head}: the replay stopped at a call the trail has no answer for"]
        else:
            first = self.divergence
            assert first is not None
            out = [f"DIVERGED {head}: {first}"]
            rest = len(self.divergences) - 1
            if rest:
                out.append(f"  and {rest} more difference{'s' if rest > 1 else ''} after it")
        if self.unanswerable:
            out.append(f"  {len(self.unanswerable)} LLM call(s) of the trail cannot be answered:")
            out += [f"    {u}" for u in self.unanswerable[:10]]
            if len(self.unanswerable) > 10:
                out.append(f"    and {len(self.unanswerable) - 10} more")
        out += [f"  note: {n}" for n in self.notes]
        return [_clean(line) for line in out]


@attrs.frozen
class ReplayReport:
    """What ``replay()`` found: one :class:`RunReplay` per recorded run replayed."""

    path: str
    runs: tuple[RunReplay, ...]

    @property
    def ok(self) -> bool:
        """Whether every run replayed the same."""
        return all(r.ok for r in self.runs)

    @property
    def status(self) -> str:
        """``same``, ``diverged`` (some run diverged) or ``incomplete``."""
        statuses = {r.status for r in self.runs}
        return "diverged" if "diverged" in statuses else "incomplete" if "incomplete" in statuses else "same"

    @property
    def divergence(self) -> Divergence | None:
        """The first divergence of the first run that diverged."""
        return next((r.divergence for r in self.runs if r.divergence is not None), None)

    @property
    def exit_status(self) -> int:
        """What ``actorflow audit replay`` exits with: 0 same, 1 diverged, 2 incomplete."""
        return {"same": 0, "diverged": 1}.get(self.status, 2)

    def __str__(self) -> str:
        return "\n".join(line for run in self.runs for line in run.lines())


# -- the clock ---------------------------------------------------------------------------------


class _ReplayClock(trio.abc.Clock):
    """Virtual time that stands still while tasks run and jumps when they all wait for it.

    trio asks :meth:`deadline_to_sleep_time` only when no task can run; the clock then jumps
    to the next deadline, as ``trio.testing.MockClock(autojump_threshold=0)`` would, so the
    order in which concurrent branches finish is the order of their (recorded) durations, not
    of the machine's load. Unlike ``MockClock``, it runs in real time while something outside
    trio's tasks is at work: a worker thread (a sync step, ``trio.to_thread``), or a socket
    a task waits on (real I/O); jumping then would fire timeouts the work never took. The
    replay's driver can ``hold`` it, to look at the quiet run before time moves on.
    """

    def __init__(self) -> None:
        self._virtual = 0.0
        self._real_since: float | None = None
        self.hold = False
        self.limiter: trio.CapacityLimiter | None = None
        self.io_baseline = 0
        """Tasks trio itself keeps waiting on a descriptor (its wake-up socket)."""

    def start_clock(self) -> None:
        pass

    async def calibrate(self) -> None:
        """Take the thread limiter and the I/O waits trio has of its own (from inside the run)."""
        self.limiter = trio.to_thread.current_default_thread_limiter()
        await trio.lowlevel.checkpoint()  # trio's own waits have begun by now
        self.io_baseline = _io_waiting(trio.lowlevel.current_statistics().io_statistics)

    def current_time(self) -> float:
        if self._real_since is None:
            return self._virtual
        return self._virtual + (time.perf_counter() - self._real_since)

    def busy_outside(self) -> bool:
        """Whether a worker thread or real I/O is under way (time must pass as it does)."""
        if self.limiter is not None and self.limiter.borrowed_tokens > 0:
            return True
        return _io_waiting(trio.lowlevel.current_statistics().io_statistics) > self.io_baseline

    def deadline_to_sleep_time(self, deadline: float) -> float:
        if self._real_since is not None:
            self._virtual += time.perf_counter() - self._real_since
            self._real_since = None
        wait = deadline - self._virtual
        if wait <= 0:
            return 0.0
        if self.busy_outside():
            self._real_since = time.perf_counter()
            return wait
        if self.hold or math.isinf(deadline):
            return wait
        self._virtual = deadline
        return 0.0


def _io_waiting(io: Any) -> int:
    """How many tasks wait on a socket or file descriptor (epoll, kqueue and IOCP name the
    counts differently: ``tasks_waiting_read``, ``tasks_waiting``, ...)."""
    total = 0
    for name in dir(io):
        count = getattr(io, name) if name.startswith("tasks_waiting") else None
        if isinstance(count, int) and not isinstance(count, bool):
            total += count
    return total


# -- replaying one run -------------------------------------------------------------------------


@attrs.define(eq=False)
class _RepEvent:
    event_id: int
    event_type: str
    payload: Any
    step: str | None
    cause_id: int | None
    rec_id: int | None = None
    mismatch: bool = False
    taken: tuple[str, int | None] | None = None


@attrs.define(eq=False)
class _RepInvocation:
    step: str
    event_id: int
    attempt: int
    outcome: str = "running"
    error_type: str | None = None
    error: str | None = None
    emitted: list[int] = attrs.Factory(list)
    answered: int = 0
    """Calls answered from the trail."""
    reported: int = 0
    """Calls reported to the observers (answered ones and any other client's)."""
    used: set[int] = attrs.Factory(set)
    """Indexes of the recorded calls already given."""

    @property
    def ended(self) -> bool:
        return self.outcome in ("finished", "failed")


class _Stop(Exception):
    """Raised out of the driver when the replay must end now (never seen by the caller)."""


class _Replayer(Observer):
    """Watches the replayed run, pairs its events with the trail's, answers its LLM calls."""

    def __init__(self, trail: Trail, clock: _ReplayClock, hide: _Hider) -> None:
        self.trail = trail
        self.clock = clock
        self.hide = hide
        self.run_id: str | None = None
        self.handle: RunHandle | None = None
        self.events: dict[int, _RepEvent] = {}
        self.rec_to_rep: dict[int, int] = {}
        self.attempts: dict[tuple[str, int], int] = {}
        self.invocations: dict[tuple[int, str, int], _RepInvocation] = {}
        self.handled: dict[int, dict[tuple[str, int], _RepInvocation]] = {}
        self.outside_seen = 0
        self.emitted: Counter[tuple[str, str]] = Counter()
        self.started: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.ended: RunEnded | None = None
        self.result: Any = None
        self.findings: list[Divergence] = []
        self.stopped: Unanswerable | Divergence | None = None
        self.notes: list[str] = []
        self.reordered = 0
        self.live_calls = 0
        self.answered = 0
        self.progress = trio.Event()
        self._sent = [a.event for a in trail.outside if a.event is not None]
        self._fallback: dict[tuple[str | None, str], list[int]] = {}
        for ev in trail.events.values():
            self._fallback.setdefault((ev.step, ev.event_type), []).append(ev.event_id)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _ours(self, run_id: str) -> bool:
        return run_id == self.run_id

    def _poke(self) -> None:
        self.progress.set()

    def rec_of(self, event_id: int | None) -> RecEvent | None:
        ev = self.events.get(event_id) if event_id is not None else None
        return None if ev is None or ev.rec_id is None else self.trail.events[ev.rec_id]

    def invocation(self, step: str, event_id: int, attempt: int) -> _RepInvocation:
        key = (event_id, step, attempt)
        inv = self.invocations.get(key)
        if inv is None:
            inv = self.invocations[key] = _RepInvocation(step, event_id, attempt)
            self.handled.setdefault(event_id, {})[(step, attempt)] = inv
        return inv

    def recorded_invocation(self, step: str, event_id: int, attempt: int) -> RecInvocation | None:
        rec = self.rec_of(event_id)
        return None if rec is None else self.trail.invocations.get((rec.event_id, step, attempt))

    def stop(self, why: Unanswerable | Divergence) -> None:
        """End the replay: it cannot go on as the trail says."""
        if self.stopped is None:
            self.stopped = why
            if isinstance(why, Divergence):
                self.findings.append(why)
        if self.handle is not None:
            self.handle.cancel()
        self._poke()

    def divergence(
        self,
        kind: str,
        seq: int | None,
        step: str | None,
        rec_input: RecEvent | None,
        expected: str,
        got: str,
        *,
        consequence: bool = False,
    ) -> Divergence:
        return Divergence(
            run_id=self.trail.run_id,
            seq=seq,
            kind=kind,
            step=step,
            event_id=None if rec_input is None else rec_input.event_id,
            event_type=None if rec_input is None else rec_input.event_type,
            event_payload=None if rec_input is None else rec_input.payload,
            expected=expected,
            got=got,
            consequence=consequence,
        )

    # -- the hooks -----------------------------------------------------------------------------

    def run_started(self, record: RunStarted) -> None:
        if self.run_id is None:
            self.run_id = record.run.run_id

    def event_emitted(self, record: EventEmitted) -> None:
        if not self._ours(record.run.run_id):
            return
        event = record.event
        event_type = type(event).__name__
        ev = _RepEvent(record.event_id, event_type, None, record.step, record.cause_id)
        self.events[record.event_id] = ev
        if record.step is None:
            if record.event_id == 1:
                ev.rec_id = 1 if 1 in self.trail.events else None
            else:
                if self.outside_seen < len(self._sent):
                    ev.rec_id = self._sent[self.outside_seen].event_id
                self.outside_seen += 1
            if ev.rec_id is not None:
                self.rec_to_rep[ev.rec_id] = record.event_id
            self._poke()
            return
        cause = record.cause_id
        attempt = self.attempts.get((record.step, cause), 1) if cause is not None else 1
        inv = self.invocation(record.step, cause, attempt) if cause is not None else None
        index = len(inv.emitted) if inv is not None else 0
        if inv is not None:
            inv.emitted.append(record.event_id)
        self.emitted[(record.step, event_type)] += 1
        ev.payload = normal(payload_of(event))
        self._pair(ev, attempt, index)
        self._poke()

    def _pair(self, ev: _RepEvent, attempt: int, index: int) -> None:
        trail = self.trail
        rec_cause = self.rec_of(ev.cause_id)
        candidate = None
        if rec_cause is not None and ev.step is not None:
            found = trail.by_key.get((rec_cause.event_id, ev.step, attempt, index))
            if found is not None and found not in self.rec_to_rep:
                candidate = trail.events[found]
        if candidate is not None and same(candidate, ev.event_type, ev.payload):
            self._link(ev, candidate)
            return
        # Another invocation of the same step emitted it in the trail: concurrent inputs that
        # reached the step in another order (a collect_events set completed by another one).
        for rec_id in self._fallback.get((ev.step, ev.event_type), ()):
            if rec_id in self.rec_to_rep or rec_id == 1:
                continue
            other = trail.events[rec_id]
            if other.outside is None and same(other, ev.event_type, ev.payload):
                self._link(ev, other)
                self.reordered += 1
                return
        if candidate is not None:
            self._link(ev, candidate)
            ev.mismatch = True

    def _link(self, ev: _RepEvent, rec: RecEvent) -> None:
        ev.rec_id = rec.event_id
        self.rec_to_rep[rec.event_id] = ev.event_id

    def step_started(self, record: StepStarted) -> None:
        if not self._ours(record.run.run_id):
            return
        self.attempts[(record.step, record.event_id)] = record.attempt
        self.invocation(record.step, record.event_id, record.attempt)
        self.started[record.step] += 1
        self._poke()

    def _ended(self, record: StepFinished | StepFailed | StepCancelled, outcome: str) -> None:
        if not self._ours(record.run.run_id):
            return
        inv = self.invocation(record.step, record.event_id, record.attempt)
        inv.outcome = outcome
        if isinstance(record, StepFailed):
            inv.error_type = _type_name(type(record.error))
            inv.error = _message(record.error)
        self._poke()

    def step_finished(self, record: StepFinished) -> None:
        self._ended(record, "finished")

    def step_failed(self, record: StepFailed) -> None:
        self._ended(record, "failed")

    def step_cancelled(self, record: StepCancelled) -> None:
        self._ended(record, "cancelled")

    def event_taken(self, record: EventTaken) -> None:
        if not self._ours(record.run.run_id):
            return
        ev = self.events.get(record.event_id)
        if ev is not None:
            ev.taken = (record.step, record.by_event_id)
        self._poke()

    def llm_called(self, record: LLMCalled) -> None:
        if not self._ours(record.run.run_id) or record.step is None or record.cause_id is None:
            return
        self.calls[record.step] += 1
        attempt = self.attempts.get((record.step, record.cause_id), 1)
        inv = self.invocation(record.step, record.cause_id, attempt)
        inv.reported += 1
        if inv.reported > inv.answered:
            # A client that does not ask the answer seam: the call went to the model for real.
            self.live_calls += 1
            self._check_live(inv, record)
        self._poke()

    def _check_live(self, inv: _RepInvocation, record: LLMCalled) -> None:
        rec_inv = self.recorded_invocation(inv.step, inv.event_id, inv.attempt)
        index = inv.reported - 1
        digest = record.call.get("prompt_sha256")
        if rec_inv is None or index >= len(rec_inv.llm_calls):
            return  # the emitted events will tell
        call = rec_inv.llm_calls[index]
        inv.used.add(index)
        if digest != call.get("prompt_sha256"):
            self.findings.append(
                self._prompt_divergence(inv, rec_inv, call, index, str(record.call.get("prompt_preview", "")))
            )

    def run_ended(self, record: RunEnded) -> None:
        if not self._ours(record.run.run_id):
            return
        self.ended = record
        self._poke()

    # -- answering LLM calls -------------------------------------------------------------------

    def _prompt_divergence(
        self, inv: _RepInvocation, rec_inv: RecInvocation, call: Mapping[str, Any], index: int, preview: str
    ) -> Divergence:
        recorded = call.get("prompt_preview")
        hidden = "prompt_preview" in (call.get("redacted") or ())
        was = "(redacted in the trail)" if hidden else _quote(recorded)
        return self.divergence(
            "llm_prompt",
            call.get("seq"),
            inv.step,
            self.trail.events.get(rec_inv.event_id),
            f"LLM call {index + 1} with the prompt {was} (sha256 {str(call.get('prompt_sha256'))[:12]})",
            f"the prompt {_quote(self.hide.prompt(preview))}",
        )

    async def answer(self, question: Any) -> Any:
        """The answer seam (``actorflow.llm``): the trail's answer to a call made now."""
        from .._context import current_context

        ctx = current_context.get()
        found = None if ctx is None or ctx.run_id != self.run_id else ctx._observed_invocation()
        if ctx is None or found is None or found[4] is None:
            self.stop(
                self.divergence(
                    "llm_extra",
                    None,
                    None,
                    None,
                    "no LLM call outside the steps of this run",
                    f"an LLM call ({_quote(self.hide.prompt(question.prompt_preview))}) from outside them (another run?)",
                )
            )
            await trio.sleep_forever()
        assert ctx is not None and found is not None
        step, cause = found[2], found[4]
        assert cause is not None
        attempt = ctx.attempt
        inv = self.invocation(step, cause, attempt)
        index = inv.answered
        inv.answered += 1
        self.answered += 1
        rec_inv = self.recorded_invocation(step, cause, attempt)
        rec_input = self.rec_of(cause)
        if rec_inv is None:
            self.stop(
                self.divergence(
                    "llm_extra",
                    rec_input.seq if rec_input is not None else None,
                    step,
                    rec_input,
                    f"no invocation of {step!r} on this event" if rec_input else "no such event",
                    f"an invocation that makes an LLM call ({_quote(self.hide.prompt(question.prompt_preview))})",
                )
            )
            await trio.sleep_forever()
        assert rec_inv is not None
        calls = rec_inv.llm_calls
        chosen = index if index < len(calls) and index not in inv.used else None
        if chosen is None or calls[chosen].get("prompt_sha256") != question.prompt_sha256:
            # Calls made concurrently by one invocation may end in another order than they began.
            same_prompt = [
                i
                for i, c in enumerate(calls)
                if i not in inv.used and c.get("prompt_sha256") == question.prompt_sha256
            ]
            if same_prompt:
                chosen = same_prompt[0]
        if chosen is None:
            self.stop(
                self.divergence(
                    "llm_extra",
                    rec_inv.ended_seq,
                    step,
                    rec_input,
                    f"{len(calls)} LLM call{'' if len(calls) == 1 else 's'} in this invocation",
                    f"LLM call {index + 1} ({_quote(self.hide.prompt(question.prompt_preview))})",
                )
            )
            await trio.sleep_forever()
        assert chosen is not None
        inv.used.add(chosen)
        call = calls[chosen]
        if call.get("prompt_sha256") != question.prompt_sha256:
            self.findings.append(self._prompt_divergence(inv, rec_inv, call, chosen, question.prompt_preview))
        elif call.get("model") is not None and question.model != call.get("model"):
            self.findings.append(
                self.divergence(
                    "llm_model",
                    call.get("seq"),
                    step,
                    rec_input,
                    f"LLM call {chosen + 1} asks the model {call.get('model')!r}",
                    f"it asks {question.model!r}",
                )
            )
        problem = _unanswerable(call)
        if problem is not None:
            self.stop(
                Unanswerable(self.trail.run_id, int(call["seq"]), step, rec_inv.event_id, chosen + 1, problem)
            )
            await trio.sleep_forever()
        latency = call.get("latency_s")
        if isinstance(latency, int | float) and not isinstance(latency, bool) and latency > 0:
            await trio.sleep(float(latency))
        else:
            await trio.lowlevel.checkpoint()
        if str(call.get("error") or "").partition(":")[0] in ("Cancelled", "trio.Cancelled"):
            # Cancelled in the trail (the run ended, the step timed out): the replay's own
            # cancellation comes at the same moment, or the outcomes will differ.
            await trio.sleep_forever()
        return _answer_of(call)


def _unanswerable(call: Mapping[str, Any]) -> str | None:
    """Why the trail cannot answer ``call`` again, or None."""
    redacted = [str(r) for r in call.get("redacted") or () if isinstance(r, str)]
    answer = [r for r in redacted if r == "*" or r.partition(".")[0] in ("response", "tool_calls")]
    if answer:
        return f"its answer was redacted ({', '.join(answer)})"
    error = call.get("error")
    if error is not None:
        if "error" in redacted:
            return "it failed, and its error was redacted"
        if _error_of(str(error)) is None:
            return f"it failed with {str(error).partition(':')[0]!r}, which replay cannot raise"
        return None
    if "response" not in call:
        return "the trail holds no answer for it (recorded without LLM answers)"
    return None


def _answer_of(call: Mapping[str, Any]) -> Any:
    """The trail's answer: a ``CompletionResponse``, or the recorded error raised."""
    from ..llm import CompletionResponse

    error = call.get("error")
    if error is not None:
        _, exc = _error_of(str(error)) or ("", None)
        if exc is not None:
            raise exc
    text = call.get("response")
    model = call.get("model")
    fields: dict[str, Any] = {"text": "" if text is None else str(text), "model": model}
    fields["finish_reason"] = call.get("finish_reason")
    usage = call.get("usage")
    if isinstance(usage, dict):
        fields["usage"] = usage
    tool_calls = call.get("tool_calls")
    if tool_calls and "tool_calls" in CompletionResponse.model_fields:
        fields["tool_calls"] = tool_calls
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": fields["text"]},
        "finish_reason": fields["finish_reason"],
    }
    fields["raw"] = {"object": "chat.completion", "model": model, "choices": [choice], "replayed": True}
    return CompletionResponse.model_validate(fields)


_STATUS = re.compile(r"\bHTTP (\d{3})\b")


def _error_of(text: str) -> tuple[str, BaseException | None] | None:
    """The exception a recorded ``"Type: message"`` stands for, or None when replay cannot
    make one. A cancellation is ``("Cancelled", None)``: the replay's own cancellation ends it."""
    kind, _, message = text.partition(": ")
    kind = kind.strip()
    if kind in ("Cancelled", "trio.Cancelled", "GeneratorExit"):
        return kind, None
    if kind == "LLMStatusError":
        found = _STATUS.search(message)
        status = int(found[1]) if found else 500
        return kind, _exceptions.LLMStatusError(message, status_code=status)
    cls = getattr(_exceptions, kind, None) or getattr(builtins, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = _unique_exception(kind)
    if cls is None:
        return None
    try:
        return kind, cls(message)
    except Exception:
        return None


def _unique_exception(name: str) -> type[Exception] | None:
    found: list[type[Exception]] = []
    pending: list[type[Exception]] = [Exception]
    seen: set[type[Exception]] = set()
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                pending.append(sub)
                if sub.__name__ == name or f"{sub.__module__}.{sub.__qualname__}" == name:
                    found.append(sub)
    return found[0] if len(found) == 1 else None


# -- the driver --------------------------------------------------------------------------------


async def _drive(rep: _Replayer, handle: RunHandle, workflow: Workflow) -> None:
    """Send in what came from outside, each when the run has got as far as the trail says it
    had; stop the run when it can go no further."""
    clock = rep.clock
    actions = list(rep.trail.outside)
    next_action = 0
    while rep.ended is None:
        clock.hold = True
        try:
            await trio.testing.wait_all_tasks_blocked()
        finally:
            clock.hold = False
        if rep.ended is not None:
            return
        if rep.stopped is None and next_action < len(actions):
            action = actions[next_action]
            if _due(rep, handle, action):
                next_action += 1
                await _perform(rep, handle, workflow, action)
                continue
        stats = trio.lowlevel.current_statistics()
        if rep.stopped is None and math.isinf(stats.seconds_to_next_deadline) and not clock.busy_outside():
            # Nothing can happen any more by itself, and the trail's next outside event is
            # not due: the run will never get where the trail says it was when it came.
            if next_action < len(actions):
                rep.stop(_not_reached(rep, actions[next_action]))
            else:
                rep.stop(
                    rep.divergence(
                        "stalled",
                        rep.trail.closing["seq"] if rep.trail.closing else None,
                        None,
                        None,
                        f"the run {rep.trail.outcome}",
                        "it waits for something nothing will send (the trail has no more events from outside)",
                    )
                )
            continue
        rep.progress = trio.Event()
        with trio.move_on_after(_SLACK):
            await rep.progress.wait()


def _due(rep: _Replayer, handle: RunHandle, action: OutsideAction) -> bool:
    if any(rep.emitted[k] < n for k, n in action.emitted_before.items()):
        return False
    if any(rep.started[k] < n for k, n in action.started_before.items()):
        return False
    if any(rep.calls[k] < n for k, n in action.calls_before.items()):
        return False
    if action.waiter is not None:
        stats = handle.statistics().steps.get(action.waiter)
        if stats is not None and stats.waiting < 1:
            return False
    return True


def _not_reached(rep: _Replayer, action: OutsideAction) -> Divergence:
    lacking = [
        f"{n - rep.emitted[k]} {k[1]} from {k[0]!r}"
        for k, n in action.emitted_before.items()
        if rep.emitted[k] < n
    ]
    lacking += [
        f"{n - rep.started[k]} invocation(s) of {k!r}"
        for k, n in action.started_before.items()
        if rep.started[k] < n
    ]
    lacking += [
        f"{n - rep.calls[k]} LLM call(s) of {k!r}" for k, n in action.calls_before.items() if rep.calls[k] < n
    ]
    if not lacking and action.waiter is not None:
        lacking.append(f"step {action.waiter!r} waiting for it")
    what = (
        f"{action.event.event_type} #{action.event.event_id} came from outside"
        if action.event is not None
        else "the run was cancelled from outside"
    )
    return rep.divergence(
        "outside",
        action.seq,
        None,
        action.event,
        what,
        f"the run can go no further and never got that far (it lacks {', '.join(lacking) or 'nothing'})",
        consequence=bool(rep.findings),
    )


async def _perform(rep: _Replayer, handle: RunHandle, workflow: Workflow, action: OutsideAction) -> None:
    if action.kind == "cancel":
        handle.cancel()
        return
    rec = action.event
    assert rec is not None
    if rec.redacted:
        rep.notes.append(
            f"{rec.event_type} #{rec.event_id} came from outside with {', '.join(rec.redacted)} redacted in "
            "the trail: the replay sent it with the redaction marker in their place"
        )
    try:
        event = _rebuild(
            workflow, rec.event_type, rec.payload, rep.notes, f"{rec.event_type} #{rec.event_id}"
        )
    except ReplayError as exc:
        rep.stop(
            rep.divergence("outside", rec.seq, None, rec, f"{rec.event_type} #{rec.event_id} came", str(exc))
        )
        return
    try:
        await handle.send_event(event, rec.to_step)  # sent to one step: to that one again
    except WorkflowRuntimeError as exc:
        rep.stop(
            rep.divergence(
                "outside",
                rec.seq,
                None,
                rec,
                f"{rec.event_type} #{rec.event_id} came from outside"
                + (f" and step {action.waiter!r}, waiting for it, took it" if action.waiter else ""),
                f"nothing takes it ({exc})",
            )
        )


# -- events from the trail, rebuilt ----------------------------------------------------------------


def _event_classes(workflow: Workflow) -> Iterator[type[Event]]:
    from .._workflow import spec

    wf_spec = spec(type(workflow))
    yield wf_spec.start_type
    for s in wf_spec.steps:
        yield from s.accepts
        yield from s.emits
    yield from wf_spec.external


def _event_class(workflow: Workflow, name: str) -> type[Event]:
    """The event class called ``name`` that this workflow uses (or, failing that, the one
    Event subclass of that name)."""
    for cls in _event_classes(workflow):
        if cls.__name__ == name:
            return cls
    found: list[type[Event]] = []
    pending: list[type[Event]] = [Event]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if sub.__name__ == name and sub not in found:
                found.append(sub)
    home = [c for c in found if c.__module__ == type(workflow).__module__]
    if len(home) == 1 or len(found) == 1:
        return (home or found)[0]
    if not found:
        raise ReplayError(f"no event class is called {name!r} now")
    where = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in found)
    raise ReplayError(f"{len(found)} event classes are called {name!r} ({where}): cannot tell which")


def _rebuild(workflow: Workflow, name: str, payload: Any, notes: list[str], what: str) -> Event:
    """The event the trail recorded, made again from its payload."""
    cls = _event_class(workflow, name)
    if not isinstance(payload, dict):
        raise ReplayError(f"{what}: its payload was not recorded as fields ({_quote(payload)})")
    markers = [k for k, v in payload.items() if isinstance(v, dict) and "$repr" in v and "$type" in v]
    if markers:
        raise ReplayError(
            f"{what}: the trail holds field(s) {', '.join(markers)} only as a repr (the value was not JSON), "
            "so it cannot be made again"
        )
    data = dict(payload)
    result = data.pop("result", None) if issubclass(cls, StopEvent) else None
    try:
        event = cls.model_validate_json(json.dumps(data))
    except ValueError as exc:
        raise ReplayError(
            f"{what} cannot be made from the trail's payload with today's {name}: {_first_line(exc)}"
        ) from None
    if result is not None and isinstance(event, StopEvent):  # pragma: no cover - none comes from outside
        object.__setattr__(event, "_result", result)
    return event


def _start_event(workflow: Workflow, trail: Trail, notes: list[str]) -> StartEvent:
    from .._workflow import spec

    rec = trail.events.get(1)
    if rec is None:
        raise ReplayError(f"run {trail.run_id} has no StartEvent in the trail")
    start_type = spec(type(workflow)).start_type
    if rec.event_type != start_type.__name__:
        raise _StartDiverged(
            f"the StartEvent is a {rec.event_type}", f"the workflow starts with a {start_type.__name__}"
        )
    if rec.redacted:
        notes.append(
            f"the StartEvent's {', '.join(rec.redacted)} were redacted in the trail: the replay started with "
            "the redaction marker in their place, and events carrying them are compared without them"
        )
    try:
        event = _rebuild(workflow, rec.event_type, rec.payload, notes, "the StartEvent")
        assert isinstance(event, StartEvent)
        return event
    except ReplayError as exc:
        if "cannot be made from the trail's payload" in str(exc):
            raise _StartDiverged(f"the StartEvent {_quote(rec.payload)}", str(exc)) from None
        raise


class _StartDiverged(Exception):
    def __init__(self, expected: str, got: str) -> None:
        super().__init__(expected, got)
        self.expected = expected
        self.got = got


# -- comparing -----------------------------------------------------------------------------------


def _compare(rep: _Replayer) -> list[Divergence]:
    """Every difference between the trail and the replay, by causal identity."""
    trail = rep.trail
    out = list(rep.findings)
    ended = rep.ended
    replay_outcome = None if ended is None else ended.outcome
    early = rep.stopped is not None or replay_outcome != trail.outcome

    for rec in trail.events.values():
        rep_id = rep.rec_to_rep.get(rec.event_id)
        if rep_id is None:
            out += _missing_event(rep, rec, early)
            continue
        ev = rep.events[rep_id]
        if ev.mismatch:
            out.append(
                rep.divergence(
                    "event",
                    rec.seq,
                    rec.step,
                    trail.events.get(rec.cause_id) if rec.cause_id is not None else None,
                    f"it emitted {rec.event_type} #{rec.event_id} {_quote(rec.payload)}",
                    f"{ev.event_type} {_quote(rep.hide.payload(ev.event_type, ev.payload))}",
                )
            )
        out += _compare_handlers(rep, rec, rep_id, early)
        if rec.taken is not None and (ev.taken is None or ev.taken[0] != rec.taken[0]):
            out.append(
                rep.divergence(
                    "taken",
                    rec.taken[2],
                    rec.taken[0],
                    trail.events.get(rec.taken[1]) if rec.taken[1] is not None else None,
                    f"step {rec.taken[0]!r}, waiting, took {rec.event_type} #{rec.event_id}",
                    "it was routed to steps instead" if ev.taken is None else f"step {ev.taken[0]!r} took it",
                    consequence=early and ev.taken is None,
                )
            )
    for ev in rep.events.values():
        if ev.rec_id is None and ev.step is not None:
            out += _extra_event(rep, ev)
    out += _compare_run(rep)
    unique: dict[tuple[Any, ...], Divergence] = {}
    for d in out:
        unique.setdefault((d.kind, d.seq, d.step, d.event_id, d.expected, d.got), d)
    return sorted(unique.values(), key=lambda d: (d.consequence, math.inf if d.seq is None else d.seq))


def _missing_event(rep: _Replayer, rec: RecEvent, early: bool) -> list[Divergence]:
    trail = rep.trail
    if rec.step is None:
        if rec.event_id == 1:
            return []
        return []  # the driver reports an event it could not send
    cause = trail.events.get(rec.cause_id) if rec.cause_id is not None else None
    key = rec.key
    rec_inv = (
        trail.invocations.get((key[0], key[1], key[2])) if key is not None and key[0] is not None else None
    )
    if rec_inv is not None and rec_inv.outcome == "cancelled":
        return []  # cut short by the run's end in the trail: how far it got is timing
    rep_cause = rep.rec_to_rep.get(rec.cause_id) if rec.cause_id is not None else None
    rep_inv = (
        rep.invocations.get((rep_cause, rec.step, key[2]))
        if rep_cause is not None and key is not None
        else None
    )
    if rep_inv is None:
        return []  # its emitter did not run: reported as routing (or upstream)
    emitted = [rep.events[i] for i in rep_inv.emitted]
    got = (
        ", ".join(f"{e.event_type} {_quote(rep.hide.payload(e.event_type, e.payload), 60)}" for e in emitted)
        or "nothing"
    )
    index = key[3] if key is not None else 0
    return [
        rep.divergence(
            "missing_event",
            rec.seq,
            rec.step,
            cause,
            f"it emitted {rec.event_type} #{rec.event_id} {_quote(rec.payload)} (its event {index + 1})",
            f"it emitted {got}" + ("" if rep_inv.ended else f" before it was {rep_inv.outcome}"),
            consequence=not rep_inv.ended,
        )
    ]


def _extra_event(rep: _Replayer, ev: _RepEvent) -> list[Divergence]:
    assert ev.step is not None
    rec_cause = rep.rec_of(ev.cause_id)
    attempt = rep.attempts.get((ev.step, ev.cause_id), 1) if ev.cause_id is not None else 1
    rec_inv = rep.recorded_invocation(ev.step, ev.cause_id, attempt) if ev.cause_id is not None else None
    if rec_inv is None:
        return []  # the invocation itself is extra: reported as routing
    shown = ", ".join(f"{rep.trail.events[i].event_type} #{i}" for i in rec_inv.emitted) or "nothing"
    return [
        rep.divergence(
            "extra_event",
            rec_inv.ended_seq if rec_inv.ended_seq is not None else rec_inv.started_seq,
            ev.step,
            rec_cause,
            f"it emitted {shown}" + ("" if rec_inv.ended else f" before it was {rec_inv.outcome}"),
            f"it also emitted {ev.event_type} {_quote(rep.hide.payload(ev.event_type, ev.payload))}",
            consequence=rec_inv.outcome == "cancelled",
        )
    ]


def _compare_handlers(rep: _Replayer, rec: RecEvent, rep_id: int, early: bool) -> list[Divergence]:
    out = []
    rep_handlers = rep.handled.get(rep_id, {})
    trail_keys = set(rec.handlers)
    for key in sorted(trail_keys | set(rep_handlers), key=lambda k: (k[1], k[0])):
        rec_inv = rec.handlers.get(key)
        rep_inv = rep_handlers.get(key)
        step, attempt = key
        if rec_inv is not None and rep_inv is None:
            if rec_inv.outcome == "cancelled":
                continue
            prior = rep_handlers.get((step, attempt - 1))
            out.append(
                rep.divergence(
                    "routing",
                    rec_inv.started_seq or rec.seq,
                    step,
                    rec,
                    f"step {step!r} ran on it" + (f" (attempt {attempt})" if attempt > 1 else ""),
                    "it did not run on it"
                    + (
                        f" (attempt {attempt - 1} {prior.outcome})"
                        if prior is not None and attempt > 1
                        else ""
                    ),
                    consequence=early or attempt > 1,
                )
            )
        elif rec_inv is None and rep_inv is not None:
            prior_rec = rec.handlers.get((step, attempt - 1))
            # Where the trail says who ran on the event (or that the retried attempt was the last).
            starts = [i.started_seq for i in rec.handlers.values() if i.started_seq is not None]
            seq = prior_rec.ended_seq if prior_rec is not None else min(starts, default=None)
            out.append(
                rep.divergence(
                    "routing",
                    seq or rec.seq,
                    step,
                    rec,
                    f"step {step!r} did not run on it"
                    + (f" again (attempt {attempt})" if attempt > 1 else ""),
                    f"it ran on it{' again' if attempt > 1 else ''} and {rep_inv.outcome}",
                    consequence=attempt > 1,
                )
            )
        elif rec_inv is not None and rep_inv is not None:
            out += _compare_invocation(rep, rec, rec_inv, rep_inv, early)
    return out


def _compare_invocation(
    rep: _Replayer, rec: RecEvent, rec_inv: RecInvocation, rep_inv: _RepInvocation, early: bool
) -> list[Divergence]:
    if not rec_inv.ended or not rep_inv.ended:
        if rec_inv.ended and rep_inv.outcome in ("cancelled", "running"):
            return [
                rep.divergence(
                    "outcome",
                    rec_inv.ended_seq,
                    rec_inv.step,
                    rec,
                    f"it {_ending(rec_inv.outcome, rec_inv.error_type, rec_inv.error)}",
                    f"it was {rep_inv.outcome} (the replay had ended)"
                    if rep_inv.outcome == "cancelled"
                    else "it never ended",
                    consequence=True,
                )
            ]
        return []  # cancelled in the trail: how far it got is timing
    out = []
    if rec_inv.outcome != rep_inv.outcome or (
        rec_inv.outcome == "failed" and rec_inv.error_type != rep_inv.error_type
    ):
        out.append(
            rep.divergence(
                "outcome",
                rec_inv.ended_seq,
                rec_inv.step,
                rec,
                f"it {_ending(rec_inv.outcome, rec_inv.error_type, rec_inv.error)}",
                f"it {_ending(rep_inv.outcome, rep_inv.error_type, rep.hide.error(rep_inv.error))}",
            )
        )
    unused = [i for i in range(len(rec_inv.llm_calls)) if i not in rep_inv.used]
    if unused and rep_inv.outcome == rec_inv.outcome:
        call = rec_inv.llm_calls[unused[0]]
        out.append(
            rep.divergence(
                "llm_missing",
                call.get("seq"),
                rec_inv.step,
                rec,
                f"{len(rec_inv.llm_calls)} LLM call(s), call {unused[0] + 1} with the prompt "
                f"{_quote(call.get('prompt_preview'))}",
                f"{max(rep_inv.reported, rep_inv.answered)} LLM call(s)",
            )
        )
    return out


def _compare_run(rep: _Replayer) -> list[Divergence]:
    trail = rep.trail
    ended = rep.ended
    closing = trail.closing
    if ended is None or closing is None or rep.stopped is not None:
        return []
    seq = closing.get("seq")
    expected = _run_ending(
        trail.outcome, closing.get("error_type"), closing.get("error"), closing.get("step")
    )
    if ended.outcome != trail.outcome:
        error = ended.error
        return [
            rep.divergence(
                "run_outcome",
                seq,
                None,
                None,
                f"the run {expected}",
                f"it {_run_ending(ended.outcome, _type_name(type(error)) if error else None, rep.hide.error(_message(error)) if error else None, None)}",
            )
        ]
    if (
        ended.outcome == "failed"
        and ended.error is not None
        and _type_name(type(ended.error)) != closing.get("error_type")
    ):
        return [
            rep.divergence(
                "run_outcome",
                seq,
                None,
                None,
                f"the run {expected}",
                f"it failed with {_type_name(type(ended.error))}",
            )
        ]
    if ended.outcome == "finished":
        redacted = [str(r) for r in closing.get("redacted") or () if isinstance(r, str)]
        result_field = closing.get("result_field")
        got = (
            value_of(ended.result) if closing.get("result_type") == "StopEvent" else payload_of(ended.result)
        )
        got = normal(got)
        want_text = comparable(normal(closing.get("result")), _result_paths(redacted, result_field))
        if comparable(got, _result_paths(redacted, result_field)) != want_text:
            return [
                rep.divergence(
                    "run_outcome",
                    seq,
                    None,
                    None,
                    f"the run returned {_quote(closing.get('result'))}",
                    f"it returned {_quote(_shown_result(rep, closing, got))}",
                )
            ]
    return []


def _shown_result(rep: _Replayer, closing: Mapping[str, Any], got: Any) -> Any:
    """The run's result now, as the report may show it (read as the trail reads its own)."""
    result_type = str(closing.get("result_type"))
    field = closing.get("result_field")
    if isinstance(field, str):
        shown = rep.hide.payload(result_type, {field: got})
        return shown.get(field) if isinstance(shown, dict) else shown
    return rep.hide.payload(result_type, got)


def _result_paths(redacted: Sequence[str], field: Any) -> list[str]:
    # A plain StopEvent's result is its ``result`` field: the Redactor names paths from there.
    if field == "result":
        paths = []
        for p in redacted:
            if p == "result" or p == "*":
                paths.append("*")
            elif p.startswith("result."):
                paths.append(p[len("result.") :])
        return paths
    return list(redacted)


def _ending(outcome: str, error_type: str | None, error: str | None) -> str:
    if outcome == "failed":
        return f"raised {error_type}" + (f": {_quote(error, 100)}" if error else "")
    return outcome


def _run_ending(outcome: str | None, error_type: str | None, error: str | None, step: str | None) -> str:
    if outcome == "failed":
        return (
            f"failed with {error_type}"
            + (f" in step {step!r}" if step else "")
            + (f": {_quote(error, 100)}" if error else "")
        )
    return str(outcome).replace("_", " ")


# -- what a report may quote of the code's own values ------------------------------------------------


class _Hider:
    """The values the code made now, as a report may quote them: with every field the trail
    redacted in a record of the same type (an event type, the run's result, the LLM calls,
    the error messages) and every field ``replay(redact=...)`` names replaced by the marker,
    so a divergence never shows what the trail kept out of the file."""

    def __init__(self, records: Sequence[Mapping[str, Any]], redact: Redactor | None) -> None:
        fields: dict[str, set[str]] = {}
        whole: set[str] = set()
        self.errors = False
        for r in records:
            names = [n for n in r.get("redacted") or () if isinstance(n, str)]
            if not names:
                continue
            name = r.get("event")
            if name in _ERROR_RECORDS and "error" in names:
                self.errors = True
                if name != LLM_CALL:
                    continue
            if name == "event.emitted":
                kind = str(r.get("event_type"))
            elif name == "run.finished":
                kind = str(r.get("result_type"))
            elif name == LLM_CALL:
                kind = LLM_CALL
            else:
                continue
            if "*" in names:
                whole.add(kind)
            fields.setdefault(kind, set()).update(n for n in names if n != "*")
        self._trail = Redactor({k: sorted(v) for k, v in fields.items() if v})
        self._whole = whole
        self._given = redact

    def payload(self, event_type: str, payload: Any) -> Any:
        """``payload`` of an event (or result) of type ``event_type``, as it may be shown."""
        if event_type in self._whole:
            return REDACTED
        out, _ = self._trail._redact(event_type, payload)
        if self._given is not None:
            out, _ = self._given._redact(event_type, out)
        return out

    def prompt(self, preview: Any) -> Any:
        """The start of a prompt made now, as it may be shown."""
        shown = self.payload(LLM_CALL, {"prompt_preview": preview})
        return shown.get("prompt_preview") if isinstance(shown, dict) else REDACTED

    def error(self, message: str | None) -> str | None:
        """An error message of the code's, as it may be shown (hidden if the trail hid them)."""
        if message is None:
            return None
        if self.errors or (self._given is not None and self._given._errors):
            return REDACTED
        return message


# -- the entry point -------------------------------------------------------------------------------


def replay(
    path: str | os.PathLike[str],
    workflow: Workflow | type[Workflow],
    *,
    run_id: str | None = None,
    key: bytes | None = None,
    redact: Redactor | None = None,
) -> ReplayReport:
    """Re-run the runs recorded in the audit file ``path`` with ``workflow`` (an instance, or a
    class made with no arguments) and compare what it does with what the trail says.

    ``run_id`` picks one run (a unique prefix will do); without it every run of this
    workflow in the file is replayed. ``key`` is the trail's HMAC key. The file must pass
    :func:`verify` first. Every LLM call is answered from the trail (no network). What the
    report quotes of the code's own values goes through the trail's redaction (each field the
    trail redacted in a record of that type) and ``redact``, the Redactor the trail was
    written with (for types and rules the trail never had to use). Returns a
    :class:`ReplayReport`; raises :class:`~actorflow.ReplayError` for a trail or workflow
    that cannot be replayed (it fails ``verify``, has no such run, is another workflow's).
    Runs its own trio loop: from async code, call it in a thread
    (``await trio.to_thread.run_sync(replay, path, wf)``).
    """
    from .._workflow import Workflow, spec

    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        pass
    else:
        raise ReplayError(
            "replay() runs its own trio loop and cannot be called from inside trio; use "
            "'await trio.to_thread.run_sync(replay, path, workflow)' there"
        )
    name = os.fspath(path)
    if isinstance(workflow, type):
        cls = workflow
        if not issubclass(cls, Workflow) or cls is Workflow:
            raise ReplayError(
                f"replay() needs a Workflow subclass or instance, got the class {cls.__qualname__}"
            )
        try:
            workflow = cls()
        except TypeError as exc:
            raise ReplayError(
                f"{cls.__qualname__}() cannot be made without arguments ({exc}); pass an instance"
            ) from None
    elif not isinstance(workflow, Workflow):
        raise ReplayError(f"replay() needs a Workflow subclass or instance, got {type(workflow).__name__}")
    checked = verify(name, key=key)
    if not checked.ok:
        assert checked.problem is not None
        raise ReplayError(f"{name} fails verify, so it is not replayed: {checked.problem}")
    wf_name = spec(type(workflow)).name
    runs = load_runs(name)
    if run_id is not None:
        chosen = [r for r in runs if r.run_id == run_id] or [r for r in runs if r.run_id.startswith(run_id)]
        if not chosen:
            raise ReplayError(f"{name} has no run {run_id!r}")
        if len(chosen) > 1:
            raise ReplayError(f"{run_id!r} is the start of {len(chosen)} run ids in {name}")
        if chosen[0].workflow != wf_name:
            raise ReplayError(f"run {chosen[0].run_id} is a run of {chosen[0].workflow}, not of {wf_name}")
    else:
        chosen = [r for r in runs if r.workflow == wf_name]
        if not chosen:
            others = sorted({str(r.workflow) for r in runs})
            raise ReplayError(
                f"{name} has no run of {wf_name}"
                + (f" (it has runs of {', '.join(others)})" if others else " (it has no runs)")
            )
    hide = _Hider([r for run in runs for r in run.records], redact)
    results = []
    for trace in chosen:
        trail = Trail.from_records(trace.records)
        results.append(_replay_one(trail, workflow, hide))
    return ReplayReport(path=name, runs=tuple(results))


def _replay_one(trail: Trail, workflow: Workflow, hide: _Hider) -> RunReplay:
    clock = _ReplayClock()
    rep = _Replayer(trail, clock, hide)
    notes: list[str] = rep.notes
    unanswerable = tuple(
        Unanswerable(trail.run_id, int(call["seq"]), inv.step, inv.event_id, i + 1, problem)
        for inv, i, call in trail.calls()
        if (problem := _unanswerable(call)) is not None
    )
    from .._workflow import spec

    wf_name = spec(type(workflow)).name
    try:
        start = _start_event(workflow, trail, notes)
    except _StartDiverged as exc:
        first = trail.events.get(1)
        return RunReplay(
            run_id=trail.run_id,
            workflow=wf_name,
            outcome=None,
            divergences=(
                rep.divergence(
                    "start_event", first.seq if first else None, None, None, exc.expected, exc.got
                ),
            ),
            unanswerable=unanswerable,
            stopped_at=None,
            notes=tuple(notes),
            events=0,
            invocations=0,
            llm_calls=0,
        )
    if trail.timeout != workflow.timeout:
        notes.append(
            f"the trail's run had timeout={trail.timeout}, this workflow has timeout={workflow.timeout}"
        )
    if trail.resumed:
        notes.append(
            f"the run was resumed {len(trail.resumed)} time(s) after its process ended; it is replayed as one run"
        )
    bound = _SLACK + float((trail.closing or {}).get("duration_s") or 0.0)

    async def main() -> None:
        await clock.calibrate()
        copy_ = _replay_copy(workflow, rep)
        with trio.move_on_after(bound) as scope, _answering(rep):
            try:
                async with _open(copy_, start, trail.run_id) as handle:
                    rep.handle = handle
                    if rep.stopped is not None:
                        handle.cancel()
                    await _drive(rep, handle, copy_)
                    with contextlib.suppress(Exception):
                        await handle.result()
            except Exception as exc:
                if rep.ended is None or exc is not rep.ended.error:
                    raise
        if scope.cancelled_caught:
            notes.append(f"the replay was given up after {bound:g} virtual seconds")

    trio.run(main, clock=clock)
    if rep.reordered:
        notes.append(
            f"{rep.reordered} event(s) came from another input of the same step than in the trail "
            "(its concurrent inputs arrived in another order): not a divergence"
        )
    if rep.live_calls:
        notes.append(
            f"{rep.live_calls} LLM call(s) went to the model for real: their client does not answer "
            "from the trail (see docs/audit.md, Replay)"
        )
    divergences = _compare(rep)
    stopped = rep.stopped if isinstance(rep.stopped, Unanswerable) else None
    return RunReplay(
        run_id=trail.run_id,
        workflow=wf_name,
        outcome=None if rep.ended is None else rep.ended.outcome,
        divergences=tuple(divergences),
        unanswerable=unanswerable,
        stopped_at=stopped,
        notes=tuple(notes),
        events=len(rep.rec_to_rep),
        invocations=sum(1 for inv in rep.invocations.values() if inv.outcome != "running"),
        llm_calls=rep.answered,
    )


def _replay_copy(workflow: Workflow, rep: _Replayer) -> Workflow:
    """The workflow object the replay runs: a shallow copy that traces nothing, is watched by
    the replayer alone, stores nothing (a durable workflow's store is left alone) and runs
    every step in the run's loop (an executor's steps too: their LLM calls are answered
    there, and no worker process is started)."""
    from .._invoke import executor_for
    from .._workflow import spec

    made = copy.copy(workflow)
    required = ("_actorflow_trace", "_actorflow_observers", "_actorflow_verbose", "_actorflow_limiter")
    missing = [name for name in required if name not in vars(made)]
    if missing:
        raise ReplayError(
            f"{type(workflow).__name__} has no {missing[0]}: did its __init__ call super().__init__()?"
        )
    made._actorflow_trace = False
    made._actorflow_observers = (rep,)
    made._actorflow_verbose = False
    made._actorflow_limiter = None
    vars(made)["_actorflow_durable"] = None
    in_loop = {s.name: None for s in spec(type(workflow)).steps if executor_for(workflow, s) is not None}
    if in_loop:
        vars(made)["_actorflow_executors"] = {**(vars(workflow).get("_actorflow_executors") or {}), **in_loop}
    return made


def _open(workflow: Workflow, start: StartEvent, run_id: str) -> Any:
    """``open_run``, with the recorded run id where the workflow takes one (``ctx.run_id``
    then reads as it did)."""
    params = inspect.signature(workflow.open_run).parameters
    if "run_id" in params:
        return workflow.open_run(start_event=start, run_id=run_id)
    return workflow.open_run(start_event=start)


@contextlib.contextmanager
def _answering(rep: _Replayer) -> Iterator[None]:
    try:
        from ..llm._answers import answers_from
    except ImportError:  # pragma: no cover - the LLM package is always there
        yield
        return
    with answers_from(rep):
        yield


# -- text ----------------------------------------------------------------------------------------


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c not in (0x0A,)}


def _clean(text: str) -> str:
    return text.translate(_CONTROL)


def _quote(value: Any, limit: int = _QUOTE) -> str:
    try:
        text = value if isinstance(value, str) else canonical(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    text = json.dumps(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:299] + "…"


def _type_name(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception as exc:
        return f"<str() raised {type(exc).__name__}>"
