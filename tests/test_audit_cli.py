"""The bodies of ``audit verify`` and ``trace show``: what they print and the status they return."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
import trio

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, audit, step
from actorflow.audit._commands import show_command, verify_command


class Item(Event):
    n: int


class Fan(Workflow):
    """StartEvent -> two Items -> work (2 workers) -> done collects both."""

    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Item | None:
        ctx.send_event(Item(n=1))
        ctx.send_event(Item(n=2))
        return None

    @step(num_workers=2)
    async def work(self, ev: Item) -> StopEvent | None:
        await trio.sleep(ev.n)
        if ev.n == 2:
            return StopEvent(result="both done")
        return None


class Loop(Workflow):
    """A step that feeds itself `rounds` times: a causal chain deeper than the recursion limit."""

    @step
    async def begin(self, ev: StartEvent) -> Item:
        return Item(n=0)

    @step
    async def again(self, ev: Item) -> Item | StopEvent:
        return Item(n=ev.n + 1) if ev.n < 1200 else StopEvent(result=ev.n)


class Noisy(Workflow):
    @step
    async def shout(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="\x1b[2J\x1b]0;pwned\x07 \x9b31m")


def _run(command: object, *args: object, **kwargs: object) -> tuple[int, str]:
    out = io.StringIO()
    status = command(*args, out=out, **kwargs)  # type: ignore[operator]
    return status, out.getvalue()


async def test_verify_command_reports_ok_and_the_head(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """An intact file: exit 0, a one-line OK with counts, and the head hash."""
    await Fan(trace=True).run()
    status, text = _run(verify_command, str(trail))
    assert status == 0
    first, head = text.splitlines()
    assert first.startswith(f"OK {trail}: 12 records of 1 run;") and "file chain intact" in first
    assert head == f"head {audit.verify(trail).head}"


async def test_verify_command_names_the_broken_record(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """An edited file: exit 1 and the line, run, seq and reason of the first broken record."""
    await Fan(trace=True).run()
    lines = trail.read_bytes().splitlines(keepends=True)
    one_second = b",1000000000,"  # a step's duration, in a row of a records line
    k = next(i for i, line in enumerate(lines) if one_second in line)
    record = json.loads(lines[k])
    lines[k] = lines[k].replace(one_second, b",500000000,", 1)
    trail.write_bytes(b"".join(lines))
    status, text = _run(verify_command, str(trail))
    assert status == 1
    assert text == (
        f"BROKEN {trail}: line {k + 1}, run {record['run_id']}, seq {record['seq']}: hash does "
        f"not match the record's content: the record was changed\n"
    )


def test_commands_report_unreadable_files(tmp_path: Path) -> None:
    """A missing file is exit status 2 with the reason, for both commands."""
    missing = str(tmp_path / "nope.jsonl")
    for status, text in (_run(verify_command, missing), _run(show_command, missing, None)):
        assert status == 2 and text.startswith(f"error: cannot read {missing}")


async def test_show_command_prints_the_tree(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """trace show prints each event under the step invocation that emitted it, and the ending."""
    async with Fan(trace=True).open_run() as handle:
        await handle.result()
    status, text = _run(show_command, str(trail), handle.run_id[:6])
    assert status == 0
    header, *tree, ending = text.splitlines()
    assert header.startswith(f"Fan run {handle.run_id}  finished in 2.00 s  (12 records, started ")
    assert tree == [
        "#1 StartEvent (from outside)",
        "└─ split[0] finished 0 µs",
        '   ├─ #2 Item {"n": 1}',
        "   │  └─ work[0] finished 1.00 s",
        '   └─ #3 Item {"n": 2}',
        "      └─ work[1] finished 2.00 s",
        '         └─ #4 StopEvent {"result": "both done"}  → ends the run',
    ]
    assert ending == 'run.finished: result "both done"'


async def test_show_command_picks_runs_by_id_or_prefix(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """Without --run every run is shown; an unknown id is exit 1 with the file's runs listed."""
    await Fan(trace=True).run()
    await Fan(trace=True).run()
    status, text = _run(show_command, str(trail), None)
    assert status == 0 and text.count("Fan run ") == 2
    status, text = _run(show_command, str(trail), "not-a-run")
    assert status == 1 and "has no run 'not-a-run'; its runs: " in text
    status, text = _run(show_command, str(trail), "")
    assert status == 1 and "is the start of 2 run ids" in text


