"""The command line, through real processes: ``python -m actorflow ...``.

Each test writes a small module of workflows into its tmp dir and runs the command there, as
a user would from their project directory.
"""

from __future__ import annotations

import json
import math
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic_core
import pytest
import trio

import actorflow

FLOWS = textwrap.dedent(
    '''
    """Workflows for the command-line tests."""

    import trio

    from actorflow import Context, Event, StartEvent, StopEvent, Workflow, step


    class Echo(Workflow):
        """Returns its keyword arguments, each with its Python type."""

        @step
        async def echo(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result={k: [v, type(v).__name__] for k, v in ev.model_extra.items()})


    class Greeting(Workflow):
        @step
        async def greet(self, ev: StartEvent) -> StopEvent:
            """Greet someone by name."""
            return StopEvent(result=f"hello {ev.name}")


    class Numbered(StartEvent):
        n: int


    class Strict(Workflow):
        @step
        async def double(self, ev: Numbered) -> StopEvent:
            return StopEvent(result=ev.n * 2)


    class Boom(Workflow):
        @step
        async def explode(self, ev: StartEvent) -> StopEvent:
            raise ValueError("boom")


    class Sleepy(Workflow):
        @step
        async def nap(self, ev: StartEvent) -> StopEvent:
            await trio.sleep(600)
            return StopEvent()


    class Item(Event):
        i: int


    class Done(Event):
        i: int


    class Busy(Workflow):
        """Fans out n items, works on them two at a time, collects them."""

        @step
        async def split(self, ctx: Context, ev: StartEvent) -> Item | None:
            await ctx.store.set("n", ev.n)
            for i in range(ev.n):
                ctx.send_event(Item(i=i))
            return None

        @step(num_workers=2)
        async def work(self, ev: Item) -> Done:
            await trio.sleep(0.12)
            return Done(i=ev.i)

        @step
        async def collect(self, ctx: Context, ev: Done) -> StopEvent | None:
            done = ctx.collect_events(ev, [Done] * await ctx.store.get("n"))
            return None if done is None else StopEvent(result=sorted(d.i for d in done))


    class Exits(Workflow):
        @step
        async def leave(self, ev: StartEvent) -> StopEvent:
            raise SystemExit(0)


    class NotANumber(Workflow):
        @step
        async def measure(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result={"mean": float("nan"), "max": [float("inf")]})


    instance = Greeting(timeout=5)
    not_a_workflow = 42
    '''
)


def actorflow_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with flows.py in it, as a user's project would have."""
    root = tmp_path_factory.mktemp("project")
    (root / "flows.py").write_text(FLOWS)
    (root / "broken.py").write_text("raise RuntimeError('broken at import')\n")
    (root / "malformed.py").write_text(
        "from actorflow import Event, StartEvent, StopEvent, Workflow, step\n"
        "class Orphan(Event):\n    pass\n"
        "class Malformed(Workflow, abstract=True):\n"
        "    @step\n    async def a(self, ev: StartEvent) -> Orphan: ...\n"
        "    @step\n    async def b(self, ev: Orphan) -> None: ...\n"
    )
    (root / "exits.py").write_text("import sys\nsys.exit(0)\n")
    (root / "trace.jsonl").write_text("")
    # Hostile trace files: absurdly nested JSON, binary junk, a directory.
    (root / "nested.jsonl").write_text("[" * 100_000 + "\n")
    (root / "junk.jsonl").write_bytes(bytes(range(256)) * 16)
    (root / "other.jsonl").write_text('{"event": "an application log line"}\n')
    # Hostile modules: binary junk, 100,000 nested brackets, a directory named like a module.
    (root / "junkmod.py").write_bytes(bytes(range(256)) * 4)
    (root / "nestmod.py").write_text("[" * 100_000 + "\n")
    (root / "dirmod.py").mkdir()
    (root / "adir").mkdir()
    return root


