"""Audit records as the tracer emits them (captured with structlog.testing.capture_logs)."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from typing import Any

import pytest
import trio
from audit_flows import Item, Squares
from structlog.testing import capture_logs

import actorflow
from actorflow import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowTimeoutError,
    audit,
    step,
)
from actorflow._tracing import CLOSING, FORMAT, Tracer


class Boom(Exception):
    pass


class Stuck(Workflow):
    """Fans out to three sleepers; the one for `fail_on` raises after a second."""

    def __init__(self, fail_on: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_on = fail_on

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Item | None:
        for n in range(3):
            ctx.send_event(Item(n=n))
        return None

    @step(num_workers=3)
    async def sleep(self, ev: Item) -> StopEvent:
        if ev.n == self.fail_on:
            await trio.sleep(1)
            raise Boom(f"item {ev.n} went wrong")
        await trio.sleep_forever()
        raise AssertionError("unreachable")


pytestmark = pytest.mark.usefixtures("clean_structlog")


def _check_envelope(records: list[dict[str, Any]], workflow: str) -> None:
    """Every record carries run_id, seq 1..n without gaps, the workflow and a timestamp."""
    assert records, "no records"
    run_ids = {r["run_id"] for r in records}
    assert len(run_ids) == 1
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    for r in records:
        assert r["workflow"] == workflow
        assert r["timestamp"].endswith("Z")
    assert records[0]["event"] == "run.started"
    assert records[-1]["event"] in CLOSING
    assert not any(r["event"] in CLOSING for r in records[:-1])


def _by(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in records if r["event"] == name]


async def test_fan_out_run_records_are_complete_and_ordered(autojump_clock: trio.abc.Clock) -> None:
    """A 3-step fan-out run records every event, every invocation and its end, in causal order."""
    with capture_logs() as logs:
        assert await Squares(trace=True).run(count=3) == 0 + 1 + 4
    _check_envelope(logs, "Squares")
    started = logs[0]
    assert started["format"] == FORMAT
    assert [s["name"] for s in started["steps"]] == ["split", "square", "total"]
    assert started["steps"][1] == {
        "name": "square",
        "accepts": ["Item"],
        "emits": ["Squared"],
        "num_workers": 3,
    }
    assert logs[1]["event"] == "event.emitted" and logs[1]["event_type"] == "StartEvent"
    assert logs[1]["cause_id"] is None and logs[1]["step"] is None
    assert logs[1]["payload"] == {"count": 3}

    emitted = {r["event_id"]: r for r in _by(logs, "event.emitted")}
    assert sorted(emitted) == list(range(1, 9))  # Start, 3 Items, 3 Squared, StopEvent
    seq_of_emit = {i: r["seq"] for i, r in emitted.items()}
    starts = _by(logs, "step.started")
    ends = _by(logs, "step.finished")
    assert len(starts) == len(ends) == 1 + 3 + 3
    for s in starts:
        assert set(s) >= {"step", "worker", "event_id", "attempt"} and s["attempt"] == 1
        assert seq_of_emit[s["event_id"]] < s["seq"]  # an event is emitted before it is handled
    for e in ends:
        (start,) = [s for s in starts if (s["step"], s["event_id"]) == (e["step"], e["event_id"])]
        assert start["seq"] < e["seq"] and start["worker"] == e["worker"]
        assert e["duration_s"] >= 0
    assert {s["worker"] for s in starts if s["step"] == "square"} == {0, 1, 2}
    assert sorted(e["duration_s"] for e in ends if e["step"] == "square") == [1.0, 2.0, 3.0]
    for i, r in emitted.items():
        if r["cause_id"] is not None:
            assert r["cause_id"] < i
            # emitted while its cause was being handled by the emitting step
            (start,) = [s for s in starts if (s["step"], s["event_id"]) == (r["step"], r["cause_id"])]
            assert start["seq"] < r["seq"]
    assert [emitted[i]["payload"] for i in (2, 3, 4)] == [{"n": 0}, {"n": 1}, {"n": 2}]

    closing = logs[-1]
    assert closing["event"] == "run.finished"
    assert closing["result"] == 5 and closing["result_type"] == "StopEvent"
    assert emitted[closing["stop_event_id"]]["event_type"] == "StopEvent"
    assert closing["duration_s"] == pytest.approx(3.0)


async def test_causal_tree_from_captured_records_matches_the_flow(autojump_clock: trio.abc.Clock) -> None:
    """RunTrace.from_records rebuilds who caused what: Items from the start, Squared from Items."""
    with capture_logs() as logs:
        await Squares(trace=True).run(count=3)
    trace = audit.RunTrace.from_records(logs)
    assert trace.outcome == "finished" and trace.workflow == "Squares"
    (root,) = trace.roots
    assert (root.event_id, root.event_type, root.step) == (1, "StartEvent", None)
    (split,) = root.handled_by
    assert split.step == "split" and split.outcome == "finished" and split.emitted == (2, 3, 4)
    items = root.children
    assert [(c.event_type, c.step, c.payload) for c in items] == [
        ("Item", "split", {"n": n}) for n in range(3)
    ]
    for item in items:
        (squared,) = item.children
        assert squared.event_type == "Squared" and squared.step == "square"
        assert squared.payload == {"n": item.payload["n"], "sq": item.payload["n"] ** 2}
        assert [inv.step for inv in squared.handled_by] == ["total"]
    # The StopEvent comes from handling the last Squared to arrive: the one for n == 0.
    stop = trace.events[trace.closing["stop_event_id"]]  # type: ignore[index]
    assert stop.event_type == "StopEvent" and stop.step == "total"
    assert trace.events[stop.cause_id].payload == {"n": 0, "sq": 0}  # type: ignore[index]
    assert trace.parents() == {1: None, 2: 1, 3: 1, 4: 1, 5: 4, 6: 3, 7: 2, 8: 7}


async def test_failed_run_ends_with_run_failed_after_the_cancelled_steps(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A step's error gives step.failed, step.cancelled for the others, then run.failed last."""
    with capture_logs() as logs, pytest.raises(Boom):
        await Stuck(fail_on=1, trace=True).run()
    _check_envelope(logs, "Stuck")
    (failed,) = _by(logs, "step.failed")
    assert failed["error_type"].endswith("test_audit_records.Boom")
    assert failed["error"] == "item 1 went wrong" and failed["retrying"] is False
    assert failed["duration_s"] == 1.0
    cancelled = _by(logs, "step.cancelled")
    assert sorted(c["event_id"] for c in cancelled) == [2, 4]
    assert all(c["duration_s"] == 1.0 for c in cancelled)
    closing = logs[-1]
    assert closing["event"] == "run.failed"
    assert closing["error_type"] == failed["error_type"] and closing["error"] == "item 1 went wrong"
    assert (closing["step"], closing["event_id"]) == ("sleep", failed["event_id"])


