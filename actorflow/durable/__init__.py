"""Durable runs: a run that survives its process (``docs/durable.md``).

- :class:`SQLiteStore`: the embedded run store (one SQLite file in WAL mode, safe for the
  processes of one host), behind the small :class:`RunStore` protocol;
- :class:`Snapshot` and its records: everything needed to continue a run, with
  :func:`snapshot_to_dict` / :func:`snapshot_from_dict` for its versioned JSON form;
- :class:`JsonSerializer` (the default) and :class:`PickleSerializer`, as in
  llama-index-workflows, which encode events and stored values;
- :class:`Committer`: group commits of a trio run's durable runs, in a worker thread.
"""

from .._serializers import BaseSerializer as BaseSerializer
from .._serializers import JsonPickleSerializer as JsonPickleSerializer
from .._serializers import JsonSerializer as JsonSerializer
from .._serializers import PickleSerializer as PickleSerializer
from ._errors import ContextSerdeError as ContextSerdeError
from ._errors import RunConflictError as RunConflictError
from ._errors import StoredRunError as StoredRunError
from ._errors import StoreError as StoreError
from ._records import Commit as Commit
from ._records import ErrorInfo as ErrorInfo
from ._records import InboxItem as InboxItem
from ._records import InvocationRecord as InvocationRecord
from ._records import InvocationRows as InvocationRows
from ._records import NewRun as NewRun
from ._records import RunRecord as RunRecord
from ._records import RunStatus as RunStatus
from ._snapshot import FORMAT as FORMAT
from ._snapshot import VERSION as VERSION
from ._snapshot import Collected as Collected
from ._snapshot import CollectState as CollectState
from ._snapshot import EventRef as EventRef
from ._snapshot import InFlight as InFlight
from ._snapshot import RoutedEvent as RoutedEvent
from ._snapshot import Snapshot as Snapshot
from ._snapshot import StateSnapshot as StateSnapshot
from ._snapshot import StepCounters as StepCounters
from ._snapshot import StepState as StepState
from ._snapshot import Taken as Taken
from ._snapshot import Timing as Timing
from ._snapshot import Wait as Wait
from ._snapshot import snapshot_from_dict as snapshot_from_dict
from ._snapshot import snapshot_to_dict as snapshot_to_dict
from ._sqlite import SQLiteStore as SQLiteStore
from ._store import Claim as Claim
from ._store import Committer as Committer
from ._store import RunStore as RunStore

__all__ = [
    "FORMAT",
    "VERSION",
    "BaseSerializer",
    "Claim",
    "Collected",
    "CollectState",
    "Commit",
    "Committer",
    "ContextSerdeError",
    "ErrorInfo",
    "EventRef",
    "InboxItem",
    "InFlight",
    "InvocationRecord",
    "InvocationRows",
    "JsonPickleSerializer",
    "JsonSerializer",
    "NewRun",
    "PickleSerializer",
    "RoutedEvent",
    "RunConflictError",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "SQLiteStore",
    "Snapshot",
    "StateSnapshot",
    "StepCounters",
    "StepState",
    "StoreError",
    "StoredRunError",
    "Taken",
    "Timing",
    "Wait",
    "snapshot_from_dict",
    "snapshot_to_dict",
]

from .._public import fixup_module_metadata as _fixup

_fixup(__name__, globals(), __all__)
del _fixup
