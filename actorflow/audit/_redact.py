"""``Redactor``: the processor that takes chosen fields out of audit records.

Redaction happens before the record is hashed and written, so the hash chain covers the
redacted record and the removed values never reach the file. The record lists what was
removed in ``redacted``, so a reader can tell a policy's marker from a value that happened
to be the marker's text.

What carries user data, and so what the rules reach: the ``payload`` of ``event.emitted``,
the ``result`` of ``run.finished`` (read as the StopEvent's payload), every field of
``llm.called`` other than the ones that say which call it was (the answer, the prompt's start,
tool calls, and whatever else an LLM client reports), and, with ``errors=True``, the messages
of failure records. A rule never lets a value through because it has an unexpected shape: a
dotted path that meets something it cannot look into (a ``$repr`` marker, a string, a
number) replaces that whole value, and a list on the path applies the rest of the path to
each of its items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from ._canon import is_record
from ._chain import Hashed

__all__ = ["LLM_ANSWER", "LLM_CALL", "REDACTED", "Redactor"]

#: What a redacted value is replaced with (unless ``Redactor(marker=...)`` says otherwise).
REDACTED = "[REDACTED]"

#: The name ``fields`` and ``when`` know an ``llm.called`` record's fields by.
LLM_CALL = "llm.called"

#: The fields of an ``llm.called`` record that hold the model's answer (``llm_answers=False``).
LLM_ANSWER = ("response", "tool_calls")

_ERROR_RECORDS = frozenset({"step.failed", "run.failed", "run.timed_out", "run.cancelled", "llm.called"})

#: Fields of an ``llm.called`` record that say which call it was (the rest is its payload).
_LLM_ENVELOPE = frozenset(
    {
        "event",
        "run_id",
        "seq",
        "workflow",
        "timestamp",
        "step",
        "worker",
        "cause_id",
        "redacted",
        "hash",
        "prev_hash",
        "hash_alg",
        "file_chain",
        "file_prev",
        "call_id",
        "trace_id",
        "span_id",
    }
)

_MISSING: Any = object()


class Redactor:
    """structlog processor: replace chosen fields of payloads with a marker.

    ``fields`` maps an event type name (``"PatientEvent"``, ``"*"`` for every type, or
    ``"llm.called"`` for the fields of LLM call records: ``response``, ``prompt_preview``,
    ``tool_calls``, ...) to the field names to redact; a dotted name (``"address.street"``)
    reaches into nested objects, and through lists into each item (``"tool_calls.arguments"``).
    ``when(event_type, field, value)`` decides for every top-level field of every payload,
    LLM calls included (True: redact). Both apply to ``event.emitted`` payloads, to the
    ``result`` of ``run.finished`` (as the fields of its StopEvent type: ``result`` for a
    plain StopEvent) and to ``llm.called`` records. ``errors=True`` also replaces the
    exception messages of failure records and of failed LLM calls (their ``error_type``
    stays). ``llm_answers=False`` takes the model's answers out of every ``llm.called``
    record (``response`` and ``tool_calls``; the trail then cannot be replayed).

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
        llm_answers: bool = True,
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
        if not llm_answers:
            known = table.get(LLM_CALL, ())
            table[LLM_CALL] = (*known, *((n,) for n in LLM_ANSWER if (n,) not in known))
        self._fields = table
        self._when = when
        self._errors = bool(errors)
        self._marker = marker

    def __repr__(self) -> str:
        fields = {k: [".".join(p) for p in v] for k, v in self._fields.items()}
        return f"Redactor({fields!r}, errors={self._errors})"

    def _redact(self, event_type: str, payload: Any) -> tuple[Any, list[str]]:
        """A copy of ``payload`` with the chosen fields replaced, and their dotted names."""
        paths = (*self._fields.get("*", ()), *self._fields.get(event_type, ()))
        if not isinstance(payload, dict) or _is_marker(payload):
            # Not an object of fields (a marker, a bare value): a rule for its type cannot
            # say which part is safe, so it covers the whole.
            if payload is not None and (paths or self._when is not None):
                return self._marker, ["*"]
            return payload, []
        done: list[str] = []
        out = payload
        for path in paths:
            out, hit = _replace(out, path, self._marker, "")
            done.extend(hit)
        when = self._when
        if when is not None:
            for name, value in payload.items():
                if name not in done and when(event_type, name, value):
                    if out is payload:
                        out = dict(payload)
                    out[name] = self._marker
                    done.append(name)
        return out, done

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        if not is_record(event_dict):
            return event_dict
        if type(event_dict.get("hash")) is Hashed:
            # After HashChain: the sink writes the text the chain hashed, so what this took out
            # would still reach the file. Losing the record (a hole verify reports) is better.
            raise ValueError(
                "Redactor comes after HashChain among the processors: the record is hashed "
                "already and the sink writes what was hashed, so the redacted values would "
                "reach the file; put the Redactor before HashChain "
                "(audit.processors(path, redact=...) does)"
            )
        name = event_dict["event"]
        try:
            done = self._apply(name, event_dict)
        except RecursionError:  # a payload nested past what can be walked: none of it stays
            for field in ("payload", "result", "response", "tool_calls", "prompt_preview"):
                if field in event_dict:
                    event_dict[field] = self._marker
            done = ["*"]
        if self._errors and name in _ERROR_RECORDS and event_dict.get("error") is not None:
            event_dict["error"] = self._marker
            done.append("error")
        if done:
            event_dict["redacted"] = sorted({*event_dict.get("redacted", ()), *done})
        return event_dict

    def _apply(self, name: str, event_dict: MutableMapping[str, Any]) -> list[str]:
        done: list[str] = []
        if name == "event.emitted":
            payload, done = self._redact(str(event_dict.get("event_type")), event_dict.get("payload"))
            if done:
                event_dict["payload"] = payload
        elif name == "run.finished":
            result_type = str(event_dict.get("result_type"))
            result = event_dict.get("result")
            field = event_dict.get("result_field", _MISSING)
            if field is _MISSING and result_type == "StopEvent":
                # A record that does not say how to read its result: a plain StopEvent's
                # result, or the payload of a subclass that is also named StopEvent. Both.
                result, first = self._redact_field(result_type, "result", result)
                result, second = self._redact(result_type, result)
                done = first + [n for n in second if n not in first]
            elif isinstance(field, str):
                result, done = self._redact_field(result_type, field, result)
            else:
                result, done = self._redact(result_type, result)
            if done:
                event_dict["result"] = result
        elif name == LLM_CALL:
            view = {k: v for k, v in event_dict.items() if k not in _LLM_ENVELOPE}
            out, done = self._redact(LLM_CALL, view)
            if done == ["*"]:  # pragma: no cover - the view is always a dict
                out = {k: self._marker for k in view}
            for key, value in out.items():
                if value is not view[key]:
                    event_dict[key] = value
        return done

    def _redact_field(self, event_type: str, field: str, value: Any) -> tuple[Any, list[str]]:
        view, done = self._redact(event_type, {field: value})
        return (view[field] if done else value), done


def _is_marker(value: dict[str, Any]) -> bool:
    return "$repr" in value and "$type" in value and len(value) == 2


def _replace(value: Any, path: tuple[str, ...], marker: str, prefix: str) -> tuple[Any, list[str]]:
    """``value`` with ``path`` replaced by ``marker`` (copying what changes), and the dotted
    names of what was replaced; ``prefix`` is the dotted name of ``value`` itself."""
    if isinstance(value, dict) and not _is_marker(value):
        head, rest = path[0], path[1:]
        if head not in value:
            return value, []
        if rest:
            inner, done = _replace(value[head], rest, marker, f"{prefix}{head}.")
        else:
            inner, done = marker, [f"{prefix}{head}"]
        if not done:
            return value, []
        out = dict(value)
        out[head] = inner
        return out, done
    if isinstance(value, list):
        items: list[Any] = []
        names: list[str] = []
        for item in value:
            new, done = _replace(item, path, marker, prefix)
            items.append(new)
            names.extend(n for n in done if n not in names)
        return (items, names) if names else (value, [])
    if value is None:
        return value, []
    # A marker, a string, a number: nothing to look into, and it may hold the field in
    # another form (a marker's repr holds every field of its object), so all of it goes.
    return marker, [prefix[:-1] or "*"]
