"""Workflows that tests/test_replay*.py record and replay, and variants of them whose code
changed (each in one place), importable as ``replay_flows:Name`` by the CLI tests."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio
import trio.testing

from actorflow import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    audit,
    retry_if_exception_type,
    retry_policy,
    step,
    stop_after_attempt,
    wait_fixed,
)

# -- recording -------------------------------------------------------------------------------


def record(
    path: str | os.PathLike[str],
    main: Callable[[], Awaitable[Any]],
    *,
    redact: audit.Redactor | None = None,
    llm_answers: bool = True,
    virtual: bool = True,
) -> Any:
    """Run ``main`` under trio (on a virtual clock unless it talks to real sockets:
    ``virtual=False``) with its audit trail written to ``path``."""
    chain = audit.processors(path, redact=redact, llm_answers=llm_answers)
    structlog.configure(processors=chain)

    async def bounded() -> Any:
        with trio.fail_after(600 if virtual else 60):
            return await main()

    try:
        clock = trio.testing.MockClock(autojump_threshold=0) if virtual else None
        return trio.run(bounded, clock=clock)
    finally:
        chain[-1].close()
        structlog.reset_defaults()


async def answering(workflow: Workflow, answers: list[str], **start: Any) -> Any:
    """Run ``workflow`` with ``open_run``, answering each InputRequiredEvent with the next of
    ``answers``; return the result."""
    async with workflow.open_run(**start) as handle:
        async for ev in handle.stream_events():
            if isinstance(ev, InputRequiredEvent):
                await handle.send_event(HumanResponseEvent(response=answers.pop(0)))
        return await handle.result()


# -- fan-out and collect ------------------------------------------------------------------------


class Check(Event):
    kind: str
    applicant: str


class Verdict(Event):
    kind: str
    ok: bool


KINDS = ("credit", "fraud")


class Loan(Workflow):
    """The start event fans out to checks on two workers; a decision collects the verdicts."""

    kinds: tuple[str, ...] = KINDS
    credit_ok = True
    fraud_ok = True
    equal_times = False

    @step
    async def fan_out(self, ctx: Context, ev: StartEvent) -> Check | None:
        for kind in self.kinds:
            ctx.send_event(Check(kind=kind, applicant=ev.applicant))
        return None

    @step(num_workers=2)
    async def check(self, ev: Check) -> Verdict:
        await trio.sleep(0.01 if self.equal_times or ev.kind == "credit" else 0.02)
        return Verdict(kind=ev.kind, ok=self.credit_ok if ev.kind == "credit" else self.fraud_ok)

    @step
    async def decide(self, ctx: Context, ev: Verdict) -> StopEvent | None:
        verdicts = ctx.collect_events(ev, [Verdict] * len(KINDS))
        if verdicts is None:
            return None
        return StopEvent(result="approved" if all(v.ok for v in verdicts) else "declined")


def variant(base: type[Workflow], name: str | None = None, **changes: Any) -> type[Workflow]:
    """``base`` with some class attributes changed, under its name (the same workflow, as a
    later version of its code) or ``name``."""
    return type(name or base.__name__, (base,), changes)


#: A step's output changed: the fraud check now refuses.
LoanFraudSaysNo = variant(Loan, fraud_ok=False)
#: The number of events fanned out changed: three checks, or one, instead of two.
LoanThreeChecks = variant(Loan, kinds=(*KINDS, "income"))
LoanOneCheck = variant(Loan, kinds=("credit",))
#: Both checks take as long: which verdict completes the collection is the scheduler's pick.
LoanEqualTimes = variant(Loan, equal_times=True)


def _rerouted() -> type[Workflow]:
    class Loan(Workflow):
        """A routing changed: the checks' verdicts now go to a step called ``judge``."""

        @step
        async def fan_out(self, ctx: Context, ev: StartEvent) -> Check | None:
            for kind in KINDS:
                ctx.send_event(Check(kind=kind, applicant=ev.applicant))
            return None

        @step(num_workers=2)
        async def check(self, ev: Check) -> Verdict:
            await trio.sleep(0.01 if ev.kind == "credit" else 0.02)
            return Verdict(kind=ev.kind, ok=True)

        @step
        async def judge(self, ctx: Context, ev: Verdict) -> StopEvent | None:
            verdicts = ctx.collect_events(ev, [Verdict] * len(KINDS))
            if verdicts is None:
                return None
            return StopEvent(result="approved" if all(v.ok for v in verdicts) else "declined")

    return Loan


LoanRerouted = _rerouted()


# -- fan-out, retries, collect and human input ------------------------------------------------------


class Draft(Event):
    index: int
    topic: str


class Written(Event):
    index: int
    text: str


class Flaky(Exception):
    """A failure the retry policy retries."""


class Review(Workflow):
    """Plans parts, writes them on three workers (part 1 fails once and is retried), collects
    them, and asks a human to approve the whole."""

    parts_key = "parts"
    fail_once = 1

    @step
    async def plan(self, ctx: Context, ev: StartEvent) -> Draft | None:
        await ctx.store.set(self.parts_key, ev.parts)
        for i in range(ev.parts):
            ctx.send_event(Draft(index=i, topic=ev.topic))
        return None

    @step(
        num_workers=3,
        retry_policy=retry_policy(
            retry=retry_if_exception_type(Flaky), wait=wait_fixed(0.5), stop=stop_after_attempt(3)
        ),
    )
    async def write(self, ctx: Context, ev: Draft) -> Written:
        await trio.sleep(0.1 * (3 - ev.index % 3))
        if ev.index == self.fail_once and ctx.attempt == 1:
            raise Flaky(f"part {ev.index} failed")
        return Written(index=ev.index, text=self.text(ev))

    def text(self, ev: Draft) -> str:
        return f"part {ev.index} on {ev.topic}"

    @step
    async def assemble(self, ctx: Context, ev: Written) -> StopEvent | None:
        parts = ctx.collect_events(ev, [Written] * await ctx.store.get(self.parts_key))
        if parts is None:
            return None
        text = " / ".join(p.text for p in sorted(parts, key=lambda p: p.index))  # type: ignore[attr-defined]
        ctx.write_event_to_stream(InputRequiredEvent(prefix=f"Approve {text!r}?"))
        answer = await ctx.wait_for_event(HumanResponseEvent)
        return StopEvent(result={"text": text, "approved": answer.response == "yes"})


class _AsksTwice(Review):
    """It now asks the human a second time, which the trail has no answer for."""

    @step
    async def assemble(self, ctx: Context, ev: Written) -> StopEvent | None:
        parts = ctx.collect_events(ev, [Written] * await ctx.store.get(self.parts_key))
        if parts is None:
            return None
        first = await ctx.wait_for_event(HumanResponseEvent)
        second = await ctx.wait_for_event(HumanResponseEvent)
        return StopEvent(result={"approved": first.response == second.response == "yes"})


ReviewAsksTwice = variant(_AsksTwice, name="Review")


def _about(self: Review, ev: Draft) -> str:
    return f"part {ev.index} about {ev.topic}"


#: Part 1 no longer fails: no retry happens.
ReviewNoRetry = variant(Review, fail_once=-1)
#: The text a (retried) step writes changed.
ReviewWritesAbout = variant(Review, text=_about)
