"""The ``actorflow`` command line (``python -m actorflow``, or the ``actorflow`` script).

::

    actorflow run MODULE:CLASS [KEY=VALUE ...] [--timeout S] [--verbose] [--trace FILE]
    actorflow draw MODULE:CLASS [-o FILE] [--mermaid]
    actorflow audit verify FILE
    actorflow trace show FILE [--run RUN_ID]
    actorflow trace draw FILE [--run RUN_ID] [-o FILE]
    actorflow bench [--quick]

Unlike the library, this is an application: it may configure structlog (for ``--trace``) and
it owns the terminal. Bad input of any kind ends in one line on stderr, ``actorflow: error:
...``, and exit status 2; nothing the user typed ever produces a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import trio

__all__ = ["main"]

#: Exit statuses: the run's result was printed; the run failed; bad input (as argparse);
#: the run timed out (as coreutils' ``timeout``); interrupted with Ctrl-C.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 124, 130

#: Seconds between two redraws of the live display.
REFRESH = 0.1


class CLIError(Exception):
    """Bad input: the message is printed as one line and the command exits with status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the usage is one --help away.
        self.exit(EXIT_USAGE, f"actorflow: error: {message} (see '{self.prog} --help')\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # argparse cannot take positionals after an option (run m:C --timeout 5 a=1),
            # so KEY=VALUE words it left over are picked up here.
            if getattr(args, "handler", None) is not _cmd_run or any(
                w.startswith("-") or "=" not in w for w in extra
            ):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            args.params += extra
    except SystemExit as exc:  # --help, --version, and argparse's own errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except CLIError as exc:
        # One line, even for the multi-line messages of definition and validation errors.
        message = re.sub(r"\s*\n\s*", " ", str(exc).strip())
        print(f"actorflow: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("actorflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="actorflow",
        description="Run, draw and inspect actorflow workflows.",
        epilog="MODULE:CLASS is an importable module (the current directory comes first) or a "
        "file path, e.g. myflows:JokeFlow or path/to/flows.py:JokeFlow.",
    )
    parser.add_argument("--version", action="version", version=f"actorflow {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser(
        "run",
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
    run.set_defaults(handler=_cmd_run)

    draw = commands.add_parser(
        "draw",
        help="draw every possible flow of a workflow",
        description="Write an interactive HTML page of every possible flow of a workflow (one "
        "self-contained file), or print it as Mermaid text.",
    )
    draw.add_argument("target", metavar="MODULE:CLASS")
    draw.add_argument("-o", "--output", metavar="FILE", help="where to write (default: CLASS.html)")
    draw.add_argument(
        "--mermaid", action="store_true", help="Mermaid text instead, to stdout (or to -o FILE)"
    )
    draw.set_defaults(handler=_cmd_draw)

    audit = commands.add_parser("audit", help="check audit trace files")
    audit_commands = audit.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    verify = audit_commands.add_parser(
        "verify",
        help="check the hash chains of an audit trace file",
        description="Check the hash chains of an audit trace file: print OK, or the first broken record.",
    )
    verify.add_argument("file", metavar="FILE")
    verify.set_defaults(handler=_cmd_audit_verify)

    trace = commands.add_parser("trace", help="look at the runs recorded in a trace file")
    trace_commands = trace.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    show = trace_commands.add_parser(
        "show",
        help="print the causal tree of recorded runs",
        description="Print the causal tree of one recorded run, or of every run in the file.",
    )
    show.add_argument("file", metavar="FILE")
    show.add_argument("--run", metavar="RUN_ID", help="only this run (an id or a unique prefix of one)")
    show.set_defaults(handler=_cmd_trace_show)
    trace_draw = trace_commands.add_parser(
        "draw",
        help="draw one recorded run as an interactive HTML page",
        description="Draw the path one recorded run took, with counts and durations per step.",
    )
    trace_draw.add_argument("file", metavar="FILE")
    trace_draw.add_argument("--run", metavar="RUN_ID", help="the run (needed when the file holds several)")
    trace_draw.add_argument("-o", "--output", metavar="FILE", help="where to write (default: run-ID.html)")
    trace_draw.set_defaults(handler=_cmd_trace_draw)

    bench = commands.add_parser(
        "bench",
        help="run the benchmark suite",
        description="Run the benchmark suite (python -m benchmarks) of an actorflow checkout.",
    )
    bench.add_argument("--quick", action="store_true", help="a short pass, as the tests run it")
    bench.set_defaults(handler=_cmd_bench)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


# -- finding the workflow -----------------------------------------------------------------------


def load_target(ref: str) -> Any:
    """The Workflow subclass (or instance) that ``MODULE:NAME`` or ``path/file.py:NAME`` names."""
    from ._exceptions import WorkflowDefinitionError
    from ._workflow import Workflow, spec

    where, sep, name = ref.rpartition(":")
    if not sep or not where or not name:
        raise CLIError(
            f"{ref!r} is not MODULE:CLASS; write e.g. myflows:JokeFlow or path/to/flows.py:JokeFlow"
        )
    try:
        module = (
            _import_file(where)
            if where.endswith(".py") or os.sep in where or "/" in where
            else _import_module(where)
        )
        obj: Any = module
        for part in name.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        found = sorted(
            n
            for n, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, Workflow) and v is not Workflow
        )
        hint = f"; its workflows: {', '.join(found)}" if found else "; it defines no Workflow subclass"
        raise CLIError(f"{where} has no {name!r}{hint}") from None
    except WorkflowDefinitionError as exc:
        raise CLIError(str(exc)) from None
    cls = obj if isinstance(obj, type) else type(obj)
    if not issubclass(cls, Workflow) or cls is Workflow:
        what = f"the class {obj.__qualname__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise CLIError(f"{ref} is {what}, not a Workflow subclass (or an instance of one)")
    try:
        spec(cls)
    except WorkflowDefinitionError as exc:
        raise CLIError(str(exc)) from None
    return obj


def _import_module(name: str) -> Any:
    # The console script, unlike python -m, does not put the current directory on sys.path.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise CLIError(
                f"no module named {name!r} (looked in the current directory and on sys.path; "
                f"for a file, write path/to/{name.rpartition('.')[2]}.py:CLASS)"
            ) from None
        raise CLIError(f"importing {name} failed: {_one_line(exc)}") from None
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(f"importing {name} failed: {_one_line(exc)}") from None