def test_run_prints_the_result_with_json_values(project: Path) -> None:
    """KEY=VALUE words become the run's arguments, JSON where they parse; the result is JSON."""
    done = actorflow_cli(
        "run",
        "flows:Echo",
        "n=3",
        "ratio=0.5",
        "flag=true",
        "none=null",
        'tags=["a",1]',
        "name=cats",
        'quoted="7"',
        "empty=",
        "expr=1+1",
        cwd=project,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == {
        "n": [3, "int"],
        "ratio": [0.5, "float"],
        "flag": [True, "bool"],
        "none": [None, "NoneType"],
        "tags": [["a", 1], "list"],
        "name": ["cats", "str"],
        "quoted": ["7", "str"],
        "empty": ["", "str"],
        "expr": ["1+1", "str"],
    }


def test_a_string_result_is_printed_as_it_is(project: Path) -> None:
    """A str result is printed bare; options may come before KEY=VALUE words too."""
    done = actorflow_cli("run", "flows:Greeting", "--timeout", "5", "name=Ada", cwd=project)
    assert (done.returncode, done.stdout, done.stderr) == (0, "hello Ada\n", "")


def test_a_file_path_names_the_module(project: Path) -> None:
    """path/to/file.py:CLASS imports the file, wherever the command runs from."""
    done = actorflow_cli("run", f"{project.name}/flows.py:Greeting", "name=Cy", cwd=project.parent)
    assert (done.returncode, done.stdout) == (0, "hello Cy\n")


def test_a_workflow_instance_runs_too(project: Path) -> None:
    """MODULE:NAME may name a workflow instance instead of a class."""
    done = actorflow_cli("run", "flows:instance", "name=Di", cwd=project)
    assert (done.returncode, done.stdout) == (0, "hello Di\n")


def test_a_failing_run_exits_1_with_the_error(project: Path) -> None:
    """A step's exception is reported in one line naming it; the exit status is 1."""
    done = actorflow_cli("run", "flows:Boom", cwd=project)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("actorflow: run failed: ValueError: boom")
    assert len(done.stderr.splitlines()) == 1


def test_a_step_calling_sys_exit_fails_the_run(project: Path) -> None:
    """SystemExit(0) raised by a step is a failed run (exit 1, the error named), not a clean exit."""
    done = actorflow_cli("run", "flows:Exits", cwd=project)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "actorflow: run failed: SystemExit: 0 (raised by step 'leave' of workflow Exits)\n"


def test_a_result_json_cannot_hold_is_printed_as_a_repr(project: Path) -> None:
    """NaN and infinity are not JSON: such a result is printed as its repr, never as invalid JSON."""
    done = actorflow_cli("run", "flows:NotANumber", cwd=project)
    assert (done.returncode, done.stdout, done.stderr) == (0, "{'mean': nan, 'max': [inf]}\n", "")


def strict_json(text: str) -> Any:
    """json.loads without Python's NaN / Infinity extension."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_format_result_prints_only_valid_json() -> None:
    """format_result writes JSON only when it is valid JSON; pydantic writes NaN as null."""
    from actorflow import StopEvent
    from actorflow.cli._run import format_result

    class Measured(StopEvent):
        mean: float

    assert format_result(math.nan) == "nan"
    assert format_result([1, math.inf]) == "[1, inf]"
    assert strict_json(format_result({"n": 1.5})) == {"n": 1.5}
    assert strict_json(format_result(Measured(mean=math.nan)))["mean"] is None


def test_format_result_falls_back_to_repr_when_pydantic_cannot_serialise() -> None:
    """A model pydantic cannot write as JSON is printed as its repr (PydanticSerializationError)."""
    import pydantic

    from actorflow.cli._run import format_result

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    class Holder(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        thing: Opaque

    model = Holder(thing=Opaque())
    with pytest.raises(pydantic_core.PydanticSerializationError):
        model.model_dump_json()
    assert format_result(model) == "Holder(thing=<opaque>)"


def test_verbose_prints_each_step_and_the_traceback(project: Path) -> None:
    """--verbose prints every step invocation, and a failure's full traceback."""
    done = actorflow_cli("run", "flows:Boom", "--verbose", cwd=project)
    assert done.returncode == 1
    assert "step explode got StartEvent -> raised ValueError: boom" in done.stdout
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("actorflow: run failed: ValueError: boom")


def test_a_timed_out_run_exits_124(project: Path) -> None:
    """--timeout bounds the run; running out of time is exit status 124, as with timeout(1)."""
    started = time.monotonic()
    done = actorflow_cli("run", "flows:Sleepy", "--timeout", "0.3", cwd=project)
    assert time.monotonic() - started < 300  # the nap is 600 s: only the timeout ends it sooner
    assert (done.returncode, done.stdout) == (124, "")
    assert done.stderr.startswith("actorflow: timed out: Operation timed out after 0.3 seconds: Sleepy run ")


def run_on_a_terminal(args: Sequence[str], cwd: Path) -> tuple[int, bytes]:
    """Run the command with a pseudo-terminal as its stdout; its exit status and output."""
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {
        "TERM": "xterm",
        "COLUMNS": "100",
        "LINES": "30",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "actorflow", *args],
        cwd=cwd,
        stdout=secondary,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 30
    try:
        while (
            time.monotonic() < deadline and select.select([primary], [], [], deadline - time.monotonic())[0]
        ):
            try:
                chunk = os.read(primary, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(primary)
        assert proc.wait(10) is not None
        assert proc.stderr is not None
        proc.stderr.close()
    return proc.returncode, output


def test_a_terminal_gets_a_live_display(project: Path) -> None:
    """On a terminal the running steps are redrawn in place, then replaced by the result."""
    status, output = run_on_a_terminal(["run", "flows:Busy", "n=4"], project)
    text = output.decode()
    assert status == 0
    assert "\x1b[J" in text and "F\x1b[J" in text  # drawn, then moved up over and redrawn
    assert "Busy" in text and "work" in text and "running" in text and "done" in text
    # The last thing on the screen: the display erased, the cursor back, the result printed.
    assert text.endswith("\x1b[?25h[\r\n  0,\r\n  1,\r\n  2,\r\n  3\r\n]\r\n")


# -- the live display, in process: an Observer that reads only its records -------------------


class Piece(actorflow.Event):
    i: int


class Made(actorflow.Event):
    i: int


class Workshop(actorflow.Workflow):
    """Five pieces, two workers at a time, one second each; one piece is retried once."""

    @actorflow.step
    async def split(self, ctx: actorflow.Context, ev: actorflow.StartEvent) -> Piece | None:
        for i in range(5):
            ctx.send_event(Piece(i=i))
        return None

    @actorflow.step(
        num_workers=2, retry_policy=actorflow.ConstantDelayRetryPolicy(maximum_attempts=2, delay=0)
    )
    async def work(self, ctx: actorflow.Context, ev: Piece) -> Made:
        await trio.sleep(1)
        if ev.i == 4 and ctx.attempt == 1:
            raise ValueError("flaky")
        return Made(i=ev.i)

    @actorflow.step
    async def collect(self, ctx: actorflow.Context, ev: Made) -> actorflow.StopEvent | None:
        done = ctx.collect_events(ev, [Made] * 5)
        return None if done is None else actorflow.StopEvent(result=len(done))


def step_line(lines: list[str], name: str) -> str:
    return next(line.split(None, 1)[1] for line in lines[1:] if line.split()[0] == name)


async def test_the_live_display_counts_from_observer_records_only(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live display is an Observer: running, queued, done and retried come from its records."""
    import io

    from actorflow.cli._live import LiveDisplay

    def no_peeking(self: object) -> None:
        raise AssertionError("the live display must read observer records, not statistics()")

    monkeypatch.setattr(actorflow.RunHandle, "statistics", no_peeking)
    display = LiveDisplay(io.StringIO(), color=False)
    seen = []
    async with Workshop(observers=[display]).open_run() as handle:
        for moment in (0.5, 1.5, 2.5, 3.5):
            await trio.sleep_until(moment)
            seen.append(display.render(handle.run_id, moment, 100, 30))
        assert await handle.result() == 5
    final = display.render(handle.run_id, 4.0, 100, 30)
    assert [step_line(lines, "work") for lines in seen] == [
        "▶ 2/2 running · 3 queued · 0 done",
        "▶ 2/2 running · 1 queued · 2 done",
        "▶ 1/2 running · 4 done",  # piece 4 alone, and it fails at 3 s
        "▶ 1/2 running · 4 done · 1 retried",  # its second attempt
    ]
    assert seen[0][0].startswith("⠋ Workshop ") and " · running · 0.5 s" in seen[0][0]
    assert step_line(final, "work") == "5 done · 1 retried"
    assert step_line(final, "collect") == "5 done"
    assert " · finished · 4.0 s" in final[0]


def test_draw_writes_the_page_or_mermaid(project: Path, tmp_path: Path) -> None:
    """draw writes the HTML page (CLASS.html by default) or prints Mermaid text."""
    done = actorflow_cli("draw", f"{project / 'flows.py'}:Busy", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("wrote Busy.html (") and done.stdout.endswith(" kB)\n")
    page = (tmp_path / "Busy.html").read_text(encoding="utf-8")
    assert '"label":"collect"' in page and page.count("<script") == 3

    done = actorflow_cli("draw", "flows:Busy", "--mermaid", cwd=project)
    assert done.returncode == 0
    assert done.stdout.startswith("flowchart TD\n")
    assert "    step_work --> ev_Done\n" in done.stdout
    assert 'step_work["work<br/>2 workers"]:::step' in done.stdout

    done = actorflow_cli("draw", "flows:Busy", "--mermaid", "-o", str(tmp_path / "busy.mmd"), cwd=project)
    assert done.returncode == 0
    assert (tmp_path / "busy.mmd").read_text().startswith("flowchart TD\n")


def test_trace_file_round_trip(project: Path, tmp_path: Path) -> None:
    """run --trace appends audit records that audit verify, trace show and trace draw read."""
    trace = tmp_path / "audit.jsonl"
    for n in ("2", "3"):
        done = actorflow_cli("run", "flows:Busy", f"n={n}", "--trace", str(trace), cwd=project)
        assert (done.returncode, done.stderr) == (0, "")
    run_ids = list(dict.fromkeys(json.loads(line)["run_id"] for line in trace.read_text().splitlines()))
    assert len(run_ids) == 2

    verified = actorflow_cli("audit", "verify", str(trace), cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"OK {trace}")

    shown = actorflow_cli("trace", "show", str(trace), "--run", run_ids[1], cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "\x1b" not in shown.stdout
    assert "split" in shown.stdout and "collect" in shown.stdout

    several = actorflow_cli("trace", "draw", str(trace), cwd=tmp_path)
    assert several.returncode == 2
    assert (
        several.stderr
        == f"actorflow: error: {trace} holds 2 runs; pick one with --run: {', '.join(run_ids)}\n"
    )
    drawn = actorflow_cli("trace", "draw", str(trace), "--run", run_ids[1][:8], cwd=tmp_path)
    assert (drawn.returncode, drawn.stdout) == (
        0,
        f"wrote run-{run_ids[1][:8]}.html ({(tmp_path / f'run-{run_ids[1][:8]}.html').stat().st_size / 1000:.0f} kB)\n",
    )


def test_bench_runs_the_nearest_suite(tmp_path: Path) -> None:
    """bench finds benchmarks/ in this or a parent directory and runs it, passing --quick."""
    suite = tmp_path / "benchmarks"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "__main__.py").write_text("import sys\nprint('bench', sys.argv[1:])\nsys.exit(3)\n")
    (tmp_path / "deeper").mkdir()
    done = actorflow_cli("bench", "--quick", cwd=tmp_path / "deeper")
    assert (done.returncode, done.stdout) == (3, "bench ['--quick']\n")


def test_bench_reports_a_suite_killed_by_a_signal_as_a_shell_would(tmp_path: Path) -> None:
    """A suite ended by signal N makes bench exit 128+N, not a negative status."""
    suite = tmp_path / "benchmarks"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "__main__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    done = actorflow_cli("bench", cwd=tmp_path)
    assert done.returncode == 128 + signal.SIGTERM


def test_trace_show_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`trace show FILE | head -1`: no BrokenPipeError traceback, the status of a SIGPIPE'd tool."""
    trace = tmp_path / "many.jsonl"
    with trace.open("w") as f:  # far more output than a pipe buffers, so the writer must notice
        for i in range(3000):
            records = [
                {"event": "run.started"},
                {
                    "event": "event.emitted",
                    "event_id": 1,
                    "event_type": "StartEvent",
                    "cause_id": None,
                    "step": None,
                    "payload": {"i": i},
                },
                {"event": "run.finished", "duration_s": 0.01},
            ]
            for seq, r in enumerate(records, 1):
                f.write(json.dumps(r | {"run_id": f"run-{i:05d}", "seq": seq, "workflow": "W"}) + "\n")
    with subprocess.Popen(
        [sys.executable, "-m", "actorflow", "trace", "show", str(trace)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"W run run-00000")
        proc.stdout.close()
        err = proc.stderr.read()
        assert (proc.wait(30), err) == (128 + signal.SIGPIPE, b"")


@pytest.mark.parametrize("name", ["nested.jsonl", "junk.jsonl"])
def test_audit_verify_of_a_hostile_file_says_so_in_one_line(project: Path, name: str) -> None:
    """audit verify of absurdly nested JSON or binary junk: one line naming the file, no traceback."""
    done = actorflow_cli("audit", "verify", name, cwd=project)
    output = done.stdout + done.stderr
    assert "Traceback" not in output and output.count("\n") == 1, output
    # Either the file is named as broken (1, verify found the bad line) or unreadable (2).
    assert (done.returncode, output.startswith(f"BROKEN {name}: line 1: ")) in ((1, True), (2, False))
    if done.returncode == 2:
        assert done.stderr.startswith(f"actorflow: error: cannot read {name}: ")


def test_version_and_help(tmp_path: Path) -> None:
    """--version names the version; help exits 0; no command at all shows help and exits 2."""
    done = actorflow_cli("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"actorflow {actorflow.__version__}\n")
    assert actorflow_cli("run", "--help", cwd=tmp_path).returncode == 0
    bare = actorflow_cli(cwd=tmp_path)
    assert bare.returncode == 2 and "COMMAND" in bare.stderr


def test_help_does_not_load_the_runtime() -> None:
    """`actorflow --help` builds its parser from every command without importing the run core,
    pydantic or the live display (they load when a command runs)."""
    code = (
        "import sys\n"
        "from actorflow.cli import main\n"
        "status = main(['--help'])\n"
        "heavy = ['actorflow._run', 'actorflow._events', 'pydantic', 'actorflow.cli._live']\n"
        "print(status, [m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"


def test_the_console_script_is_installed() -> None:
    """The `actorflow` script sits next to the interpreter and runs the same main()."""
    script = Path(sys.executable).with_name("actorflow")
    if not script.exists():
        found = shutil.which("actorflow")
        assert found, "no actorflow console script: reinstall the package (pip install -e .)"
        script = Path(found)
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False, timeout=30)
    assert (done.returncode, done.stdout) == (0, f"actorflow {actorflow.__version__}\n")


# -- bad input: one line on stderr, exit status 2 -------------------------------------------------

BAD_INPUT = {
    "unknown module": (["run", "nosuch:Flow"], "no module named 'nosuch'"),
    "unknown class": (
        ["run", "flows:Nope"],
        "flows has no 'Nope'; its workflows: Boom, Busy, Echo, Exits, Greeting, NotANumber, Sleepy, Strict",
    ),
    "not a workflow class": (
        ["run", "flows:Item"],
        "flows:Item is the class Item, not a Workflow subclass",
    ),
    "not a workflow object": (
        ["draw", "flows:not_a_workflow"],
        "flows:not_a_workflow is a int, not a Workflow subclass",
    ),
    "no colon": (["run", "flows"], "'flows' is not MODULE:CLASS"),
    "missing file": (["run", "no/such/file.py:Flow"], "no such file: no/such/file.py"),
    "module fails to import": (
        ["run", "broken:Flow"],
        "importing broken failed: RuntimeError: broken at import",
    ),
    "malformed workflow": (
        ["draw", "malformed:Malformed"],
        "Malformed is not a valid workflow: - At least one Event of type StopEvent must be returned by any step",
    ),
    "bad key=value": (
        ["run", "flows:Echo", "not-a-key=1"],
        "bad argument 'not-a-key=1': expected KEY=VALUE",
    ),
    "key given twice": (["run", "flows:Echo", "n=1", "n=2"], "n is given twice"),
    "invalid start event": (["run", "flows:Strict", "n=many"], "Strict: invalid arguments for Numbered"),
    "bad timeout": (
        ["run", "flows:Echo", "--timeout", "soon"],
        "argument --timeout: expected a number of seconds",
    ),
    "unknown option": (["run", "flows:Echo", "--fast"], "unrecognized arguments: --fast"),
    "options for an instance": (
        ["run", "flows:instance", "--timeout", "3"],
        "--timeout and --verbose need a Workflow class",
    ),
    "draw: unwritable output": (
        ["draw", "flows:Echo", "-o", "no/such/dir/x.html"],
        "cannot write no/such/dir/x.html",
    ),
    "audit verify: missing file": (["audit", "verify", "missing.jsonl"], "no such file: missing.jsonl"),
    "trace show: missing file": (["trace", "show", "missing.jsonl"], "no such file: missing.jsonl"),
    "trace draw: empty file": (["trace", "draw", "trace.jsonl"], "the trace holds no run"),
    "bench: no suite here": (["bench"], "cannot find the benchmark suite"),
    "self as a run keyword": (["run", "flows:Echo", "self=1"], "'self' cannot be a run keyword"),
    "module exits when imported": (["run", "exits:Flow"], "importing exits failed: it called sys.exit(0)"),
    "file exits when imported": (
        ["draw", "exits.py:Flow"],
        "importing exits.py failed: it called sys.exit(0)",
    ),
    "trace draw: missing file": (["trace", "draw", "missing.jsonl"], "no such file: missing.jsonl"),
    "module file of binary junk": (["draw", "junkmod.py:Flow"], "importing junkmod.py failed: SyntaxError: "),
    "module file nested too deep": (
        ["run", "nestmod.py:Flow"],
        "importing nestmod.py failed: SyntaxError: too many nested parentheses (line 1)",
    ),
    "module path is a directory": (["run", "dirmod.py:Flow"], "dirmod.py is a directory, not a file"),
    "audit verify: a directory": (["audit", "verify", "adir"], "adir is a directory, not a file"),
    "trace show: a directory": (["trace", "show", "adir"], "adir is a directory, not a file"),
    "trace draw: a directory": (["trace", "draw", "adir"], "adir is a directory, not a file"),
    "trace show: nested JSON": (["trace", "show", "nested.jsonl"], "nested.jsonl, line 1: "),
    "trace draw: nested JSON": (["trace", "draw", "nested.jsonl"], "nested.jsonl, line 1: "),
    "trace show: binary junk": (["trace", "show", "junk.jsonl"], "junk.jsonl, line 1: "),
    "trace draw: binary junk": (["trace", "draw", "junk.jsonl"], "junk.jsonl, line 1: "),
    "trace show: no audit records": (["trace", "show", "other.jsonl"], "other.jsonl holds no audit records"),
}


@pytest.fixture(scope="module")
def bad_input_results(project: Path) -> dict[str, tuple[int, str, str]]:
    """Every bad-input case, a few at a time (each is a process start: this is faster, and a
    loaded machine still gives each one the time it needs)."""
    results: dict[str, tuple[int, str, str]] = {}
    limit = trio.CapacityLimiter(4)

    async def one(case: str, args: list[str]) -> None:
        async with limit:
            with trio.fail_after(120):  # one command that hangs fails the test instead
                done = await trio.run_process(
                    [sys.executable, "-m", "actorflow", *args],
                    cwd=project,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
        results[case] = (done.returncode, done.stdout.decode(), done.stderr.decode())

    async def run_all() -> None:
        async with trio.open_nursery() as nursery:
            for case, (args, _) in BAD_INPUT.items():
                nursery.start_soon(one, case, args)

    trio.run(run_all)
    return results


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gets_one_clear_line(case: str, bad_input_results: dict[str, tuple[int, str, str]]) -> None:
    """Bad input ends in exit status 2 and one line on stderr that says what is wrong."""
    status, out, err = bad_input_results[case]
    assert (status, out) == (2, ""), err
    assert err.startswith("actorflow: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert len(err) < 500, err  # a line a person reads, even when the input is 100,000 brackets
    assert BAD_INPUT[case][1] in err
