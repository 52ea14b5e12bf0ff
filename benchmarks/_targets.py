"""The targets, judged against what a run measured: PASS, MISS, SKIP or INFO.

Every speed target is a ratio of cost per unit between two systems measured in the same
interleaved rounds (median of the per-round ratios), so load on the shared machine cannot
fake a pass or a miss. A full run exits non-zero when any target is a MISS. A quick run is a
smoke run: its sizes are too small to mean anything, so it judges nothing (its targets say
"not judged") and only proves that every scenario and every target's arithmetic runs.

To add a target: append a line to :func:`targets` (``ratio_at_most`` covers most of them).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from . import _audit, _imports, _observers, _scenarios
from ._report import AF, DIRECT, LLAMA, Report, label, x

PASS, MISS, SKIP, INFO = "PASS", "MISS", "SKIP", "INFO"
NOT_JUDGED = "not judged (smoke run)"


@attrs.frozen
class Target:
    """One target and how this run did against it."""

    name: str
    requirement: str
    measured: str
    status: str
    """PASS, MISS, SKIP (this run did not measure it), INFO (no target), or not judged."""


def _status(ok: bool | None) -> str:
    return SKIP if ok is None else PASS if ok else MISS


def ratio_at_most(
    report: Report, name: str, scenario: str, case: str, num: str, den: str, limit: float
) -> Target:
    """``num``'s cost per unit ÷ ``den``'s, in that case, at most ``limit``."""
    r = report.ratio(scenario, case, num, den)
    return Target(
        name,
        f"{label(num)} ÷ {label(den)} ≤ {limit:g}× ({scenario}, {case})",
        _measured(report, scenario, case, num, den),
        _status(None if r is None else r <= limit),
    )


def _measured(report: Report, scenario: str, case: str, num: str, den: str) -> str:
    """The ratio ``num`` ÷ ``den`` as printed, with both costs per unit when measured."""
    measured = x(report.ratio(scenario, case, num, den))
    a, b = report.timing(scenario, case, num), report.timing(scenario, case, den)
    if a is not None and b is not None and not a.capped and not b.capped:
        measured += f" ({_us(a.cost)} vs {_us(b.cost)} µs per {a.unit})"
    return measured


def _us(seconds: float) -> str:
    v = seconds * 1e6
    return f"{v:.2f}" if v < 10 else f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


def ratio_at_least(
    report: Report, name: str, scenario: str, case: str, num: str, den: str, limit: float
) -> Target:
    """``num``'s cost per unit ÷ ``den``'s at least ``limit`` (a peer slower than actorflow)."""
    r = report.ratio(scenario, case, num, den)
    return Target(
        name,
        f"{label(num)} ÷ {label(den)} ≥ {limit:g}× ({scenario}, {case})",
        x(r),
        _status(None if r is None else r >= limit),
    )


def targets(report: Report) -> list[Target]:
    """Judge every target against ``report`` (a quick run's are all "not judged")."""
    c = report.config
    s = _scenarios
    one = s.ONE_IN_FLIGHT
    fan = s.fan_case(c.fan_size, 4)
    out: list[Target] = [
        # -- issue 11: against the honest floor (direct bare trio) --------------------------
        ratio_at_most(report, "chain vs direct trio", "chain", one, AF, DIRECT, 1.15),
        ratio_at_most(report, "fan-out/fan-in vs direct trio", "fan-out", fan, AF, DIRECT, 1.2),
        ratio_at_most(
            report,
            "trivial run, sequential, vs direct trio",
            "runs",
            s.sequential_case(c.runs_sequential),
            AF,
            DIRECT,
            1.25,
        ),
        ratio_at_most(
            report,
            f"{c.runs_concurrent:,} concurrent trivial runs vs direct trio",
            "runs",
            s.concurrent_case(c.runs_concurrent),
            AF,
            DIRECT,
            1.3,
        ),
        ratio_at_most(report, "self-loop vs direct trio", "self-loop", one, AF, DIRECT, 1.5),
        _many_runs(report),
        ratio_at_most(
            report,
            "traced chain (audit.processors JSONL) vs untraced",
            "tracing",
            f"chain N={c.tracing_hops:,}",
            _audit.JSONL,
            _audit.UNTRACED,
            2.5,
        ),
        ratio_at_most(
            report,
            "one audit record vs plain structlog JSON to a file",
            "audit-record",
            _case(report, "audit-record"),
            _audit.AUDIT,
            _audit.PLAIN,
            1.5,
        ),
        ratio_at_most(
            report,
            "traced hop with a 1 MB str field vs one json.dumps of it",
            "large-payload",
            f"{c.large_payload:,}-character str field",
            _audit.TRACED_HOP,
            _audit.DUMPS,
            3.0,
        ),
        ratio_at_most(
            report,
            "import actorflow vs import trio + import pydantic",
            "imports",
            "fresh interpreter, bytecode cached",
            "import actorflow",
            "import trio, pydantic",
            1.15,
        ),
        # -- issue 15: a run nobody observes costs what an unobserved run always did --------
        *(
            ratio_at_most(
                report,
                f"{shape} with {what} vs no observer",
                "observers",
                case,
                system,
                _observers.NONE,
                1.05,
            )
            for shape, case in (
                ("chain", f"chain N={c.observer_hops:,}"),
                ("fan-out", f"fan-out N={c.observer_fan:,} W=4"),
            )
            for what, system in (
                ("observers=[]", _observers.EMPTY),
                ("an Observer() that overrides no hook", _observers.IDLE),
            )
        ),
        # -- kept from issue 4 ----------------------------------------------------------------
        _flat(report, "step types", [s.types_case(t, c.scaling_types_hops) for t in c.scaling_types]),
        _flat(report, "events", [s.hops_case(h) for h in c.scaling_hops]),
        _held(report),
        ratio_at_least(report, "chain vs llama-index-workflows", "chain", one, LLAMA, AF, 20),
        _fan_vs_llama(report),
        ratio_at_least(
            report,
            "trivial runs, sequential, vs llama-index-workflows",
            "runs",
            s.sequential_case(c.runs_sequential),
            LLAMA,
            AF,
            4,
        ),
        ratio_at_least(
            report,
            "trivial runs, concurrent, vs llama-index-workflows",
            "runs",
            s.concurrent_case(c.runs_concurrent),
            LLAMA,
            AF,
            4,
        ),
        # -- figures with no target -------------------------------------------------------
        _rss(report),
        *(
            _info(
                report,
                f"{what} vs no observer",
                lambda case=case, system=system: x(report.ratio("observers", case, system, _observers.NONE)),
            )
            for what, case, system in (
                ("chain with one observer hook", f"chain N={c.observer_hops:,}", _observers.ONE_HOOK),
                (
                    "chain with actorflow.otel instrumented",
                    _observers.otel_case(f"chain N={c.observer_hops:,}"),
                    _observers.OTEL,
                ),
                (
                    "fan-out with actorflow.otel instrumented",
                    _observers.otel_case(f"fan-out N={c.observer_fan:,} W=4"),
                    _observers.OTEL,
                ),
            )
        ),
        _info(
            report,
            "first use of actorflow (Workflow, step, events) vs import trio + one pydantic model",
            lambda: _measured(report, "imports", _imports.FIRST_USE_CASE, *_imports.FIRST_USE),
        ),
        _info(
            report,
            "traced fan-out (audit.processors JSONL) vs untraced",
            lambda: x(
                report.ratio("tracing", f"fan-out N={c.tracing_fan:,} W=4", _audit.JSONL, _audit.UNTRACED)
            ),
        ),
    ]
    if c.quick:
        out = [attrs.evolve(t, status=NOT_JUDGED) if t.status in (PASS, MISS) else t for t in out]
    return out


def _case(report: Report, scenario: str) -> str:
    return next((t.case for t in report.timings if t.scenario == scenario), "not measured")


def _many_runs(report: Report) -> Target:
    c = report.config
    name = "100,000 concurrent trivial runs in one process vs direct trio"
    if not c.many_runs:
        return Target(name, "actorflow ÷ direct trio ≤ 1.5× (full run only)", "–", SKIP)
    case = _scenarios.concurrent_case(c.many_runs)
    t = ratio_at_most(report, name, "runs", case, AF, DIRECT, 1.5)
    af, direct = report.timing("runs", case, AF), report.timing("runs", case, DIRECT)
    if af is not None and direct is not None:
        total = (
            f"{af.samples.median:.1f} s vs {direct.samples.median:.1f} s"
            if not af.capped
            else f"> {c.many_runs_cap:g} s cap vs {direct.samples.median:.1f} s"
        )
        t = attrs.evolve(t, measured=f"{x(report.ratio('runs', case, AF, DIRECT))} ({total})")
    return t


def _flat(report: Report, what: str, cases: list[str]) -> Target:
    r = report.flatness("scaling", cases, AF)
    floor = report.flatness("scaling", cases, DIRECT)
    span = f"{cases[0]} … {cases[-1]}" if cases else "–"
    return Target(
        f"flat cost per hop vs {what}",
        f"highest ÷ lowest µs per hop ≤ 1.5 ({span}; interleaved, per-round normalised, median per case)",
        f"{x(r)} (direct trio: {x(floor)})",
        _status(None if r is None else r <= 1.5),
    )


def _held(report: Report) -> Target:
    held = report.figure("memory", "memory held per routed event", AF, "retained_per_event")
    llama = report.figure("memory", "memory held per routed event", LLAMA, "retained_per_event")
    extra = f" (llama-index: {llama.value:,.0f} B)" if llama is not None else ""
    return Target(
        "memory held per handled event",
        "none: < 16 bytes per routed event (tracemalloc)",
        "–" if held is None else f"{held.value:,.1f} B{extra}",
        _status(None if held is None else held.value < 16),
    )


def _fan_vs_llama(report: Report) -> Target:
    c = report.config
    ours = report.timing("fan-out", _scenarios.fan_case(c.fan_size, 4), AF)
    peer_case = _scenarios.peer_fan_case(c.peer_fan_size)
    llama = report.timing("fan-out", peer_case, LLAMA)
    name = "fan-out W=4 vs llama-index-workflows"
    requirement = f"llama µs/event at N={c.peer_fan_size:,} ÷ actorflow's at N={c.fan_size:,} ≥ 300×"
    if ours is None or llama is None:
        return Target(name, requirement, "–", SKIP)
    r = llama.cost / ours.cost
    same = report.ratio("fan-out", peer_case, LLAMA, AF)
    return Target(name, requirement, f"{x(r)} (same N: {x(same)})", _status(r >= 300))


def _rss(report: Report) -> Target:
    af = report.figure("memory", "memory per live run", AF, "rss_per_run")
    floor = report.figure("memory", "memory per live run", DIRECT, "rss_per_run")
    if af is None:
        return Target("RSS per live run", "reported (no target)", "–", SKIP)
    measured = f"{af.value / 1024:,.1f} KiB"
    if floor is not None and floor.value > 0:
        measured += f" (direct trio {floor.value / 1024:,.1f} KiB: {x(af.value / floor.value)})"
    return Target("RSS per live run", "reported (no target)", measured, INFO)


def _info(report: Report, name: str, measured: Callable[[], str]) -> Target:
    value = measured()
    return Target(name, "reported (no target)", value, INFO if value != "–" else SKIP)


def failed(targets: list[Target]) -> list[Target]:
    """The targets this run missed."""
    return [t for t in targets if t.status == MISS]


def markdown(targets: list[Target], quick: bool) -> str:
    """The targets table (with the smoke-run notice for a quick run)."""
    lines = ["### Targets", ""]
    if quick:
        lines += [
            "**Smoke run (`--quick`): no target is judged.** Its sizes are far too small to mean",
            "anything; the table only shows that every figure a target needs was produced.",
            "",
        ]
    lines += ["| target | requirement | measured | |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.requirement} | {t.measured} | {t.status} |" for t in targets]
    return "\n".join(lines) + "\n"
