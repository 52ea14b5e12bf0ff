"""Drawing: the graph of every possible flow, the page it is written to, Mermaid, recorded runs.

What a browser does with the page is tested in test_draw_browser.py; these tests check the
graph and the file without one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from actorflow import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    audit,
    draw_all_possible_flows,
    draw_execution,
    step,
    to_mermaid,
)
from actorflow.draw._execution import execution_graph, runs_of, select_run
from actorflow.draw._flows import flow_graph, spec_of


class JokeEvent(Event):
    """Event carrying the generated joke."""

    joke: str
    rating: float = 0.5


class CritiqueEvent(Event):
    critique: str


class SpecialJoke(JokeEvent):
    """A joke that takes the subclass route."""


class JokeFlow(Workflow):
    """A workflow that generates and critiques jokes."""

    @step
    async def generate_joke(self, ev: StartEvent) -> JokeEvent | SpecialJoke:
        """Generate a joke about the given topic."""
        return JokeEvent(joke=f"a joke about {ev.topic}")

    @step(num_workers=4, accept_subclasses=True)
    async def critique_joke(self, ev: JokeEvent) -> CritiqueEvent | InputRequiredEvent:
        """Analyze and critique the joke.

        Asks a human when unsure.
        """
        return CritiqueEvent(critique="ok")

    @step
    async def human(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=ev.response)

    @step
    async def finish(self, ev: CritiqueEvent) -> StopEvent | JokeEvent:
        """Finish, or ask for another joke."""
        return StopEvent(result=ev.critique)


def graph_of(wf: Any) -> Any:
    return flow_graph(*spec_of(wf))


def graph_of_run(trace: Any, run_id: str | None = None) -> Any:
    return execution_graph(select_run(runs_of(trace), run_id))


def edges_by_label(graph: Any) -> set[tuple[str, str, str]]:
    label = {n.id: n.label for n in graph.nodes}
    return {(label[e.source], label[e.target], e.kind) for e in graph.edges}


def page_data(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="actorflow-data">(.*?)</script>', text, re.S)
    assert found is not None
    return json.loads(found[1])


def test_every_step_and_event_type_is_a_node_of_its_kind() -> None:
    """Steps and the event types named in hints become nodes; start, stop and human kinds differ."""
    kinds = {n.label: n.kind for n in graph_of(JokeFlow).nodes}
    assert kinds == {
        "StartEvent": "start",
        "JokeEvent": "event",
        "SpecialJoke": "event",
        "CritiqueEvent": "event",
        "InputRequiredEvent": "input",
        "HumanResponseEvent": "response",
        "StopEvent": "stop",
        "generate_joke": "step",
        "critique_joke": "step",
        "human": "step",
        "finish": "step",
        "outside the run": "external",
    }


def test_edges_follow_the_type_hints() -> None:
    """Events point at the steps that receive them, steps at the events they emit."""
    assert edges_by_label(graph_of(JokeFlow)) == {
        ("StartEvent", "generate_joke", ""),
        ("generate_joke", "JokeEvent", ""),
        ("generate_joke", "SpecialJoke", ""),
        ("JokeEvent", "critique_joke", ""),
        ("SpecialJoke", "critique_joke", "subclass"),
        ("critique_joke", "CritiqueEvent", ""),
        ("critique_joke", "InputRequiredEvent", ""),
        ("CritiqueEvent", "finish", ""),
        ("finish", "StopEvent", ""),
        ("finish", "JokeEvent", ""),
        ("InputRequiredEvent", "outside the run", ""),
        ("outside the run", "HumanResponseEvent", ""),
        ("HumanResponseEvent", "human", ""),
        ("human", "StopEvent", ""),
    }


def test_external_events_come_from_outside_the_run() -> None:
    """Event types listed in external_events get an edge from the outside-the-run node."""

    class Cancel(Event):
        reason: str

    class Cancellable(Workflow):
        external_events = (Cancel,)

        @step
        async def work(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @step
        async def stop(self, ev: Cancel) -> StopEvent:
            return StopEvent(result=ev.reason)

    graph = graph_of(Cancellable)
    assert ("outside the run", "Cancel", "") in edges_by_label(graph)
    cancel = next(n for n in graph.nodes if n.label == "Cancel")
    assert dict(cancel.details["sections"][1]["table"])["emitted by"] == "handle.send_event()"


def test_nodes_carry_their_details() -> None:
    """A step shows its docstring, types and workers; an event its fields with types."""
    nodes = {n.label: n for n in graph_of(JokeFlow).nodes}
    critique = nodes["critique_joke"]
    assert critique.sub == "step · 4 workers"
    assert critique.details["doc"] == "Analyze and critique the joke.\n\nAsks a human when unsure."
    rows = dict(critique.details["sections"][0]["table"])
    assert rows["accepts"] == "JokeEvent"
    assert rows["emits"] == "CritiqueEvent | InputRequiredEvent"
    assert rows["workers"] == "4"
    assert rows["subclasses"] == "accepted too"
    joke = nodes["JokeEvent"].details
    assert joke["doc"] == "Event carrying the generated joke."
    assert joke["sections"][0]["table"] == [
        ["joke", "str", "required"],
        ["rating", "float", "default: 0.5"],
    ]
    # An event without a docstring shows none, not the one it inherits from Event.
    assert nodes["CritiqueEvent"].details["doc"] == ""
    start = nodes["StartEvent"].details["sections"]
    assert "run(**kwargs)" in start[0]["text"]


def test_an_instance_draws_like_its_class() -> None:
    """draw_all_possible_flows and to_mermaid take an instance as well as a class."""
    assert to_mermaid(JokeFlow()) == to_mermaid(JokeFlow)


@pytest.mark.parametrize("thing", [42, Workflow, Event, "JokeFlow"])
def test_anything_else_is_refused(thing: object) -> None:
    """Only a Workflow subclass (or an instance of one) can be drawn."""
    with pytest.raises(TypeError, match="expected a Workflow subclass"):
        to_mermaid(thing)  # type: ignore[arg-type]


def test_mermaid_text() -> None:
    """to_mermaid gives a flowchart with readable ids, rounded events and classes per kind."""
    assert to_mermaid(JokeFlow) == (
        "flowchart TD\n"
        '    ev_StartEvent(["StartEvent"]):::start\n'
        '    ev_JokeEvent(["JokeEvent"]):::event\n'
        '    ev_SpecialJoke(["SpecialJoke"]):::event\n'
        '    ev_CritiqueEvent(["CritiqueEvent"]):::event\n'
        '    ev_InputRequiredEvent(["InputRequiredEvent"]):::input\n'
        '    ev_HumanResponseEvent(["HumanResponseEvent"]):::response\n'
        '    ev_StopEvent(["StopEvent"]):::stop\n'
        '    step_generate_joke["generate_joke"]:::step\n'
        '    step_critique_joke["critique_joke<br/>4 workers"]:::step\n'
        '    step_human["human"]:::step\n'
        '    step_finish["finish"]:::step\n'
        '    outside_the_run{{"outside the run"}}:::external\n'
        "    ev_StartEvent --> step_generate_joke\n"
        "    ev_JokeEvent --> step_critique_joke\n"
        "    ev_SpecialJoke -.-> step_critique_joke\n"
        "    ev_CritiqueEvent --> step_finish\n"
        "    ev_HumanResponseEvent --> step_human\n"
        "    step_generate_joke --> ev_JokeEvent\n"
        "    step_generate_joke --> ev_SpecialJoke\n"
        "    step_critique_joke --> ev_CritiqueEvent\n"
        "    step_critique_joke --> ev_InputRequiredEvent\n"
        "    step_human --> ev_StopEvent\n"
        "    step_finish --> ev_StopEvent\n"
        "    step_finish --> ev_JokeEvent\n"
        "    ev_InputRequiredEvent --> outside_the_run\n"
        "    outside_the_run --> ev_HumanResponseEvent\n"
        "    classDef step fill:#ffffff,stroke:#334155,color:#1f2937\n"
        "    classDef event fill:#e0f2fe,stroke:#0284c7,color:#1f2937\n"
        "    classDef start fill:#dcfce7,stroke:#16a34a,color:#1f2937\n"
        "    classDef stop fill:#fee2e2,stroke:#dc2626,color:#1f2937\n"
        "    classDef input fill:#fef3c7,stroke:#d97706,color:#1f2937\n"
        "    classDef response fill:#fef3c7,stroke:#d97706,color:#1f2937\n"
        "    classDef external fill:#ffffff,stroke:#6b7280,stroke-dasharray:5 3,color:#1f2937\n"
    )


HOSTILE = 'Evil"]\nclick ev_StartEvent href "javascript:alert(1)"\n%% <b>&amp;</b> `md` #quot; \\ \r\t\u2028'


def mermaid_label_text(label: str) -> str:
    """What Mermaid shows for the inside of a quoted label: its entity codes decoded."""
    return re.sub(r"#(\d+);", lambda m: chr(int(m[1])), label.replace("#quot;", '"'))


def test_mermaid_labels_cannot_break_out_of_their_node() -> None:
    """Quotes, line breaks, markup, entities and backticks in names are escaped per Mermaid's rules."""
    Hostile = type(HOSTILE, (Event,), {"__doc__": 'doc\nclick x href "javascript:alert(2)"'})

    async def go(self: Workflow, ev: StartEvent) -> Hostile:  # type: ignore[valid-type]
        return Hostile()

    async def done(self: Workflow, ev: Hostile) -> StopEvent:  # type: ignore[valid-type]
        return StopEvent()

    flow = type("HostileFlow", (Workflow,), {"go": step(go), f"done{HOSTILE}": step(done)})
    text = to_mermaid(flow)
    lines = text.splitlines()
    node = re.compile(r'    (\w+)(?:\["([^"]*)"\]|\(\["([^"]*)"\]\)):::(\w+)')
    edge = re.compile(r"    \w+ -(?:->|\.->) \w+")
    style = re.compile(r"    classDef \w+ [\w:#,.-]+")
    assert lines[0] == "flowchart TD"
    labels = []
    for line in lines[1:]:
        found = node.fullmatch(line)
        assert found or edge.fullmatch(line) or style.fullmatch(line), line
        if found:
            label = found[2] if found[2] is not None else found[3]
            # Nothing in a label that Mermaid would read as markup, Markdown or its own syntax.
            assert not re.search(r"[<>&`\\\s]", label.replace(" ", "")), label
            assert not re.search(r"#(?!quot;|\d+;)", label), label
            labels.append(mermaid_label_text(label))
    # Each label still shows exactly the name it stands for.
    assert HOSTILE in labels and f"done{HOSTILE}" in labels
    assert "javascript:alert(2)" not in text  # docstrings are not part of the Mermaid text
    assert sum(line.lstrip().startswith("click") for line in lines) == 0


