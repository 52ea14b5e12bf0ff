"""Replay: recorded runs re-run against the same code replay the same; changed code is named
where it departs from the trail (seq, step, input, expected, got); bad trails are refused."""

from __future__ import annotations

import pathlib
from typing import Any

import attrs
import pytest
import structlog
import trio
from replay_flows import (
    Loan,
    LoanEqualTimes,
    LoanFraudSaysNo,
    LoanOneCheck,
    LoanRerouted,
    LoanThreeChecks,
    Review,
    ReviewAsksTwice,
    ReviewNoRetry,
    ReviewWritesAbout,
    answering,
    record,
)
from structlog.testing import capture_logs

from actorflow import (
    Context,
    Event,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowTimeoutError,
    audit,
    step,
)
from actorflow.audit import ReplayError, replay

pytestmark = pytest.mark.usefixtures("clean_structlog")


def records_of(path: pathlib.Path) -> list[dict[str, Any]]:
    """The trail's records as its readers see them (folded ones unfolded), run by run."""
    return [dict(r) for run in audit.load_runs(path) for r in run.records]


def explain(report: audit.ReplayReport) -> str:
    """The report, every divergence and the trail's records, for an assertion's message."""
    lines = [str(report)]
    for run in report.runs:
        lines += [f"  {d.kind} consequence={d.consequence} {d}" for d in run.divergences]
    for r in records_of(pathlib.Path(report.path)):
        fields = ("step", "event_id", "cause_id", "attempt", "worker", "payload", "retrying", "error_type")
        lines.append(f"{r['seq']} {r['event']} " + " ".join(f"{k}={r[k]}" for k in fields if k in r))
    return "\n".join(lines)


def seq_of(path: pathlib.Path, **fields: Any) -> int:
    """The seq of the one record of ``path`` with these fields."""
    found = [r["seq"] for r in records_of(path) if all(r.get(k) == v for k, v in fields.items())]
    assert len(found) == 1, found
    return int(found[0])


