"""``actorflow runs list|show|resume STORE``: the durable runs in a run store (``docs/durable.md``).

``list`` and ``show`` only read the store; ``resume`` continues a run in this process. The
file must exist and be a run store (nothing is created in a mistyped path). A run id may be
given as a unique prefix of one. Everything printed that comes from the store (ids,
payloads, messages) has its control characters escaped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import trio

from ._base import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, CLIError, Commands, one_line

__all__ = ["register"]

_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if c not in (0x0A,)}
_CONTROL[0x0A] = "\\n"


def register(commands: Commands) -> None:
    """Add ``runs list``, ``runs show`` and ``runs resume``."""
    runs = commands.group("runs", help="look at the durable runs in a run store")
    listing = runs.add(
        "list",
        _cmd_list,
        help="list the runs of a store: id, workflow, status, started, last activity",
        description="List the durable runs of a run store (a SQLite file), most recently active "
        "first. A status with * is open in a process now.",
    )
    listing.add_argument("store", metavar="STORE")
    listing.add_argument("--status", help="only runs with this status (running, waiting, finished, ...)")
    listing.add_argument("--limit", type=int, metavar="N", help="at most N runs")
    show = runs.add(
        "show",
        _cmd_show,
        help="show one run: its state, what it holds and what it has done",
        description="Show one durable run: its row, what its last snapshot holds (queues, "
        "invocations in flight, waits, buffers, unanswered input), its committed invocations "
        "and the events waiting in its inbox.",
    )
    show.add_argument("store", metavar="STORE")
    show.add_argument("run_id", metavar="ID", help="a run id, or a unique prefix of one")
    show.add_argument("--invocations", type=int, default=20, metavar="N", help="show the last N (default 20)")
    resume = runs.add(
        "resume",
        _cmd_resume,
        help="resume a run in this process and print its result",
        description="Resume a durable run (after its process ended, or while it waits) in this "
        "process with the workflow class MODULE:CLASS, and print its result as 'actorflow run' "
        "does. Invocations whose completion was committed do not run again; those in progress "
        "when the run last stopped run again. A run that has ended prints its stored result "
        "(or error) and runs nothing.",
    )
    resume.add_argument("store", metavar="STORE")
    resume.add_argument("run_id", metavar="ID", help="a run id, or a unique prefix of one")
    resume.add_argument("target", metavar="MODULE:CLASS", help="the run's workflow class")


def _cmd_resume(args: argparse.Namespace) -> int:
    from .._exceptions import RunArgumentsError, WorkflowTimeoutError
    from ..durable import StoreError
    from ._run import format_result
    from ._target import load_target

    target = load_target(args.target)
    if not isinstance(target, type):
        raise CLIError(f"{args.target} is a workflow instance; runs resume needs its Workflow class")
    with _open(args.store) as store:
        run_id = _find(store, args.run_id).run_id
        try:
            workflow = target(durable=store)
        except Exception as exc:
            raise CLIError(f"cannot create {target.__name__}(durable=...): {one_line(exc)}") from None
        try:
            result = trio.run(lambda: workflow.run(run_id=run_id))
        except (StoreError, RunArgumentsError) as exc:
            raise CLIError(str(exc)) from None
        except WorkflowTimeoutError as exc:
            print(f"actorflow: timed out: {exc}", file=sys.stderr)
            return EXIT_TIMEOUT
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            print(f"actorflow: run failed: {one_line(exc)}", file=sys.stderr)
            return EXIT_FAILED
    print(format_result(result))
    return EXIT_OK


def _clean(text: object) -> str:
    return str(text).translate(_CONTROL)


def _open(path: str) -> Any:
    from ..durable import SQLiteStore, StoreError

    try:
        return SQLiteStore(path, create=False)
    except (StoreError, OSError) as exc:
        raise CLIError(str(exc)) from None


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + "Z"


def _cmd_list(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be at least 1, not {args.limit}")
    with _open(args.store) as store:
        rows = store.runs(status=args.status, limit=args.limit)
        table = [("ID", "WORKFLOW", "STATUS", "STARTED", "LAST ACTIVITY")]
        for r in rows:
            open_now = not r.ended and store.holder(r.run_id) is not None
            table.append(
                (
                    _clean(r.run_id),
                    _clean(r.workflow),
                    r.status + ("*" if open_now else ""),
                    _when(r.started_at),
                    _when(r.updated_at),
                )
            )
    if len(table) == 1:
        what = f" with status {args.status}" if args.status else ""
        print(f"no runs{what} in {args.store}")
        return EXIT_OK
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def _find(store: Any, prefix: str) -> Any:
    record = store.get(prefix)
    if record is not None:
        return record
    matches = [r.run_id for r in store.runs() if r.run_id.startswith(prefix)]
    if not matches:
        raise CLIError(f"no run {prefix!r} in {store.path}")
    if len(matches) > 1:
        shown = ", ".join(_clean(m) for m in sorted(matches)[:5])
        raise CLIError(f"{prefix!r} is the start of {len(matches)} run ids ({shown}...): give more of it")
    return store.get(matches[0])


def _payload(text: str | None, limit: int = 200) -> str:
    """A serialised value, shown compactly: the JSON of its value, or that it is a pickle."""
    if text is None:
        return "-"
    try:
        data = json.loads(text)
    except ValueError:
        return f"<pickled, {len(text)} characters>"
    if isinstance(data, Mapping) and data.get("__is_pydantic"):
        name = str(data.get("qualified_name", "?")).rpartition(".")[2]
        shown = f"{name} {json.dumps(data.get('value'), sort_keys=True)}"
    else:
        shown = json.dumps(data, sort_keys=True)
    shown = _clean(shown)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _cmd_show(args: argparse.Namespace) -> int:
    out = sys.stdout
    with _open(args.store) as store:
        r = _find(store, args.run_id)
        holder = None if r.ended else store.holder(r.run_id)
        invocations = store.invocations(r.run_id)
        inbox = store.inbox(r.run_id)
    where = "" if holder is None else f" (open in process {holder})" if holder else " (open in a process)"
    print(f"run       {_clean(r.run_id)}", file=out)
    print(f"workflow  {_clean(r.workflow)}", file=out)
    print(f"status    {r.status}{where}", file=out)
    print(f"started   {_when(r.started_at)}", file=out)
    print(f"activity  {_when(r.updated_at)}  ({r.commits} commits)", file=out)
    print(f"start     {_payload(r.start_event)}", file=out)
    if r.result is not None:
        print(f"result    {_payload(r.result)}", file=out)
    if r.error is not None:
        print(f"error     {_clean(r.error.type)}: {_clean(r.error.message)}", file=out)
    if r.snapshot is not None:
        _show_snapshot(r.snapshot, out)
    shown = invocations[-args.invocations :] if args.invocations > 0 else []
    print(f"committed invocations: {len(invocations)}" + (f" (last {len(shown)})" if shown else ""), file=out)
    for inv in shown:
        emitted = ", ".join(f"#{e}" for e in inv.emitted) or "nothing"
        attempt = f" attempt {inv.attempt}" if inv.attempt > 1 else ""
        print(
            f"  {_clean(inv.step)}[{inv.worker}] on #{inv.event_id}{attempt}: {inv.outcome}, emitted {emitted}",
            file=out,
        )
    print(f"inbox: {len(inbox)} waiting", file=out)
    for item in inbox:
        print(f"  {item.id} sent {_when(item.sent_at)}: {_payload(item.event)}", file=out)
    return EXIT_OK


def _show_snapshot(snap: Mapping[str, Any], out: TextIO) -> None:
    timing = snap.get("timing") or {}
    timeout = timing.get("timeout")
    spent = f"{timing.get('elapsed_s', 0):.3f}s alive" + (f" of {timeout:g}s" if timeout else "")
    print(
        f"snapshot  next event #{snap.get('next_event_id')}, {spent}, {timing.get('sessions', 1)} session(s)",
        file=out,
    )
    router = snap.get("router") or []
    if router:
        print(f"  router: {len(router)} queued", file=out)
    for name, step in (snap.get("steps") or {}).items():
        queued = step.get("queued") or []
        flights = step.get("in_flight") or []
        if not queued and not flights:
            continue
        ids = ", ".join(f"#{q.get('event_id')}" for q in queued[:10]) + (" ..." if len(queued) > 10 else "")
        print(f"  step {_clean(name)}: {len(queued)} queued" + (f" ({ids})" if queued else ""), file=out)
        for f in flights:
            wait = f.get("waiting")
            doing = (
                f"waiting for {_clean(str(wait.get('event_type')).rpartition('.')[2])}" if wait else "running"
            )
            print(
                f"    [{f.get('worker')}] on #{f.get('event_id')} attempt {f.get('attempt')}: {doing}",
                file=out,
            )
    for c in snap.get("collect") or []:
        held = c.get("held") or []
        if held:
            kinds = ", ".join(_clean(str(t).rpartition(".")[2]) for t in c.get("expected") or [])
            print(f"  collect_events of {_clean(c.get('step'))} [{kinds}]: holds {len(held)}", file=out)
    for p in snap.get("pending_input") or []:
        print(f"  unanswered input #{p.get('event_id')}: {_payload(p.get('event'))}", file=out)
