"""What a replay report shows of the code's own values: never a field the trail redacted (nor
one the Redactor given to replay() names), whichever way the code now departs; and a replay
leaves nothing of itself running."""

from __future__ import annotations

import pathlib
import threading
from typing import Any

import pytest
import trio
from replay_flows import Loan, record

from actorflow import Context, Event, StartEvent, StopEvent, Workflow, audit, step
from actorflow.audit import replay
from actorflow.cli import main
from actorflow.llm import ScriptedLLM
from actorflow.testing import leftover_tasks

pytestmark = pytest.mark.usefixtures("clean_structlog")

#: The secret the recorded run held, and the one the changed code holds now.
RECORDED = "123-45-6789"
NOW = "987-65-4321"


class Profile(Event):
    name: str
    ssn: str


class Vault(Workflow):
    """Looks a person's SSN up, and greets them with it (a field the trail redacts)."""

    ssn = RECORDED
    greeting = "hello"
    profiles = 1
    fails = False

    @step
    async def find(self, ctx: Context, ev: StartEvent) -> Profile | None:
        if self.fails:
            raise ValueError(f"no profile with SSN {self.ssn}")
        for _ in range(self.profiles):
            ctx.send_event(Profile(name=ev.name, ssn=self.ssn))
        return None

    @step
    async def greet(self, ev: Profile) -> StopEvent:
        return StopEvent(result={"greeting": f"{self.greeting} {ev.name}", "ssn": ev.ssn})


def changed(**attrs: Any) -> type[Workflow]:
    """Vault, as a later version of its code holding another SSN."""
    return type("Vault", (Vault,), {"ssn": NOW, **attrs})


REDACT = audit.Redactor({"Profile": ["ssn"], "StopEvent": ["result.ssn"]})


