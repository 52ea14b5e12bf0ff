"""``python -m actorflow``: the command line (see ``actorflow._cli``)."""

from ._cli import main

raise SystemExit(main())