async def test_timed_out_run_ends_with_run_timed_out(autojump_clock: trio.abc.Clock) -> None:
    """A run past its timeout records its cut-short steps, then run.timed_out, then nothing."""
    with capture_logs() as logs, pytest.raises(WorkflowTimeoutError):
        await Stuck(timeout=5, trace=True).run()
    _check_envelope(logs, "Stuck")
    assert len(_by(logs, "step.cancelled")) == 3
    closing = logs[-1]
    assert closing["event"] == "run.timed_out"
    assert closing["timeout"] == 5 and closing["duration_s"] == 5.0
    assert closing["error_type"].endswith("WorkflowTimeoutError") and "timed out" in closing["error"]


async def test_cancelled_run_ends_with_run_cancelled(autojump_clock: trio.abc.Clock) -> None:
    """handle.cancel() ends the trail with run.cancelled; the steps it cut short come before."""
    with capture_logs() as logs:
        async with Stuck(trace=True).open_run() as handle:
            await trio.sleep(2)
            handle.cancel()
            with pytest.raises(WorkflowCancelledError):
                await handle.result()
    _check_envelope(logs, "Stuck")
    assert len(_by(logs, "step.cancelled")) == 3
    assert logs[-1]["event"] == "run.cancelled"
    assert logs[-1]["error_type"].endswith("WorkflowCancelledError")


