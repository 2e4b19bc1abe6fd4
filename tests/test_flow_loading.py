"""Loading flow files: every bad fixture is refused at its line, good flows load with warnings.

Each file in ``tests/bad_flows/`` opens with one ``# expect: LINE:COL fragment`` comment per
problem the loader must report; adding a case is adding a file.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pydantic
import pytest

from ivr.errors import FlowLoadError, Problem
from ivr.flow import Flow, content_version, load_flow_file, load_flow_text

HERE = Path(__file__).resolve().parent
BAD_FLOWS = HERE / "bad_flows"
DEMO_FLOW = HERE.parent / "flows" / "airline.yaml"
EXPECT = re.compile(r"^# expect: (\d+)(?::(\d+))? (.+)$")


@dataclasses.dataclass(frozen=True)
class Expected:
    """One problem a bad fixture must produce."""

    line: int
    col: int | None
    fragment: str

    def matches(self, problem: Problem) -> bool:
        """True when ``problem`` is at this line (and column) and says the fragment."""
        return (
            problem.line == self.line
            and (self.col is None or problem.col == self.col)
            and self.fragment in problem.message
        )


def expectations(path: Path) -> list[Expected]:
    """The ``# expect:`` lines that open ``path`` (read as bytes: a fixture may not be UTF-8)."""
    found = []
    for raw in path.read_bytes().splitlines():
        match = EXPECT.match(raw.decode("ascii", errors="replace"))
        if match is None:
            break
        line, col, fragment = match.groups()
        found.append(Expected(int(line), int(col) if col else None, fragment))
    return found


def load(text: str, name: str = "flow") -> Flow:
    return load_flow_text(textwrap.dedent(text), f"{name}.yaml", name)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(FlowLoadError) as caught:
        load(text)
    return caught.value.problems


BAD_FILES = sorted(BAD_FLOWS.glob("*.yaml"))


def test_there_are_bad_fixtures_of_many_kinds() -> None:
    assert len(BAD_FILES) >= 12
    assert all(expectations(path) for path in BAD_FILES)


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_bad_flow_is_refused_at_its_line(path: Path) -> None:
    expected = expectations(path)
    with pytest.raises(FlowLoadError) as caught:
        load_flow_file(path)
    problems = caught.value.problems
    rendered = [str(p) for p in problems]
    assert len(problems) == len(expected), rendered
    unmatched = list(problems)
    for want in expected:
        match = next((p for p in unmatched if want.matches(p)), None)
        assert match is not None, f"{want} not among {rendered}"
        unmatched.remove(match)
    for problem in problems:
        assert problem.severity == "error"
        assert str(problem).startswith(f"{path}:{problem.line}:{problem.col}: error: ")
    assert str(caught.value).splitlines() == rendered


# ---- good flows ---------------------------------------------------------------------------
def test_demo_flow_loads_without_warnings() -> None:
    flow = load_flow_file(DEMO_FLOW)
    assert flow.id == "airline"
    assert flow.numbers == ("+14155550100",)
    assert flow.warnings == ()
    assert flow.version == content_version(DEMO_FLOW.read_text(encoding="utf-8"))
    assert flow.spec.start == "welcome"
    confirmation = flow.node("confirmation")
    assert confirmation.validation is not None
    assert confirmation.validation.pattern == "^[A-Z0-9]{6}$"
    assert confirmation.gather is not None
    assert confirmation.gather.timeout == 8.0
    assert flow.spec.resume.within == 1800.0
    assert flow.number_positions == ((7, 11),)