def test_page_is_one_self_contained_file(tmp_path: Path) -> None:
    """The page inlines everything, loads nothing by URL, and says so in its CSP."""
    path = draw_all_possible_flows(JokeFlow, filename=tmp_path / "flow.html")
    assert path == tmp_path / "flow.html"
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<(link|img|iframe|object|embed)\b", text, re.I)
    assert not re.search(r"<script[^>]*\bsrc=", text, re.I)
    assert not re.search(r"(https?:)?//[\w.-]+\.\w+/", text.replace("http://www.w3.org/2000/svg", ""))
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)
    assert policy is not None and policy[1].startswith("default-src 'none'; script-src 'sha256-")
    assert "unsafe" not in policy[1]
    assert text.count("<script") == 3
    assert "MIT License\n\nCopyright (c) 2012-2014 Chris Pettitt" in text  # dagre's notice
    assert path.stat().st_size < 120_000  # dagre is ~50 kB of it
    data = page_data(path)
    assert data["kind"] == "flows"
    assert {n["label"] for n in data["nodes"]} >= {"generate_joke", "JokeEvent", "StopEvent"}


def test_docstrings_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    """Markup in a docstring stays data: it cannot end the data block or add a script."""

    class Sneaky(Event):
        """</script><script>alert(1)</script><!--"""

    class SneakyFlow(Workflow):
        """<b>bold</b> & "quoted" </title>"""

        @step
        async def go(self, ev: StartEvent) -> Sneaky:
            return Sneaky()

        @step
        async def done(self, ev: Sneaky) -> StopEvent:
            return StopEvent()

    path = draw_all_possible_flows(SneakyFlow(), tmp_path / "sneaky.html")
    text = path.read_text(encoding="utf-8")
    assert text.count("<script") == 3
    assert "<!--" not in text.split('id="actorflow-data">')[1].split("</script>")[0]
    nodes = {n["label"]: n for n in page_data(path)["nodes"]}
    assert nodes["Sneaky"]["details"]["doc"] == "</script><script>alert(1)</script><!--"