async def test_run_cancelled_from_outside_ends_with_run_cancelled(autojump_clock: trio.abc.Clock) -> None:
    """A cancel scope around run() also leaves a closed trail: run.cancelled without an error."""
    with capture_logs() as logs:
        with trio.move_on_after(2):
            await Stuck(trace=True).run()
    _check_envelope(logs, "Stuck")
    assert logs[-1]["event"] == "run.cancelled"
    assert logs[-1]["error"] is None and logs[-1]["duration_s"] == 2.0


async def test_retried_step_records_each_attempt(autojump_clock: trio.abc.Clock) -> None:
    """A retried invocation leaves step.failed(retrying) then step.started with the next attempt."""

    class Flaky(Workflow):
        tries = 0

        @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=1))
        async def once(self, ev: StartEvent) -> StopEvent:
            Flaky.tries += 1
            if Flaky.tries < 3:
                raise Boom(f"try {Flaky.tries}")
            return StopEvent(result="ok")

    with capture_logs() as logs:
        assert await Flaky(trace=True).run() == "ok"
    _check_envelope(logs, "Flaky")
    steps = [(r["event"], r["attempt"]) for r in logs if r["event"].startswith("step.")]
    assert steps == [
        ("step.started", 1),
        ("step.failed", 1),
        ("step.started", 2),
        ("step.failed", 2),
        ("step.started", 3),
        ("step.finished", 3),
    ]
    assert [r["retrying"] for r in _by(logs, "step.failed")] == [True, True]
    (inv1, inv2, inv3) = audit.RunTrace.from_records(logs).roots[0].handled_by
    assert [i.outcome for i in (inv1, inv2, inv3)] == ["failed", "failed", "finished"]
    assert inv3.emitted == (2,) and inv1.emitted == inv2.emitted == ()


class Blob:
    """Not JSON, not pydantic: an arbitrary object in an event field."""

    def __repr__(self) -> str:
        return "Blob(secret-free)"


class Carrier(Event):
    blob: Any
    raw: bytes = b""
    ratio: float = 0.0


class Odd(Workflow):
    @step
    async def carry(self, ev: StartEvent) -> Carrier:
        return Carrier(blob=Blob(), raw=b"\xff\xfe", ratio=float("nan"))

    @step
    async def stop(self, ev: Carrier) -> StopEvent:
        return StopEvent(result={"blob": ev.blob, 3: float("inf")})


async def test_unserializable_payloads_are_recorded_as_markers() -> None:
    """Objects, bad bytes and NaN become {"$repr", "$type"} markers as written; the run is unaffected."""
    with capture_logs() as raw:
        await Odd(trace=True).run()
    (carrier,) = [r for r in _by(raw, "event.emitted") if r["event_type"] == "Carrier"]
    # What pydantic makes of a NaN float field is left alone until the record is encoded.
    assert carrier["payload"]["ratio"] != carrier["payload"]["ratio"]
    with capture_logs(processors=[audit.HashChain()]) as logs:
        result = await Odd(trace=True).run()
    assert isinstance(result["blob"], Blob)
    _check_envelope(logs, "Odd")
    (carrier,) = [r for r in _by(logs, "event.emitted") if r["event_type"] == "Carrier"]
    payload = carrier["payload"]
    assert payload["blob"]["$repr"] == "Blob(secret-free)"
    assert payload["blob"]["$type"].endswith("test_audit_records.Blob")
    assert payload["raw"] == {"$repr": "b'\\xff\\xfe'", "$type": "bytes"}
    assert payload["ratio"] == {"$repr": "nan", "$type": "float"}
    (stop,) = [r for r in _by(logs, "event.emitted") if r["event_type"] == "StopEvent"]
    closing = logs[-1]
    assert closing["result"] == stop["payload"]["result"]
    assert closing["result"]["blob"]["$repr"] == "Blob(secret-free)"
    assert closing["result"]["3"] is None  # pydantic's JSON rule for inf in an Any field
    assert len(audit.RunTrace.from_records(logs).events) == 3


