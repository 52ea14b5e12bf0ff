"""The diagram pages in a real browser: headless Chromium driven over the DevTools protocol.

Chromium is started with ``--remote-debugging-pipe``: DevTools messages are NUL-terminated
JSON on file descriptors 3 (to the browser) and 4 (from it), so no extra package and no
port are needed. Every page session records the browser's own account of what the page did:
each request it sent (``Network.requestWillBeSent``), console calls, uncaught exceptions and
browser log entries. Each test saves a screenshot under its tmp dir.

The tests need Debian's ``chromium`` package. Without it they skip, unless
``ACTORFLOW_REQUIRE_BROWSER=1`` (as CI sets it), when they fail.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_draw import JokeFlow, joke_run

from actorflow import (
    Event,
    StartEvent,
    StopEvent,
    Workflow,
    draw_all_possible_flows,
    draw_execution,
    step,
)

pytestmark = pytest.mark.browser

FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
]

# Puts the two pipe ends on fds 3 and 4, then becomes Chromium. Done in a child Python rather
# than a preexec_fn so that no fd of the parent (Popen's own error pipe included) is clobbered.
_TRAMPOLINE = (
    "import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); os.dup2(a, 3); os.dup2(b, 4); "
    "os.close(a); os.close(b); os.execv(sys.argv[3], sys.argv[3:])"
)


class Chromium:
    """One headless Chromium, spoken to over the DevTools pipe."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        # Above 9, so that moving them to 3 and 4 in the child can never clobber one another.
        a = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10)
        b = fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (to_r, from_w):
            os.close(fd)
        self.log = profile / "chromium.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _TRAMPOLINE,
                    str(a),
                    str(b),
                    executable,
                    *FLAGS,
                    f"--user-data-dir={profile / 'profile'}",
                    "about:blank",
                ],
                pass_fds=(a, b),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        os.close(a)
        os.close(b)
        self._send_fd, self._recv_fd = to_w, from_r
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        # The first start of a fresh install builds font caches: give it time, once.
        self.version = self.call("Browser.getVersion", timeout=60)["product"]

    def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, ConnectionError, RuntimeError):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._send_fd)
        os.close(self._recv_fd)

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            if select.select([self._recv_fd], [], [], left)[0]:
                chunk = os.read(self._recv_fd, 1 << 16)
                if not chunk:
                    raise ConnectionError(
                        f"Chromium closed the DevTools pipe; its log:\n{self.log.read_text(errors='replace')[-2000:]}"
                    )
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 10,
    ) -> dict[str, Any]:
        """Send one command and wait for its answer, keeping the events that come meanwhile."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 10) -> dict[str, Any]:
        """The first event ``method`` of ``session``, waiting for it if it has not come yet."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            self.events.append(self._receive(deadline))


