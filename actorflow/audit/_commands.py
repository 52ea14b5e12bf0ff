"""The bodies of ``python -m actorflow audit verify FILE``, ``audit replay FILE MODULE:CLASS``
and ``trace show FILE [--run ID]``.

The CLI module parses arguments and calls these; they print to ``out`` and return the exit
status (0 fine, 1 what was asked for is broken or missing, 2 the file cannot be read).
"""

from __future__ import annotations

import os
from typing import Any, TextIO

from ._load import AuditFileError, _build, read_file
from ._show import _clean, render
from ._verify import verify

__all__ = ["read_key", "replay_command", "show_command", "verify_command"]


class _KeyUnreadable(Exception):
    """The key for ``audit verify`` cannot be read; the message says why (never the key)."""


def read_key(key_file: str | None = None, key_env: str | None = None) -> bytes | None:
    """The HMAC key from a file (its bytes, less one trailing newline) or an environment
    variable, never from the command line itself (where ``ps`` and shell histories show it).
    """
    if key_file is not None and key_env is not None:
        raise _KeyUnreadable("give the key one way: --key-file or --key-env, not both")
    if key_file is not None:
        try:
            with open(key_file, "rb") as f:
                key = f.read()
        except OSError as exc:
            raise _KeyUnreadable(f"cannot read the key file {key_file}: {exc.strerror or exc}") from None
        key = key[:-2] if key.endswith(b"\r\n") else key[:-1] if key.endswith(b"\n") else key
        if not key:
            raise _KeyUnreadable(f"the key file {key_file} is empty")
        return key
    if key_env is not None:
        value = os.environb.get(key_env.encode()) if os.supports_bytes_environ else None
        if value is None and key_env in os.environ:  # pragma: no cover - no bytes environ (Windows)
            value = os.environ[key_env].encode()
        if value is None:
            raise _KeyUnreadable(f"the environment variable {key_env} is not set")
        if not value:
            raise _KeyUnreadable(f"the environment variable {key_env} is empty")
        return value
    return None


def verify_command(
    path: str,
    *,
    out: TextIO,
    key: bytes | None = None,
    key_file: str | None = None,
    key_env: str | None = None,
    expect_head: str | None = None,
) -> int:
    """``audit verify FILE [--key-file PATH | --key-env NAME] [--expect-head HASH]``: print
    OK and the head hash, or the first broken record."""
    try:
        if key is None:
            key = read_key(key_file, key_env)
    except _KeyUnreadable as exc:
        print(f"error: {exc}", file=out)
        return 2
    try:
        result = verify(path, key=key, expect_head=expect_head)
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=out)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=out)
        return 2
    if result.problem is not None:
        print(f"BROKEN {path}: {_clean(result.problem)}", file=out)
        return 1
    chains = "per-run hash chains" + (" and file chain" if result.file_chain else "")
    print(
        f"OK {path}: {result.records} records of {result.runs} run{'' if result.runs == 1 else 's'}; "
        f"{chains} intact; "
        f"every run closed",
        file=out,
    )
    if not result.file_chain and result.records:
        print(
            "note: the file has no file chain (JSONLinesSink(file_chain=False)): lines of "
            "different runs trading places, and whole runs deleted, would not be detected",
            file=out,
        )
    if expect_head is not None:
        print(f"expected head {expect_head} found", file=out)
    print(f"head {result.head}", file=out)
    return 0


def replay_command(
    path: str,
    workflow: Any,
    *,
    run_id: str | None = None,
    out: TextIO,
    key_file: str | None = None,
    key_env: str | None = None,
    redact: Any = None,
) -> int:
    """``audit replay FILE MODULE:CLASS [--run ID] [--redact MODULE:NAME]``: replay the recorded runs and print how
    each went; 0 the same, 1 diverged, 2 not replayable (or a call it cannot answer)."""
    from .._exceptions import ReplayError
    from ._replay import replay

    try:
        key = read_key(key_file, key_env)
    except _KeyUnreadable as exc:
        print(f"error: {exc}", file=out)
        return 2
    try:
        report = replay(path, workflow, run_id=run_id, key=key, redact=redact)
    except ReplayError as exc:
        print(f"error: {_clean(exc)}", file=out)
        return 2
    except AuditFileError as exc:
        print(
            f"error: {_clean(exc)}; check the file with 'python -m actorflow audit verify {path}'", file=out
        )
        return 2
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=out)
        return 2
    print(str(report), file=out)
    return report.exit_status


def show_command(path: str, run_id: str | None, *, out: TextIO, color: bool = False) -> int:
    """``trace show FILE [--run ID]``: print the causal tree of one run (an id or a unique
    prefix of one), or of every run in the file."""
    try:
        runs, unreadable = read_file(path)
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=out)
        return 2
    except AuditFileError as exc:
        print(
            f"error: {_clean(exc)}; check the file with 'python -m actorflow audit verify {path}'", file=out
        )
        return 2
    if unreadable:
        print(
            f"warning: {unreadable} line(s) of {path} are not audit records and were skipped; "
            f"check the file with 'python -m actorflow audit verify {path}'",
            file=out,
        )
    chosen = list(runs)
    if run_id is not None:
        chosen = [r for r in runs if r == run_id] or [r for r in runs if r.startswith(run_id)]
        if not chosen:
            print(f"error: {path} has no run {run_id!r}{_listing(list(runs))}", file=out)
            return 1
        if len(chosen) > 1:
            print(f"error: {run_id!r} is the start of {len(chosen)} run ids{_listing(chosen)}", file=out)
            return 1
    elif not runs:
        print(f"{path}: no audit records", file=out)
        return 0
    for n, rid in enumerate(chosen):
        if n:
            print(file=out)
        trace = _build(sorted(runs[rid], key=lambda r: r["seq"]))
        for line in render(trace, color=color):
            print(line, file=out)
    return 0


def _listing(run_ids: list[str]) -> str:
    if not run_ids:
        return " (it has no runs)"
    shown = ", ".join(_clean(r) for r in run_ids[:10])
    return f"; its runs: {shown}" + (f" and {len(run_ids) - 10} more" if len(run_ids) > 10 else "")
