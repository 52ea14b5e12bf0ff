"""actorflow.otel: OpenTelemetry traces and metrics for workflow runs.

``instrument()`` registers one process-wide observer (``actorflow.add_observer``) that opens a
span per run, per step attempt and per LLM call (GenAI semantic conventions), records the
``actorflow.*`` and ``gen_ai.client.*`` metrics, and sends W3C ``traceparent`` headers with
``actorflow.llm``'s HTTP requests. Only ``opentelemetry-api`` is needed at run time
(``pip install 'actorflow[otel]'``); the application brings the SDK and exporters.
``docs/observability.md`` lists every span, attribute and metric.
"""

from __future__ import annotations

try:
    import opentelemetry.trace  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in the test environment
    raise ImportError(
        "actorflow.otel needs the OpenTelemetry API: pip install 'actorflow[otel]' "
        "(or opentelemetry-api), then an SDK and exporters of your choice"
    ) from exc

from ._audit import add_trace_ids as add_trace_ids
from ._instrument import instrument as instrument
from ._instrument import is_instrumented as is_instrumented
from ._instrument import uninstrument as uninstrument

__all__ = ["add_trace_ids", "instrument", "is_instrumented", "uninstrument"]

from .._public import fixup_module_metadata as _fixup

_fixup(__name__, globals(), __all__)
del _fixup
