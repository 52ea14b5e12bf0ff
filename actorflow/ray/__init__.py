"""actorflow on a Ray cluster: steps on Ray workers, and many whole runs spread over them.

Install with ``pip install 'actorflow[ray]'``. ``RayExecutor`` runs a step's body as a Ray
task (``@step(executor=RayExecutor())`` or ``Workflow(executors={...})``); ``run_many`` runs
many whole runs of a workflow on Ray worker processes, several at a time in each. Both
connect to the cluster given by ``address`` (or ``RAY_ADDRESS``) when Ray is not initialized
yet; call ``ray.init(...)`` yourself first for anything else. See ``docs/scale.md``.
"""

from ._executor import RayExecutor as RayExecutor
from ._many import RunResult as RunResult
from ._many import run_many as run_many

__all__ = ["RayExecutor", "RunResult", "run_many"]

from .._public import fixup_module_metadata as _fixup

_fixup(__name__, globals(), __all__)
del _fixup
