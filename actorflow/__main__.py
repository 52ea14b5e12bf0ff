"""``python -m actorflow``: the command line (see ``actorflow.cli``)."""

from .cli import main

raise SystemExit(main())