async def test_typed_stop_event_result_is_its_payload() -> None:
    """A StopEvent subclass is recorded as its fields, with its type in result_type."""

    class Answer(StopEvent):
        text: str

    class Typed(Workflow):
        @step
        async def answer(self, ev: StartEvent) -> Answer:
            return Answer(text="42")

    with capture_logs() as logs:
        await Typed(trace=True).run()
    assert logs[-1]["result_type"] == "Answer"
    assert logs[-1]["result"] == {"text": "42"}


async def test_llm_calls_are_recorded_from_the_hook() -> None:
    """llm_called emits llm.called with the step, its cause and the call's fields."""

    class Asks(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            actorflow.report_llm_call(
                {
                    "model": "m-1",
                    "prompt_sha256": "ab" * 32,
                    "latency_s": 0.25,
                    "usage": {"prompt_tokens": 3, "completion_tokens": 5},
                    "error": None,
                    "seq": 999,
                },  # the call cannot overwrite the record's own fields
            )
            return StopEvent(result="done")

    with capture_logs() as logs:
        await Asks(trace=True).run()
    _check_envelope(logs, "Asks")
    (call,) = _by(logs, "llm.called")
    assert (call["step"], call["cause_id"], call["model"], call["latency_s"]) == ("ask", 1, "m-1", 0.25)
    assert call["usage"] == {"prompt_tokens": 3, "completion_tokens": 5} and call["error"] is None
    (inv,) = audit.RunTrace.from_records(logs).roots[0].handled_by
    assert [c["model"] for c in inv.llm_calls] == ["m-1"]


async def test_real_llm_client_calls_are_recorded() -> None:
    """A ScriptedLLM call inside a traced step becomes an llm.called record tied to that step."""
    from actorflow.llm import ScriptedLLM

    class Asks(Workflow):
        llm = ScriptedLLM(lambda prompt: prompt.upper(), model="scripted-upper")

        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=str(await self.llm.acomplete(ev.prompt)))

    with capture_logs() as logs:
        assert await Asks(trace=True).run(prompt="hi") == "HI"
    (call,) = _by(logs, "llm.called")
    assert (call["step"], call["cause_id"], call["model"], call["error"]) == (
        "ask",
        1,
        "scripted-upper",
        None,
    )
    assert len(call["prompt_sha256"]) == 64


