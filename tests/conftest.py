"""Shared fixtures: no run of any test may leave a task behind, no trio test may hang; helper
modules for the tests."""

from __future__ import annotations

import importlib.util
import inspect
import os
import pathlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import hypothesis
import pytest
import structlog
import trio
import trio.testing

import actorflow.audit
from actorflow.testing import leftover_tasks


def _register_sibling(name: str) -> None:
    """Make tests/<name>.py importable as ``name``, in pytest's prepend and importlib modes alike."""
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, pathlib.Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


# Hypothesis's per-example deadline is wall-clock time: a loaded machine breaks it at random.
# Tests that must be fast say so in benchmarks/, never here.
hypothesis.settings.register_profile("actorflow", deadline=None)
hypothesis.settings.load_profile("actorflow")

for _helper in ("llm_server", "audit_flows", "durable_flows", "durable_crash", "scale_flows", "replay_flows"):
    _register_sibling(_helper)


@pytest.fixture
def trail(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """structlog configured with the ready audit chain, writing to a fresh file."""
    path = tmp_path / "audit.jsonl"
    chain = actorflow.audit.processors(path)
    structlog.configure(processors=chain)
    yield path
    chain[-1].close()
    structlog.reset_defaults()


@pytest.fixture
def clean_structlog() -> Iterator[None]:
    """Restore structlog's defaults (and switch global tracing off) after a test that changed them."""
    yield
    structlog.reset_defaults()
    actorflow.audit.disable()


@pytest.fixture
def one_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's hot records in one group line, however slow the machine: no group is sealed for
    its age, and no writer thread seals a quiet one (the trio thread and close() flush). For
    tests that read or edit given lines: a loaded machine can pause a run for the 2 ms that
    seal a group, which would change how many lines a run writes."""
    from actorflow.audit import _sink

    monkeypatch.setattr(_sink, "_GROUP_NS", 10**15)
    monkeypatch.setattr(_sink.JSONLinesSink, "_start_writer", lambda self: None)


@pytest.fixture
async def no_leftover_tasks() -> AsyncIterator[None]:
    """After the test, no task of any run it started is still alive."""
    yield
    assert leftover_tasks() == []


#: Seconds any one trio test may take. A guarantee that breaks (a timeout switched off, a
#: stall not detected) then fails its test instead of hanging the suite.
TEST_TIMEOUT = float(os.environ.get("ACTORFLOW_TEST_TIMEOUT", "300"))
#: The same in virtual seconds, for tests on autojump_clock: a test that would wait forever
#: jumps straight to it, while tests may sleep for virtual hours on purpose.
VIRTUAL_TEST_TIMEOUT = float(os.environ.get("ACTORFLOW_VIRTUAL_TEST_TIMEOUT", "1e6"))


def _bounded_run(fn: Callable[[], Any], **kwargs: Any) -> Any:
    """pytest-trio's runner, with the whole test (fixtures included) under trio.fail_after."""
    clock = kwargs.get("clock")
    virtual = isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold != float("inf")
    limit = VIRTUAL_TEST_TIMEOUT if virtual else TEST_TIMEOUT

    async def bounded() -> Any:
        with trio.fail_after(limit):
            return await fn()

    return trio.run(bounded, **kwargs)


#: Markers of slow suites that run only when ``-m`` names them (``.ci/run`` does).
SLOW_SUITES = ("crash", "ray")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The slow suites stay out of the default run unless -m asks for them.
    wanted = config.getoption("markexpr") or ""
    slow = [m for m in SLOW_SUITES if m not in wanted]
    if slow:
        keep = [item for item in items if not any(item.get_closest_marker(m) for m in slow)]
        if len(keep) != len(items):
            config.hook.pytest_deselected(items=[item for item in items if item not in keep])
            items[:] = keep
    # Every trio test gets the checks; sync tests have no trio run to inspect.
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.fixturenames.append("no_leftover_tasks")
            item.add_marker(pytest.mark.trio(run=_bounded_run), append=False)