def _import_file(path: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise CLIError(f"no such file: {path}")
    name = file.stem
    module_spec = importlib.util.spec_from_file_location(name, file)
    if module_spec is None or module_spec.loader is None:
        raise CLIError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before it runs, as an import would: pydantic resolves the event classes'
    # annotations through sys.modules. Its directory goes on sys.path for sibling imports.
    sys.modules[name] = module
    sys.path.insert(0, str(file.resolve().parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise CLIError(f"importing {path} failed: {_one_line(exc)}") from None
    return module


def _one_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip().replace("\n", " ")


# -- run ------------------------------------------------------------------------------------


def parse_params(words: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` words as keyword arguments; a VALUE that parses as JSON is taken as JSON."""
    params: dict[str, Any] = {}
    for word in words:
        key, sep, text = word.partition("=")
        if not sep or not key.isidentifier():
            raise CLIError(f"bad argument {word!r}: expected KEY=VALUE, KEY a Python identifier")
        if key in params:
            raise CLIError(f"{key} is given twice")
        try:
            params[key] = json.loads(text)
        except ValueError:
            params[key] = text
    return params


def _cmd_run(args: argparse.Namespace) -> int:
    from ._exceptions import WorkflowTimeoutError, WorkflowValidationError

    target = load_target(args.target)
    params = parse_params(args.params)
    workflow = _instantiate(target, args)
    sink = _open_trace(args.trace) if args.trace else None
    out = sys.stdout
    live = None
    if _is_terminal(out) and not args.verbose:
        live = _LiveDisplay(out, color=_wants_color(out))
    try:
        result = trio.run(_execute, workflow, params, live)
    except WorkflowValidationError as exc:
        raise CLIError(str(exc)) from None
    except WorkflowTimeoutError as exc:
        print(f"actorflow: timed out: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except Exception as exc:
        if args.verbose:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"actorflow: run failed: {_one_line(exc)}", file=sys.stderr)
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
        raise CLIError(f"cannot create {target.__name__}({given}): {_one_line(exc)}") from None


async def _execute(workflow: Any, params: dict[str, Any], live: _LiveDisplay | None) -> Any:
    async with workflow.open_run(**params) as handle:
        if live is not None:
            await live.follow(handle)
        return await handle.result()


def format_result(result: Any) -> str:
    """A string as it is; a pydantic model, or anything else JSON can hold, as JSON; else repr."""
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
        return json.dumps(result, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(result)


def _open_trace(path: str) -> Any:
    """Send the audit records of every run to ``path``; return the sink to close."""
    import structlog

    try:
        from . import audit
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
    from . import audit

    audit.disable()
    sink.close()


# -- the live display ---------------------------------------------------------------------------


def _is_terminal(stream: TextIO) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def _wants_color(stream: TextIO) -> bool:
    return _is_terminal(stream) and "NO_COLOR" not in os.environ


class _LiveDisplay:
    """Redraws a few lines in place while a run goes: one per step, with what it is doing.

    Polls ``handle.statistics()`` every :data:`REFRESH` seconds; lines are cut to the
    terminal's width so that none wraps, which would break moving the cursor back up.
    """

    SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, out: TextIO, *, color: bool) -> None:
        self.out = out
        self.color = color
        self.drawn = 0
        self.frame = 0

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def render(self, handle: Any, elapsed: float, width: int, height: int) -> list[str]:
        spinner = self.SPINNER[self.frame % len(self.SPINNER)]
        self.frame += 1
        try:
            stats = handle.statistics()
        except Exception:  # statistics() is best effort here; the run matters, not the display
            stats = None
        state = getattr(stats, "state", "running")
        name = getattr(stats, "workflow", "")
        head = f"{self._paint(spinner, '36')} {self._paint(name, '1')} {handle.run_id[:8]} · {state} · {elapsed:.1f} s"
        lines = [head]
        steps = list(getattr(stats, "steps", {}).values())
        pad = max((len(s.name) for s in steps), default=0)
        rows = []
        for s in steps:
            parts = []
            if s.running:
                parts.append(self._paint(f"▶ {s.running}/{s.num_workers} running", "33"))
            if getattr(s, "waiting", 0):
                parts.append(f"{s.waiting} waiting for events")
            if s.queued:
                parts.append(f"{s.queued} queued")
            parts.append(f"{s.processed} done")
            if s.failed:
                parts.append(self._paint(f"{s.failed} failed", "31"))
            active = s.running or s.queued or getattr(s, "waiting", 0)
            label = self._paint(s.name.ljust(pad), "1" if active else "2")
            rows.append((active, f"  {label}  {' · '.join(parts)}"))
        room = max(1, height - 2)
        if len(rows) > room:  # a long workflow: the busy steps first
            rows = sorted(rows, key=lambda r: not r[0])[:room]
        lines += [r[1] for r in rows]
        return [_cut(line, width) for line in lines]

    def draw(self, lines: list[str]) -> None:
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.out.write(up + "\x1b[J" + "".join(line + "\n" for line in lines))
        self.out.flush()
        self.drawn = len(lines)

    def erase(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0
        self.out.write("\x1b[?25h")
        self.out.flush()

    async def follow(self, handle: Any) -> None:
        """Redraw until the run is done (or the body is cancelled because the run failed)."""
        start = trio.current_time()
        self.out.write("\x1b[?25l")  # hide the cursor while it jumps around
        try:
            while not handle.done:
                size = shutil.get_terminal_size()
                self.draw(self.render(handle, trio.current_time() - start, size.columns, size.lines))
                await trio.sleep(REFRESH)
        finally:
            self.erase()


def _cut(line: str, width: int) -> str:
    """``line`` cut to ``width`` visible characters (ANSI codes take no room)."""
    out, seen, i = [], 0, 0
    while i < len(line):
        if line[i] == "\x1b":
            end = line.find("m", i)
            out.append(line[i : end + 1])
            i = end + 1
            continue
        if seen < width - 1:
            out.append(line[i])
        seen += 1
        i += 1
    return "".join(out) + ("\x1b[0m" if "\x1b" in line else "")


# -- draw -------------------------------------------------------------------------------------


def _cmd_draw(args: argparse.Namespace) -> int:
    from ._draw import draw_all_possible_flows, to_mermaid

    target = load_target(args.target)
    name = (target if isinstance(target, type) else type(target)).__name__
    if args.mermaid:
        text = to_mermaid(target)
        if args.output is None:
            sys.stdout.write(text)
            return EXIT_OK
        _write(Path(args.output), lambda p: p.write_text(text, encoding="utf-8"))
        return EXIT_OK
    _write(Path(args.output or f"{name}.html"), lambda p: draw_all_possible_flows(target, p))
    return EXIT_OK


def _write(path: Path, write: Any) -> None:
    try:
        write(path)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path} ({path.stat().st_size / 1000:.0f} kB)")


def _cmd_trace_draw(args: argparse.Namespace) -> int:
    from ._draw import _load_records, _run_records, draw_execution

    path = _existing(args.file)
    try:
        records = _load_records(path)
        runs = list(dict.fromkeys(str(r["run_id"]) for r in records if "run_id" in r))
        if args.run is None and len(runs) > 1:
            raise CLIError(f"{path} holds {len(runs)} runs; pick one with --run: {', '.join(runs)}")
        run_id = str(_run_records(records, args.run)[0]["run_id"])
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    _write(Path(args.output or f"run-{run_id[:8]}.html"), lambda p: draw_execution(records, run_id, p))
    return EXIT_OK


# -- audit and trace (actorflow.audit does the work) -----------------------------------------------


def _existing(path: str) -> str:
    if not Path(path).is_file():
        raise CLIError(f"no such file: {path}")
    return path


def _audit_commands() -> Any:
    try:
        from .audit import _commands
    except ImportError as exc:
        raise CLIError(f"actorflow.audit is not available in this installation ({exc})") from None
    return _commands


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    path = _existing(args.file)
    status: int = _audit_commands().verify_command(path, out=sys.stdout)
    return status


def _cmd_trace_show(args: argparse.Namespace) -> int:
    path = _existing(args.file)
    status: int = _audit_commands().show_command(
        path, args.run, out=sys.stdout, color=_wants_color(sys.stdout)
    )
    return status


# -- bench ------------------------------------------------------------------------------------


def find_benchmarks(start: Path | None = None) -> Path | None:
    """The nearest directory holding ``benchmarks/__main__.py``: ``start`` (the current
    directory) or one of its parents, as git finds its repository."""
    here = (start or Path.cwd()).resolve()
    for root in (here, *here.parents):
        if (root / "benchmarks" / "__main__.py").is_file():
            return root
    return None


def _cmd_bench(args: argparse.Namespace) -> int:
    root = find_benchmarks()
    if root is None:
        raise CLIError(
            "cannot find the benchmark suite (benchmarks/__main__.py) in this directory or a "
            "parent of it; run 'actorflow bench' inside an actorflow checkout"
        )
    command = [sys.executable, "-m", "benchmarks", *(["--quick"] if args.quick else [])]
    return subprocess.run(command, cwd=root, check=False).returncode