@pytest.fixture
def loan_trail(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "loan.jsonl"
    assert record(path, lambda: Loan(trace=True).run(applicant="Ada")) == "approved"
    return path


@pytest.fixture
def review_trail(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "review.jsonl"
    result = record(path, lambda: answering(Review(trace=True), ["yes"], topic="owls", parts=3))
    assert result == {"text": "part 0 on owls / part 1 on owls / part 2 on owls", "approved": True}
    return path


class Named(StartEvent):
    name: str


class Greets(Workflow):
    @step
    async def greet(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="hi")


def _greets_named() -> type[Workflow]:
    class Greets(Workflow):
        @step
        async def greet(self, ev: Named) -> StopEvent:
            return StopEvent(result=f"hi {ev.name}")

    return Greets


GreetsNamed = _greets_named()


# -- the same code replays the same ------------------------------------------------------------


def test_fan_out_and_collect_replay_the_same(loan_trail: pathlib.Path) -> None:
    """A run with a fan-out to two workers and a collect replays the same against its code."""
    report = replay(loan_trail, Loan)
    assert report.ok and report.status == "same" and report.exit_status == 0
    [run] = report.runs
    assert run.divergence is None and run.divergences == ()
    assert run.outcome == "finished"
    assert run.events == 6  # StartEvent, two Checks, two Verdicts, the StopEvent
    assert run.invocations == 5
    assert str(report).startswith(f"SAME run {run.run_id} (Loan): 6 events, 5 step invocations")


def test_retries_and_human_input_replay_the_same(review_trail: pathlib.Path) -> None:
    """Fan-out, a retried step, a collect and a human's answer replay the same: the answer is
    sent when the trail says it came, and the waiting step takes it."""
    records = records_of(review_trail)
    assert any(r["event"] == "step.failed" and r["retrying"] for r in records)
    assert any(r["event"] == "event.taken" for r in records)
    report = replay(review_trail, Review)
    assert report.ok, explain(report)
    [run] = report.runs
    # StartEvent, 3 Drafts, 3 Written, the HumanResponseEvent, the StopEvent
    assert run.events == 9
    assert run.invocations == 8  # plan, write x3 (and a retry), assemble x3


def test_an_instance_replays_and_keeps_its_own_settings(loan_trail: pathlib.Path) -> None:
    """A workflow instance may be given; it is not traced, observed or changed by the replay."""
    wf = Loan(trace=True, timeout=60)
    with capture_logs() as logs:
        assert replay(loan_trail, wf).ok
    assert logs == []  # the replay wrote no audit records
    assert wf._actorflow_trace is True and wf._actorflow_observers == ()


def test_concurrent_order_is_no_divergence(tmp_path: pathlib.Path) -> None:
    """Checks that take as long finish in the scheduler's order; whichever verdict completed
    the collection in the trail, the replay is the same."""
    path = tmp_path / "equal.jsonl"

    async def runs() -> None:
        for _ in range(8):
            await LoanEqualTimes(trace=True).run(applicant="Ada")

    record(path, runs)
    report = replay(path, LoanEqualTimes)
    assert len(report.runs) == 8
    assert report.ok, explain(report)


def test_a_failed_run_replays_the_same(tmp_path: pathlib.Path) -> None:
    """A run that failed in a step replays the same when the step still fails the same way."""

    class Boom(Workflow):
        @step
        async def explode(self, ev: StartEvent) -> StopEvent:
            raise ValueError(f"no {ev.what}")

    path = tmp_path / "boom.jsonl"
    with pytest.raises(ValueError, match="no luck"):
        record(path, lambda: Boom(trace=True).run(what="luck"))
    report = replay(path, Boom)
    assert report.ok, explain(report)
    assert report.runs[0].outcome == "failed"


def test_a_timed_out_run_replays_the_same_in_virtual_time(tmp_path: pathlib.Path) -> None:
    """A run that timed out after 30 s times out again in the replay, at once."""

    class Slow(Workflow):
        @step
        async def wait(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(3600)
            return StopEvent(result="late")

    path = tmp_path / "slow.jsonl"
    with pytest.raises(WorkflowTimeoutError):
        record(path, lambda: Slow(trace=True, timeout=30).run())
    report = replay(path, Slow(timeout=30))
    assert report.ok, explain(report)
    assert report.runs[0].outcome == "timed_out"
    faster = replay(path, Slow(timeout=7200))
    assert faster.status == "diverged"
    assert faster.divergence is not None and faster.divergence.kind == "run_outcome"
    assert (faster.divergence.expected, faster.divergence.got) == ("the run timed out", "it finished")


def test_a_run_cancelled_from_outside_replays_the_same(tmp_path: pathlib.Path) -> None:
    """A run its caller cancelled is cancelled again when the trail says it was."""

    class Ticker(Workflow):
        @step
        async def tick(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(100)
            return StopEvent(result="done")

    async def cancel_it() -> None:
        async with Ticker(trace=True).open_run() as handle:
            await trio.sleep(1)
            handle.cancel()

    path = tmp_path / "cancelled.jsonl"
    record(path, cancel_it)
    report = replay(path, Ticker)
    assert report.ok, explain(report)
    assert report.runs[0].outcome == "cancelled"


# -- changed code is named where it departs ----------------------------------------------------------


def test_a_changed_step_output_is_named(loan_trail: pathlib.Path) -> None:
    """The fraud check now refuses: the divergence is its Verdict, with seq, step, input,
    what the trail says and what the code did."""
    report = replay(loan_trail, LoanFraudSaysNo)
    assert not report.ok and report.status == "diverged" and report.exit_status == 1
    d = report.divergence
    assert d is not None, explain(report)
    fraud = next(
        r
        for r in records_of(loan_trail)
        if r["event"] == "event.emitted"
        and r["payload"].get("kind") == "fraud"
        and r["event_type"] == "Check"
    )
    verdict = next(
        r
        for r in records_of(loan_trail)
        if r["event"] == "event.emitted" and r["event_type"] == "Verdict" and r["payload"]["kind"] == "fraud"
    )
    assert (d.kind, d.seq, d.step, d.event_id, d.event_type) == (
        "event",
        verdict["seq"],
        "check",
        fraud["event_id"],
        "Check",
    )
    assert d.event_payload == {"applicant": "Ada", "kind": "fraud"}
    assert '"ok":true' in d.expected and '"ok":false' in d.got
    assert not d.consequence
    assert f"seq {verdict['seq']}, step 'check' on Check #{fraud['event_id']}" in str(report)


def test_more_events_fanned_out_is_named(loan_trail: pathlib.Path) -> None:
    """Three checks instead of two: the third is an event the trail's fan_out never emitted."""
    d = replay(loan_trail, LoanThreeChecks).divergence
    assert d is not None
    assert (d.kind, d.step, d.event_id, d.event_type) == ("extra_event", "fan_out", 1, "StartEvent")
    assert d.seq == seq_of(loan_trail, event="step.finished", step="fan_out")
    assert "Check #2, Check #3" in d.expected
    assert '"kind":"income"' in d.got


def test_fewer_events_fanned_out_is_named(loan_trail: pathlib.Path) -> None:
    """One check instead of two: the trail's second Check is missing, at its own record."""
    d = replay(loan_trail, LoanOneCheck).divergence
    assert d is not None
    assert (d.kind, d.step, d.event_id) == ("missing_event", "fan_out", 1)
    assert d.seq == seq_of(loan_trail, event="event.emitted", event_id=3)
    assert '"kind":"fraud"' in d.expected and '"kind":"credit"' in d.got


def test_a_changed_routing_is_named(loan_trail: pathlib.Path) -> None:
    """Verdicts now go to a step called judge: the trail's decide did not run on the first one."""
    report = replay(loan_trail, LoanRerouted)
    d = report.divergence
    assert d is not None
    assert d.kind == "routing" and d.step in ("decide", "judge") and d.event_type == "Verdict"
    kinds = {(x.kind, x.step) for x in report.runs[0].divergences if not x.consequence}
    assert ("routing", "decide") in kinds and ("routing", "judge") in kinds
    first_verdict = min(
        r["seq"] for r in records_of(loan_trail) if r["event"] == "step.started" and r["step"] == "decide"
    )
    assert d.seq == first_verdict


def test_a_retry_that_no_longer_happens_is_named(review_trail: pathlib.Path) -> None:
    """Part 1 no longer fails: its first attempt finished, where the trail says it raised."""
    d = replay(review_trail, ReviewNoRetry).divergence
    assert d is not None
    assert (d.kind, d.step, d.event_type) == ("outcome", "write", "Draft")
    assert d.event_payload == {"index": 1, "topic": "owls"}
    assert "raised test_replay" not in d.expected and "Flaky" in d.expected
    assert d.got == "it finished"


def test_a_change_in_a_retried_step_is_named(review_trail: pathlib.Path) -> None:
    """The text a retried step writes changed: the first part written differently is named."""
    d = replay(review_trail, ReviewWritesAbout).divergence
    assert d is not None
    assert (d.kind, d.step, d.event_type) == ("event", "write", "Draft")
    assert "on owls" in d.expected and "about owls" in d.got


def test_a_replay_that_waits_for_what_the_trail_lacks_ends(review_trail: pathlib.Path) -> None:
    """The code now asks twice; the trail answered once: the replay stops instead of hanging."""
    report = replay(review_trail, ReviewAsksTwice)
    assert report.status == "diverged"
    kinds = [d.kind for d in report.runs[0].divergences]
    assert "stalled" in kinds or "run_outcome" in kinds, str(report)


def test_a_start_event_the_code_cannot_take_is_a_divergence(tmp_path: pathlib.Path) -> None:
    """The workflow now starts with another StartEvent type: a divergence at the StartEvent's
    record; a run of another workflow is refused."""
    path = tmp_path / "greets.jsonl"
    record(path, lambda: Greets(trace=True).run(title="Dr"))
    d = replay(path, GreetsNamed).divergence
    assert d is not None
    assert (d.kind, d.seq) == ("start_event", seq_of(path, event="event.emitted", event_id=1))
    assert (d.expected, d.got) == ("the StartEvent is a StartEvent", "the workflow starts with a Named")
    with pytest.raises(ReplayError, match="no run of Loan .it has runs of Greets"):
        replay(path, Loan)
    run_id = records_of(path)[0]["run_id"]
    with pytest.raises(ReplayError, match="is a run of Greets, not of Loan"):
        replay(path, Loan, run_id=run_id)


# -- trails that cannot be replayed ----------------------------------------------------------------


def test_a_tampered_trail_is_refused(loan_trail: pathlib.Path) -> None:
    """A trail that fails verify is not replayed: ReplayError names verify's problem."""
    text = loan_trail.read_text()
    loan_trail.write_text(text.replace('"ok":true', '"ok":false', 1))
    with pytest.raises(ReplayError, match=r"fails verify.*hash does not match"):
        replay(loan_trail, Loan)


def test_a_keyed_trail_needs_its_key(tmp_path: pathlib.Path) -> None:
    """A keyed trail replays with its key and is refused without it."""
    path = tmp_path / "keyed.jsonl"
    chain = audit.processors(path, key=b"k3y")
    structlog.configure(processors=chain)
    Loan(trace=True).run_sync(applicant="Ada")
    chain[-1].close()
    assert replay(path, Loan, key=b"k3y").ok
    with pytest.raises(ReplayError, match="fails verify"):
        replay(path, Loan)


def test_bad_arguments_are_refused(loan_trail: pathlib.Path) -> None:
    """Not a workflow, an unknown run, replay inside trio: each a ReplayError saying so."""
    with pytest.raises(ReplayError, match="needs a Workflow subclass or instance"):
        replay(loan_trail, object())  # type: ignore[arg-type]
    with pytest.raises(ReplayError, match="has no run 'nope'"):
        replay(loan_trail, Loan, run_id="nope")

    async def inside() -> None:
        replay(loan_trail, Loan)

    with pytest.raises(ReplayError, match="cannot be called from inside trio"):
        trio.run(inside)


def test_a_run_id_prefix_picks_one_run(tmp_path: pathlib.Path) -> None:
    """--run ID takes a unique prefix; without it every run of the workflow is replayed."""
    path = tmp_path / "two.jsonl"

    async def two() -> None:
        await Loan(trace=True).run(applicant="Ada")
        await Loan(trace=True).run(applicant="Bob")

    record(path, two)
    ids = list(dict.fromkeys(r["run_id"] for r in records_of(path)))
    assert [r.run_id for r in replay(path, Loan).runs] == ids
    [only] = replay(path, Loan, run_id=ids[1][:12]).runs
    assert only.run_id == ids[1]


def test_the_report_is_frozen(loan_trail: pathlib.Path) -> None:
    """The report and its parts are frozen attrs records."""
    report = replay(loan_trail, LoanFraudSaysNo)
    for obj in (report, report.runs[0], report.divergence):
        assert attrs.has(type(obj))
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            obj.ok = True  # type: ignore[misc, union-attr]


# -- events from outside -----------------------------------------------------------------------------


class Note(Event):
    text: str


class Notebook(Workflow):
    """Collects two notes sent in from outside (``handle.send_event``)."""

    external_events = (Note,)

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> None:
        await ctx.store.set("notes", [])
        return None

    @step
    async def take(self, ctx: Context, ev: Note) -> StopEvent | None:
        notes = [*await ctx.store.get("notes"), ev.text]
        await ctx.store.set("notes", notes)
        return StopEvent(result=notes) if len(notes) == 2 else None


def test_events_sent_from_outside_are_sent_again(tmp_path: pathlib.Path) -> None:
    """Events a caller sent with handle.send_event come again, in order, and the run ends the same."""

    async def send() -> Any:
        async with Notebook(trace=True).open_run() as handle:
            await trio.sleep(1)
            await handle.send_event(Note(text="one"))
            await trio.sleep(1)
            await handle.send_event(Note(text="two"))
            return await handle.result()

    path = tmp_path / "notes.jsonl"
    assert record(path, send) == ["one", "two"]
    report = replay(path, Notebook)
    assert report.ok, explain(report)
    assert report.runs[0].events == 4


def test_an_answer_nobody_takes_now_is_named(review_trail: pathlib.Path) -> None:
    """The human's answer, which a waiting step took in the trail, finds no step to take it."""

    class Review(Workflow):  # the same name; assemble no longer waits
        @step
        async def plan(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result="done")

    report = replay(review_trail, Review)
    assert report.status == "diverged"
    assert any(d.kind in ("outside", "event", "extra_event", "routing") for d in report.runs[0].divergences)


def test_a_redacted_human_answer_is_sent_with_the_marker(tmp_path: pathlib.Path) -> None:
    """A human answer whose field was redacted is sent with the marker; the report says so."""
    path = tmp_path / "redacted.jsonl"
    record(
        path,
        lambda: answering(Review(trace=True), ["yes"], topic="owls", parts=2),
        redact=audit.Redactor({"HumanResponseEvent": ["response"], "StopEvent": ["result"]}),
    )
    report = replay(path, Review)
    # The code reads the answer: with the marker it no longer approves, which the trail's
    # redacted result cannot contradict.
    assert report.ok, explain(report)
    assert any("HumanResponseEvent #" in n and "response redacted" in n for n in report.runs[0].notes), str(
        report
    )


# -- the resumed run of a durable workflow ------------------------------------------------------------


def test_a_resumed_run_replays_as_one_run(tmp_path: pathlib.Path) -> None:
    """A trail cut by a crash while part 1 was being written, resumed (run.resumed, the
    invocation run again with attempt 2, seq going on) replays as one uninterrupted run."""
    with capture_logs() as logs:
        trio.run(
            lambda: answering(Review(trace=True), ["yes"], topic="owls", parts=3),
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    crashed = _crash_and_resume(logs, step="write", index=2)
    path = tmp_path / "resumed.jsonl"
    chain = audit.processors(path)
    for rec in crashed:
        chain_record(chain, rec)
    chain[-1].close()
    assert audit.verify(path).ok, audit.verify(path).problem
    assert [r["event"] for r in records_of(path)].count("run.resumed") == 1
    report = replay(path, Review)
    assert report.ok, explain(report)
    assert any("resumed 1 time" in n for n in report.runs[0].notes)


def _crash_and_resume(logs: list[dict[str, Any]], *, step: str, index: int) -> list[dict[str, Any]]:
    """The records of a run whose process died just after ``step`` began on the Draft
    ``index``, resumed as docs/durable.md describes: a ``run.resumed`` record, every
    invocation then in flight started again (``ctx.attempt`` counting the cut attempt), the
    rest as it went, ``seq`` going on."""
    draft = next(
        r
        for r in logs
        if r["event"] == "event.emitted" and r["event_type"] == "Draft" and r["payload"]["index"] == index
    )
    crash = next(
        i
        for i, r in enumerate(logs)
        if r["event"] == "step.started" and r["step"] == step and r["event_id"] == draft["event_id"]
    )
    in_flight: dict[tuple[str, int], dict[str, Any]] = {}
    for r in logs[: crash + 1]:
        if r["event"] == "step.started":
            in_flight[(r["step"], r["event_id"])] = r
        elif r["event"] in ("step.finished", "step.failed", "step.cancelled"):
            in_flight.pop((r["step"], r["event_id"]), None)
    first = logs[0]
    out = [dict(r) for r in logs[: crash + 1]]
    out.append(
        {
            "event": "run.resumed",
            "run_id": first["run_id"],
            "workflow": first["workflow"],
            "audit_seq": crash + 1,
            "timestamp": first["timestamp"],
        }
    )
    out += [{**r, "attempt": r["attempt"] + 1} for r in in_flight.values()]
    for r in logs[crash + 1 :]:
        again = dict(r)
        if r["event"].startswith("step.") and (r["step"], r["event_id"]) in in_flight:
            again["attempt"] = r["attempt"] + 1
        out.append(again)
    for n, r in enumerate(out, 1):
        r["seq"] = n
    return out


def chain_record(chain: list[Any], record: dict[str, Any]) -> None:
    """Pass one captured record through a processor chain, as structlog would."""
    event: Any = dict(record)
    event.pop("log_level", None)
    with pytest.raises(structlog.DropEvent):  # the sink ends every audit record's way
        for processor in chain:
            event = processor(None, "info", event)
