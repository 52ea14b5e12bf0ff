"""actorflow.audit: tamper-evident audit trails of workflow runs, through structlog.

Switch tracing on (``Workflow(trace=True)``, or :func:`enable` for every workflow) and every
run emits numbered records through ``structlog.get_logger("actorflow")``. actorflow never
configures structlog; these are the pieces for the application's processor chain::

    structlog.configure(processors=[*actorflow.audit.processors("audit.jsonl"), ...])

- :class:`Redactor` takes chosen payload fields out of the records,
- :class:`HashChain` chains each run's records with SHA-256 (or HMAC-SHA256),
- :class:`JSONLinesSink` appends them to a file, one canonical JSON object a line, with a
  file-wide chain on top,

and the pieces that read the file back: :func:`verify` (the first broken record, if any),
:func:`load_run` / :func:`load_runs` (records and causal tree), and :func:`replay`, which runs
a recorded run again against today's code, with the trail's LLM answers, and names the first
divergence. ``docs/audit.md`` has the record schema and exactly what the chains detect.
"""

from .._exceptions import ReplayError as ReplayError
from .._tracing import disable as disable
from .._tracing import enable as enable
from .._tracing import is_enabled as is_enabled
from ._chain import HashChain as HashChain
from ._load import AuditFileError as AuditFileError
from ._load import EventNode as EventNode
from ._load import Invocation as Invocation
from ._load import RunTrace as RunTrace
from ._load import load_run as load_run
from ._load import load_runs as load_runs
from ._redact import REDACTED as REDACTED
from ._redact import Redactor as Redactor
from ._replay import Divergence as Divergence
from ._replay import ReplayReport as ReplayReport
from ._replay import RunReplay as RunReplay
from ._replay import Unanswerable as Unanswerable
from ._replay import replay as replay
from ._sink import JSONLinesSink as JSONLinesSink
from ._sink import processors as processors
from ._verify import Problem as Problem
from ._verify import VerifyResult as VerifyResult
from ._verify import verify as verify

__all__ = [
    "AuditFileError",
    "Divergence",
    "EventNode",
    "HashChain",
    "Invocation",
    "JSONLinesSink",
    "Problem",
    "REDACTED",
    "Redactor",
    "ReplayError",
    "ReplayReport",
    "RunReplay",
    "RunTrace",
    "Unanswerable",
    "VerifyResult",
    "disable",
    "enable",
    "is_enabled",
    "load_run",
    "load_runs",
    "processors",
    "replay",
    "verify",
]

from .._public import fixup_module_metadata as _fixup

_fixup(__name__, globals(), __all__)
del _fixup
