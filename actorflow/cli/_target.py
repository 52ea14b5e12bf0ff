"""Finding the workflow a command names (``MODULE:CLASS`` or ``path/file.py:CLASS``) and the
``KEY=VALUE`` words of a run."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._base import CLIError, existing, one_line

__all__ = ["load_redactor", "load_target", "parse_params"]


def load_target(ref: str) -> Any:
    """The Workflow subclass (or instance) that ``MODULE:NAME`` or ``path/file.py:NAME`` names."""
    from .._exceptions import WorkflowDefinitionError
    from .._workflow import Workflow, spec

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


def load_redactor(ref: str) -> Any:
    """The ``actorflow.audit.Redactor`` that ``MODULE:NAME`` or ``path/file.py:NAME`` names
    (the one the application writes its trail with)."""
    from ..audit import Redactor

    where, sep, name = ref.rpartition(":")
    if not sep or not where or not name:
        raise CLIError(f"{ref!r} is not MODULE:NAME; write e.g. myapp.audit:REDACTOR")
    module = (
        _import_file(where)
        if where.endswith(".py") or os.sep in where or "/" in where
        else _import_module(where)
    )
    obj: Any = module
    try:
        for part in name.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise CLIError(f"{where} has no {name!r}") from None
    if not isinstance(obj, Redactor):
        raise CLIError(f"{ref} is a {type(obj).__name__}, not an actorflow.audit.Redactor")
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
        raise CLIError(f"importing {name} failed: {one_line(exc)}") from None
    except CLIError:
        raise
    except SystemExit as exc:
        raise CLIError(_exited(name, exc)) from None
    except Exception as exc:
        raise CLIError(f"importing {name} failed: {one_line(exc)}") from None


def _exited(name: str, exc: SystemExit) -> str:
    return (
        f"importing {name} failed: it called sys.exit({exc.code!r}) while being imported "
        f"(a module to run must define workflows, not run itself when imported)"
    )


def _import_file(path: str) -> Any:
    file = Path(existing(path))
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
    except SystemExit as exc:
        del sys.modules[name]
        raise CLIError(_exited(path, exc)) from None
    except Exception as exc:
        del sys.modules[name]
        raise CLIError(f"importing {path} failed: {one_line(exc)}") from None
    return module


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
