"""A trio application that runs workflows next to its own tasks.

    python examples/embed_in_trio.py

The app keeps a heartbeat task going while three runs share its nursery: one streams its
progress events to the end, one is cancelled half-way with ``handle.cancel()``, one overruns
its timeout. Each run is a child of the app like any other trio task, so when ``main``
returns nothing of them is left running. It all takes about 0.6 s.
"""

import argparse

import trio

from actorflow import (
    Context,
    Event,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowTimeoutError,
    step,
)
from actorflow.testing import leftover_tasks

CHUNK_SECONDS = 0.1


class ProgressEvent(Event):
    """Written to the run's event stream after each chunk of work."""

    done: int
    total: int


class ReportFlow(Workflow):
    """Works through ``chunks`` chunks of 0.1 s each, streaming its progress."""

    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for chunk in range(1, ev.chunks + 1):
            await trio.sleep(CHUNK_SECONDS)  # an LLM call, a download...
            ctx.write_event_to_stream(ProgressEvent(done=chunk, total=ev.chunks))
        return StopEvent(result=f"report of {ev.chunks} chunks")


T0 = 0.0


def log(who: str, text: str) -> None:
    print(f"{trio.current_time() - T0:4.2f}s  {who:<10} {text}", flush=True)


async def heartbeat() -> None:
    """The app's own work, going on while the runs do theirs."""
    beat = 0
    while True:
        beat += 1
        log("app", f"heartbeat {beat}")
        await trio.sleep(0.2)


async def streamed(workflow: ReportFlow) -> None:
    """Follow a run's event stream to its end, then take its result."""
    async with workflow.open_run(chunks=4) as handle:
        log("streamed", f"run {handle.run_id[:8]} started")
        async for ev in handle.stream_events():
            if isinstance(ev, ProgressEvent):
                log("streamed", f"progress {ev.done}/{ev.total}")
        log("streamed", f"result: {await handle.result()!r}")


async def cancelled(workflow: ReportFlow) -> None:
    """Start a long run and cancel it after a while."""
    async with workflow.open_run(chunks=100) as handle:
        log("cancelled", f"run {handle.run_id[:8]} started")
        await trio.sleep(0.25)
        handle.cancel()
        try:
            await handle.result()
        except WorkflowCancelledError as exc:
            log("cancelled", f"{type(exc).__name__}: {exc}")


async def timed_out() -> None:
    """Run a workflow whose timeout is shorter than its work."""
    log("timed out", "run started, timeout=0.5")
    try:
        await ReportFlow(timeout=0.5).run(chunks=100)
    except WorkflowTimeoutError as exc:
        log("timed out", f"{type(exc).__name__}: {exc}")


async def main() -> None:
    global T0
    T0 = trio.current_time()
    workflow = ReportFlow(timeout=10)  # one instance serves both of its runs, each with its own state
    async with trio.open_nursery() as app:
        app.start_soon(heartbeat)
        async with trio.open_nursery() as runs:
            runs.start_soon(streamed, workflow)
            runs.start_soon(cancelled, workflow)
            runs.start_soon(timed_out)
        app.cancel_scope.cancel()  # the runs are over: stop the heartbeat too
    log("app", f"done; actorflow tasks still running: {leftover_tasks()}")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help
    trio.run(main)
