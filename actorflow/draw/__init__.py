"""Drawing workflows: every possible flow of a class, one recorded run, or Mermaid text.

- ``_flows``: the graph of a workflow class (from its checked spec), its page, Mermaid text;
- ``_execution``: the graph of one recorded run, read through ``actorflow.audit``'s loader;
- ``_page``: the one self-contained HTML file either graph is written to (``assets/`` holds
  the vendored dagre layout library, MIT, see its README, the renderer and the styles);
- ``_graph``: the frozen node and edge records both graphs are made of.

The public names are re-exported by ``actorflow`` itself: ``actorflow.draw_all_possible_flows``,
``actorflow.draw_execution``, ``actorflow.to_mermaid``.
"""

from .. import _public
from ._execution import draw_execution as draw_execution
from ._flows import draw_all_possible_flows as draw_all_possible_flows
from ._flows import to_mermaid as to_mermaid

__all__ = ["draw_all_possible_flows", "draw_execution", "to_mermaid"]

_public.publish(__name__, globals())  # last: bind the names above in actorflow