def test_same_named_events_are_told_apart() -> None:
    """Two event classes with one name get qualified labels."""

    def make() -> type[Event]:
        class JokeEvent(Event):  # the same name as the module's JokeEvent
            pass

        return JokeEvent

    Other = make()

    class Twins(Workflow):
        @step
        async def a(self, ev: StartEvent) -> JokeEvent:
            return JokeEvent(joke="")

        @step
        async def b(self, ev: JokeEvent) -> Other:  # type: ignore[valid-type]
            return Other()

        @step
        async def c(self, ev: Other) -> StopEvent:  # type: ignore[valid-type]
            return StopEvent()

    labels = {n.label for n in graph_of(Twins).nodes}
    assert f"{__name__}.JokeEvent" in labels
    assert f"{__name__}.test_same_named_events_are_told_apart.make.JokeEvent" in labels


# -- recorded runs ----------------------------------------------------------------------------


def record(seq: int, event: str, **fields: Any) -> dict[str, Any]:
    base = {
        "event": event,
        "run_id": "run-1",
        "seq": seq,
        "workflow": "JokeFlow",
        "timestamp": 1000.0 + seq / 10,
    }
    return base | fields


def joke_run(run_id: str = "run-1") -> list[dict[str, Any]]:
    """The records of a JokeFlow run: a joke, two critiques (one failed and retried), stop."""
    records = [
        record(0, "run.started"),
        record(
            1,
            "event.emitted",
            event_id=0,
            event_type="StartEvent",
            cause_id=None,
            step=None,
            payload={"topic": "cats"},
        ),
        record(2, "step.started", step="generate_joke", worker=0, event_id=0, attempt=1),
        record(
            3,
            "event.emitted",
            event_id=1,
            event_type="JokeEvent",
            cause_id=0,
            step="generate_joke",
            payload={"joke": "j1", "rating": 0.5},
        ),
        record(4, "step.finished", step="generate_joke", worker=0, event_id=0, attempt=1, duration_s=0.25),
        record(5, "step.started", step="critique_joke", worker=0, event_id=1, attempt=1),
        record(
            6,
            "step.failed",
            step="critique_joke",
            worker=0,
            event_id=1,
            attempt=1,
            duration_s=0.5,
            error_type="ValueError",
            error="flaky",
        ),
        record(7, "step.started", step="critique_joke", worker=1, event_id=1, attempt=2),
        record(
            8,
            "event.emitted",
            event_id=2,
            event_type="CritiqueEvent",
            cause_id=1,
            step="critique_joke",
            payload={"critique": "ok"},
        ),
        record(9, "step.finished", step="critique_joke", worker=1, event_id=1, attempt=2, duration_s=1.5),
        record(10, "step.started", step="finish", worker=0, event_id=2, attempt=1),
        record(
            11,
            "event.emitted",
            event_id=3,
            event_type="StopEvent",
            cause_id=2,
            step="finish",
            payload={"result": "ok"},
        ),
        record(12, "step.finished", step="finish", worker=0, event_id=2, attempt=1, duration_s=0.001),
        record(13, "run.finished"),
    ]
    for r in records:
        r["run_id"] = run_id
    return records