class Tab:
    """A page in its own browser target, with what it did recorded."""

    def __init__(self, browser: Chromium, width: int = 1280, height: int = 800) -> None:
        self.browser = browser
        self.target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget", {"targetId": self.target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.url = ""

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def open(self, path: Path) -> None:
        """Load ``path`` and wait until the diagram says it is drawn."""
        self.url = path.resolve().as_uri()
        self.call("Page.navigate", {"url": self.url})
        self.browser.wait_for("Page.loadEventFired", self.session)
        deadline = time.monotonic() + 10
        while self.js("document.documentElement.dataset.ready") != "true":
            assert not self.problems(), self.problems()
            assert time.monotonic() < deadline, "the diagram never became ready"
            time.sleep(0.02)

    def js(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def mouse(self, kind: str, x: float, y: float, **extra: Any) -> None:
        self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **extra})

    def click(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, button="left", buttons=1, clickCount=1)
        self.mouse("mouseReleased", x, y, button="left", buttons=0, clickCount=1)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"]))
        return path

    def _mine(self, *methods: str) -> list[dict[str, Any]]:
        return [
            e["params"]
            for e in self.browser.events
            if e.get("sessionId") == self.session and e.get("method") in methods
        ]

    def requests(self) -> list[str]:
        """Every URL the page asked for (WebSockets included), its own URL excepted."""
        urls = [p["request"]["url"] for p in self._mine("Network.requestWillBeSent")]
        urls += [p["url"] for p in self._mine("Network.webSocketCreated")]
        return [u for u in urls if u != self.url]

    def problems(self) -> list[str]:
        """Console errors and assertions, uncaught exceptions and error log entries."""
        found = [
            f"console.{p['type']}: "
            + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            for p in self._mine("Runtime.consoleAPICalled")
            if p["type"] in ("error", "assert")
        ]
        found += [
            f"exception: {p['exceptionDetails'].get('exception', {}).get('description') or p['exceptionDetails']['text']}"
            for p in self._mine("Runtime.exceptionThrown")
        ]
        found += [
            f"log {p['entry']['source']}: {p['entry']['text']}"
            for p in self._mine("Log.entryAdded")
            if p["entry"]["level"] == "error"
        ]
        return found

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    executable = (
        os.environ.get("ACTORFLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if executable is None:
        message = "headless Chromium is needed for the browser tests: apt install chromium"
        if os.environ.get("ACTORFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (ACTORFLOW_REQUIRE_BROWSER=1 makes its absence an error)")
        pytest.skip(message)
    chromium = Chromium(executable, tmp_path_factory.mktemp("chromium"))
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def tab(browser: Chromium) -> Iterator[Tab]:
    page = Tab(browser)
    try:
        yield page
    finally:
        page.close()


def boxes(tab: Tab, selector: str) -> dict[str, dict[str, float]]:
    """On-screen boxes of the nodes matching ``selector``, by label."""
    return tab.js(
        f"""Object.fromEntries([...document.querySelectorAll({json.dumps(selector)})].map(g => {{
            const r = g.querySelector("rect").getBoundingClientRect();
            return [g.dataset.label, {{x: r.x, y: r.y, w: r.width, h: r.height}}];
        }}))"""
    )


def center(box: dict[str, float]) -> tuple[float, float]:
    return box["x"] + box["w"] / 2, box["y"] + box["h"] / 2


def assert_clean(tab: Tab) -> None:
    assert tab.requests() == [], "the page made requests"
    assert tab.problems() == [], "the page reported errors"


def make_big_workflow(n_steps: int = 20) -> type[Workflow]:
    """A generated workflow of ``n_steps`` steps with shortcuts, joins and loops back."""
    import functools
    import operator

    events = [
        type(
            f"Stage{i}Event",
            (Event,),
            {"__annotations__": {"value": int}, "__doc__": f"Output of stage {i}."},
        )
        for i in range(n_steps - 1)
    ]
    namespace: dict[str, Any] = {
        "__doc__": f"A generated workflow of {n_steps} steps.",
        "__module__": __name__,
    }
    for i in range(n_steps):
        accepts = [StartEvent] if i == 0 else [events[i - 1]]
        if i % 5 == 3 and i > 3:
            accepts.append(events[i - 3])  # joins two branches
        emits = [StopEvent] if i == n_steps - 1 else [events[i]]
        if i % 6 == 4:
            emits.append(events[i - 2])  # loops back
        if i % 4 == 1 and i + 2 < n_steps:
            emits.append(events[i + 1])  # skips a stage

        async def run_stage(self: Workflow, ev: Event) -> None:
            return None

        run_stage.__name__ = run_stage.__qualname__ = f"stage_{i:02d}"
        run_stage.__doc__ = f"Stage {i} of the pipeline."
        run_stage.__annotations__ = {
            "ev": functools.reduce(operator.or_, accepts),
            "return": functools.reduce(operator.or_, emits),
        }
        namespace[run_stage.__name__] = step(num_workers=4 if i % 7 == 2 else 1)(run_stage)
    return type(f"Big{n_steps}Workflow", (Workflow,), namespace)


def test_flows_page_renders_every_name_without_requests_or_errors(tab: Tab, tmp_path: Path) -> None:
    """Every step and event name is drawn, no request leaves the page, the console stays clean."""
    tab.open(draw_all_possible_flows(JokeFlow, tmp_path / "flows.html"))
    tab.screenshot(tmp_path / "flows.png")
    labels = tab.js("[...document.querySelectorAll('#nodes .node text.label')].map(t => t.textContent)")
    assert sorted(labels) == sorted(
        [
            "StartEvent",
            "JokeEvent",
            "SpecialJoke",
            "CritiqueEvent",
            "InputRequiredEvent",
            "HumanResponseEvent",
            "StopEvent",
            "generate_joke",
            "critique_joke",
            "human",
            "finish",
            "outside the run",
        ]
    )
    # A small workflow opens whole: every node is on screen, inside the drawing area.
    area = tab.js("JSON.parse(JSON.stringify(document.getElementById('graph').getBoundingClientRect()))")
    for label, box in boxes(tab, "#nodes .node").items():
        assert box["w"] > 0 and box["h"] > 0, label
        assert area["left"] <= box["x"] and box["x"] + box["w"] <= area["right"], label
        assert area["top"] <= box["y"] and box["y"] + box["h"] <= area["bottom"], label
    assert tab.js("document.querySelectorAll('#edges .edge').length") == 14
    assert tab.js("document.querySelectorAll('#edges .edge.subclass').length") == 1
    assert tab.js("document.querySelector('.node.start rect').getAttribute('rx')") != "6"
    assert_clean(tab)


def test_twenty_step_layout_has_no_overlaps_and_readable_labels(tab: Tab, tmp_path: Path) -> None:
    """A 20-step workflow is laid out with no two nodes overlapping, every label fitting its box."""
    big = make_big_workflow(20)
    tab.open(draw_all_possible_flows(big, tmp_path / "big.html"))
    tab.screenshot(tmp_path / "big-initial.png")
    for view in ("initial", "fit", "left-right"):
        if view == "fit":
            tab.js("document.getElementById('fit').click()")
        elif view == "left-right":
            tab.js("document.getElementById('direction').click()")
        found = boxes(tab, "#nodes .node")
        assert len(found) == 20 + 19 + 2  # the steps, the stage events, Start and Stop
        items = list(found.items())
        for i, (a, ra) in enumerate(items):
            for b, rb in items[i + 1 :]:
                apart = (
                    ra["x"] + ra["w"] <= rb["x"]
                    or rb["x"] + rb["w"] <= ra["x"]
                    or ra["y"] + ra["h"] <= rb["y"]
                    or rb["y"] + rb["h"] <= ra["y"]
                )
                assert apart, f"{view}: {a} overlaps {b}: {ra} {rb}"
        # Each label's text lies inside its node's box.
        outside = tab.js(
            """[...document.querySelectorAll('#nodes .node')].filter(g => {
                const r = g.querySelector('rect').getBoundingClientRect();
                return [...g.querySelectorAll('text')].some(t => {
                    const b = t.getBoundingClientRect();
                    return b.left < r.left || b.right > r.right || b.top < r.top || b.bottom > r.bottom;
                });
            }).map(g => g.dataset.label)"""
        )
        assert outside == [], view
        if view == "initial":
            # Opened at a size that can be read: label glyphs at least 10 px tall on screen.
            height = tab.js(
                "document.querySelector('#nodes .node text.label').getBoundingClientRect().height"
            )
            assert height >= 10
    tab.screenshot(tmp_path / "big-left-right.png")
    assert_clean(tab)


def test_hover_and_click_show_details_and_light_up_neighbours(tab: Tab, tmp_path: Path) -> None:
    """Hovering a node shows its details and highlights its neighbours; a click pins them."""
    tab.open(draw_all_possible_flows(JokeFlow, tmp_path / "flows.html"))
    found = boxes(tab, "#nodes .node")
    tab.mouse("mouseMoved", *center(found["critique_joke"]))
    assert tab.js("document.getElementById('graph').classList.contains('focus')")
    lit = tab.js("[...document.querySelectorAll('#nodes .node.hl')].map(g => g.dataset.label).sort()")
    assert lit == ["CritiqueEvent", "InputRequiredEvent", "JokeEvent", "SpecialJoke", "critique_joke"]
    assert tab.js("document.querySelectorAll('#edges .edge.hl').length") == 4
    panel = tab.js("document.getElementById('details').innerText")
    assert "critique_joke" in panel
    assert "Analyze and critique the joke." in panel
    assert "CritiqueEvent | InputRequiredEvent" in panel  # what it emits
    assert "4" in panel  # workers
    tab.screenshot(tmp_path / "hover.png")

    # An event: its fields and their types.
    tab.mouse("mouseMoved", *center(found["JokeEvent"]))
    panel = tab.js("document.getElementById('details').innerText")
    assert "Event carrying the generated joke." in panel
    assert "joke\tstr\trequired" in panel and "rating\tfloat\tdefault: 0.5" in panel

    # A click pins the selection: moving off keeps its details; a click on empty space clears.
    tab.click(*center(found["finish"]))
    tab.mouse("mouseMoved", 5, 795)
    assert tab.js("document.querySelector('.node.selected').dataset.label") == "finish"
    assert "Finish, or ask for another joke." in tab.js("document.getElementById('details').innerText")
    tab.click(5, 795)
    assert tab.js("document.querySelector('.node.selected')") is None
    assert "JokeFlow" in tab.js("document.getElementById('details').innerText")
    assert_clean(tab)


def test_pan_and_zoom(tab: Tab, tmp_path: Path) -> None:
    """The wheel zooms about the pointer, a drag pans, the Fit button brings it all back."""
    tab.open(draw_all_possible_flows(JokeFlow, tmp_path / "flows.html"))

    def view() -> tuple[float, float, float]:
        t = tab.js("document.getElementById('viewport').getAttribute('transform')")
        x, y, k = (
            float(v) for v in t.replace("translate(", "").replace(") scale(", ",").rstrip(")").split(",")
        )
        return x, y, k

    x0, y0, k0 = view()
    tab.mouse("mouseWheel", 300, 300, deltaX=0, deltaY=-300)
    tab.js("new Promise(r => requestAnimationFrame(r))")
    x1, y1, k1 = view()
    assert k1 > k0 * 1.2
    tab.mouse("mouseMoved", 100, 700)
    tab.mouse("mousePressed", 100, 700, button="left", buttons=1, clickCount=1)
    tab.mouse("mouseMoved", 180, 640, button="left", buttons=1)
    tab.mouse("mouseReleased", 180, 640, button="left", buttons=0, clickCount=1)
    x2, y2, k2 = view()
    assert (round(x2 - x1), round(y2 - y1), k2) == (80, -60, k1)
    tab.js("document.getElementById('fit').click()")
    assert view() == pytest.approx((x0, y0, k0))
    assert_clean(tab)


def test_execution_page_shows_counts_and_durations(tab: Tab, tmp_path: Path) -> None:
    """A recorded run is drawn with its steps' counts and durations, offline and cleanly."""
    tab.open(draw_execution(joke_run(), "run-1", tmp_path / "run.html"))
    tab.screenshot(tmp_path / "run.png")
    texts = tab.js("[...document.querySelectorAll('#graph text')].map(t => t.textContent)")
    for name in (
        "StartEvent",
        "generate_joke",
        "JokeEvent",
        "critique_joke",
        "CritiqueEvent",
        "finish",
        "StopEvent",
    ):
        assert name in texts
    assert "2 runs · avg 1.00 s · 1 failed" in texts
    assert texts.count("×1") == 6
    assert tab.js("document.querySelector('.node.failed').dataset.label") == "critique_joke"
    assert "finished" in tab.js("document.getElementById('subtitle').textContent")
    assert_clean(tab)


def test_page_policy_refuses_any_network_load(tab: Tab, tmp_path: Path) -> None:
    """Even script injected later cannot fetch: the page's CSP blocks it before it is sent."""
    tab.open(draw_all_possible_flows(JokeFlow, tmp_path / "flows.html"))
    blocked = tab.js(
        """new Promise(resolve => {
            document.addEventListener('securitypolicyviolation', e => resolve(e.blockedURI), {once: true});
            fetch('http://127.0.0.1:9/probe').catch(() => {});
        })"""
    )
    assert blocked == "http://127.0.0.1:9/probe"
    assert tab.requests() == []


def test_the_harness_sees_requests_and_console_errors(tab: Tab, tmp_path: Path) -> None:
    """The checks above would catch a page that loads something or logs an error."""
    page = tmp_path / "leaky.html"
    page.write_text(
        "<!DOCTYPE html><img src='http://127.0.0.1:9/pixel.png'>"
        "<script>console.error('broken'); document.documentElement.dataset.ready = 'true';</script>"
    )
    tab.open(page)
    tab.js("new Promise(r => setTimeout(r, 100))")
    assert tab.requests() == ["http://127.0.0.1:9/pixel.png"]
    assert "console.error: broken" in tab.problems()