@pytest.fixture
def vault_trail(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "vault.jsonl"
    result = record(path, lambda: Vault(trace=True).run(name="Ada"), redact=REDACT)
    assert result == {"greeting": "hello Ada", "ssn": RECORDED}
    assert RECORDED not in path.read_text()
    return path


def shown(report: audit.ReplayReport) -> str:
    """Everything a reader of the report can see: its text, its records' reprs, and the CLI's."""
    return "\n".join([str(report), repr(report), *(repr(d) for r in report.runs for d in r.divergences)])


def test_a_change_only_in_a_redacted_field_is_not_seen(vault_trail: pathlib.Path) -> None:
    """Another SSN now, nothing else changed: the redacted field can be neither checked nor
    held against the code, so the replay is the same."""
    report = replay(vault_trail, changed())
    assert report.ok, str(report)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (changed(greeting="hi"), "run_outcome"),
        (changed(profiles=2), "extra_event"),
        (changed(profiles=0), "missing_event"),
    ],
    ids=["result", "extra event", "missing event"],
)
def test_a_divergence_never_shows_a_redacted_field(
    vault_trail: pathlib.Path, code: type[Workflow], kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever differs (the result, an event too many or too few), the report quotes the
    code's values with the trail's redacted fields masked: neither SSN appears."""
    report = replay(vault_trail, code)
    assert report.status == "diverged"
    assert kind in {d.kind for r in report.runs for d in r.divergences}, str(report)
    text = shown(report)
    assert RECORDED not in text and NOW not in text, text
    assert audit.REDACTED in text


def test_a_changed_event_never_shows_a_redacted_field(vault_trail: pathlib.Path) -> None:
    """A Profile with another name: the divergence is that event, with its SSN masked."""
    report = replay(vault_trail, _vault_renames())
    d = report.divergence
    assert d is not None and d.kind == "event" and d.step == "find", str(report)
    assert '"name":"Eve"' in d.got and audit.REDACTED in d.got, d.got
    text = shown(report)
    assert RECORDED not in text and NOW not in text, text


def _vault_renames() -> type[Workflow]:
    class Vault(Workflow):
        @step
        async def find(self, ev: StartEvent) -> Profile:
            return Profile(name="Eve", ssn=NOW)

        @step
        async def greet(self, ev: Profile) -> StopEvent:
            return StopEvent(result={"greeting": f"hello {ev.name}", "ssn": ev.ssn})

    return Vault


def test_the_redactor_given_hides_what_the_trail_never_had_to(
    vault_trail: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step that now fails with the SSN in its message: replay(redact=) with errors=True
    masks the message, which the trail (with no failure in it) could not know to hide; the
    command line masks the fields the trail redacted."""
    code = changed(fails=True)
    report = replay(vault_trail, code, redact=audit.Redactor(errors=True))
    (d,) = [d for d in report.runs[0].divergences if d.kind == "outcome"]
    assert d.step == "find" and "ValueError" in d.got, str(report)
    assert NOW not in shown(report), shown(report)
    assert NOW in shown(replay(vault_trail, code))  # without it, the message is the code's own


def test_the_command_line_never_prints_a_redacted_field(
    vault_trail: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """actorflow audit replay prints the divergence with the SSN masked."""
    import sys

    module = type(sys)("vault_changed")
    module.Vault = changed(greeting="hi")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vault_changed", module)
    assert main(["audit", "replay", str(vault_trail), "vault_changed:Vault"]) == 1
    out = capsys.readouterr().out
    assert "DIVERGED" in out and RECORDED not in out and NOW not in out, out


class Secret(Event):
    ssn: str


def _vault_tells() -> type[Workflow]:
    class Vault(Workflow):
        """Vault, changed: it emits an event type the recorded run never had."""

        @step
        async def find(self, ev: StartEvent) -> Secret:
            return Secret(ssn=NOW)

        @step
        async def greet(self, ev: Secret) -> StopEvent:
            return StopEvent(result={"greeting": "hello", "ssn": ev.ssn})

    return Vault


def test_the_command_line_takes_the_redactor_the_trail_was_written_with(
    vault_trail: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--redact MODULE:NAME masks what that Redactor names (here an event type the trail never
    held); a name that is not a Redactor is refused, exit 2."""
    import sys

    module = type(sys)("vault_tells")
    module.Vault = _vault_tells()  # type: ignore[attr-defined]
    module.REDACT = audit.Redactor({"Secret": ["ssn"], "Profile": ["ssn"]})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vault_tells", module)
    args = ["audit", "replay", str(vault_trail), "vault_tells:Vault"]
    assert main(args) == 1
    assert f'Secret {{"ssn":"{NOW}"}}' in capsys.readouterr().out  # the trail cannot know
    assert main([*args, "--redact", "vault_tells:REDACT"]) == 1
    out = capsys.readouterr().out
    assert "Secret" in out and NOW not in out and RECORDED not in out, out
    assert main([*args, "--redact", "vault_tells:Vault"]) == 2
    assert "not an actorflow.audit.Redactor" in capsys.readouterr().err


class Asks(Workflow):
    """Asks the model about a person by SSN (the trail redacts the prompt's start)."""

    ssn = RECORDED
    llm = ScriptedLLM(lambda prompt: "fine")

    @step
    async def ask(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=str(await self.llm.acomplete(f"Is {self.ssn} in good standing?")))


def test_a_changed_prompt_never_shows_a_redacted_prompt(tmp_path: pathlib.Path) -> None:
    """The prompt now holds another SSN: the divergence names the call, but shows neither
    prompt, as the trail redacted prompts."""
    path = tmp_path / "asks.jsonl"
    record(path, lambda: Asks(trace=True).run(), redact=audit.Redactor({"llm.called": ["prompt_preview"]}))
    assert RECORDED not in path.read_text()
    report = replay(path, type("Asks", (Asks,), {"ssn": NOW}))
    d = report.divergence
    assert d is not None and d.kind == "llm_prompt", str(report)
    text = shown(report)
    assert RECORDED not in text and NOW not in text, text


async def test_a_replay_leaves_nothing_running(tmp_path: pathlib.Path) -> None:
    """Replayed from a thread of a trio program, same or diverged, a replay leaves no task
    and no thread of its own behind."""
    path = tmp_path / "loan.jsonl"
    await trio.to_thread.run_sync(lambda: record(path, lambda: Loan(trace=True).run(applicant="Ada")))
    before = {t.ident for t in threading.enumerate()}
    changed_code = type("Loan", (Loan,), {"fraud_ok": False})
    stalls = type("Loan", (Loan,), {"kinds": ("credit",)})  # decide waits for a second Verdict
    for code, status in ((Loan, "same"), (changed_code, "diverged"), (stalls, "diverged")):
        report = await trio.to_thread.run_sync(replay, path, code)
        assert report.status == status, str(report)
    assert leftover_tasks() == []
    # trio keeps idle worker threads for reuse; none may be busy, and none other appears.
    stray = [
        t
        for t in threading.enumerate()
        if t.ident not in before and not t.name.startswith("Trio thread") and t.is_alive()
    ]
    assert stray == [], stray