def test_execution_graph_counts_what_happened() -> None:
    """A recorded run draws the path taken, with counts, durations and the failure."""
    graph = graph_of_run(joke_run(), None)
    assert graph.kind == "execution"
    nodes = {n.label: n for n in graph.nodes}
    assert {label: n.kind for label, n in nodes.items()} == {
        "StartEvent": "start",
        "JokeEvent": "event",
        "CritiqueEvent": "event",
        "StopEvent": "stop",
        "generate_joke": "step",
        "critique_joke": "step",
        "finish": "step",
    }
    assert nodes["critique_joke"].sub == "2 runs · avg 1.00 s · 1 failed"
    assert nodes["critique_joke"].classes == ("failed",)
    rows = dict(nodes["critique_joke"].details["sections"][0]["table"])
    assert rows["invocations"] == "2"
    assert rows["retries"] == "1"
    assert rows["total time"] == "2.00 s"
    assert rows["longest"] == "1.50 s"
    assert rows["workers used"] == "0, 1"
    assert nodes["critique_joke"].details["sections"][1]["pre"] == "ValueError: flaky"
    assert nodes["finish"].sub == "1 run · avg 1.0 ms"
    assert {
        (a, b, e.label)
        for e in graph.edges
        for a, b in [(label_of(graph, e.source), label_of(graph, e.target))]
    } == {
        ("StartEvent", "generate_joke", "×1"),
        ("generate_joke", "JokeEvent", "×1"),
        ("JokeEvent", "critique_joke", "×1"),
        ("critique_joke", "CritiqueEvent", "×1"),
        ("CritiqueEvent", "finish", "×1"),
        ("finish", "StopEvent", "×1"),
    }
    summary = dict(graph.summary["sections"][0]["table"])
    assert summary["outcome"] == "finished"
    assert summary["duration"] == "1.30 s"
    assert graph.subtitle == "finished in 1.30 s · 4 events · 3 steps ran"