def test_loaded_flow_is_immutable() -> None:
    flow = load_flow_file(DEMO_FLOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        flow.id = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        flow.spec.start = "agent"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        flow.node("welcome").next = "agent"  # type: ignore[misc]


def test_flow_id_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "support-line.yaml"
    path.write_text("start: a\nnodes:\n  a: {hangup: true}\n", encoding="utf-8")
    assert load_flow_file(path).id == "support-line"


def test_version_is_the_hash_of_the_exact_text() -> None:
    first = load("start: a\nnodes:\n  a: {hangup: true}\n")
    same = load("start: a\nnodes:\n  a: {hangup: true}\n")
    commented = load("# a comment\nstart: a\nnodes:\n  a: {hangup: true}\n")
    assert first.version == same.version
    assert first.version != commented.version
    assert len(first.version) == 16


def test_numbers_are_normalised_to_e164_with_their_positions() -> None:
    flow = load(
        """\
        numbers:
          - "+1 415 555 0100"
          - +442071838750
        start: a
        nodes:
          a: {hangup: true}
        """
    )
    assert flow.numbers == ("+14155550100", "+442071838750")
    assert flow.number_positions == ((2, 5), (3, 5))


def test_templates_and_expressions_are_compiled_at_load() -> None:
    flow = load(
        """\
        start: a
        nodes:
          a:
            say: Hello {{ name }}
            branch:
              - if: tries > 2
                then: b
            next: b
          b: {hangup: true}
        """
    )
    assert "Hello {{ name }}" in flow.compiled_templates
    assert "tries > 2" in flow.compiled_expressions
    assert flow.template("Hello {{ name }}") is flow.compiled_templates["Hello {{ name }}"]


def test_every_independent_problem_is_reported_at_once() -> None:
    problems = problems_of(
        """\
        numbers: ["12"]
        start: a
        nodes:
          a:
            say: "{{ oops"
            next: nowhere
        """
    )
    assert [(p.line, p.col) for p in problems] == [(1, 11), (5, 10), (6, 11)]


def test_a_node_that_is_not_a_map_is_reported_at_the_node() -> None:
    [problem] = problems_of("start: a\nnodes:\n  a: hello\n")
    assert (problem.line, problem.col) == (3, 6)
    assert "nodes.a" in problem.message


def test_a_prompt_of_the_wrong_type_names_the_key_not_the_union() -> None:
    [problem] = problems_of("start: a\nnodes:\n  a:\n    say: 5\n    hangup: true\n")
    assert (problem.line, problem.col) == (4, 10)
    assert problem.message.startswith("nodes.a.say: ")


def test_a_say_part_with_a_typo_is_reported_once_with_a_suggestion() -> None:
    problems = problems_of("start: a\nnodes:\n  a:\n    say: {sya: hi}\n    hangup: true\n")
    messages = [p.message for p in problems]
    assert "Unknown key 'sya'. Did you mean 'say'?" in messages
    assert "Unknown key 'say'." not in messages
    assert all("PlayPart" not in m and "PausePart" not in m for m in messages)


@pytest.mark.parametrize(
    ("snippet", "typo", "suggestion"),
    [
        ("resume: {withn: 5m}", "withn", "within"),
        ("defaults: {no_inptu: {retries: 1}}", "no_inptu", "no_input"),
        ("defaults: {no_match: {retires: 1}}", "retires", "retries"),
        ("nodes: {a: {http: {url: /x, metod: GET}, hangup: true}}", "metod", "method"),
        ("nodes: {a: {branch: [{if: x, thn: a}], next: a}}", "thn", "then"),
        ("nodes: {a: {transfer: {queu: support}}}", "queu", "queue"),
        ("nodes: {a: {gather: {}, next: a, validate: {patern: x}}}", "patern", "pattern"),
        ("nodes: {a: {say: {play: x.mp3, lop: 2}, hangup: true}}", "lop", "loop"),
    ],
)
def test_unknown_keys_get_a_suggestion_from_their_own_map(
    snippet: str, typo: str, suggestion: str
) -> None:
    nodes = "" if snippet.startswith("nodes") else "nodes: {a: {hangup: true}}\n"
    problems = problems_of(f"start: a\n{snippet}\n{nodes}")
    unknown = [p.message for p in problems if p.message.startswith("Unknown key")]
    assert unknown == [f"Unknown key {typo!r}. Did you mean {suggestion!r}?"]


def test_a_key_from_another_map_is_not_suggested() -> None:
    [problem] = problems_of("start: a\nnodes:\n  a:\n    gather: {save_as: x}\n    next: a\n")
    assert problem.message == "Unknown key 'save_as'."


# ---- warnings -----------------------------------------------------------------------------
def test_warnings_do_not_stop_loading_and_carry_positions() -> None:
    flow = load(
        """\
        start: welcome
        nodes:
          welcome:
            say: Hello
            next: menu
          menu:
            say: Nothing more.
          orphan:
            say: Nobody comes here.
            hangup: true
        """
    )
    assert flow.spec.start == "welcome"
    found = {(w.line, w.col, w.severity) for w in flow.warnings}
    assert found == {(7, 5, "warning"), (9, 5, "warning")}
    by_line = {w.line: w.message for w in flow.warnings}
    assert "'menu' leads nowhere" in by_line[7]
    assert "'orphan' can never be reached" in by_line[9]
    assert all(str(w).startswith(f"flow.yaml:{w.line}:{w.col}: warning: ") for w in flow.warnings)


def test_nodes_reached_only_through_fallback_or_retries_are_reachable() -> None:
    flow = load(
        """\
        start: menu
        fallback: agent
        defaults:
          no_input: {then: goodbye}
        nodes:
          menu:
            gather: {prompt: Press 1.}
            on: {"1": menu}
            no_match: {then: sorry}
          sorry:
            say: Sorry.
            next: menu
          goodbye:
            hangup: true
          agent:
            transfer: {queue: support}
        """
    )
    assert flow.warnings == ()


def test_a_dead_end_with_hangup_is_not_a_warning() -> None:
    flow = load("start: a\nnodes:\n  a:\n    say: Bye.\n    hangup: true\n")
    assert flow.warnings == ()


# ---- YAML traps, end to end ----------------------------------------------------------------
def test_keypad_and_yes_no_keys_stay_strings_in_routes() -> None:
    flow = load(
        """\
        start: menu
        nodes:
          menu:
            gather: {prompt: "Yes or no?", input: [dtmf, speech]}
            on:
              1: yes_node
              0: agent
              yes: yes_node
              no: no_node
              off: no_node
            validate:
              choices: [yes, no, 0123]
            save_as: reply
          yes_node: {hangup: true}
          no_node: {hangup: true}
          agent: {transfer: {queue: support}}
        """
    )
    node = flow.node("menu")
    assert node.on == {
        "1": "yes_node",
        "0": "agent",
        "yes": "yes_node",
        "no": "no_node",
        "off": "no_node",
    }
    assert node.validation is not None
    assert node.validation.choices == ["yes", "no", "0123"]


def test_an_unquoted_e164_number_keeps_its_plus() -> None:
    flow = load(
        """\
        numbers: [+14155550100]
        start: a
        nodes:
          a: {transfer: {number: +14155550123}}
        """
    )
    assert flow.numbers == ("+14155550100",)
    transfer = flow.node("a").transfer
    assert transfer is not None and transfer.number == "+14155550123"
