"""Where the ``actorflow`` console script pointed before the command line became ``actorflow.cli``.

Kept only so that environments installed before the move keep a working script until they are
reinstalled (``pip install -e .`` writes a script that imports ``actorflow.cli``). Delete it
once every checkout has been reinstalled.
"""

from .cli import main as main

__all__ = ["main"]