def label_of(graph: Any, node_id: str) -> str:
    return next(n.label for n in graph.nodes if n.id == node_id)


def test_execution_counts_fan_out() -> None:
    """An event type emitted many times shows the count on its node and edges."""
    records = [
        record(0, "run.started"),
        record(1, "event.emitted", event_id=0, event_type="StartEvent", cause_id=None, step=None, payload={}),
        record(2, "step.started", step="split", worker=0, event_id=0, attempt=1),
        *[
            record(
                3 + i,
                "event.emitted",
                event_id=10 + i,
                event_type="Chunk",
                cause_id=0,
                step="split",
                payload={"i": i},
            )
            for i in range(5)
        ],
        record(8, "step.finished", step="split", worker=0, event_id=0, attempt=1, duration_s=0.1),
        *[
            record(9 + i, "step.started", step="work", worker=i % 2, event_id=10 + i, attempt=1)
            for i in range(5)
        ],
        *[
            record(14 + i, "step.cancelled", step="work", worker=i % 2, event_id=10 + i, attempt=1)
            for i in range(5)
        ],
        record(19, "run.failed", error_type="RuntimeError", error="boom"),
    ]
    graph = graph_of_run(records, "run-1")
    nodes = {n.label: n for n in graph.nodes}
    assert nodes["Chunk"].sub == "event · ×5"
    assert nodes["work"].classes == ("cancelled",)
    assert {e.label for e in graph.edges} == {"×1", "×5"}
    assert graph.summary["sections"][1]["pre"] == "RuntimeError: boom"
    assert graph.subtitle.startswith("failed in 1.90 s")


