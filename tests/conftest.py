"""Shared fixtures: no run of any test may leave a task behind."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import pytest

from actorflow.testing import leftover_tasks


@pytest.fixture
async def no_leftover_tasks() -> AsyncIterator[None]:
    """After the test, no task of any run it started is still alive."""
    yield
    assert leftover_tasks() == []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every trio test gets the check; sync tests have no trio run to inspect.
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.fixturenames.append("no_leftover_tasks")