async def test_show_command_marks_failures_and_colours(trail: Path, autojump_clock: trio.abc.Clock) -> None:
    """A failed run shows the failing invocation and the error; color=True adds ANSI colours."""

    class Broken(Fan):
        @step(num_workers=2)
        async def work(self, ev: Item) -> StopEvent | None:
            await trio.sleep(ev.n)
            raise KeyError(f"no item {ev.n}")

    with pytest.raises(KeyError):
        await Broken(trace=True).run()
    status, text = _run(show_command, str(trail), None)
    assert status == 0
    assert "work[0] failed 1.00 s  KeyError: 'no item 1'" in text
    assert "work[1] cancelled 1.00 s" in text
    assert text.splitlines()[-1] == "run.failed: KeyError: 'no item 1' (step work, event #2)"
    status, coloured = _run(show_command, str(trail), None, color=True)
    assert "\x1b[31mfailed\x1b[0m" in coloured


async def test_show_command_escapes_terminal_controls(trail: Path) -> None:
    """Escape sequences inside recorded values are printed escaped, never sent to the terminal."""
    await Noisy(trace=True).run()
    status, text = _run(show_command, str(trail), None)
    assert status == 0
    assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text


async def test_show_and_load_handle_deep_causal_chains(trail: Path) -> None:
    """A 1200-round loop loads and prints without hitting the recursion limit."""
    async with Loop(trace=True).open_run() as handle:
        assert await handle.result() == 1200
    trace = audit.load_run(trail, handle.run_id)
    assert len(trace.events) == 1203 and trace.parents()[1203] == 1202
    status, text = _run(show_command, str(trail), handle.run_id)
    assert status == 0 and "#1203 StopEvent" in text


async def test_show_command_warns_about_lines_that_are_not_records(trail: Path) -> None:
    """JSON lines that are not audit records are skipped with a warning that points to verify."""
    await Noisy(trace=True).run()
    with open(trail, "ab") as f:
        f.write(b'{"event": "something else"}\n')
    status, text = _run(show_command, str(trail), None)
    assert status == 0 and text.startswith("warning: 1 line(s)") and "audit verify" in text
    with pytest.raises(LookupError):
        audit.load_run(trail, "nope")


async def test_show_command_refuses_malformed_files(trail: Path) -> None:
    """A malformed line, however hostile, is one line naming file and line, and exit status 2."""
    await Noisy(trace=True).run()
    good = trail.read_bytes()
    n = good.count(b"\n") + 1  # the line number of the bad line
    for bad in (
        b"garbage",
        b"[" * 100_000,
        b'{"x": "\xff"}',
        b'{"event":"run.started","run_id":"r","seq":"1"}',
    ):
        trail.write_bytes(good + bad + b"\n")
        status, text = _run(show_command, str(trail), None)
        assert status == 2, text
        assert text.startswith(f"error: {trail}, line {n}: ") and text.count("\n") == 1, text
        with pytest.raises(audit.AuditFileError, match=f"line {n}: "):
            audit.load_runs(trail)


def _durations_out(text: str) -> list[str]:
    return [re.sub(r"\d+(\.\d+)? (µs|ms|s)\b", "T", line) for line in text.splitlines()]