def test_execution_needs_a_run_id_when_the_trace_holds_several(tmp_path: Path) -> None:
    """With two runs in a trace, run_id picks one; a missing or unknown one is explained."""
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in [*joke_run("run-1"), *joke_run("run-2")]))
    with pytest.raises(ValueError, match="holds 2 runs; pass run_id= one of: run-1, run-2"):
        draw_execution(trace, filename=tmp_path / "x.html")
    with pytest.raises(ValueError, match="no records of run 'run-3'"):
        draw_execution(trace, "run-3", filename=tmp_path / "x.html")
    path = draw_execution(trace, "run-2", filename=tmp_path / "run.html")
    data = page_data(path)
    assert data["kind"] == "execution"
    assert dict(data["summary"]["sections"][0]["table"])["run"] == "run-2"


def test_execution_reads_records_or_a_file(tmp_path: Path) -> None:
    """A list of records and the same records as JSON lines draw the same page."""
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(json.dumps(r) for r in joke_run()) + "\n\n")
    a = draw_execution(trace, filename=tmp_path / "a.html").read_text(encoding="utf-8")
    b = draw_execution(joke_run(), "run-1", tmp_path / "b.html").read_text(encoding="utf-8")
    assert a == b


def test_trace_lines_are_read_as_the_audit_loader_does(tmp_path: Path) -> None:
    """A trace file is read by actorflow.audit's loader: other JSON lines are skipped, malformed
    lines are an AuditFileError naming the line."""
    from actorflow.audit import AuditFileError

    trace = tmp_path / "trace.jsonl"
    records = joke_run()
    trace.write_text(
        "".join(json.dumps(r) + "\n" for r in records[:5])
        + '{"event": "another log line"}\n'
        + "".join(json.dumps(r) + "\n" for r in records[5:])
    )
    a = draw_execution(trace, filename=tmp_path / "a.html").read_text(encoding="utf-8")
    b = draw_execution(records, filename=tmp_path / "b.html").read_text(encoding="utf-8")
    assert a == b
    (tmp_path / "junk.jsonl").write_bytes(b'{"event": "x"}\n{not json\n\xff\xfe\n')
    with pytest.raises(AuditFileError, match="junk.jsonl, line 2: the line is not valid JSON"):
        draw_execution(tmp_path / "junk.jsonl", filename=tmp_path / "x.html")
    (tmp_path / "empty.jsonl").write_bytes(b'{"event": "x"}\n')
    with pytest.raises(ValueError, match="the trace holds no run"):
        draw_execution(tmp_path / "empty.jsonl", filename=tmp_path / "x.html")


async def test_execution_of_a_real_traced_run(tmp_path: Path) -> None:
    """The records of a traced run, as structlog sees them, draw the path the run took."""
    with structlog.testing.capture_logs() as records:
        assert await JokeFlow(trace=True).run(topic="cats") == "ok"
    graph = graph_of_run(records, None)
    nodes = {n.label: n for n in graph.nodes}
    assert {label: n.kind for label, n in nodes.items()} == {
        "StartEvent": "start",
        "JokeEvent": "event",
        "CritiqueEvent": "event",
        "StopEvent": "stop",
        "generate_joke": "step",
        "critique_joke": "step",
        "finish": "step",
    }
    assert all(n.sub.startswith("1 run · avg ") for n in nodes.values() if n.kind == "step")
    assert dict(nodes["critique_joke"].details["sections"][0]["table"])["num_workers"] == "4"
    assert len(graph.edges) == 6
    assert graph.subtitle.startswith("finished in ")
    page = draw_execution(records, filename=tmp_path / "run.html")
    assert page_data(page)["title"].startswith("JokeFlow · run ")
    # What actorflow.audit.load_run returns draws the same page.
    again = draw_execution(audit.RunTrace.from_records(records), filename=tmp_path / "again.html")
    assert again.read_text(encoding="utf-8") == page.read_text(encoding="utf-8")
