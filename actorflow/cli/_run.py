"""``actorflow run MODULE:CLASS [KEY=VALUE ...]``: run a workflow once and print its result."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import TYPE_CHECKING, Any

import trio

from ._base import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, CLIError, Commands, one_line
from ._target import load_target, parse_params
from ._term import is_terminal, wants_color

if TYPE_CHECKING:
    from ._live import LiveDisplay

__all__ = ["format_result", "register"]


def register(commands: Commands) -> None:
    """Add ``run``."""
    run = commands.add(
        "run",
        _cmd_run,
        help="run a workflow and print its result",
        description="Run a workflow and print its result: a string as it is, anything else as "
        "JSON. KEY=VALUE pairs become the StartEvent's fields; a VALUE that parses as JSON is "
        "taken as JSON (n=3, flag=true, tags='[\"a\"]'), any other as a string. On a terminal, "
        "the running steps are shown live while the run goes.",
    )
    run.add_argument("target", metavar="MODULE:CLASS")
    run.add_argument("params", nargs="*", metavar="KEY=VALUE", help="the run's keyword arguments")
    run.add_argument(
        "--timeout", type=_seconds, metavar="S", help="time limit of the run in seconds (0: none)"
    )
    run.add_argument("--verbose", action="store_true", help="print each step invocation")
    run.add_argument("--trace", metavar="FILE", help="append the run's audit records to FILE (JSON lines)")
    # argparse cannot take positionals after an option (run m:C --timeout 5 a=1): main() adds
    # the KEY=VALUE words it left over to this attribute.
    run.set_defaults(extra_words="params")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _cmd_run(args: argparse.Namespace) -> int:
    from .._exceptions import RunArgumentsError, WorkflowTimeoutError

    target = load_target(args.target)
    params = parse_params(args.params)
    workflow = _instantiate(target, args)
    _check_run_keywords(workflow, params)
    sink = _open_trace(args.trace) if args.trace else None
    out = sys.stdout
    live = None
    if is_terminal(out) and not args.verbose:
        from ._live import LiveDisplay  # the runtime, only for a run on a terminal

        live = LiveDisplay(out, color=wants_color(out))
    try:
        result = trio.run(_execute, workflow, params, live)
    except RunArgumentsError as exc:
        raise CLIError(str(exc)) from None
    except WorkflowTimeoutError as exc:
        print(f"actorflow: timed out: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        # SystemExit too: a step that calls sys.exit() made the run fail, whatever the code;
        # it must not become this command's own exit (status 0 and nothing printed).
        if args.verbose:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"actorflow: run failed: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if sink is not None:
            _close_trace(sink)
    print(format_result(result), file=out)
    return EXIT_OK


def _instantiate(target: Any, args: argparse.Namespace) -> Any:
    options: dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout or None
    if args.verbose:
        options["verbose"] = True
    if not isinstance(target, type):
        if options:
            raise CLIError(
                f"{args.target} is a workflow instance; --timeout and --verbose need a Workflow "
                f"class (or set them where the instance is made)"
            )
        return target
    try:
        return target(**options)
    except Exception as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise CLIError(f"cannot create {target.__name__}({given}): {one_line(exc)}") from None


def _check_run_keywords(workflow: Any, params: dict[str, Any]) -> None:
    """Refuse keywords that name a parameter ``open_run`` binds positionally (``self``): they
    cannot reach the StartEvent, and Python's own complaint would read like a crash."""
    import inspect

    taken = [
        p.name
        for p in inspect.signature(type(workflow).open_run).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    for key in params:
        if key in taken:
            raise CLIError(
                f"{key}={params[key]!r}: {key!r} cannot be a run keyword (it is a parameter of "
                f"{type(workflow).__name__}.open_run() itself, not a StartEvent field)"
            )


async def _execute(workflow: Any, params: dict[str, Any], live: LiveDisplay | None) -> Any:
    from .. import add_observer, remove_observer

    if live is None:
        async with workflow.open_run(**params) as handle:
            return await handle.result()
    # Process-wide, so that an instance given as MODULE:NAME is watched too; this process
    # runs this one workflow (the display picks its run out by id from any nested ones).
    add_observer(live)
    try:
        async with workflow.open_run(**params) as handle:
            await live.follow(handle)
            return await handle.result()
    finally:
        remove_observer(live)


def format_result(result: Any) -> str:
    """A string as it is; a pydantic model, or anything else JSON can hold, as JSON; else repr.

    Only valid JSON is printed as JSON: NaN and infinities, which ``json.dumps`` would write
    as the non-JSON ``NaN`` / ``Infinity``, make it a repr (pydantic writes them as null).
    """
    import json

    import pydantic
    import pydantic_core

    if isinstance(result, str):
        return result
    if isinstance(result, pydantic.BaseModel):
        try:
            return result.model_dump_json(indent=2)
        except pydantic_core.PydanticSerializationError:
            return repr(result)
    try:
        return json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return repr(result)


def _open_trace(path: str) -> Any:
    """Send the audit records of every run to ``path``; return the sink to close."""
    import structlog

    try:
        from .. import audit
    except ImportError:
        raise CLIError("--trace needs actorflow.audit, which this installation lacks") from None
    try:
        chain = audit.processors(path)
    except OSError as exc:
        raise CLIError(f"cannot write the trace to {path}: {exc.strerror or exc}") from None
    # An application configures structlog; the library never does. Records other than the
    # audit trail (there should be none) go to stderr, away from the result on stdout.
    structlog.configure(
        processors=[
            *chain,
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    audit.enable()
    return chain[-1]


def _close_trace(sink: Any) -> None:
    from .. import audit

    audit.disable()
    sink.close()
