"""The page: one HTML file with the graph, the layout library, the renderer and the styles inlined.

A Content-Security-Policy that allows only those inline blocks (by hash) makes "opens offline,
loads nothing from any network" a property the browser enforces, not just one we promise.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
from importlib import resources
from pathlib import Path

import attrs

from ._graph import Graph

__all__ = ["render", "write"]


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def render(graph: Graph) -> str:
    """The page for ``graph``: the template with styles, scripts and data inlined."""
    from .. import __version__

    data = json.dumps(attrs.asdict(graph), ensure_ascii=True, separators=(",", ":"))
    # Nothing in a JSON string may end the <script> element or open a comment in it.
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    style, dagre, app = _asset("style.css"), _asset("dagre.min.js"), _asset("app.js")
    for name, text in (("dagre.min.js", dagre), ("app.js", app)):
        if "</script" in text.lower():
            raise AssertionError(f"actorflow/draw/assets/{name} would end its <script> element early")
    csp = (
        "default-src 'none'; "
        f"script-src {_csp_hash(dagre)} {_csp_hash(app)}; "
        f"style-src {_csp_hash(style)}; img-src data:; base-uri 'none'; form-action 'none'"
    )
    parts = {
        "VERSION": html.escape(__version__),
        "CSP": csp,
        "TITLE": html.escape(graph.title),
        "STYLE": style,
        "DATA": data,
        "DAGRE": dagre,
        "APP": app,
    }
    # One pass, so that nothing inlined is ever searched for placeholders itself.
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: parts[m[1]], _asset("template.html"))


def write(graph: Graph, filename: str | os.PathLike[str]) -> Path:
    """Write the page for ``graph`` to ``filename``; return its path."""
    path = Path(filename)
    path.write_text(render(graph), encoding="utf-8")
    return path
