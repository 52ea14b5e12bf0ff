"""The ``actorflow`` command line (``python -m actorflow``, or the ``actorflow`` script).

::

    actorflow run MODULE:CLASS [KEY=VALUE ...] [--timeout S] [--verbose] [--trace FILE]
    actorflow run-many MODULE:CLASS INPUTS.jsonl -o RESULTS.jsonl [--ray ADDRESS] [--concurrency N]
    actorflow draw MODULE:CLASS [-o FILE] [--mermaid]
    actorflow audit verify FILE [--key-file PATH | --key-env NAME] [--expect-head HASH]
    actorflow trace show FILE [--run RUN_ID]
    actorflow trace draw FILE [--run RUN_ID] [-o FILE]
    actorflow runs list STORE [--status S] [--limit N]
    actorflow runs show STORE ID
    actorflow bench [--quick]

Unlike the library, this is an application: it may configure structlog (for ``--trace``) and
it owns the terminal. Bad input of any kind ends in one line on stderr, ``actorflow: error:
...``, and exit status 2; nothing the user typed ever produces a traceback.

- ``_main``: the parser and :func:`main`; ``_base``: exit statuses, ``CLIError``, the
  command registry; ``_target``: ``MODULE:CLASS`` and ``KEY=VALUE``; ``_live``: the live
  display of a run (an ``actorflow.Observer``);
- one module per command group, each with ``register(commands)``: ``_run``, ``_many`` (``run-many``), ``_draw``,
  ``_trace`` (``audit verify``, ``trace show``, ``trace draw``), ``_runs`` (``runs list``,
  ``runs show``), ``_bench``. A new group is a new module and one entry in
  ``_main.COMMAND_MODULES``; ``Commands.group`` lets several modules add to one group (an
  ``audit replay`` module adds to ``audit``).
"""

from ._main import main as main

__all__ = ["main"]