async def test_event_taken_by_a_waiting_step_is_recorded() -> None:
    """An event a step takes in wait_for_event gets an event.taken record and shows in the tree."""
    from actorflow import HumanResponseEvent, InputRequiredEvent

    class Asker(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(InputRequiredEvent(prefix="name?"))
            answer = await ctx.wait_for_event(HumanResponseEvent)
            return StopEvent(result=answer.response)

    with capture_logs() as logs:
        async with Asker(trace=True).open_run() as handle:
            async for ev in handle.stream_events():
                if isinstance(ev, InputRequiredEvent):
                    await handle.send_event(HumanResponseEvent(response="Ada"))
            assert await handle.result() == "Ada"
    _check_envelope(logs, "Asker")
    (taken,) = _by(logs, "event.taken")
    assert (taken["step"], taken["worker"], taken["event_id"], taken["by_event_id"]) == ("ask", 0, 2, 1)
    trace = audit.RunTrace.from_records(logs)
    answer = trace.events[2]
    assert answer.event_type == "HumanResponseEvent" and answer.handled_by == ()
    assert answer.taken_by is not None and answer.taken_by["step"] == "ask"


async def test_switch_follows_enable_and_trace_flag() -> None:
    """Off by default; enable() traces every workflow except trace=False; disable() undoes it."""
    assert not audit.is_enabled()
    with capture_logs() as logs:
        wf, off = Odd(), Odd(trace=False)
        await wf.run()
        audit.enable()
        assert audit.is_enabled()
        await wf.run()
        await off.run()
        audit.disable()
        await wf.run()
    assert len({r["run_id"] for r in logs}) == 1


async def test_broken_processor_loses_records_visibly_but_not_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A processor that raises costs records (holes in seq, one error log), never the run."""
    calls = 0

    def flaky(logger: Any, name: str, event_dict: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls in (2, 4):
            raise RuntimeError("disk on fire")
        return event_dict

    with capture_logs(processors=[flaky]) as logs, caplog.at_level(logging.ERROR, "actorflow.audit"):
        assert await Odd(trace=True).run() is not None
    seqs = [r["seq"] for r in logs]
    assert 2 not in seqs and 4 not in seqs and seqs[0] == 1 and logs[-1]["event"] == "run.finished"
    assert seqs[-1] == len(seqs) + 2
    (report,) = caplog.records
    assert "could not be written" in report.getMessage() and report.exc_info is not None


def test_tracer_drops_hooks_after_the_closing_record() -> None:
    """Nothing is recorded after run.* : the closing record stays the last."""
    tracer = Tracer()
    run = actorflow.RunInfo(run_id="r1", workflow="Fake", timeout=None, steps=())
    with capture_logs() as logs:
        trio.run(_drive, tracer, run)
    assert [r["event"] for r in logs] == ["run.started", "run.finished"]
    assert tracer.lost == 0


async def _drive(tracer: Tracer, run: actorflow.RunInfo) -> None:
    ended = actorflow.RunEnded(run, "finished", 1, None, None, 0.0)
    tracer.run_started(actorflow.RunStarted(run, StartEvent()))
    tracer.run_ended(ended)
    tracer.event_emitted(actorflow.EventEmitted(run, 5, Item(n=1), None, None, None))
    tracer.step_started(actorflow.StepStarted(run, "s", 0, 5, Item(n=1), 1))
    tracer.run_ended(ended)


def test_audit_exports_are_pinned() -> None:
    """actorflow.audit exports exactly its documented names, each under that module's name."""
    assert sorted(audit.__all__) == [
        "AuditFileError",
        "Divergence",
        "EventNode",
        "HashChain",
        "Invocation",
        "JSONLinesSink",
        "Problem",
        "REDACTED",
        "Redactor",
        "ReplayError",
        "ReplayReport",
        "RunReplay",
        "RunTrace",
        "Unanswerable",
        "VerifyResult",
        "disable",
        "enable",
        "is_enabled",
        "load_run",
        "load_runs",
        "processors",
        "replay",
        "verify",
    ]
    for name in audit.__all__:
        obj = getattr(audit, name)
        if callable(obj):
            assert obj.__module__ == "actorflow.audit", name
    assert audit.enable is actorflow._tracing.enable
    problem = pickle.loads(pickle.dumps(audit.Problem(3, "r", 2, "changed")))
    assert problem == audit.Problem(3, "r", 2, "changed")


def test_import_actorflow_leaves_structlog_unimported() -> None:
    """`import actorflow` does not import structlog; the first traced run does."""
    code = (
        "import sys, trio, actorflow\n"
        "assert 'structlog' not in sys.modules, 'imported by import actorflow'\n"
        "from actorflow import Workflow, StartEvent, StopEvent, step\n"
        "class W(Workflow):\n"
        "    @step\n"
        "    async def only(self, ev: StartEvent) -> StopEvent:\n"
        "        return StopEvent(result=1)\n"
        "trio.run(W().run)\n"
        "assert 'structlog' not in sys.modules, 'imported by an untraced run'\n"
        "trio.run(W(trace=True).run)\n"
        "assert 'structlog' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
