"""``python -m benchmarks [--quick] [--out DIR]``: see :mod:`benchmarks.run`."""

from .run import main

raise SystemExit(main())