def test_docs_worked_example_runs_as_shown(tmp_path: Path) -> None:
    """docs/audit.md's loan example runs, and trace show / verify print what the page shows."""
    page = (Path(__file__).parent.parent / "docs" / "audit.md").read_text()
    (code,) = re.findall(r"```python\n(# loan\.py\n.*?)```", page, flags=re.S)
    (session,) = re.findall(r"```console\n(\$ python loan\.py\n.*?)```", page, flags=re.S)
    (tmp_path / "loan.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "loan.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "approved\n"
    trail = tmp_path / "audit.jsonl"
    shown_tree = session.split("$ python -m actorflow trace show audit.jsonl\n")[1].split("$ ")[0]
    status, text = _run(show_command, str(trail), None)
    assert status == 0
    run_id = audit.load_runs(trail)[0].run_id
    (shown_id,) = re.findall(r"^Loan run ([0-9a-f]{32}) ", shown_tree, flags=re.M)
    expected = _durations_out(shown_tree.replace(shown_id, run_id))
    got = _durations_out(text)
    assert got[1:] == expected[1:]
    assert got[0].split("  (")[0] == expected[0].split("  (")[0]
    status, text = _run(verify_command, str(trail))
    assert status == 0 and "18 records of 1 run" in text
    assert "756.1234" not in trail.read_text()


async def test_verify_command_checks_keyed_trails_with_a_key_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit verify --key-file/--key-env` checks a keyed trail; the key never comes from argv."""
    from actorflow.cli import main

    path = tmp_path / "keyed.jsonl"
    chain = audit.processors(path, key=b"s3cret-key")
    structlog.configure(processors=chain)
    await Fan(trace=True).run()
    chain[-1].close()
    structlog.reset_defaults()
    (tmp_path / "key").write_bytes(b"s3cret-key\n")
    (tmp_path / "wrong").write_bytes(b"other-key")
    (tmp_path / "empty").write_bytes(b"\n")
    monkeypatch.setenv("AUDIT_KEY", "s3cret-key")
    monkeypatch.setenv("EMPTY_KEY", "")
    cases = [
        ([], 1, "chained with a secret key"),
        (["--key-file", str(tmp_path / "key")], 0, "OK "),
        (["--key-env", "AUDIT_KEY"], 0, "OK "),
        (["--key-file", str(tmp_path / "wrong")], 1, "hash does not match"),
        (["--key-file", str(tmp_path / "missing")], 2, "error: cannot read the key file"),
        (["--key-file", str(tmp_path / "empty")], 2, "is empty"),
        (["--key-env", "NO_SUCH_VARIABLE_HERE"], 2, "NO_SUCH_VARIABLE_HERE is not set"),
        (["--key-env", "EMPTY_KEY"], 2, "EMPTY_KEY is empty"),
    ]
    for args, status, fragment in cases:
        assert main(["audit", "verify", str(path), *args]) == status, args
        out, err = capsys.readouterr()
        assert fragment in out + err, (args, out, err)
        assert "s3cret-key" not in out + err
    assert main(["audit", "verify", str(path), "--key-file", "a", "--key-env", "B"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


async def test_verify_command_checks_an_expected_head(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit verify --expect-head` fails once the line it was the head of is gone, exit 1."""
    from actorflow.cli import main

    await Noisy(trace=True).run()
    head = audit.verify(trail).head
    first_run = len(trail.read_bytes().splitlines())
    await Noisy(trace=True).run()
    assert main(["audit", "verify", str(trail), "--expect-head", head]) == 0
    assert f"expected head {head} found" in capsys.readouterr().out
    trail.write_bytes(b"".join(trail.read_bytes().splitlines(keepends=True)[:first_run]))
    assert main(["audit", "verify", str(trail), "--expect-head", audit.verify(trail).head]) == 0
    capsys.readouterr()
    trail.write_bytes(b"")
    assert main(["audit", "verify", str(trail), "--expect-head", head]) == 1
    assert "no line of the file has the expected head" in capsys.readouterr().out
    assert main(["audit", "verify", str(trail), "--expect-head", "nothex"]) == 2
    assert capsys.readouterr().out.startswith("error: expect_head must be 64 lowercase hex")
