"""The tutorial's ``@step(num_workers=4)``: fan out with send_event, fan in with collect_events.

    python examples/concurrency.py

One step sends eight TaskEvents; ``concurrent_step`` handles them with four workers, each
task sleeping 0.1 s (standing in for an LLM or HTTP call); ``collect`` waits for all eight
ResultEvents. The timeline shows four tasks at a time: 0.2 s in all instead of 0.8 s.
"""

import argparse

import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, step

NUM_TASKS = 8
TASK_SECONDS = 0.1


class TaskEvent(Event):
    """One unit of work."""

    task: int


class ResultEvent(Event):
    """The outcome of one task, with when and where it ran."""

    task: int
    result: str
    worker: int
    started: float
    finished: float


def process(task: int) -> str:
    return f"task {task} squared is {task * task}"


class FanOutFlow(Workflow):
    """Sends NUM_TASKS tasks to a step with four workers and gathers their results."""

    @step
    async def fan_out(self, ctx: Context, ev: StartEvent) -> TaskEvent | None:
        """Send one TaskEvent per task; the step itself returns nothing."""
        await ctx.store.set("num_tasks", ev.num_tasks)
        for task in range(ev.num_tasks):
            ctx.send_event(TaskEvent(task=task))
        return None

    @step(num_workers=4)
    async def concurrent_step(self, ctx: Context, ev: TaskEvent) -> ResultEvent:
        """Step that can run 4 instances concurrently."""
        started = trio.current_time()
        await trio.sleep(TASK_SECONDS)  # an LLM call, an HTTP request...
        return ResultEvent(
            task=ev.task,
            result=process(ev.task),
            worker=ctx.worker,
            started=started,
            finished=trio.current_time(),
        )

    @step
    async def collect(self, ctx: Context, ev: ResultEvent) -> StopEvent | None:
        """Wait until every task has reported, then stop with all the results."""
        num_tasks = await ctx.store.get("num_tasks")
        results = ctx.collect_events(ev, [ResultEvent] * num_tasks)
        if results is None:
            return None  # not all in yet
        return StopEvent(result=sorted(results, key=lambda r: r.task))


def peak_concurrency(results: list[ResultEvent]) -> int:
    """The most tasks that were running at one moment."""
    return max(sum(r.started <= s.started < r.finished for r in results) for s in results)


async def main() -> None:
    workflow = FanOutFlow(timeout=10)
    t0 = trio.current_time()
    results = await workflow.run(num_tasks=NUM_TASKS)
    elapsed = trio.current_time() - t0

    for r in results:
        print(
            f"task {r.task} on worker {r.worker}: {r.started - t0:.2f}s -> {r.finished - t0:.2f}s  {r.result}"
        )
    print(f"peak concurrency: {peak_concurrency(results)} (num_workers=4)")
    print(
        f"{NUM_TASKS} tasks of {TASK_SECONDS:.2f}s took {elapsed:.2f}s in all "
        f"({NUM_TASKS * TASK_SECONDS:.2f}s one at a time)"
    )


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help
    trio.run(main)
