"""``Redactor``: the processor that takes chosen payload fields out of audit records.

Redaction happens before the record is hashed and written, so the hash chain covers the
redacted record and the removed values never reach the file. The record lists what was
removed in ``redacted``, so a reader can tell a policy's marker from a value that happened
to be the marker's text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from ._canon import is_record

__all__ = ["REDACTED", "Redactor"]

#: What a redacted value is replaced with (unless ``Redactor(marker=...)`` says otherwise).
REDACTED = "[REDACTED]"

_ERROR_RECORDS = frozenset({"step.failed", "run.failed", "run.timed_out", "run.cancelled", "llm.called"})


class Redactor:
    """structlog processor: replace chosen fields of event payloads with a marker.

    ``fields`` maps an event type name (``"PatientEvent"``, or ``"*"`` for every type) to the
    field names to redact; a dotted name (``"address.street"``) reaches into nested objects.
    ``when(event_type, field, value)`` decides for every top-level field of every payload
    (True: redact). Both apply to ``event.emitted`` payloads and to the ``result`` of
    ``run.finished`` (as the fields of its StopEvent type: ``result`` for a plain StopEvent).
    ``errors=True`` also replaces the exception messages of failure records (their
    ``error_type`` stays).

    Put it before :class:`HashChain`. Records that are not audit records pass untouched.
    """

    __slots__ = ("_errors", "_fields", "_marker", "_when")

    def __init__(
        self,
        fields: Mapping[str, Iterable[str]] | None = None,
        *,
        when: Callable[[str, str, Any], bool] | None = None,
        errors: bool = False,
        marker: str = REDACTED,
    ) -> None:
        problems: list[str] = []
        table: dict[str, tuple[tuple[str, ...], ...]] = {}
        if fields is not None and not isinstance(fields, Mapping):
            problems.append(f"fields must map event type names to field names, got {type(fields).__name__}")
            fields = None
        for event_type, names in (fields or {}).items():
            if not isinstance(event_type, str) or not event_type:
                problems.append(f"event type {event_type!r} is not a name (use '*' for every type)")
                continue
            if isinstance(names, str) or not isinstance(names, Iterable):
                problems.append(
                    f"fields[{event_type!r}] must be a list of field names, got {names!r}"
                    + (f" (write [{names!r}])" if isinstance(names, str) else "")
                )
                continue
            paths = []
            for name in names:
                if not isinstance(name, str) or not name or "" in name.split("."):
                    problems.append(f"fields[{event_type!r}] has {name!r}, which is not a field name")
                else:
                    paths.append(tuple(name.split(".")))
            table[event_type] = tuple(paths)
        if when is not None and not callable(when):
            problems.append(f"when must be callable(event_type, field, value) -> bool, got {when!r}")
        if not isinstance(marker, str):
            problems.append(f"marker must be a str, got {type(marker).__name__}")
        if problems:
            raise ValueError("invalid Redactor:\n" + "\n".join(f"  - {p}" for p in problems))
        self._fields = table
        self._when = when
        self._errors = bool(errors)
        self._marker = marker

    def __repr__(self) -> str:
        fields = {k: [".".join(p) for p in v] for k, v in self._fields.items()}
        return f"Redactor({fields!r}, errors={self._errors})"

    def _redact(self, event_type: str, payload: Any) -> tuple[Any, list[str]]:
        """A copy of ``payload`` with the chosen fields replaced, and their dotted names."""
        if not isinstance(payload, dict):
            return payload, []
        done: list[str] = []
        out = dict(payload)
        for path in (*self._fields.get("*", ()), *self._fields.get(event_type, ())):
            if _replace(out, path, self._marker):
                done.append(".".join(path))
        when = self._when
        if when is not None:
            for name, value in payload.items():
                if name not in done and when(event_type, name, value):
                    out[name] = self._marker
                    done.append(name)
        return out, done

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        if not is_record(event_dict):
            return event_dict
        name = event_dict["event"]
        done: list[str] = []
        if name == "event.emitted":
            payload, done = self._redact(str(event_dict.get("event_type")), event_dict.get("payload"))
            if done:
                event_dict["payload"] = payload
        elif name == "run.finished":
            result_type = str(event_dict.get("result_type"))
            result = event_dict.get("result")
            if result_type == "StopEvent":  # the run returned StopEvent.result itself
                view, done = self._redact(result_type, {"result": result})
                if done:
                    event_dict["result"] = view["result"]
            else:
                view, done = self._redact(result_type, result)
                if done:
                    event_dict["result"] = view
        if self._errors and name in _ERROR_RECORDS and event_dict.get("error") is not None:
            event_dict["error"] = self._marker
            done.append("error")
        if done:
            event_dict["redacted"] = sorted({*event_dict.get("redacted", ()), *done})
        return event_dict


def _replace(obj: dict[str, Any], path: tuple[str, ...], marker: str) -> bool:
    """Replace ``obj[path]`` (copying the dicts on the way); False when it is not there."""
    head, rest = path[0], path[1:]
    if head not in obj:
        return False
    if not rest:
        obj[head] = marker
        return True
    inner = obj[head]
    if not isinstance(inner, dict):
        return False
    inner = dict(inner)
    if _replace(inner, rest, marker):
        obj[head] = inner
        return True
    return False
