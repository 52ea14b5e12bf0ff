/* actorflow diagram page: lays out the graph in #actorflow-data with dagre and draws it as SVG.
 *
 * Python decides what the graph is (nodes, edges, the text of every details panel); this script
 * only measures labels, asks dagre for positions and wires up pan, zoom, hover, selection and
 * search. Everything it needs is inline in the page: it never makes a network request.
 */
(function () {
  "use strict";

  var NS = "http://www.w3.org/2000/svg";
  var KIND_NAMES = {
    step: "step", event: "event", start: "start event", stop: "stop event",
    input: "input required", response: "human response", external: "outside the run"
  };
  var ROUND = { event: true, start: true, stop: true, input: true, response: true };

  var data = JSON.parse(document.getElementById("actorflow-data").textContent);
  var svg = document.getElementById("graph");
  var viewport = document.getElementById("viewport");
  var edgeLayer = document.getElementById("edges");
  var nodeLayer = document.getElementById("nodes");
  var panel = document.getElementById("details");
  var search = document.getElementById("search");

  var state = { rankdir: "TB", view: { x: 0, y: 0, k: 1 }, size: { width: 1, height: 1 },
                selected: null, hovered: null };
  var nodes = {};  // id -> node record of data.nodes, plus its element and layout box
  var edgeEls = [];

  function svgEl(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(e);
    return e;
  }

  function htmlEl(tag, text, cls, parent) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    if (parent) parent.appendChild(e);
    return e;
  }

  // -- measuring and layout --------------------------------------------------------------

  // Labels are measured with the page's own fonts before layout, so boxes fit their text
  // whatever font the viewer's system substitutes.
  function measureAll() {
    var probe = svgEl("g", { "class": "node step" }, nodeLayer);
    var label = svgEl("text", { "class": "label" }, probe);
    var sub = svgEl("text", { "class": "sub" }, probe);
    var edgeProbe = svgEl("g", { "class": "edge" }, edgeLayer);
    var edgeText = svgEl("text", {}, edgeProbe);
    function width(t, s) { t.textContent = s; return s ? t.getComputedTextLength() : 0; }
    data.nodes.forEach(function (n) {
      var w = Math.max(width(label, n.label), width(sub, n.sub || ""));
      n.width = Math.max(76, Math.ceil(w) + (ROUND[n.kind] ? 36 : 28));
      n.height = n.sub ? 46 : 32;
      nodes[n.id] = n;
    });
    data.edges.forEach(function (e) {
      e.labelWidth = e.label ? Math.ceil(width(edgeText, e.label)) + 8 : 0;
      e.labelHeight = e.label ? 16 : 0;
    });
    nodeLayer.removeChild(probe);
    edgeLayer.removeChild(edgeProbe);
  }

  function layout() {
    var g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: state.rankdir, nodesep: 28, ranksep: 46, edgesep: 14,
                 marginx: 24, marginy: 24 });
    g.setDefaultEdgeLabel(function () { return {}; });
    data.nodes.forEach(function (n) { g.setNode(n.id, { width: n.width, height: n.height }); });
    data.edges.forEach(function (e, i) {
      var label = e.label ? { width: e.labelWidth, height: e.labelHeight, labelpos: "c" } : {};
      label.weight = e.kind === "subclass" ? 1 : 2;
      g.setEdge(e.source, e.target, label, "e" + i);
    });
    dagre.layout(g);
    data.nodes.forEach(function (n) { var p = g.node(n.id); n.x = p.x; n.y = p.y; });
    data.edges.forEach(function (e, i) {
      var p = g.edge(e.source, e.target, "e" + i);
      e.points = p.points;
      e.lx = p.x;
      e.ly = p.y;
    });
    state.size = { width: g.graph().width || 1, height: g.graph().height || 1 };
  }

  // Lay out both ways and keep the one that shows the graph larger on this screen (a tie
  // goes to top-down, the way people read flows).
  function chooseDirection() {
    var r = svg.getBoundingClientRect();
    var scores = {};
    ["LR", "TB"].forEach(function (dir) {
      state.rankdir = dir;
      layout();
      scores[dir] = Math.min(r.width / state.size.width, r.height / state.size.height);
    });
    if (scores.LR > scores.TB * 1.15) { state.rankdir = "LR"; layout(); }
    updateDirectionButton();
  }

  function updateDirectionButton() {
    document.getElementById("direction").textContent =
      state.rankdir === "TB" ? "\u21c4 Left-right" : "\u21c5 Top-down";
  }

  // A smooth path through dagre's bend points: straight to the first midpoint, quadratic
  // curves through the bends, straight into the target so the arrow keeps its direction.
  function pathFor(pts) {
    function mid(a, b) { return ((a.x + b.x) / 2) + "," + ((a.y + b.y) / 2); }
    var d = "M" + pts[0].x + "," + pts[0].y;
    if (pts.length < 3) return d + " L" + pts[pts.length - 1].x + "," + pts[pts.length - 1].y;
    d += " L" + mid(pts[0], pts[1]);
    for (var i = 1; i < pts.length - 1; i++) {
      d += " Q" + pts[i].x + "," + pts[i].y + " " + mid(pts[i], pts[i + 1]);
    }
    return d + " L" + pts[pts.length - 1].x + "," + pts[pts.length - 1].y;
  }

  // -- drawing ---------------------------------------------------------------------------

  function draw() {
    while (edgeLayer.firstChild) edgeLayer.removeChild(edgeLayer.firstChild);
    while (nodeLayer.firstChild) nodeLayer.removeChild(nodeLayer.firstChild);
    edgeEls = data.edges.map(function (e) {
      var g = svgEl("g", { "class": "edge" + (e.kind ? " " + e.kind : ""),
                           "data-source": e.source, "data-target": e.target }, edgeLayer);
      var path = svgEl("path", { d: pathFor(e.points) }, g);
      if (e.weight > 1) path.style.strokeWidth = String(1.5 + Math.min(4, Math.log2(e.weight)));
      if (e.label) {
        var t = svgEl("text", { x: e.lx, y: e.ly }, g);
        t.textContent = e.label;
      }
      return g;
    });
    data.nodes.forEach(function (n) {
      var classes = ["node", n.kind].concat(n.classes || []);
      var g = svgEl("g", {
        "class": classes.join(" "), "data-id": n.id, "data-label": n.label, tabindex: "0",
        role: "button", "aria-label": n.label + ", " + (KIND_NAMES[n.kind] || n.kind),
        transform: "translate(" + (n.x - n.width / 2) + "," + (n.y - n.height / 2) + ")"
      }, nodeLayer);
      svgEl("rect", { width: n.width, height: n.height, rx: ROUND[n.kind] ? n.height / 2 : 6 }, g);
      var label = svgEl("text", { "class": "label", x: n.width / 2,
                                  y: n.sub ? n.height / 2 - 8 : n.height / 2 }, g);
      label.textContent = n.label;
      if (n.sub) {
        var sub = svgEl("text", { "class": "sub", x: n.width / 2, y: n.height / 2 + 10 }, g);
        sub.textContent = n.sub;
      }
      n.el = g;
      g.addEventListener("pointerenter", function () { hover(n.id); });
      g.addEventListener("pointerleave", function () { hover(null); });
      g.addEventListener("focus", function () { hover(n.id); });
      g.addEventListener("blur", function () { hover(null); });
      g.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(n.id); }
      });
    });
    refresh();
  }

  function drawLegend() {
    var legend = document.getElementById("legend");
    var seen = {};
    data.nodes.forEach(function (n) { seen[n.kind] = true; });
    ["start", "step", "event", "stop", "input", "response", "external"].forEach(function (kind) {
      if (!seen[kind]) return;
      var item = htmlEl("span", null, null, legend);
      var swatch = htmlEl("i", null, null, item);
      var style = getComputedStyle(document.documentElement);
      var names = { input: "human", response: "human", external: "step" };
      var key = names[kind] || kind;
      swatch.style.background = kind === "external" ? "#fff" : style.getPropertyValue("--" + key + "-fill");
      swatch.style.borderColor = kind === "external" ? "#6b7280" : style.getPropertyValue("--" + key + "-stroke");
      swatch.style.borderRadius = ROUND[kind] ? "999px" : "3px";
      if (kind === "external") swatch.style.borderStyle = "dashed";
      htmlEl("span", KIND_NAMES[kind], null, item);
    });
    if (data.edges.some(function (e) { return e.kind === "subclass"; })) {
      htmlEl("span", "- - - routed as a subclass", null, legend);
    }
  }

  // -- highlighting and details ----------------------------------------------------------

  function neighbours(id) {
    var found = {};
    found[id] = true;
    data.edges.forEach(function (e) {
      if (e.source === id) found[e.target] = true;
      if (e.target === id) found[e.source] = true;
    });
    return found;
  }

  function refresh() {
    var focus = state.hovered || state.selected;
    var near = focus ? neighbours(focus) : {};
    svg.classList.toggle("focus", !!focus);
    data.nodes.forEach(function (n) {
      if (!n.el) return;
      n.el.classList.toggle("hl", !!near[n.id]);
      n.el.classList.toggle("selected", n.id === state.selected);
    });
    data.edges.forEach(function (e, i) {
      var on = !!focus && (e.source === focus || e.target === focus);
      edgeEls[i].classList.toggle("hl", on);
    });
    showDetails(focus);
  }

  function hover(id) { state.hovered = id; refresh(); }

  function select(id) {
    state.selected = id === state.selected ? null : id;
    refresh();
  }

  function showDetails(id) {
    while (panel.firstChild) panel.removeChild(panel.firstChild);
    var n = id ? nodes[id] : null;
    var d = n ? n.details : data.summary;
    htmlEl("div", n ? (KIND_NAMES[n.kind] || n.kind) : d.kind, "kind", panel);
    htmlEl("h2", d.title, null, panel);
    if (d.doc) htmlEl("p", d.doc, "doc", panel);
    (d.sections || []).forEach(function (s) {
      if (s.title) htmlEl("h3", s.title, null, panel);
      if (s.text) htmlEl("p", s.text, s.muted ? "empty" : null, panel);
      if (s.pre) htmlEl("pre", s.pre, "doc", panel);
      if (s.table) {
        var table = htmlEl("table", null, null, panel);
        if (s.header) {
          var hr = htmlEl("tr", null, null, table);
          s.header.forEach(function (c) { htmlEl("th", c, null, hr); });
        }
        s.table.forEach(function (row) {
          var tr = htmlEl("tr", null, null, table);
          row.forEach(function (cell, i) {
            if (i === 0 && !s.header) htmlEl("th", cell, null, tr);
            else htmlEl("td", null, null, tr).appendChild(htmlEl("code", cell));
          });
        });
      }
    });
    if (n) {
      chips("From", data.edges.filter(function (e) { return e.target === id; })
                              .map(function (e) { return e.source; }));
      chips("To", data.edges.filter(function (e) { return e.source === id; })
                            .map(function (e) { return e.target; }));
    } else {
      htmlEl("p", "Hover over or click a node to see its details; its neighbours light up. " +
             "Drag to pan, use the wheel (or + and -) to zoom, 0 to fit, / to find.", "empty", panel);
    }
  }

  function chips(title, ids) {
    htmlEl("h3", title, null, panel);
    if (!ids.length) { htmlEl("p", "nothing", "empty", panel); return; }
    var box = htmlEl("div", null, "chips", panel);
    ids.forEach(function (other) {
      var b = htmlEl("button", nodes[other].label, "chip", box);
      b.type = "button";
      b.addEventListener("click", function () {
        state.selected = other;
        centerOn(other);
        refresh();
      });
    });
  }

  // -- pan and zoom ----------------------------------------------------------------------

  function apply() {
    var v = state.view;
    viewport.setAttribute("transform", "translate(" + v.x + "," + v.y + ") scale(" + v.k + ")");
  }

  function zoomAt(factor, px, py) {
    var v = state.view;
    var k = Math.min(4, Math.max(0.08, v.k * factor));
    v.x = px - (px - v.x) * (k / v.k);
    v.y = py - (py - v.y) * (k / v.k);
    v.k = k;
    apply();
  }

  function zoomCenter(factor) {
    var r = svg.getBoundingClientRect();
    zoomAt(factor, r.width / 2, r.height / 2);
  }

  // fit(true) is the first view: never so small that the labels cannot be read; a graph
  // too big for that starts at its top (or left) and the Fit button shows all of it.
  function fit(readable) {
    var r = svg.getBoundingClientRect();
    var s = state.size;
    var k = Math.min(r.width / s.width, r.height / s.height, 1.25);
    if (readable) k = Math.max(k, 0.75);
    var v = state.view;
    v.k = k;
    v.x = s.width * k <= r.width ? (r.width - s.width * k) / 2 : 0;
    v.y = s.height * k <= r.height ? (r.height - s.height * k) / 2 : 0;
    apply();
  }

  function centerOn(id) {
    var n = nodes[id];
    var r = svg.getBoundingClientRect();
    var v = state.view;
    v.k = Math.max(v.k, 0.8);
    v.x = r.width / 2 - n.x * v.k;
    v.y = r.height / 2 - n.y * v.k;
    apply();
  }

  function wirePanZoom() {
    var drag = null;
    svg.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var r = svg.getBoundingClientRect();
      zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    svg.addEventListener("pointerdown", function (ev) {
      if (ev.button !== 0) return;
      var target = ev.target.closest ? ev.target.closest(".node") : null;
      drag = { x: ev.clientX, y: ev.clientY, vx: state.view.x, vy: state.view.y, moved: false,
               node: target ? target.getAttribute("data-id") : null, id: ev.pointerId };
    });
    svg.addEventListener("pointermove", function (ev) {
      if (!drag || ev.pointerId !== drag.id) return;
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (!drag.moved && dx * dx + dy * dy < 16) return;
      if (!drag.moved) {
        drag.moved = true;
        svg.setPointerCapture(ev.pointerId);
        svg.classList.add("panning");
      }
      state.view.x = drag.vx + dx;
      state.view.y = drag.vy + dy;
      apply();
    });
    function end(ev) {
      if (!drag || ev.pointerId !== drag.id) return;
      if (!drag.moved && ev.type === "pointerup") {
        if (drag.node) select(drag.node);
        else if (state.selected) { state.selected = null; refresh(); }
      }
      svg.classList.remove("panning");
      drag = null;
    }
    svg.addEventListener("pointerup", end);
    svg.addEventListener("pointercancel", end);
    svg.addEventListener("dblclick", function (ev) {
      if (!(ev.target.closest && ev.target.closest(".node"))) fit(false);
    });
  }

  function wireControls() {
    document.getElementById("zoom-in").addEventListener("click", function () { zoomCenter(1.25); });
    document.getElementById("zoom-out").addEventListener("click", function () { zoomCenter(0.8); });
    document.getElementById("fit").addEventListener("click", function () { fit(false); });
    var dir = document.getElementById("direction");
    dir.addEventListener("click", function () {
      state.rankdir = state.rankdir === "TB" ? "LR" : "TB";
      updateDirectionButton();
      layout();
      draw();
      fit(true);
    });
    search.addEventListener("input", runSearch);
    search.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") {
        var first = runSearch();
        if (first) { state.selected = first; centerOn(first); refresh(); }
      } else if (ev.key === "Escape") {
        search.value = "";
        runSearch();
        search.blur();
      }
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.target === search || ev.altKey || ev.ctrlKey || ev.metaKey) return;
      if (ev.key === "+" || ev.key === "=") zoomCenter(1.25);
      else if (ev.key === "-") zoomCenter(0.8);
      else if (ev.key === "0") fit(false);
      else if (ev.key === "/") { ev.preventDefault(); search.focus(); }
      else if (ev.key === "Escape") { state.selected = null; state.hovered = null; refresh(); }
    });
  }

  function runSearch() {
    var q = search.value.trim().toLowerCase();
    var first = null;
    svg.classList.toggle("searching", q !== "");
    data.nodes.forEach(function (n) {
      var hit = q !== "" && n.label.toLowerCase().indexOf(q) >= 0;
      n.el.classList.toggle("match", hit);
      if (hit && first === null) first = n.id;
    });
    return first;
  }

  // -- start -----------------------------------------------------------------------------

  try {
    if (typeof dagre === "undefined") throw new Error("the dagre layout library did not load");
    document.getElementById("title").textContent = data.title;
    document.getElementById("subtitle").textContent = data.subtitle;
    measureAll();
    chooseDirection();
    draw();
    drawLegend();
    wirePanZoom();
    wireControls();
    fit(true);
    document.documentElement.setAttribute("data-ready", "true");
  } catch (err) {
    htmlEl("p", "Could not draw the diagram: " + err, "error", panel);
    throw err;  // also to the console, where tests and developers look
  }
})();
